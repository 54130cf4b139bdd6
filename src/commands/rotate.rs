//! `rotate`: re-issue a student's key. The new key (same name, limit, reset, expiry) is made
//! and its secret saved first; only then is the old key deleted. If the create fails, the old
//! key stays as it was.

use std::collections::HashSet;

use anyhow::Result;
use serde::Serialize;

use super::class::{Class, open_store, sandbox_tag, save_secrets};
use super::toggle::check_emails;
use crate::apply::{self, DeleteWhy, Op};
use crate::cli::RotateArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::email_key;
use crate::files::limits::LimitsFile;
use crate::files::roster::Roster;
use crate::openrouter::{ApiError, Key, NewKey, Patch};
use crate::store::{Change, run_time};

#[derive(Serialize)]
struct Report {
    dry_run: bool,
    rotated: Vec<Rotated>,
    failed: Vec<super::class::Failed>,
    api_keys_file: Option<String>,
}

#[derive(Serialize, Clone)]
struct Rotated {
    email: String,
    key_name: String,
    old_hash: String,
    new_hash: Option<String>,
    old_deleted: bool,
    limit: Option<f64>,
    disabled: bool,
}

/// The new key of a rotation: the old one's name, reset and expiry; its limit is what the
/// student had left (a limit with a reset is the same limit), unless `fresh`.
pub fn successor(old: &Key, fresh: bool) -> NewKey {
    let limit = match (old.limit, &old.limit_reset) {
        (Some(l), None) if !fresh => {
            let left = old.limit_remaining.unwrap_or(l - old.usage);
            Some((left.clamp(0.0, l) * 100.0).round() / 100.0 + 0.0)
        }
        (l, _) => l,
    };
    NewKey {
        name: old.name.clone(),
        limit,
        limit_reset: old.limit_reset.clone(),
        expires_at: old.expires_at.clone(),
    }
}

pub fn run(ctx: &mut Ctx, args: RotateArgs) -> Result<Exit> {
    let at = run_time();
    let store = open_store(&args.db.db)?;
    let roster = Roster::read(&args.roster.roster)?;
    check_emails(&roster, &args.emails)?;
    let limits = LimitsFile::read_or_empty(&args.limits.limits)?;
    let config = crate::files::config::ClassConfig::read(&ctx.dir())?;
    let mut class = Class::load(ctx, store, roster, &args.db.db, args.dry_run)?;

    let view = class.view();
    // (email, name, old key, new key)
    let mut old: Vec<(String, String, Key, NewKey)> = Vec::new();
    // Any other key the student still has (left by a rotate that was interrupted after its
    // create) goes too, so a re-run always ends with one key.
    let mut others: Vec<(String, Key)> = Vec::new();
    // An email given twice is one student: one new key, not two.
    let mut seen = HashSet::new();
    for email in args.emails.iter().filter(|e| seen.insert(email_key(e))) {
        let entry = view
            .entry(email)
            .ok_or_else(|| input(format!("{email} is not on the roster")))?;
        let key = entry.key().ok_or_else(|| {
            input(format!(
                "{email} has no key to rotate: run `classkeys provision` to give them one"
            ))
        })?;
        others.extend(
            entry
                .keys
                .iter()
                .skip(1)
                .map(|k| (entry.student.email.clone(), (*k).clone())),
        );
        let mut new = successor(key, args.fresh_limit);
        if class.naming.pseudonym_secret.is_some() {
            // A rotation is when a key made before the switch gets its pseudonymous name.
            new.name = class
                .naming
                .key_name(&crate::reconcile::name_date(at), entry.student);
        }
        old.push((
            entry.student.email.clone(),
            entry.student.name.clone(),
            key.clone(),
            new,
        ));
    }
    drop(view);
    let mut rotated: Vec<Rotated> = old
        .iter()
        .map(|(email, _, k, new)| Rotated {
            email: email.clone(),
            key_name: k.name.clone(),
            old_hash: k.hash.clone(),
            new_hash: None,
            old_deleted: false,
            limit: new.limit,
            disabled: k.disabled,
        })
        .collect();
    if args.dry_run {
        return finish(ctx, true, rotated, None, None);
    }

    // Make sure keys.db knows every old key, so none is mistaken for a leftover.
    class.record(at)?;
    let creates = old
        .iter()
        .map(|(email, name, old_key, new)| Op::Create {
            email: email.clone(),
            name: name.clone(),
            new: new.clone(),
            disable: old_key.disabled,
        })
        .collect();
    let mut made = apply::execute(ctx, &mut class, creates, "creating keys")?;
    // Secrets first: they exist nowhere else but keys.db.
    let api_keys_file = save_secrets(ctx, at, &made)?;
    let created: Vec<(String, Key)> = made
        .created()
        .map(|(email, _, key, _)| (email.to_string(), key.clone()))
        .collect();
    let mut failure: Option<(String, ApiError)> = made.failure.take();

    // A disabled student's new key is disabled too (a create cannot say so).
    let disable: Vec<Op> = created
        .iter()
        .filter(|(email, _)| old.iter().any(|(e, _, k, _)| e == email && k.disabled))
        .map(|(email, key)| Op::Patch {
            email: email.clone(),
            before: key.clone(),
            patch: Patch {
                disabled: Some(true),
                ..Default::default()
            },
        })
        .collect();
    let mut disabled_ok: HashSet<String> = HashSet::new();
    if !disable.is_empty() && failure.is_none() {
        let mut d = apply::execute(ctx, &mut class, disable, "disabling new keys")?;
        disabled_ok.extend(d.done.iter().filter_map(|(op, _)| match op {
            Op::Patch { before, .. } => Some(before.hash.clone()),
            _ => None,
        }));
        failure = failure.or(d.failure.take());
    }
    // The new keys hold the class guardrail, as the old ones did.
    if config.guardrail.is_some() {
        let holders = created
            .iter()
            .map(|(email, key)| crate::guardrail::Holder {
                email: email.clone(),
                hash: key.hash.clone(),
                key_name: key.name.clone(),
                held: None,
                held_name: None,
            })
            .collect();
        if let Some(e) = crate::guardrail::assign_new(ctx, &mut class, holders)? {
            ctx.ui.warn(format!(
                "the new key(s) do not hold the class guardrail yet ({e}); `classkeys update` assigns it"
            ));
        }
    }

    // Old keys whose replacement exists (its secret saved, its state the old one's) go.
    let mut deletes: Vec<Op> = Vec::new();
    for (email, new_key) in &created {
        let Some((_, _, old_key, _)) = old.iter().find(|(e, ..)| e == email) else {
            continue;
        };
        if old_key.disabled && !disabled_ok.contains(&new_key.hash) {
            continue;
        }
        class.store.record_changes(
            &[],
            None,
            &[Change {
                hash: new_key.hash.clone(),
                email: email.clone(),
                action: "rotated",
                old: Some(old_key.hash.clone()),
                new: Some(new_key.hash.clone()),
            }],
        )?;
        if let Some(r) = rotated.iter_mut().find(|r| &r.email == email) {
            r.new_hash = Some(new_key.hash.clone());
        }
        let why = DeleteWhy::Rotated {
            new_hash: new_key.hash.clone(),
        };
        deletes.push(Op::Delete {
            email: email.clone(),
            key: old_key.clone(),
            why: why.clone(),
        });
        for (_, other) in others.iter().filter(|(e, _)| e == email) {
            deletes.push(Op::Delete {
                email: email.clone(),
                key: other.clone(),
                why: why.clone(),
            });
        }
    }
    if failure.is_none() && !deletes.is_empty() {
        let mut d = apply::execute(ctx, &mut class, deletes, "deleting old keys")?;
        let deleted: HashSet<String> = d.deleted().map(|k| k.hash.clone()).collect();
        for r in &mut rotated {
            r.old_deleted = deleted.contains(&r.old_hash);
        }
        failure = d.failure.take();
    }
    class.refresh_known()?;
    class.record(at)?;
    if limits.path.exists() {
        let view = class.view();
        limits.rewrite(view.with_keys())?;
    }
    finish(
        ctx,
        false,
        rotated,
        api_keys_file.map(|p| p.display().to_string()),
        failure,
    )
}

fn finish(
    ctx: &Ctx,
    dry_run: bool,
    rotated: Vec<Rotated>,
    api_keys_file: Option<String>,
    failure: Option<(String, ApiError)>,
) -> Result<Exit> {
    if ctx.ui.json {
        ctx.ui.json(&Report {
            dry_run,
            rotated: rotated.clone(),
            failed: super::class::Failed::list(&failure),
            api_keys_file: api_keys_file.clone(),
        })?;
    } else {
        let rows = rotated
            .iter()
            .map(|r| {
                let status = if dry_run {
                    "would be re-issued".to_string()
                } else if r.new_hash.is_some() && r.old_deleted {
                    "re-issued".into()
                } else if r.new_hash.is_some() {
                    "new key made; old key NOT deleted".into()
                } else {
                    "failed; old key untouched".into()
                };
                vec![
                    r.email.clone(),
                    r.key_name.clone(),
                    r.old_hash.chars().take(12).collect(),
                    status,
                ]
            })
            .collect();
        ctx.ui
            .table(&["Email", "Key name", "Old key", "Status"], rows);
        let done = rotated
            .iter()
            .filter(|r| r.new_hash.is_some() && r.old_deleted)
            .count();
        if dry_run {
            ctx.ui.say(format!(
                "{}dry run: would re-issue {} key(s). Nothing was changed.",
                sandbox_tag(ctx),
                rotated.len()
            ));
        } else {
            ctx.ui.say(format!(
                "{}re-issued {done} of {} key(s)",
                sandbox_tag(ctx),
                rotated.len()
            ));
        }
        if let Some(f) = &api_keys_file {
            ctx.ui.say(format!(
                "new secrets: {f} (owner-only; hand them out, then delete it)"
            ));
        }
    }
    if let Some((email, err)) = failure {
        return Err(anyhow::Error::new(err).context(format!("rotating the key of {email} failed")));
    }
    Ok(Exit::Ok)
}
