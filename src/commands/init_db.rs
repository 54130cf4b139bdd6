//! `init-db`: create keys.db owner-only, or upgrade one written by an older tool; record the
//! class's tag and the kind of account (real or sandbox) it lives on.

use anyhow::Result;
use serde_json::json;

use super::class::check_account_kind;
use crate::cli::{InitArgs, KeyNames};
use crate::context::Ctx;
use crate::domain::{AccountKind, Tag};
use crate::error::{Exit, input};
use crate::store::{SCHEMA_VERSION, Store};

pub fn run(ctx: &mut Ctx, args: InitArgs) -> Result<Exit> {
    let tag = args
        .class
        .as_deref()
        .map(Tag::parse)
        .transpose()
        .map_err(input)?;
    let db = &args.db.db;
    let what = Store::init(db)?;
    let mut store = Store::open(db)?;
    check_account_kind(ctx, &store, db)?;
    if store.account_kind()?.is_none() {
        store.set_meta("account", AccountKind::of(ctx.global.sandbox).as_str())?;
    }
    let mut notes = vec![what];
    if let Some(tag) = &tag {
        let old = store.meta("tag")?;
        store.set_meta("tag", tag.as_str())?;
        notes.push(match old {
            Some(o) if o != tag.as_str() => format!(
                "class tag changed from {o} to {}: new keys are named {}YYYYMMDD_<name>; older keys keep their names",
                tag.as_str(),
                tag.prefix()
            ),
            _ => format!(
                "class tag {}: new keys are named {}YYYYMMDD_<name>",
                tag.as_str(),
                tag.prefix()
            ),
        });
    }
    if let Some(how) = args.key_names {
        let how = match how {
            KeyNames::Names => "names",
            KeyNames::Pseudonymous => "pseudonymous",
        };
        if how == "pseudonymous" && store.meta("pseudonym_secret")?.is_none() {
            store.set_meta("pseudonym_secret", &class_secret()?)?;
        }
        let old = store.meta("key_names")?.unwrap_or_else(|| "names".into());
        store.set_meta("key_names", how)?;
        notes.push(if how == "pseudonymous" {
            "new keys get pseudonymous names (YYYYMMDD_<10 hex digits>): no student name or email is sent to \
             OpenRouter; keys made before keep their names until rotated"
                .to_string()
        } else if old != how {
            "new keys are named after their students again".to_string()
        } else {
            "new keys are named YYYYMMDD_<student name>".to_string()
        });
    }
    if let Some(ws) = &args.workspace {
        let id = ctx.client()?.workspace_id(ws.trim())?;
        store.set_meta("workspace", &id)?;
        notes.push(format!(
            "the class lives in workspace {id}: its keys are made and listed there"
        ));
    }
    let current_tag = store.meta("tag")?;
    if ctx.ui.json {
        ctx.ui.json(&json!({
            "db": db.display().to_string(),
            "schema": SCHEMA_VERSION,
            "class": current_tag,
            "workspace": store.meta("workspace")?,
            "account": AccountKind::of(ctx.global.sandbox).as_str(),
            "message": notes.join("; "),
        }))?;
    } else {
        for n in notes {
            ctx.ui.say(format!("{}{n}", super::class::sandbox_tag(ctx)));
        }
    }
    Ok(Exit::Ok)
}

/// A random secret of the class for pseudonyms, from the operating system.
fn class_secret() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            anyhow::anyhow!("reading /dev/urandom for the class's pseudonym secret: {e}")
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
