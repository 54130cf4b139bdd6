//! `set-limit`: change limits at once, in front of a class, without editing limits.csv. One
//! PATCH per key through the executor (journaled like every change); limits.csv's targets and
//! actuals are rewritten to agree, so a later `update` does not undo it.

use anyhow::Result;
use serde::Serialize;

use super::class::{Class, limit_text, open_store, sandbox_tag};
use super::toggle::{can_confirm, check_emails, confirm, plural};
use crate::apply::{self, Op};
use crate::cli::SetLimitArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::limits::LimitsFile;
use crate::files::roster::Roster;
use crate::files::{email_key, parse_money};
use crate::openrouter::{Key, Patch};
use crate::store::run_time;

/// What the command does to each limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Set it (`None`: unlimited).
    To(Option<f64>),
    /// Add this many dollars (never below $0; unlimited stays unlimited).
    Add(f64),
}

impl Change {
    /// The key's new limit; `None` when this change leaves the key as it is.
    pub fn apply(self, key: &Key) -> Option<Option<f64>> {
        let new = match (self, key.limit) {
            (Change::To(l), _) => l,
            (Change::Add(_), None) => return None,
            (Change::Add(d), Some(l)) => Some(((l + d).max(0.0) * 100.0).round() / 100.0 + 0.0),
        };
        (!crate::domain::same_money(new, key.limit)).then_some(new)
    }
}

#[derive(Serialize)]
struct Report {
    dry_run: bool,
    changes: Vec<Row>,
    unchanged: usize,
    failed: Vec<super::class::Failed>,
}

#[derive(Serialize, Clone)]
struct Row {
    email: String,
    key_name: String,
    hash: String,
    old: Option<f64>,
    new: Option<f64>,
    applied: bool,
}

fn parse_change(args: &SetLimitArgs) -> Result<Change> {
    if let Some(add) = &args.add {
        let t = add.trim().replacen('$', "", 1);
        return match t.parse::<f64>() {
            Ok(d) if d.is_finite() && d.abs() < 1e9 => Ok(Change::Add(d)),
            _ => Err(input(format!(
                "--add {add:?}: give a number of dollars, like 1 or -0.50"
            ))),
        };
    }
    let amount = args.amount.as_deref().unwrap_or_default();
    parse_money(amount)
        .map(Change::To)
        .map_err(|m| input(format!("AMOUNT {amount:?}: {m}")))
}

pub fn run(ctx: &mut Ctx, args: SetLimitArgs) -> Result<Exit> {
    let at = run_time();
    let change = parse_change(&args)?;
    let args = args.select;
    if args.all && !args.dry_run {
        can_confirm(args.yes, "change the limits of every student")?;
    }
    let store = open_store(&args.db.db)?;
    let roster = Roster::read(&args.roster.roster)?;
    check_emails(&roster, &args.emails)?;
    let mut limits = LimitsFile::read_or_empty(&args.limits.limits)?;
    let mut class = Class::load(ctx, store, roster, &args.db.db, args.dry_run)?;

    let view = class.view();
    let wanted: Vec<String> = args.emails.iter().map(|e| email_key(e)).collect();
    let mut rows = Vec::new();
    let mut ops = Vec::new();
    let mut unchanged = 0;
    for entry in view.entries.iter().filter(|e| !e.student.is_placeholder()) {
        if !args.all && !wanted.contains(&email_key(&entry.student.email)) {
            continue;
        }
        for key in &entry.keys {
            match change.apply(key) {
                Some(new) => {
                    rows.push(Row {
                        email: entry.student.email.clone(),
                        key_name: key.name.clone(),
                        hash: key.hash.clone(),
                        old: key.limit,
                        new,
                        applied: false,
                    });
                    ops.push(Op::Patch {
                        email: entry.student.email.clone(),
                        before: (*key).clone(),
                        patch: Patch {
                            limit: Some(new),
                            ..Default::default()
                        },
                    });
                }
                None => {
                    if key.limit.is_none() && matches!(change, Change::Add(_)) {
                        ctx.ui.note(format!(
                            "{}: the key is unlimited; --add leaves it unlimited",
                            entry.student.email
                        ));
                    }
                    unchanged += 1;
                }
            }
        }
    }
    drop(view);
    let mut failure = None;
    if !args.dry_run && !ops.is_empty() {
        let students = {
            let mut e: Vec<&str> = rows.iter().map(|r| r.email.as_str()).collect();
            e.dedup();
            e.len()
        };
        if args.all
            && !confirm(
                ctx,
                args.yes,
                &format!(
                    "change the limits of {} of {}",
                    plural(ops.len(), "key"),
                    plural(students, "student")
                ),
            )?
        {
            return Err(input("not confirmed: nothing was changed"));
        }
        let mut applied = apply::execute(ctx, &mut class, ops, "changing limits")?;
        failure = applied.failure.take();
        for r in &mut rows {
            r.applied = applied.patched(&r.hash);
        }
        keep_limit_targets(&mut limits, &applied);
        class.record(at)?;
        if limits.path.exists() {
            let view = class.view();
            limits.rewrite(view.with_keys())?;
        }
    }

    if ctx.ui.json {
        ctx.ui.json(&Report {
            dry_run: args.dry_run,
            changes: rows.clone(),
            unchanged,
            failed: super::class::Failed::list(&failure),
        })?;
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.email.clone(),
                    r.key_name.clone(),
                    limit_text(r.old),
                    limit_text(r.new),
                    if args.dry_run {
                        "planned".into()
                    } else if r.applied {
                        "done".into()
                    } else {
                        "not applied".into()
                    },
                ]
            })
            .collect();
        if !table.is_empty() {
            ctx.ui
                .table(&["Email", "Key name", "Was", "Now", "Status"], table);
        }
        let done = rows.iter().filter(|r| r.applied).count();
        ctx.ui.say(if args.dry_run {
            format!(
                "{}dry run: would change {}; {unchanged} unchanged. Nothing was changed.",
                sandbox_tag(ctx),
                plural(rows.len(), "limit")
            )
        } else {
            format!(
                "{}changed {}; {unchanged} unchanged",
                sandbox_tag(ctx),
                plural(done, "limit")
            )
        });
    }
    if let Some((email, err)) = failure {
        return Err(anyhow::Error::new(err).context(format!(
            "set-limit stopped at {email}; the changes made before are recorded"
        )));
    }
    Ok(Exit::Ok)
}

/// limits.csv's target_limit follows what was just set, so that `update` does not undo it.
pub fn keep_limit_targets(limits: &mut LimitsFile, applied: &apply::Applied) {
    for (op, done) in &applied.done {
        let (Op::Patch { email, .. }, apply::Done::Patched(key)) = (op, done) else {
            continue;
        };
        for row in &mut limits.rows {
            if row.hash == key.hash || email_key(&row.email) == email_key(email) {
                row.target_limit = Some(key.limit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_below_zero_and_unlimited_stays_unlimited() {
        let key = |limit| Key {
            limit,
            ..Key::default()
        };
        assert_eq!(Change::Add(1.0).apply(&key(Some(2.0))), Some(Some(3.0)));
        assert_eq!(Change::Add(-5.0).apply(&key(Some(2.0))), Some(Some(0.0)));
        assert_eq!(Change::Add(-0.5).apply(&key(Some(0.0))), None);
        assert_eq!(Change::Add(1.0).apply(&key(None)), None);
        assert_eq!(Change::To(None).apply(&key(Some(2.0))), Some(None));
        assert_eq!(Change::To(Some(2.0)).apply(&key(Some(2.0))), None);
        assert_eq!(Change::Add(0.1).apply(&key(Some(0.2))), Some(Some(0.3)));
    }
}
