//! `log`: the changelog at hand, without sqlite3: who, which key, what changed, old → new,
//! newest last. Reads keys.db only; sends nothing.

use anyhow::Result;

use super::report::resolve;
use crate::cli::LogArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::email_key;
use crate::store::Store;

/// The changelog's action names (README "Files"): classkeys' own, then manage_keys.py's.
pub const ACTIONS: &[&str] = &[
    "created",
    "limit_changed",
    "disabled",
    "enabled",
    "limit_reset_changed",
    "rotated",
    "deleted",
    "deleted_outside",
    "discarded",
    "adopted",
    "dismissed",
    "email_changed",
    "dropped",
    "secret_imported",
    "provisioned",
    "update_limit",
    "update_disabled",
];

pub fn run(ctx: &mut Ctx, args: LogArgs) -> Result<Exit> {
    for a in &args.actions {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(input(format!(
                "--action {a}: not a changelog action; use one of {}",
                ACTIONS.join(", ")
            )));
        }
    }
    let since = resolve(ctx, "--since", args.since.as_deref())?;
    let until = resolve(ctx, "--until", args.until.as_deref())?;
    let store = Store::open_read(&args.db.db)?;
    let wanted: Vec<String> = args.emails.iter().map(|e| email_key(e)).collect();
    let rows: Vec<_> = store
        .changelog()?
        .into_iter()
        .filter(|r| wanted.is_empty() || wanted.contains(&email_key(&r.email)))
        .filter(|r| args.actions.is_empty() || args.actions.contains(&r.action))
        .filter(|r| since.is_none_or(|s| r.at.is_some_and(|t| t >= s)))
        .filter(|r| until.is_none_or(|u| r.at.is_some_and(|t| t < u)))
        .collect();
    if ctx.ui.json {
        ctx.ui.json(&rows)?;
        return Ok(Exit::Ok);
    }
    let table = rows
        .iter()
        .map(|r| {
            // Money as people read it ($2.00), whatever keys.db holds (2.0, unlimited).
            let money = |v: &String| match (r.action.as_str(), crate::files::parse_money(v)) {
                ("limit_changed", Ok(l)) => super::class::limit_text(l),
                _ => v.clone(),
            };
            let (old, new) = (r.old.as_ref().map(money), r.new.as_ref().map(money));
            let change = match (&old, &new) {
                (Some(o), Some(n)) => format!("{o} → {n}"),
                (None, Some(n)) => n.clone(),
                (Some(o), None) => o.clone(),
                (None, None) => String::new(),
            };
            vec![
                r.at.map(crate::report::local).unwrap_or_default(),
                r.email.clone(),
                r.key_name.clone(),
                r.action.clone(),
                change,
            ]
        })
        .collect::<Vec<_>>();
    if !table.is_empty() {
        ctx.ui.table(
            &["Time (local)", "Student", "Key", "Action", "Change"],
            table,
        );
    }
    ctx.ui.say(format!(
        "{} in the changelog of {}",
        super::toggle::plural(rows.len(), "change"),
        args.db.db.display()
    ));
    Ok(Exit::Ok)
}
