//! `rotate`: re-issue a student's key. The new key (same name, limit, reset, expiry) is made
//! and its secret saved first; only then is the old key deleted. If the create fails, the old
//! key stays as it was.

use std::collections::HashSet;

use anyhow::Result;
use serde::Serialize;

use super::class::{Class, sandbox_tag};
use super::provision::{Outcome, Planned, create_all, settle_leftovers};
use super::toggle::check_emails;
use crate::cli::RotateArgs;
use crate::context::Ctx;
use crate::error::Exit;
use crate::files::email_key;
use crate::files::limits::LimitsFile;
use crate::files::output::write_api_keys;
use crate::files::roster::Roster;
use crate::openrouter::{ApiError, Key, NewKey};
use crate::pool;
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
}

pub fn run(ctx: &mut Ctx, args: RotateArgs) -> Result<Exit> {
    let at = run_time();
    let roster = Roster::read(&args.roster.roster)?;
    check_emails(&roster, &args.emails)?;
    let limits = LimitsFile::read_or_empty(&args.limits.limits)?;
    let mut class = Class::load_with(ctx, roster, &args.db.db)?;

    let view = class.view();
    let mut old: Vec<(Planned, Key)> = Vec::new();
    // Any other key the student still has (left by a rotate that was interrupted after its
    // create) goes too, so a re-run always ends with one key.
    let mut others: Vec<(String, Key)> = Vec::new();
    // An email given twice is one student: one new key, not two.
    let mut seen = HashSet::new();
    for email in args.emails.iter().filter(|e| seen.insert(email_key(e))) {
        let entry = view
            .entry(email)
            .ok_or_else(|| anyhow::anyhow!("{email} is not on the roster"))?;
        let key = entry.key().ok_or_else(|| {
            anyhow::anyhow!(
                "{email} has no key to rotate: run `classkeys provision` to give them one"
            )
        })?;
        let new = NewKey {
            name: key.name.clone(),
            limit: key.limit,
            limit_reset: key.limit_reset.clone(),
            expires_at: key.expires_at.clone(),
        };
        others.extend(
            entry
                .keys
                .iter()
                .skip(1)
                .map(|k| (entry.student.email.clone(), (*k).clone())),
        );
        old.push((
            Planned {
                email: entry.student.email.clone(),
                name: entry.student.name.clone(),
                new,
            },
            key.clone(),
        ));
    }
    drop(view);
    let mut rotated: Vec<Rotated> = old
        .iter()
        .map(|(p, k)| Rotated {
            email: p.email.clone(),
            key_name: k.name.clone(),
            old_hash: k.hash.clone(),
            new_hash: None,
            old_deleted: false,
        })
        .collect();
    if args.dry_run {
        return finish(ctx, true, rotated, None, None);
    }

    // Make sure keys.db knows every old key, so none is mistaken for a leftover.
    class.record(at)?;
    class.refresh_known()?;
    settle_leftovers(ctx, &mut class)?;
    let mut outcome = Outcome::default();
    create_all(
        ctx,
        &mut class,
        old.iter().map(|(p, _)| p.clone()).collect(),
        &mut outcome,
    )?;
    let api_keys_file = if outcome.secrets.is_empty() {
        None
    } else {
        Some(write_api_keys(&ctx.dir(), at, &outcome.secrets)?)
    };

    // Old keys whose replacement exists (and whose secret is saved) go.
    let mut to_delete: Vec<(String, Key, String)> = Vec::new();
    for (email, _, new_hash) in &outcome.created {
        if let Some((_, old_key)) = old.iter().find(|(p, _)| &p.email == email) {
            class.store.record_changes(
                None,
                &[Change {
                    hash: new_hash.clone(),
                    email: email.clone(),
                    action: "rotated",
                    old: Some(old_key.hash.clone()),
                    new: Some(new_hash.clone()),
                }],
            )?;
            if let Some(r) = rotated.iter_mut().find(|r| &r.email == email) {
                r.new_hash = Some(new_hash.clone());
            }
            to_delete.push((email.clone(), old_key.clone(), new_hash.clone()));
            for (_, other) in others.iter().filter(|(e, _)| e == email) {
                to_delete.push((email.clone(), other.clone(), new_hash.clone()));
            }
        }
    }
    let mut failure: Option<(String, ApiError)> = outcome.failure.take();
    let mut deleted = Vec::new();
    {
        let Class { client, store, .. } = &mut class;
        let client = &*client;
        let mut store_error = None;
        pool::run(
            client.jobs(),
            &to_delete,
            |(_, key, _)| client.delete_key(&key.hash),
            |r| r.is_err(),
            |(email, key, new_hash), result| match result {
                Ok(()) => {
                    let change = Change {
                        hash: key.hash.clone(),
                        email: email.clone(),
                        action: "deleted",
                        old: Some(key.name.clone()),
                        new: Some(format!("rotated to {new_hash}")),
                    };
                    if let Err(e) = store.record_changes(None, &[change]) {
                        store_error = Some(e);
                        return false;
                    }
                    deleted.push(key.hash.clone());
                    true
                }
                Err(e) => {
                    failure.get_or_insert((email.clone(), e));
                    false
                }
            },
        );
        if let Some(e) = store_error {
            return Err(e);
        }
    }
    class.remove(&deleted);
    for r in &mut rotated {
        r.old_deleted = deleted.contains(&r.old_hash);
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
