//! `provision`: one key for every roster student who has none. Each create is recorded in
//! keys.db before it is sent and its secret committed the moment it arrives; a create whose
//! outcome is unknown is settled (found, deleted, made again), never retried blindly.

use anyhow::Result;
use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::class::{Class, Failed, StudentJson, limit_text, sandbox_tag};
use crate::cli::ProvisionArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::limits::LimitsFile;
use crate::files::output::{NewSecret, write_api_keys, write_snapshot};
use crate::files::parse_money;
use crate::files::roster::Roster;
use crate::openrouter::{ApiError, NewKey};
use crate::reconcile::{self, CreditCheck};
use crate::store::{Change, run_time};
use crate::{fault, pool};

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
    already_had_key: usize,
    discarded_leftovers: Vec<String>,
    credits: Option<CreditCheck>,
    warnings: Vec<String>,
    api_keys_file: Option<String>,
    limits_file: Option<String>,
    snapshot: Option<String>,
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

/// What a batch of creates came to.
#[derive(Default)]
pub struct Outcome {
    pub secrets: Vec<NewSecret>,
    pub created: Vec<(String, String, String)>,
    pub failure: Option<(String, ApiError)>,
    pub discarded: Vec<String>,
}

pub fn run(ctx: &mut Ctx, args: ProvisionArgs) -> Result<Exit> {
    let at = run_time();
    let default_limit = parse_money(&args.limit).map_err(|m| input(format!("--limit: {m}")))?;
    let expires = args
        .expires
        .as_deref()
        .map(|e| parse_expiry(e, at))
        .transpose()?;
    let roster = Roster::read(&args.roster.roster)?;
    let limits = LimitsFile::read_or_empty(&args.limits.limits)?;
    let mut class = Class::load_with(ctx, roster, &args.db.db)?;
    let mut warnings = Vec::new();

    let mut outcome = Outcome::default();
    if args.dry_run {
        let n = class.suspects.len();
        if n > 0 {
            warnings.push(format!(
                "{n} key(s) left over from an interrupted run would be deleted and made again"
            ));
        }
    } else {
        outcome.discarded = settle_leftovers(ctx, &mut class)?;
    }

    let date = reconcile::name_date(at);
    let view = class.view();
    let plan: Vec<Planned> = view
        .keyless()
        .iter()
        .map(|s| {
            let (limit, limit_reset) = reconcile::new_key_limits(s, default_limit);
            Planned {
                email: s.email.clone(),
                name: s.name.clone(),
                new: NewKey {
                    name: reconcile::key_name(&date, &s.name),
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
        return print_plan(
            ctx,
            planned_json,
            skipped_placeholders,
            already_had_key,
            credits,
            warnings,
        );
    }

    create_all(ctx, &mut class, plan, &mut outcome)?;

    // Secrets first: they exist nowhere else but keys.db.
    let api_keys_file = if outcome.secrets.is_empty() {
        None
    } else {
        Some(write_api_keys(&ctx.dir(), at, &outcome.secrets)?)
    };
    class.refresh_known()?;
    class.record(at)?;
    let view = class.view();
    limits.rewrite(view.with_keys())?;
    let snapshot = write_snapshot(&ctx.dir(), at, view.rows())?;

    let by_hash: std::collections::HashMap<&str, &crate::openrouter::Key> =
        class.account.iter().map(|k| (k.hash.as_str(), k)).collect();
    let mut created_json: Vec<StudentJson> = outcome
        .created
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
    let failed = Failed::list(&outcome.failure);
    let exit = if outcome.failure.is_some() {
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
            already_had_key,
            discarded_leftovers: outcome.discarded.clone(),
            credits,
            warnings,
            api_keys_file: api_keys_file.as_ref().map(|p| p.display().to_string()),
            limits_file: Some(limits.path.display().to_string()),
            snapshot: Some(snapshot.display().to_string()),
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
        if !outcome.discarded.is_empty() {
            ctx.ui.say(format!(
                "deleted {} key(s) left over from an interrupted run (their secrets were never seen) and made them again",
                outcome.discarded.len()
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
    let made = outcome.created.len();
    if let Some((email, err)) = outcome.failure.take() {
        return Err(anyhow::Error::new(err).context(format!(
            "provisioning stopped at {email}; the {made} key(s) made before are saved (keys.db, api_keys file). \
             Fix the cause and run `classkeys provision` again: it creates only what is missing"
        )));
    }
    Ok(exit)
}

/// Create every planned key through the pool. Ambiguous creates are settled and made again,
/// up to three rounds. Every key made lands in `outcome` (secret and hash).
pub fn create_all(
    ctx: &Ctx,
    class: &mut Class,
    plan: Vec<Planned>,
    outcome: &mut Outcome,
) -> Result<()> {
    let mut todo = plan;
    for round in 0..3 {
        if todo.is_empty() || outcome.failure.is_some() {
            break;
        }
        let pairs: Vec<(&str, &str)> = todo
            .iter()
            .map(|p| (p.email.as_str(), p.new.name.as_str()))
            .collect();
        let ids = class.store.begin_attempts(Utc::now(), &pairs)?;
        let items: Vec<(Planned, i64)> = todo.drain(..).zip(ids).collect();
        let bar = ctx.ui.progress(
            items.len(),
            if round == 0 {
                "creating keys"
            } else {
                "creating keys again"
            },
        );
        let mut ambiguous: Vec<Planned> = Vec::new();
        let mut handed = std::collections::HashSet::new();
        let mut store_error = None;
        {
            let Class {
                client,
                store,
                account,
                ..
            } = class;
            let client = &*client;
            pool::run(
                client.jobs(),
                &items,
                |(p, _)| {
                    let r = client.create_key(&p.new);
                    if r.is_ok() {
                        fault::point("create-answered");
                    }
                    r
                },
                |r| matches!(r, Err(e) if !e.is_ambiguous()),
                |(p, id), result| {
                    bar.inc(1);
                    handed.insert(*id);
                    match result {
                        Ok(created) => {
                            if let Err(e) = store.record_created(
                                Some(*id),
                                &p.email,
                                &p.name,
                                &created.data,
                                &created.key,
                                &[],
                            ) {
                                store_error = Some(e);
                                return false;
                            }
                            fault::point("create-saved");
                            outcome.secrets.push(NewSecret {
                                email: p.email.clone(),
                                name: p.name.clone(),
                                api_key: created.key,
                                key_name: created.data.name.clone(),
                            });
                            outcome.created.push((
                                p.email.clone(),
                                p.name.clone(),
                                created.data.hash.clone(),
                            ));
                            account.push(created.data);
                            true
                        }
                        Err(e) if e.is_ambiguous() => {
                            ctx.ui.warn(format!(
                                "{}: {e}; it will be checked and made again",
                                p.email
                            ));
                            let _ = store.settle_attempts(&[*id], "ambiguous");
                            ambiguous.push(p.clone());
                            true
                        }
                        Err(e) => {
                            let _ = store.settle_attempts(&[*id], "failed");
                            outcome.failure = Some((p.email.clone(), e));
                            false
                        }
                    }
                },
            );
        }
        bar.finish_and_clear();
        // Planned creates that were never sent (the run stopped first) surely made nothing.
        let unsent: Vec<i64> = items
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| !handed.contains(id))
            .collect();
        class.store.settle_attempts(&unsent, "failed")?;
        if let Some(e) = store_error {
            return Err(e);
        }
        if ambiguous.is_empty() || outcome.failure.is_some() {
            break;
        }
        // Look once at the account to find keys the unclear creates made, delete them, make them again.
        class.account = class.client.list_keys()?;
        class.refresh_known()?;
        outcome.discarded.extend(settle_leftovers(ctx, class)?);
        todo = ambiguous;
    }
    if outcome.failure.is_none() && !todo.is_empty() {
        let who: Vec<&str> = todo.iter().map(|p| p.email.as_str()).collect();
        outcome.failure = Some((
            who.join(", "),
            ApiError::GaveUp {
                what: "creating keys".into(),
                tries: 3,
                secs: 0,
                detail: "OpenRouter never answered clearly".into(),
            },
        ));
    }
    Ok(())
}

/// Settle creates whose outcome an earlier run (or round) never learned: delete the keys they
/// may have made (same name, created after the attempt, a hash keys.db does not know).
pub fn settle_leftovers(ctx: &Ctx, class: &mut Class) -> Result<Vec<String>> {
    let pending = class.store.pending_attempts()?;
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let found = reconcile::leftovers(&pending, &class.account, &class.known);
    let mut discarded = Vec::new();
    for (attempt, (id, keys)) in pending.iter().zip(found) {
        debug_assert_eq!(attempt.id, id);
        for key in keys {
            let hash = key.hash.clone();
            class.client.delete_key(&hash).map_err(|e| {
                anyhow::Error::new(e).context("deleting a key left over from an interrupted provision (its secret was never seen)")
            })?;
            class.store.record_changes(
                None,
                &[Change {
                    hash: hash.clone(),
                    email: attempt.email.clone(),
                    action: "discarded",
                    old: Some(key.name.clone()),
                    new: None,
                }],
            )?;
            ctx.ui.note(format!(
                "deleted leftover key {} of {} (its secret was never seen)",
                key.name, attempt.email
            ));
            discarded.push(hash);
        }
    }
    class.remove(&discarded);
    let ids: Vec<i64> = pending.iter().map(|a| a.id).collect();
    class.store.settle_attempts(&ids, "resolved")?;
    class.refresh_known()?;
    Ok(discarded)
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

fn print_plan(
    ctx: &Ctx,
    planned: Vec<PlannedJson>,
    skipped_placeholders: Vec<String>,
    already_had_key: usize,
    credits: Option<CreditCheck>,
    warnings: Vec<String>,
) -> Result<Exit> {
    if ctx.ui.json {
        ctx.ui.json(&Report {
            dry_run: true,
            planned,
            created: Vec::new(),
            failed: Vec::new(),
            skipped_placeholders,
            already_had_key,
            discarded_leftovers: Vec::new(),
            credits,
            warnings,
            api_keys_file: None,
            limits_file: None,
            snapshot: None,
        })?;
        return Ok(Exit::Ok);
    }
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
    for w in warnings {
        ctx.ui.say(format!("warning: {w}"));
    }
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
