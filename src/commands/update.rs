//! `update`: apply limits.csv's targets, one PATCH per key carrying every field that differs,
//! record each change with its old and new value, then rewrite limits.csv keeping the targets.

use std::collections::HashMap;

use anyhow::Result;
use serde::Serialize;

use super::class::{Class, open_store, sandbox_tag};
use crate::apply::{self, Op};
use crate::cli::UpdateArgs;
use crate::context::Ctx;
use crate::domain::same_money;
use crate::error::{Exit, input};
use crate::files::config::ClassConfig;
use crate::files::limits::LimitsFile;
use crate::files::output::write_snapshot;
use crate::files::roster::Roster;
use crate::files::{money_cell, reset_cell};
use crate::guardrail::{self, Synced};
use crate::openrouter::{Key, Patch};
use crate::reconcile::{self, Skipped};
use crate::store::run_time;

#[derive(Serialize)]
struct Report {
    dry_run: bool,
    changes: Vec<ChangeJson>,
    skipped: Vec<SkippedJson>,
    failed: Vec<super::class::Failed>,
    unchanged: usize,
    limits_file: Option<String>,
    snapshot: Option<String>,
    /// What was done (or, in a dry run, would be done) to the class guardrail.
    guardrail: Option<Synced>,
}

#[derive(Serialize)]
struct ChangeJson {
    email: String,
    key_name: String,
    hash: String,
    field: &'static str,
    old: String,
    new: String,
    applied: bool,
}

#[derive(Serialize)]
struct SkippedJson {
    email: String,
    line: u64,
    reason: String,
}

/// A PATCH to send, owned (the account list changes as answers arrive).
struct Job {
    email: String,
    before: Key,
    patch: Patch,
}

pub fn run(ctx: &mut Ctx, args: UpdateArgs) -> Result<Exit> {
    let at = run_time();
    // The lock first: a command still running (a `disable`, say) finishes before this one reads
    // the files it rewrites.
    let store = open_store(&args.db.db)?;
    if !args.limits.limits.exists() {
        return Err(input(format!(
            "{} not found: run `classkeys provision` or `classkeys refresh-limits-file` to write it, then edit its target_* columns",
            args.limits.limits.display()
        )));
    }
    let limits = LimitsFile::read(&args.limits.limits)?;
    if limits.rows.is_empty() {
        return Err(input(format!(
            "{} has no rows, so nothing to apply: run `classkeys refresh-limits-file` to fill it from the account, \
             then edit its target_* columns",
            limits.path.display()
        )));
    }
    let roster = Roster::read(&args.roster.roster)?;
    let on_roster: std::collections::HashSet<String> = roster
        .students
        .iter()
        .map(|s| crate::files::email_key(&s.email))
        .collect();
    for row in &limits.rows {
        if !on_roster.contains(&crate::files::email_key(&row.email)) {
            return Err(input(format!(
                "{}: line {}: {} is not in {}: fix the email (it must match the roster exactly) or delete the row",
                limits.path.display(),
                row.line,
                row.email,
                roster.path.display()
            )));
        }
    }
    let config = ClassConfig::read(&ctx.dir())?;
    let mut class = Class::load(ctx, store, roster, &args.db.db, args.dry_run)?;
    // First the class guardrail, as classkeys.toml asks; then the keys, as limits.csv does.
    let mut synced = guardrail::sync(ctx, &mut class, &config, args.dry_run)?;
    let guardrail_failure = synced.as_mut().and_then(|s| s.failure.take());
    let view = class.view();
    let (planned, skipped) = reconcile::plan_updates(&view, &limits);
    let unchanged = limits.rows.len() - planned.len() - skipped.len();
    for (email, _, key) in view.with_keys() {
        let Some(row) = limits.row_for(&key.hash, email) else {
            continue;
        };
        if let Ok(actual) = crate::files::parse_money(&row.actual_limit)
            && !row.actual_limit.is_empty()
            && !same_money(actual, key.limit)
            && row.target_limit.is_none_or(|t| same_money(t, key.limit))
        {
            ctx.ui.warn(format!(
                "{}: line {}: {email}: actual_limit was edited ({}; the key's limit is {}), but only the \
                 target_* columns are applied: put the limit you want in target_limit",
                limits.path.display(),
                row.line,
                super::class::limit_text(actual),
                super::class::limit_text(key.limit)
            ));
        }
        if limits.python_zero(row, key) {
            ctx.ui.note(format!(
                "{}: line {}: {email}: manage_keys.py wrote `unlimited` for this $0 limit; taken as $0, \
                 as it meant (the rewritten file says 0.0)",
                limits.path.display(),
                row.line
            ));
        }
    }
    let jobs: Vec<Job> = planned
        .iter()
        .map(|p| Job {
            email: p.email.clone(),
            before: p.key.clone(),
            patch: p.patch.clone(),
        })
        .collect();
    drop(view);
    for s in &skipped {
        ctx.ui.warn(format!(
            "{}: line {}: {}: {}",
            limits.path.display(),
            s.line,
            s.email,
            s.why
        ));
    }

    credits_check(ctx, &class, &jobs);
    let mut applied = apply::Applied::default();
    if !args.dry_run {
        let ops = jobs
            .iter()
            .map(|j| Op::Patch {
                email: j.email.clone(),
                before: j.before.clone(),
                patch: j.patch.clone(),
            })
            .collect();
        applied = apply::execute(ctx, &mut class, ops, "updating keys")?;
    }
    let failure = applied.failure.take();

    let (limits_file, snapshot) = if args.dry_run {
        (None, None)
    } else {
        class.record(at)?;
        let view = class.view();
        limits.rewrite(view.with_keys())?;
        let snap = write_snapshot(&ctx.dir(), at, view.rows())?;
        (
            Some(limits.path.display().to_string()),
            Some(snap.display().to_string()),
        )
    };

    let change_rows = planned_changes(&jobs, &applied);
    if ctx.ui.json {
        ctx.ui.json(&Report {
            dry_run: args.dry_run,
            changes: change_rows,
            skipped: skipped.iter().map(skipped_json).collect(),
            failed: super::class::Failed::list(&failure),
            unchanged,
            limits_file,
            snapshot,
            guardrail: synced,
        })?;
    } else {
        let rows: Vec<Vec<String>> = change_rows
            .iter()
            .map(|c| {
                // Money as people read it: $2.00, not 2.0.
                let shown = |v: &str| match (c.field, crate::files::parse_money(v)) {
                    ("limit", Ok(l)) => super::class::limit_text(l),
                    _ => v.to_string(),
                };
                vec![
                    c.email.clone(),
                    c.key_name.clone(),
                    c.field.to_string(),
                    shown(&c.old),
                    shown(&c.new),
                    if args.dry_run {
                        "planned".into()
                    } else if c.applied {
                        "done".into()
                    } else {
                        "not applied".into()
                    },
                ]
            })
            .collect();
        if !rows.is_empty() {
            ctx.ui.table(
                &["Email", "Key name", "Field", "Was", "Now", "Status"],
                rows,
            );
        }
        let verb = if args.dry_run {
            "dry run: would update"
        } else {
            "updated"
        };
        let done = if args.dry_run {
            jobs.len()
        } else {
            jobs.iter()
                .filter(|j| applied.patched(&j.before.hash))
                .count()
        };
        ctx.ui.say(format!(
            "{}{verb} {done} key(s); {unchanged} already as targeted; {} skipped{}",
            sandbox_tag(ctx),
            skipped.len(),
            if args.dry_run {
                ". Nothing was changed."
            } else {
                ""
            }
        ));
        if let (Some(l), Some(s)) = (&limits_file, &snapshot) {
            ctx.ui.say(format!("limits: {l}   snapshot: {s}"));
        }
    }
    if let Some((email, err)) = failure {
        return Err(anyhow::Error::new(err).context(format!(
            "update stopped at {email}; changes made before are recorded. Fix the cause and run `classkeys update` again"
        )));
    }
    if let Some(err) = guardrail_failure {
        return Err(anyhow::Error::new(err).context(
            "the class guardrail is not yet as classkeys.toml asks (what was done is recorded); \
             fix the cause and run `classkeys update` again",
        ));
    }
    Ok(Exit::Ok)
}

/// One row per field a PATCH carries; a field is applied when its key's PATCH went through.
fn planned_changes(jobs: &[Job], applied: &apply::Applied) -> Vec<ChangeJson> {
    let mut out = Vec::new();
    for job in jobs {
        let done = applied.patched(&job.before.hash);
        let mut push = |field: &'static str, old: String, new: String| {
            out.push(ChangeJson {
                email: job.email.clone(),
                key_name: job.before.name.clone(),
                hash: job.before.hash.clone(),
                field,
                old,
                new,
                applied: done,
            });
        };
        if let Some(l) = job.patch.limit {
            push("limit", money_cell(job.before.limit), money_cell(l));
        }
        if let Some(d) = job.patch.disabled {
            push("disabled", job.before.disabled.to_string(), d.to_string());
        }
        if let Some(r) = &job.patch.limit_reset {
            push(
                "limit_reset",
                reset_cell(job.before.limit_reset.as_deref()),
                reset_cell(r.as_deref()),
            );
        }
    }
    out
}

fn skipped_json(s: &Skipped) -> SkippedJson {
    SkippedJson {
        email: s.email.clone(),
        line: s.line,
        reason: s.why.clone(),
    }
}

/// When an update raises limits, the same check as `provision`: do the account's credits cover
/// what every enabled key may then spend?
fn credits_check(ctx: &Ctx, class: &Class, jobs: &[Job]) {
    let raises = jobs.iter().any(|j| match (j.patch.limit, j.before.limit) {
        (Some(None), Some(_)) => true,
        (Some(Some(new)), Some(old)) => new > old + 1e-9,
        _ => j.patch.disabled == Some(false),
    });
    if !raises {
        return;
    }
    let credits = match class.client.credits() {
        Ok(c) => c,
        Err(e) => {
            ctx.ui.note(format!("note: credits not checked: {e}"));
            return;
        }
    };
    let patched: HashMap<&str, &Job> = jobs.iter().map(|j| (j.before.hash.as_str(), j)).collect();
    let after: Vec<Key> = class
        .account
        .iter()
        .map(|k| match patched.get(k.hash.as_str()) {
            Some(j) => {
                let mut k = k.clone();
                if let Some(l) = j.patch.limit {
                    k.limit = l;
                    k.limit_remaining = None;
                }
                if let Some(d) = j.patch.disabled {
                    k.disabled = d;
                }
                k
            }
            None => k.clone(),
        })
        .collect();
    let check = reconcile::credit_check(&credits, &after, &[]);
    if let Some(short) = check.shortfall {
        ctx.ui.warn(format!(
            "after this update the keys may spend ${:.2}, more than the account's remaining credits \
             (${:.2}) by ${short:.2}; students may hit an empty account before their limit",
            check.existing_remaining_limits, check.remaining_credits
        ));
    }
    if after.iter().any(|k| !k.disabled && k.limit.is_none())
        && jobs.iter().any(|j| j.patch.limit == Some(None))
    {
        ctx.ui.warn(format!(
            "unlimited keys can spend all of the account's ${:.2}",
            check.remaining_credits
        ));
    }
}
