//! `provision`: one key for every roster student who has none. Each create is recorded in
//! keys.db before it is sent and its secret committed the moment it arrives; a create whose
//! outcome is unknown is settled (found, deleted, made again), never retried blindly.

use anyhow::Result;
use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::class::{Class, Failed, StudentJson, limit_text, open_store, sandbox_tag, save_secrets};
use crate::apply::{self, Op};
use crate::cli::ProvisionArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::config::ClassConfig;
use crate::files::limits::LimitsFile;
use crate::files::output::write_snapshot;
use crate::files::parse_money;
use crate::files::roster::Roster;
use crate::guardrail::{self, Holder, Synced};
use crate::openrouter::NewKey;
use crate::reconcile::{self, CreditCheck, Renamed};
use crate::store::run_time;

/// A key to create.
#[derive(Debug, Clone)]
pub struct Planned {
    pub email: String,
    pub name: String,
    pub new: NewKey,
}

#[derive(Serialize)]
struct Report {
    dry_run: bool,
    planned: Vec<PlannedJson>,
    created: Vec<StudentJson>,
    failed: Vec<Failed>,
    skipped_placeholders: Vec<String>,
    skipped_renamed: Vec<Renamed>,
    already_had_key: usize,
    discarded_leftovers: Vec<String>,
    credits: Option<CreditCheck>,
    warnings: Vec<String>,
    api_keys_file: Option<String>,
    limits_file: Option<String>,
    snapshot: Option<String>,
    /// What was done (or, in a dry run, would be done) to the class guardrail.
    guardrail: Option<Synced>,
}

#[derive(Serialize)]
struct PlannedJson {
    email: String,
    name: String,
    key_name: String,
    limit: Option<f64>,
    limit_reset: Option<String>,
    expires_at: Option<String>,
}

pub fn run(ctx: &mut Ctx, args: ProvisionArgs) -> Result<Exit> {
    let at = run_time();
    let default_limit = parse_money(&args.limit).map_err(|m| input(format!("--limit: {m}")))?;
    let expires = args
        .expires
        .as_deref()
        .map(|e| parse_expiry(e, at))
        .transpose()?;
    let store = open_store(&args.db.db)?;
    let roster = Roster::read(&args.roster.roster)?;
    let limits = LimitsFile::read_or_empty(&args.limits.limits)?;
    let config = ClassConfig::read(&ctx.dir())?;
    let mut class = Class::load(ctx, store, roster, &args.db.db, args.dry_run)?;
    // The guardrail first: the new keys get it right after they are made.
    let mut synced = guardrail::sync(ctx, &mut class, &config, args.dry_run)?;
    let mut warnings = Vec::new();
    let mut discarded = class.settled.discarded.clone();
    if args.dry_run {
        let n = class.suspects.len();
        if n > 0 {
            let msg = format!("{n} key(s) left over from an interrupted run would be deleted");
            ctx.ui.warn(&msg);
            warnings.push(msg);
        }
    }

    let date = reconcile::name_date(at);
    let view = class.view();
    let renamed: Vec<Renamed> = view.renamed.clone();
    for r in &renamed {
        ctx.ui.warn(format!(
            "{} gets no key: {} ({}) left the roster with a live key. If it is the same student, run              `classkeys change-email --email {} --to {}`; if not, `classkeys drop-student --email {}` first",
            r.new_email, r.old_email, r.name, r.old_email, r.new_email, r.old_email
        ));
    }
    for a in &view.ambiguous {
        ctx.ui.warn(format!(
            "{} gets no key: {} holds two keys named for {} (manage_keys.py recorded both same-name \
             students' keys under one email). Run `classkeys import-keys api_keys_*.csv` with the Python \
             tool's key files to settle who holds which",
            a.new_email, a.old_email, a.name
        ));
    }
    let plan: Vec<Planned> = view
        .keyless()
        .iter()
        .filter(|s| view.renamed_for(&s.email).is_none())
        .map(|s| {
            let (limit, limit_reset) = reconcile::new_key_limits(s, default_limit);
            Planned {
                email: s.email.clone(),
                name: s.name.clone(),
                new: NewKey {
                    name: class.naming.key_name(&date, s),
                    limit,
                    limit_reset,
                    expires_at: expires.clone(),
                },
            }
        })
        .collect();
    let skipped_placeholders: Vec<String> = view
        .entries
        .iter()
        .filter(|e| e.student.is_placeholder() && e.keys.is_empty())
        .map(|e| e.student.email.clone())
        .collect();
    let already_had_key = view
        .entries
        .iter()
        .filter(|e| !e.keys.is_empty() && !e.student.is_placeholder())
        .count();
    drop(view);

    let credits = if plan.is_empty() {
        None
    } else {
        credits_check(ctx, &class, &plan, &mut warnings)
    };
    let planned_json: Vec<PlannedJson> = plan
        .iter()
        .map(|p| PlannedJson {
            email: p.email.clone(),
            name: p.name.clone(),
            key_name: p.new.name.clone(),
            limit: p.new.limit,
            limit_reset: p.new.limit_reset.clone(),
            expires_at: p.new.expires_at.clone(),
        })
        .collect();

    if args.dry_run {
        if let Some(s) = &mut synced {
            // The new keys would get it too.
            s.assigned.extend(plan.iter().map(|p| Holder {
                email: p.email.clone(),
                hash: String::new(),
                key_name: p.new.name.clone(),
                held: None,
                held_name: None,
            }));
        }
        return print_plan(
            ctx,
            Report {
                dry_run: true,
                planned: planned_json,
                created: Vec::new(),
                failed: Vec::new(),
                skipped_placeholders,
                skipped_renamed: renamed,
                already_had_key,
                discarded_leftovers: Vec::new(),
                credits,
                warnings,
                api_keys_file: None,
                limits_file: None,
                snapshot: None,
                guardrail: synced,
            },
        );
    }

    let ops = plan
        .into_iter()
        .map(|p| Op::Create {
            email: p.email,
            name: p.name,
            new: p.new,
            disable: false,
        })
        .collect();
    let mut applied = apply::execute(ctx, &mut class, ops, "creating keys")?;
    discarded.extend(applied.discarded.iter().cloned());
    let created: Vec<(String, String, String)> = applied
        .created()
        .map(|(e, n, k, _)| (e.to_string(), n.to_string(), k.hash.clone()))
        .collect();

    // Secrets first: they exist nowhere else but keys.db.
    let api_keys_file = save_secrets(ctx, at, &applied)?;
    // Then the class guardrail on the new keys (a failure here is finished by the next run).
    let new_keys: Vec<Holder> = applied
        .created()
        .map(|(email, _, key, _)| Holder {
            email: email.to_string(),
            hash: key.hash.clone(),
            key_name: key.name.clone(),
            held: None,
            held_name: None,
        })
        .collect();
    let guardrail_failure = if synced
        .as_ref()
        .is_some_and(|s| s.action != guardrail::Action::Deleted)
    {
        guardrail::assign_new(ctx, &mut class, new_keys.clone())?
    } else {
        None
    };
    if let Some(s) = &mut synced {
        if guardrail_failure.is_none() && s.action != guardrail::Action::Deleted {
            s.assigned.extend(new_keys);
        }
        if s.failure.is_none() {
            s.failure = guardrail_failure;
        }
    }
    class.refresh_known()?;
    class.record(at)?;
    let view = class.view();
    limits.rewrite(view.with_keys())?;
    let snapshot = write_snapshot(&ctx.dir(), at, view.rows())?;

    let by_hash: std::collections::HashMap<&str, &crate::openrouter::Key> =
        class.account.iter().map(|k| (k.hash.as_str(), k)).collect();
    let mut created_json: Vec<StudentJson> = created
        .iter()
        .filter_map(|(email, name, hash)| {
            by_hash
                .get(hash.as_str())
                .map(|k| StudentJson::new(email, name, k))
        })
        .collect();
    // Answers come in any order; people read the roster's.
    let roster_order: std::collections::HashMap<String, usize> = class
        .roster
        .students
        .iter()
        .enumerate()
        .map(|(i, s)| (crate::files::email_key(&s.email), i))
        .collect();
    created_json.sort_by_key(|s| {
        roster_order
            .get(&crate::files::email_key(&s.email))
            .copied()
    });
    let failed = Failed::list(&applied.failure);
    let guardrail_failure = synced.as_mut().and_then(|s| s.failure.take());
    let exit = if applied.failure.is_some() || guardrail_failure.is_some() {
        Exit::Failed
    } else {
        Exit::Ok
    };

    if ctx.ui.json {
        ctx.ui.json(&Report {
            dry_run: false,
            planned: planned_json,
            created: created_json,
            failed,
            skipped_placeholders,
            skipped_renamed: renamed,
            already_had_key,
            discarded_leftovers: discarded.clone(),
            credits,
            warnings,
            api_keys_file: api_keys_file.as_ref().map(|p| p.display().to_string()),
            limits_file: Some(limits.path.display().to_string()),
            snapshot: Some(snapshot.display().to_string()),
            guardrail: synced.take(),
        })?;
    } else {
        let rows: Vec<Vec<String>> = created_json
            .iter()
            .map(|s| {
                vec![
                    s.email.clone(),
                    s.name.clone(),
                    s.key_name.clone(),
                    limit_text(s.limit),
                ]
            })
            .collect();
        if !rows.is_empty() {
            ctx.ui.table(&["Email", "Name", "Key name", "Limit"], rows);
        }
        ctx.ui.say(format!(
            "{}created {} key(s); {} student(s) already had one; {} FIXME row(s) skipped",
            sandbox_tag(ctx),
            created_json.len(),
            already_had_key,
            skipped_placeholders.len()
        ));
        if !discarded.is_empty() {
            ctx.ui.say(format!(
                "deleted {} key(s) left over from an interrupted run (their secrets were never seen)",
                discarded.len()
            ));
        }
        if let Some(s) = &synced
            && !created.is_empty()
            && s.action != guardrail::Action::Deleted
            && guardrail_failure.is_none()
        {
            ctx.ui.say(format!(
                "guardrail {:?}: assigned to the {} new key(s)",
                s.name,
                created.len()
            ));
        }
        if let Some(path) = &api_keys_file {
            ctx.ui.say(format!(
                "secrets of the new keys: {} (owner-only; hand them out, then delete it)",
                path.display()
            ));
        }
        ctx.ui.say(format!(
            "limits: {}   snapshot: {}",
            limits.path.display(),
            snapshot.display()
        ));
    }
    let made = created.len();
    if let Some((email, err)) = applied.failure.take() {
        return Err(anyhow::Error::new(err).context(format!(
            "provisioning stopped at {email}; the {made} key(s) made before are saved (keys.db, api_keys file). \
             Fix the cause and run `classkeys provision` again: it creates only what is missing"
        )));
    }
    if let Some(err) = guardrail_failure {
        return Err(anyhow::Error::new(err).context(format!(
            "the {made} new key(s) are made and saved, but the class guardrail is not yet on every key of the \
             class: run `classkeys update` or `classkeys provision` again to finish it"
        )));
    }
    Ok(exit)
}

fn credits_check(
    ctx: &Ctx,
    class: &Class,
    plan: &[Planned],
    warnings: &mut Vec<String>,
) -> Option<CreditCheck> {
    let credits = match class.client.credits() {
        Ok(c) => c,
        Err(e) if e.status() == Some(403) => {
            ctx.ui.note("note: this management key may not read the account's credits (403); credits not checked");
            return None;
        }
        Err(e) => {
            ctx.ui.note(format!("note: credits not checked: {e}"));
            return None;
        }
    };
    let limits: Vec<Option<f64>> = plan.iter().map(|p| p.new.limit).collect();
    let check = reconcile::credit_check(&credits, &class.account, &limits);
    if let Some(short) = check.shortfall {
        let msg = format!(
            "the new keys' limits (${:.2}) plus what existing keys may still spend (${:.2}) exceed the account's \
             remaining credits (${:.2}) by ${short:.2}; students may hit an empty account before their limit",
            check.new_limits, check.existing_remaining_limits, check.remaining_credits
        );
        ctx.ui.warn(&msg);
        warnings.push(msg);
    }
    if check.unlimited_new_keys > 0 {
        let msg = format!(
            "{} new key(s) are unlimited: they can spend all of the account's ${:.2}",
            check.unlimited_new_keys, check.remaining_credits
        );
        ctx.ui.warn(&msg);
        warnings.push(msg);
    }
    Some(check)
}

fn print_plan(ctx: &Ctx, report: Report) -> Result<Exit> {
    if ctx.ui.json {
        ctx.ui.json(&report)?;
        return Ok(Exit::Ok);
    }
    let Report {
        planned,
        skipped_placeholders,
        already_had_key,
        ..
    } = report;
    let rows: Vec<Vec<String>> = planned
        .iter()
        .map(|p| {
            vec![
                p.email.clone(),
                p.name.clone(),
                p.key_name.clone(),
                limit_text(p.limit),
                p.limit_reset.clone().unwrap_or_default(),
                p.expires_at.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        ctx.ui.table(
            &["Email", "Name", "Key name", "Limit", "Reset", "Expires"],
            rows,
        );
    }
    ctx.ui.say(format!(
        "{}dry run: would create {} key(s); {} student(s) already have one; {} FIXME row(s) skipped. Nothing was changed.",
        sandbox_tag(ctx),
        planned.len(),
        already_had_key,
        skipped_placeholders.len()
    ));
    // The warnings went to stderr when they were found: once is enough.
    Ok(Exit::Ok)
}

/// `--expires`: an RFC 3339 date-time (any offset), a local date-time, or a date (its end, UTC).
/// Sent as UTC; it must lie in the future.
pub fn parse_expiry(s: &str, now: DateTime<Utc>) -> Result<String> {
    let t = s.trim();
    let utc = if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        dt.with_timezone(&Utc)
    } else if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        d.and_hms_opt(23, 59, 59)
            .map(|n| n.and_utc())
            .ok_or_else(|| input(format!("--expires {t:?}: not a date")))?
    } else if let Some(n) = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    {
        n.and_local_timezone(Local)
            .earliest()
            .ok_or_else(|| input(format!("--expires {t:?}: that local time does not exist")))?
            .with_timezone(&Utc)
    } else {
        return Err(input(format!(
            "--expires {t:?} is not a date-time: use 2026-12-31 (end of that day, UTC) or 2026-12-31T18:00:00Z"
        )));
    };
    if utc <= now {
        return Err(input(format!(
            "--expires {t:?} is in the past ({})",
            utc.to_rfc3339_opts(SecondsFormat::Secs, true)
        )));
    }
    Ok(utc.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        let now = "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            parse_expiry("2026-12-31", now).unwrap(),
            "2026-12-31T23:59:59Z"
        );
        assert_eq!(
            parse_expiry("2026-12-31T18:00:00+02:00", now).unwrap(),
            "2026-12-31T16:00:00Z"
        );
        assert!(parse_expiry("2025-01-01", now).is_err());
        assert!(parse_expiry("next week", now).is_err());
    }
}
