//! `change-email`: a student's email was wrong, or changed. Their keys, targets and history
//! move to the new email in keys.db, roster.csv and limits.csv; the keys keep their names and
//! nothing is sent to the account.

use anyhow::Result;
use serde_json::json;

use super::class::{open_store, sandbox_tag};
use crate::cli::ChangeEmailArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::limits::LimitsFile;
use crate::files::roster::{Roster, RowEdit};
use crate::files::{check_email, email_key, is_placeholder};

pub fn run(ctx: &mut Ctx, args: ChangeEmailArgs) -> Result<Exit> {
    let (old, new) = (args.email.trim().to_string(), args.to.trim().to_string());
    check_email(&new).map_err(|m| input(format!("--to: {m}")))?;
    if is_placeholder(&new) {
        return Err(input(format!(
            "--to {new}: a FIXME address is not a student's email"
        )));
    }
    let mut store = open_store(&args.db.db)?;
    let mut roster = Roster::read(&args.roster.roster)?;
    let limits = LimitsFile::read_or_empty(&args.limits.limits)?;
    let (old_k, new_k) = (email_key(&old), email_key(&new));
    if old_k == new_k && old == new {
        return Err(input("--email and --to are the same email; nothing to do"));
    }
    let known = store.known_keys()?;
    let names = store.student_names()?;
    let has_keys = |k: &str| {
        known.iter().any(|x| {
            email_key(&x.email) == k && x.owner == crate::domain::Owner::Class && !x.deleted
        })
    };
    let old_known = names.iter().any(|(e, _)| email_key(e) == old_k) || has_keys(&old_k);
    let on_roster_old = roster.find(&old).is_some();
    if !old_known && !on_roster_old {
        return Err(input(format!(
            "--email {old}: neither in {} nor in {}; check the spelling",
            roster.path.display(),
            args.db.db.display()
        )));
    }
    if old_k != new_k && has_keys(&new_k) {
        return Err(input(format!(
            "--to {new}: that student already has keys in {}; nothing was changed",
            args.db.db.display()
        )));
    }
    if old_k != new_k && on_roster_old && roster.find(&new).is_some() {
        return Err(input(format!(
            "--to {new}: already on {} (and so is {old}); remove one of the two rows first",
            roster.path.display()
        )));
    }
    let name = roster
        .find(&old)
        .or_else(|| roster.find(&new))
        .map(|s| s.name.clone())
        .or_else(|| {
            names
                .iter()
                .find(|(e, _)| email_key(e) == old_k)
                .map(|(_, n)| n.clone())
        })
        .unwrap_or_default();

    let moved = store.change_email(&old, &new, &name)?;
    let roster_rows = if on_roster_old {
        roster.edit(|e| {
            if email_key(e) == old_k {
                RowEdit::Email(new.clone())
            } else {
                RowEdit::Keep
            }
        })?
    } else {
        0
    };
    let mut limits_rows = 0;
    if limits.path.exists() {
        let mut limits = limits;
        for row in &mut limits.rows {
            if email_key(&row.email) == old_k {
                row.email = new.clone();
                limits_rows += 1;
            }
        }
        if limits_rows > 0 {
            limits.rewrite_rows()?;
        }
    }
    if ctx.ui.json {
        ctx.ui.json(&json!({
            "email": old,
            "to": new,
            "keys_moved": moved,
            "roster_rows": roster_rows,
            "limits_rows": limits_rows,
        }))?;
    } else {
        ctx.ui.say(format!(
            "{}moved {old} to {new}: {moved} key(s) in {}, {roster_rows} row(s) in {}, {limits_rows} row(s) in {}",
            sandbox_tag(ctx),
            args.db.db.display(),
            roster.path.display(),
            args.limits.limits.display()
        ));
    }
    Ok(Exit::Ok)
}
