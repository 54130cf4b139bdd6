//! `drop-student`: a student leaves the class. Their keys are disabled (or deleted), their row
//! leaves roster.csv and limits.csv, and keys.db keeps their history and remembers them as
//! dropped, so `check` never adds them back.

use anyhow::Result;
use serde_json::json;

use super::class::{Class, open_store, sandbox_tag};
use super::toggle::{Action, can_confirm, change_keys, check_emails, confirm};
use crate::cli::DropArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::email_key;
use crate::files::limits::LimitsFile;
use crate::files::roster::{Roster, RowEdit};
use crate::openrouter::Key;
use crate::store::run_time;

pub fn run(ctx: &mut Ctx, args: DropArgs) -> Result<Exit> {
    let at = run_time();
    let action = if args.delete {
        Action::Delete
    } else {
        Action::Disable
    };
    if !args.dry_run {
        can_confirm(args.yes, "drop a student")?;
    }
    let store = open_store(&args.db.db)?;
    let roster = Roster::read(&args.roster.roster)?;
    check_emails(&roster, std::slice::from_ref(&args.email))?;
    let limits = LimitsFile::read_or_empty(&args.limits.limits)?;
    let mut class = Class::load(ctx, store, roster, &args.db.db, args.dry_run)?;
    let view = class.view();
    let entry = view
        .entry(&args.email)
        .ok_or_else(|| input(format!("{} is not on the roster", args.email)))?;
    let (email, name) = (entry.student.email.clone(), entry.student.name.clone());
    let todo: Vec<(String, String, Key)> = entry
        .keys
        .iter()
        .filter(|k| args.delete || !k.disabled)
        .map(|k| (email.clone(), name.clone(), (*k).clone()))
        .collect();
    drop(view);
    let verb = if args.delete { "delete" } else { "disable" };
    if args.dry_run {
        return say(ctx, &email, todo.len(), verb, true);
    }
    let question = format!(
        "drop {email} ({name}): {verb} {} key(s){} and remove the row from {}",
        todo.len(),
        if args.delete {
            " (a delete cannot be undone)"
        } else {
            ""
        },
        class.roster.path.display()
    );
    if !confirm(ctx, args.yes, &question)? {
        return Err(input("not confirmed; nothing was changed"));
    }
    let (_applied, failure) = change_keys(ctx, &mut class, &todo, action)?;
    if let Some((who, err)) = failure {
        class.record(at)?;
        return Err(anyhow::Error::new(err).context(format!(
            "dropping {who} stopped: the row stays in the roster; fix the cause and run the command again"
        )));
    }
    class.store.mark_dropped(&email, &name)?;
    let k = email_key(&email);
    class.roster.edit(|e| {
        if email_key(e) == k {
            RowEdit::Drop
        } else {
            RowEdit::Keep
        }
    })?;
    class.refresh_known()?;
    class.record(at)?;
    if limits.path.exists() {
        let view = class.view();
        limits.rewrite(view.with_keys())?;
    }
    say(ctx, &email, todo.len(), verb, false)
}

fn say(ctx: &Ctx, email: &str, keys: usize, verb: &str, dry_run: bool) -> Result<Exit> {
    if ctx.ui.json {
        ctx.ui.json(&json!({
            "dry_run": dry_run,
            "email": email,
            "action": verb,
            "keys": keys,
        }))?;
    } else if dry_run {
        ctx.ui.say(format!(
            "{}dry run: would {verb} {keys} key(s) of {email} and remove the row. Nothing was changed.",
            sandbox_tag(ctx)
        ));
    } else {
        ctx.ui.say(format!(
            "{}dropped {email}: {keys} key(s) {verb}d, row removed; the history stays in keys.db",
            sandbox_tag(ctx)
        ));
    }
    Ok(Exit::Ok)
}
