//! `init-db`: create keys.db owner-only, or upgrade one written by an older tool; record the
//! class's tag and the kind of account (real or sandbox) it lives on.

use anyhow::Result;
use serde_json::json;

use super::class::check_account_kind;
use crate::cli::InitArgs;
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
    let current_tag = store.meta("tag")?;
    if ctx.ui.json {
        ctx.ui.json(&json!({
            "db": db.display().to_string(),
            "schema": SCHEMA_VERSION,
            "class": current_tag,
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
