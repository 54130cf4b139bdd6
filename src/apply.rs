//! The one executor of changes to the account. Every create, PATCH and delete of every command
//! goes through `execute`: each change is journaled in keys.db before it is sent, sent through
//! the pool with a progress bar, and settled the moment its answer arrives (the key's new state,
//! its secret, its changelog row and the journal entry in one transaction). A change whose
//! answer never came stays open in the journal; the next run settles it against the account
//! (`settle`).

use std::collections::{HashMap, HashSet};

use anyhow::Result;

use crate::commands::class::Class;
use crate::context::Ctx;
use crate::domain::{
    Change, Guardrail, GuardrailSpec, Intent, IntentAction, Key, NewIntent, NewKey, Patch, Settled,
};
use crate::guardrail::{FieldChange, Holder};
use crate::openrouter::ApiError;
use crate::reconcile::{self, changes};
use crate::{fault, pool};

/// Why a key is deleted: said in its changelog row.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteWhy {
    /// `delete` or `drop-student --delete`.
    Asked,
    /// The old key of a rotation, replaced by this one.
    Rotated { new_hash: String },
    /// Made by a create whose answer never arrived: nobody has its secret.
    Leftover,
}

/// One change to the account.
#[derive(Debug, Clone)]
pub enum Op {
    Create {
        email: String,
        name: String,
        new: NewKey,
        /// The new key must end disabled (a rotated disabled student's): a create cannot say
        /// so, so a PATCH follows, and the journal remembers it until it is done.
        disable: bool,
    },
    Patch {
        email: String,
        before: Key,
        patch: Patch,
    },
    Delete {
        email: String,
        key: Key,
        why: DeleteWhy,
    },
}

impl Op {
    pub fn email(&self) -> &str {
        match self {
            Op::Create { email, .. } | Op::Patch { email, .. } | Op::Delete { email, .. } => email,
        }
    }

    fn intent(&self, account: &[Key]) -> NewIntent {
        match self {
            Op::Create {
                email,
                new,
                disable,
                ..
            } => NewIntent {
                action: IntentAction::Create,
                email: email.clone(),
                hash: None,
                key_name: new.name.clone(),
                body: {
                    let mut body = serde_json::to_value(new).unwrap_or_default();
                    if let (true, Some(obj)) = (*disable, body.as_object_mut()) {
                        obj.insert(DISABLE_AFTER.into(), serde_json::Value::Bool(true));
                    }
                    body.to_string()
                },
                prior: None,
                before: Some(
                    account
                        .iter()
                        .filter(|k| k.name == new.name)
                        .map(|k| k.hash.clone())
                        .collect(),
                ),
            },
            Op::Patch {
                email,
                before,
                patch,
            } => NewIntent {
                action: IntentAction::Patch,
                email: email.clone(),
                hash: Some(before.hash.clone()),
                key_name: before.name.clone(),
                body: serde_json::to_string(patch).unwrap_or_default(),
                prior: Some(before.clone()),
                before: None,
            },
            Op::Delete { email, key, why } => NewIntent {
                action: IntentAction::Delete,
                email: email.clone(),
                hash: Some(key.hash.clone()),
                key_name: key.name.clone(),
                body: match why {
                    DeleteWhy::Leftover => "leftover".into(),
                    DeleteWhy::Rotated { new_hash } => format!("rotated to {new_hash}"),
                    DeleteWhy::Asked => String::new(),
                },
                prior: Some(key.clone()),
                before: None,
            },
        }
    }
}

/// What one change came to.
#[derive(Debug)]
pub enum Done {
    Created { key: Key, secret: String },
    Patched(Key),
    Deleted,
}

/// What a batch came to.
#[derive(Default)]
pub struct Applied {
    /// Each change that went through, in the order the answers came.
    pub done: Vec<(Op, Done)>,
    /// The request that stopped the batch (nothing new was sent after it).
    pub failure: Option<(String, ApiError)>,
    /// Hashes of keys left by unclear creates that were found and deleted.
    pub discarded: Vec<String>,
}

impl Applied {
    pub fn created(&self) -> impl Iterator<Item = (&str, &str, &Key, &str)> {
        self.done.iter().filter_map(|(op, d)| match (op, d) {
            (Op::Create { email, name, .. }, Done::Created { key, secret }) => {
                Some((email.as_str(), name.as_str(), key, secret.as_str()))
            }
            _ => None,
        })
    }
    pub fn patched(&self, hash: &str) -> bool {
        self.done
            .iter()
            .any(|(op, d)| matches!((op, d), (Op::Patch { before, .. }, Done::Patched(_)) if before.hash == hash))
    }
    pub fn deleted(&self) -> impl Iterator<Item = &Key> {
        self.done.iter().filter_map(|(op, d)| match (op, d) {
            (Op::Delete { key, .. }, Done::Deleted) => Some(key),
            _ => None,
        })
    }
}

/// Send every change: journal, pool, settle, record. Creates whose answer was unclear are
/// looked for, deleted if found (nobody has their secret) and made again, up to three rounds.
pub fn execute(ctx: &Ctx, class: &mut Class, ops: Vec<Op>, what: &str) -> Result<Applied> {
    let mut applied = Applied::default();
    let mut todo = ops;
    for round in 0..3 {
        if todo.is_empty() || applied.failure.is_some() {
            break;
        }
        let again = one_round(ctx, class, todo, what, round, &mut applied)?;
        if again.is_empty() || applied.failure.is_some() {
            todo = again;
            break;
        }
        // Look once at the account for what the unclear creates made, delete it, make them again.
        class.account = class.client.list_keys()?;
        class.refresh_known()?;
        let discarded = settle_creates(ctx, class)?;
        applied.discarded.extend(discarded);
        todo = again;
    }
    if applied.failure.is_none() && !todo.is_empty() {
        let who: Vec<&str> = todo.iter().map(Op::email).collect();
        applied.failure = Some((
            who.join(", "),
            ApiError::GaveUp {
                what: "creating keys".into(),
                tries: 3,
                secs: 0,
                detail: "OpenRouter never answered clearly".into(),
            },
        ));
    }
    Ok(applied)
}

/// One pass over the changes. Returns the creates whose outcome is unclear.
fn one_round(
    ctx: &Ctx,
    class: &mut Class,
    ops: Vec<Op>,
    what: &str,
    round: usize,
    applied: &mut Applied,
) -> Result<Vec<Op>> {
    let intents: Vec<NewIntent> = ops.iter().map(|o| o.intent(&class.account)).collect();
    let ids = class.store.journal(&intents)?;
    let items: Vec<(Op, i64)> = ops.into_iter().zip(ids).collect();
    let label = if round == 0 {
        what.to_string()
    } else {
        format!("{what} again")
    };
    let bar = ctx.ui.progress(items.len(), &label);
    let mut unclear: Vec<Op> = Vec::new();
    let mut handed: HashSet<i64> = HashSet::new();
    let mut store_error = None;
    let mut answered: Vec<Key> = Vec::new();
    let mut gone: Vec<String> = Vec::new();
    {
        let Class { client, store, .. } = class;
        let client = &*client;
        pool::run(
            client.jobs(),
            &items,
            |(op, _)| {
                let r = send(client, op);
                if r.is_ok() {
                    fault::point(match op {
                        Op::Create { .. } => "create-answered",
                        _ => "change-answered",
                    });
                }
                r
            },
            |r| matches!(r, Err(e) if !e.is_ambiguous()),
            |(op, id), result| {
                bar.inc(1);
                handed.insert(*id);
                match result {
                    Ok(done) => {
                        let saved = match (op, &done) {
                            (Op::Create { email, name, .. }, Done::Created { key, secret }) => {
                                store
                                    .record_created(Some(*id), email, name, key, secret, &[])
                                    .map(|_| fault::point("create-saved"))
                            }
                            (Op::Patch { email, before, .. }, Done::Patched(after)) => store
                                .record_changes(
                                    &[(*id, Settled::Landed)],
                                    Some((after, email)),
                                    &changes(email, before, after),
                                ),
                            (Op::Delete { email, key, why }, Done::Deleted) => store
                                .record_changes(
                                    &[(*id, Settled::Landed)],
                                    None,
                                    &[deleted_change(email, key, why)],
                                ),
                            _ => Ok(()),
                        };
                        if let Err(e) = saved {
                            store_error = Some(e);
                            return false;
                        }
                        match &done {
                            Done::Created { key, .. } | Done::Patched(key) => {
                                answered.push(key.clone())
                            }
                            Done::Deleted => {
                                if let Op::Delete { key, .. } = op {
                                    gone.push(key.hash.clone());
                                }
                            }
                        }
                        applied.done.push((op.clone(), done));
                        true
                    }
                    Err(e) if e.is_ambiguous() => {
                        // The journal entry stays open: this run or the next finds what it made.
                        ctx.ui.warn(format!(
                            "{}: {e}; it will be checked and made again",
                            op.email()
                        ));
                        unclear.push(op.clone());
                        true
                    }
                    Err(e) => {
                        // A clear refusal changed nothing; anything else stays open for the next
                        // run to settle against the account.
                        if e.status().is_some() {
                            let _ = store.settle(&[*id], Settled::NotLanded);
                        }
                        applied.failure.get_or_insert((op.email().to_string(), e));
                        false
                    }
                }
            },
        );
    }
    bar.finish_and_clear();
    // Changes never sent (the run stopped first) surely changed nothing.
    let unsent: Vec<i64> = items
        .iter()
        .map(|(_, id)| *id)
        .filter(|id| !handed.contains(id))
        .collect();
    class.store.settle(&unsent, Settled::NotLanded)?;
    class.apply(answered);
    class.remove(&gone);
    if let Some(e) = store_error {
        return Err(e);
    }
    Ok(unclear)
}

fn send(client: &crate::openrouter::Client, op: &Op) -> Result<Done, ApiError> {
    match op {
        Op::Create { new, .. } => client.create_key(new).map(|c| Done::Created {
            key: c.data,
            secret: c.key,
        }),
        Op::Patch { before, patch, .. } => {
            client.update_key(&before.hash, patch).map(Done::Patched)
        }
        Op::Delete { key, .. } => client.delete_key(&key.hash).map(|_| Done::Deleted),
    }
}

fn deleted_change(email: &str, key: &Key, why: &DeleteWhy) -> Change {
    let (action, new) = match why {
        DeleteWhy::Asked => ("deleted", None),
        DeleteWhy::Rotated { new_hash } => ("deleted", Some(format!("rotated to {new_hash}"))),
        DeleteWhy::Leftover => ("discarded", None),
    };
    Change {
        hash: key.hash.clone(),
        email: email.to_string(),
        action,
        old: Some(key.name.clone()),
        new,
    }
}

/// In a create's journal entry: the new key must end disabled.
pub const DISABLE_AFTER: &str = "classkeys_disable_after";

/// Keys made by a create that had to be followed by a disable (a rotated disabled student's)
/// and never were, because the run stopped in between: disabled now.
fn finish_disables(ctx: &Ctx, class: &mut Class) -> Result<()> {
    let pending = class.store.undisabled_creates(DISABLE_AFTER)?;
    let ops: Vec<Op> = pending
        .into_iter()
        .filter_map(|(email, hash)| {
            class
                .account
                .iter()
                .find(|k| k.hash == hash && !k.disabled)
                .map(|k| Op::Patch {
                    email,
                    before: k.clone(),
                    patch: Patch {
                        disabled: Some(true),
                        ..Patch::default()
                    },
                })
        })
        .collect();
    if ops.is_empty() {
        return Ok(());
    }
    let n = ops.len();
    let applied = execute(ctx, class, ops, "disabling re-issued keys")?;
    if let Some((email, e)) = applied.failure {
        return Err(anyhow::Error::new(e).context(format!(
            "disabling the re-issued key of {email}, which an interrupted rotate left enabled"
        )));
    }
    ctx.ui.note(format!(
        "classkeys: disabled {n} re-issued key(s) of disabled students that an interrupted rotate had left enabled"
    ));
    Ok(())
}

/// A create journaled this long ago and not found on the account never landed.
const LATE: chrono::Duration = chrono::Duration::minutes(10);

/// What settling the journal found, for the instructor.
#[derive(Debug, Default)]
pub struct Settlement {
    /// Changes an earlier run sent whose answer it never recorded, found on the account.
    pub landed: usize,
    /// Keys gone from the account without classkeys deleting them (email, key name).
    pub gone_outside: Vec<(String, String)>,
    /// Keys left by unclear creates, deleted (their secrets were never seen).
    pub discarded: Vec<String>,
}

/// Settle the journal and keys.db against a fresh listing of the account: keys the listing
/// missed are looked up by hash, keys gone are marked, open changes are settled, and (unless
/// `dry_run`) keys left by unclear creates are deleted. Runs before any command plans.
pub fn settle(ctx: &Ctx, class: &mut Class, dry_run: bool) -> Result<Settlement> {
    let mut report = Settlement::default();
    let intents = class.store.open_intents()?;
    let on_account: HashSet<String> = class.account.iter().map(|k| k.hash.clone()).collect();
    let open_delete: HashMap<&str, &Intent> = intents
        .iter()
        .filter(|i| i.action == IntentAction::Delete)
        .filter_map(|i| i.hash.as_deref().map(|h| (h, i)))
        .collect();

    // The class's live keys the listing did not show: missed by the listing, or gone.
    let missing: Vec<(String, String, String)> = class
        .books
        .keys
        .iter()
        .filter(|k| k.owner == crate::domain::Owner::Class && !k.deleted)
        .filter(|k| !on_account.contains(&k.hash))
        .map(|k| (k.hash.clone(), k.email.clone(), k.key_name.clone()))
        .collect();
    let mut handled: HashSet<i64> = HashSet::new();
    let mut lookups: Vec<(String, String, String)> = Vec::new();
    for (hash, email, key_name) in missing {
        if let Some(intent) = open_delete.get(hash.as_str()) {
            handled.insert(intent.id);
            if !dry_run {
                let key = intent
                    .prior
                    .clone()
                    .unwrap_or_else(|| stub(&hash, &key_name));
                let why = delete_why(intent);
                class.store.record_changes(
                    &[(intent.id, Settled::Landed)],
                    None,
                    &[deleted_change(&email, &key, &why)],
                )?;
            }
            report.landed += 1;
            continue;
        }
        if !crate::openrouter::plain_hash(&hash) {
            ctx.ui.warn(format!(
                "key {key_name} of {email} has a hash that is not a plain token; it is left alone"
            ));
            continue;
        }
        lookups.push((hash, email, key_name));
    }
    // Looked up together, through the pool: a class whose keys were deleted in the dashboard
    // pays one round of requests, not one after another.
    let mut found: Vec<Option<Result<Key, ApiError>>> = (0..lookups.len()).map(|_| None).collect();
    {
        let client = &class.client;
        let indexed: Vec<usize> = (0..lookups.len()).collect();
        pool::run(
            client.jobs(),
            &indexed,
            |i| client.get_key(&lookups[*i].0),
            |r| matches!(r, Err(e) if e.status() != Some(404)),
            |i, r| {
                found[*i] = Some(r);
                true
            },
        );
    }
    for ((hash, email, key_name), result) in lookups.into_iter().zip(found) {
        match result {
            // Not asked: an earlier lookup failed and stopped the others.
            None => continue,
            Some(Ok(key)) => class.account.push(key),
            Some(Err(e)) if e.status() == Some(404) => {
                if !dry_run {
                    class.store.record_changes(
                        &[],
                        None,
                        &[Change {
                            hash: hash.clone(),
                            email: email.clone(),
                            action: "deleted_outside",
                            old: Some(key_name.clone()),
                            new: None,
                        }],
                    )?;
                }
                report.gone_outside.push((email, key_name));
            }
            Some(Err(e)) => {
                return Err(anyhow::Error::new(e)
                    .context("looking up a key of the class that the listing did not show"));
            }
        }
    }
    if dry_run {
        class.refresh_known()?;
        return Ok(report);
    }
    let by_hash: HashMap<String, Key> = class
        .account
        .iter()
        .map(|k| (k.hash.clone(), k.clone()))
        .collect();
    for intent in intents.iter().filter(|i| !handled.contains(&i.id)) {
        match intent.action {
            IntentAction::Patch => {
                let Some(hash) = &intent.hash else { continue };
                let patch = patch_of(intent.body.as_deref().unwrap_or("{}"));
                match by_hash.get(hash) {
                    Some(now) if shows(now, &patch) => {
                        let before = intent.prior.clone().unwrap_or_else(|| now.clone());
                        class.store.record_changes(
                            &[(intent.id, Settled::Landed)],
                            Some((now, &intent.email)),
                            &changes(&intent.email, &before, now),
                        )?;
                        report.landed += 1;
                    }
                    _ => class.store.settle(&[intent.id], Settled::NotLanded)?,
                }
            }
            IntentAction::Delete => {
                let Some(hash) = &intent.hash else { continue };
                if by_hash.contains_key(hash) {
                    class.store.settle(&[intent.id], Settled::NotLanded)?;
                } else {
                    // Gone, and its answer never recorded: the delete landed.
                    let key = intent
                        .prior
                        .clone()
                        .unwrap_or_else(|| stub(hash, &intent.key_name));
                    class.store.record_changes(
                        &[(intent.id, Settled::Landed)],
                        None,
                        &[deleted_change(&intent.email, &key, &delete_why(intent))],
                    )?;
                    report.landed += 1;
                }
            }
            // Creates are settled below; the guardrail's changes by `guardrail::settle`.
            _ => {}
        }
    }
    class.refresh_known()?;
    report.discarded = settle_creates(ctx, class)?;
    finish_disables(ctx, class)?;
    Ok(report)
}

/// Delete keys that unclear creates made (nobody has their secret) and settle those creates.
/// A create not found stays open for a while, even in the run that sent it: it may still land.
fn settle_creates(ctx: &Ctx, class: &mut Class) -> Result<Vec<String>> {
    let open: Vec<Intent> = class
        .store
        .open_intents()?
        .into_iter()
        .filter(|i| i.action == IntentAction::Create)
        .collect();
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let found = reconcile::leftovers(&open, &class.account, &class.books.keys);
    let mut ops = Vec::new();
    let mut settle_now = Vec::new();
    let now = chrono::Utc::now();
    for (intent, (id, keys)) in open.iter().zip(found) {
        debug_assert_eq!(intent.id, id);
        if keys.is_empty() {
            if now - intent.started_at > LATE {
                settle_now.push(id);
            }
            continue;
        }
        settle_now.push(id);
        for key in keys {
            ops.push(Op::Delete {
                email: intent.email.clone(),
                key: key.clone(),
                why: DeleteWhy::Leftover,
            });
        }
    }
    let mut discarded = Vec::new();
    if !ops.is_empty() {
        let applied = execute(ctx, class, ops, "deleting keys left over")?;
        for key in applied.deleted() {
            ctx.ui.note(format!(
                "deleted leftover key {} (made by an interrupted create; its secret was never seen)",
                key.name
            ));
            discarded.push(key.hash.clone());
        }
        if let Some((email, e)) = applied.failure {
            return Err(anyhow::Error::new(e).context(format!(
                "deleting a key left over from an interrupted run (of {email}; its secret was never seen)"
            )));
        }
    }
    class.store.settle(
        &settle_now,
        if discarded.is_empty() {
            Settled::NotLanded
        } else {
            Settled::Discarded
        },
    )?;
    class.refresh_known()?;
    Ok(discarded)
}

fn delete_why(intent: &Intent) -> DeleteWhy {
    match intent.body.as_deref() {
        Some("leftover") => DeleteWhy::Leftover,
        Some(b) if b.starts_with("rotated to ") => DeleteWhy::Rotated {
            new_hash: b["rotated to ".len()..].to_string(),
        },
        _ => DeleteWhy::Asked,
    }
}

fn stub(hash: &str, name: &str) -> Key {
    Key {
        hash: hash.to_string(),
        name: name.to_string(),
        ..Key::default()
    }
}

/// A journaled PATCH body: a field present is a change (`null` included).
fn patch_of(body: &str) -> Patch {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    Patch {
        disabled: v.get("disabled").and_then(|d| d.as_bool()),
        limit: v.get("limit").map(|l| l.as_f64()),
        limit_reset: v.get("limit_reset").map(|r| r.as_str().map(String::from)),
    }
}

/// Whether a key shows every field a PATCH set.
fn shows(key: &Key, patch: &Patch) -> bool {
    patch.disabled.is_none_or(|d| d == key.disabled)
        && patch
            .limit
            .is_none_or(|l| crate::domain::same_money(l, key.limit))
        && patch
            .limit_reset
            .as_ref()
            .is_none_or(|r| *r == key.limit_reset)
}

// ---- The class guardrail ----

/// One change to the class guardrail or to which keys hold it.
#[derive(Debug, Clone)]
pub enum GuardrailOp {
    Create {
        name: String,
        body: serde_json::Value,
        /// Its settings in one line, for the changelog.
        summary: String,
    },
    Patch {
        id: String,
        name: String,
        body: serde_json::Value,
        changes: Vec<FieldChange>,
        /// What the file asks: a later run compares the account with it, field by field.
        spec: GuardrailSpec,
    },
    Delete {
        id: String,
        name: String,
    },
    /// An empty `id` is the guardrail a `Create` earlier in the same batch made.
    Assign {
        id: String,
        name: String,
        keys: Vec<Holder>,
    },
    Unassign {
        id: String,
        name: String,
        keys: Vec<Holder>,
    },
}

/// What is journaled of a guardrail change: enough to settle it and write its audit rows.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct GuardrailBody {
    #[serde(default)]
    request: serde_json::Value,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    changes: Vec<(String, String, String)>,
    #[serde(default)]
    keys: Vec<(String, String, Option<String>)>,
    /// A PATCH's settings, as the file gave them.
    #[serde(default)]
    spec: Option<GuardrailSpec>,
}

/// What a batch of guardrail changes came to.
#[derive(Debug, Default)]
pub struct GuardrailDone {
    /// The guardrail as the last create or PATCH answered.
    pub guardrail: Option<Guardrail>,
    pub assigned: HashSet<String>,
    pub unassigned: HashSet<String>,
    /// The request that stopped the batch (nothing was sent after it).
    pub failure: Option<ApiError>,
}

impl GuardrailOp {
    fn intent(&self) -> NewIntent {
        let (action, id, name, body) = match self {
            GuardrailOp::Create {
                name,
                body,
                summary,
            } => (
                IntentAction::GuardrailCreate,
                None,
                name,
                GuardrailBody {
                    request: body.clone(),
                    summary: summary.clone(),
                    ..GuardrailBody::default()
                },
            ),
            GuardrailOp::Patch {
                id,
                name,
                body,
                changes,
                spec,
            } => (
                IntentAction::GuardrailPatch,
                Some(id),
                name,
                GuardrailBody {
                    request: body.clone(),
                    spec: Some(spec.clone()),
                    changes: changes
                        .iter()
                        .map(|c| (c.field.to_string(), c.old.clone(), c.new.clone()))
                        .collect(),
                    ..GuardrailBody::default()
                },
            ),
            GuardrailOp::Delete { id, name } => (
                IntentAction::GuardrailDelete,
                Some(id),
                name,
                GuardrailBody::default(),
            ),
            GuardrailOp::Assign { id, name, keys } | GuardrailOp::Unassign { id, name, keys } => (
                if matches!(self, GuardrailOp::Assign { .. }) {
                    IntentAction::GuardrailAssign
                } else {
                    IntentAction::GuardrailUnassign
                },
                Some(id),
                name,
                GuardrailBody {
                    keys: keys
                        .iter()
                        .map(|k| {
                            (
                                k.email.clone(),
                                k.hash.clone(),
                                k.held_name.clone().or_else(|| k.held.clone()),
                            )
                        })
                        .collect(),
                    ..GuardrailBody::default()
                },
            ),
        };
        NewIntent {
            action,
            email: String::new(),
            hash: id.cloned(),
            key_name: name.clone(),
            body: serde_json::to_string(&body).unwrap_or_default(),
            prior: None,
            before: None,
        }
    }
}

/// The audit rows of a guardrail change that landed.
fn guardrail_changes(
    action: IntentAction,
    id: &str,
    name: &str,
    body: &GuardrailBody,
) -> Vec<Change> {
    let row = |hash: &str, email: &str, action, old: Option<String>, new: Option<String>| Change {
        hash: hash.to_string(),
        email: email.to_string(),
        action,
        old,
        new,
    };
    match action {
        IntentAction::GuardrailCreate => vec![row(
            id,
            "",
            "guardrail_created",
            None,
            Some(format!("{name}: {}", body.summary)),
        )],
        IntentAction::GuardrailPatch => body
            .changes
            .iter()
            .map(|(field, old, new)| {
                row(
                    id,
                    "",
                    "guardrail_changed",
                    Some(format!("{name}: {field}: {old}")),
                    Some(format!("{field}: {new}")),
                )
            })
            .collect(),
        IntentAction::GuardrailDelete => {
            vec![row(
                id,
                "",
                "guardrail_deleted",
                Some(name.to_string()),
                None,
            )]
        }
        IntentAction::GuardrailAssign => body
            .keys
            .iter()
            .map(|(email, hash, held)| {
                row(
                    hash,
                    email,
                    "guardrail_assigned",
                    held.clone(),
                    Some(name.to_string()),
                )
            })
            .collect(),
        IntentAction::GuardrailUnassign => body
            .keys
            .iter()
            .map(|(email, hash, _)| {
                row(
                    hash,
                    email,
                    "guardrail_unassigned",
                    Some(name.to_string()),
                    None,
                )
            })
            .collect(),
        _ => vec![],
    }
}

/// What keys.db records of the guardrail once this change landed.
fn guardrail_meta(action: IntentAction, id: &str) -> Vec<(&'static str, Option<String>)> {
    use crate::guardrail::{META_ID, META_MODELS, META_NAME};
    match action {
        IntentAction::GuardrailCreate => vec![(META_ID, Some(id.to_string()))],
        IntentAction::GuardrailDelete => {
            vec![(META_ID, None), (META_NAME, None), (META_MODELS, None)]
        }
        _ => vec![],
    }
}

fn record_guardrail(
    class: &mut Class,
    intent: i64,
    action: IntentAction,
    id: &str,
    name: &str,
    body: &GuardrailBody,
) -> Result<()> {
    let meta = guardrail_meta(action, id);
    let meta: Vec<(&str, Option<&str>)> = meta.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    class.store.record_guardrail(
        &[(intent, Settled::Landed)],
        &guardrail_changes(action, id, name, body),
        &meta,
    )
}

/// Send guardrail changes one after another: journaled before, settled and recorded after.
/// The first failure stops the batch.
pub fn guardrail(ctx: &Ctx, class: &mut Class, ops: Vec<GuardrailOp>) -> Result<GuardrailDone> {
    let mut done = GuardrailDone::default();
    for mut op in ops {
        if let GuardrailOp::Assign { id, .. } = &mut op
            && id.is_empty()
        {
            match &done.guardrail {
                Some(g) => *id = g.id.clone(),
                None => continue,
            }
        }
        let intent = op.intent();
        let (action, name) = (intent.action, intent.key_name.clone());
        let body: GuardrailBody = serde_json::from_str(&intent.body).unwrap_or_default();
        let journal = class.store.journal(&[intent])?[0];
        let client = &class.client;
        let sent = match &op {
            GuardrailOp::Create { body, .. } => match client.create_guardrail(body) {
                Ok(g) => Ok(Some(g)),
                // Made or not? Its name says: it is unique to the class.
                Err(e) if e.is_ambiguous() => match client.list_guardrails() {
                    Ok(list) => match list.into_iter().find(|g| g.name == name) {
                        Some(g) => Ok(Some(g)),
                        None => Err(e),
                    },
                    Err(_) => Err(e),
                },
                Err(e) => Err(e),
            },
            GuardrailOp::Patch { id, body, .. } => client.update_guardrail(id, body).map(Some),
            GuardrailOp::Delete { id, .. } => client.delete_guardrail(id).map(|_| None),
            GuardrailOp::Assign { id, keys, .. } => {
                let hashes: Vec<String> = keys.iter().map(|k| k.hash.clone()).collect();
                client.assign_guardrail(id, &hashes, true).map(|_| None)
            }
            GuardrailOp::Unassign { id, keys, .. } => {
                let hashes: Vec<String> = keys.iter().map(|k| k.hash.clone()).collect();
                client.assign_guardrail(id, &hashes, false).map(|_| None)
            }
        };
        match sent {
            Ok(answer) => {
                fault::point("guardrail-answered");
                let id = match (&op, &answer) {
                    (_, Some(g)) => g.id.clone(),
                    (
                        GuardrailOp::Delete { id, .. }
                        | GuardrailOp::Assign { id, .. }
                        | GuardrailOp::Unassign { id, .. }
                        | GuardrailOp::Patch { id, .. },
                        None,
                    ) => id.clone(),
                    _ => String::new(),
                };
                record_guardrail(class, journal, action, &id, &name, &body)?;
                match &op {
                    GuardrailOp::Assign { keys, .. } => {
                        done.assigned.extend(keys.iter().map(|k| k.hash.clone()))
                    }
                    GuardrailOp::Unassign { keys, .. } => {
                        done.unassigned.extend(keys.iter().map(|k| k.hash.clone()))
                    }
                    _ => {}
                }
                if answer.is_some() {
                    done.guardrail = answer;
                }
            }
            Err(e) => {
                // A clear refusal changed nothing; anything else stays open for the next run.
                if e.status().is_some() {
                    class.store.settle(&[journal], Settled::NotLanded)?;
                }
                done.failure = Some(e);
                break;
            }
        }
    }
    if done.failure.is_some() {
        ctx.ui.warn(
            "the class guardrail is not yet as classkeys.toml asks; `classkeys update` (or the next provision) finishes it",
        );
    }
    Ok(done)
}

/// Settle guardrail changes an interrupted run journaled but never recorded, against the
/// account: what the account shows landed (and gets its audit rows); the rest did not, and the
/// next `update` or `provision` sends it again.
pub fn settle_guardrail(ctx: &Ctx, class: &mut Class) -> Result<usize> {
    let open: Vec<Intent> = class
        .store
        .open_intents()?
        .into_iter()
        .filter(|i| i.action.is_guardrail())
        .collect();
    if open.is_empty() {
        return Ok(0);
    }
    let client = &class.client;
    let listing = client.list_guardrails().map_err(|e| {
        anyhow::Error::new(e).context("listing guardrails to settle an interrupted run")
    })?;
    // Which keys hold a guardrail, for the open assignments.
    let ids: std::collections::BTreeSet<&str> = open
        .iter()
        .filter(|i| {
            matches!(
                i.action,
                IntentAction::GuardrailAssign | IntentAction::GuardrailUnassign
            )
        })
        .filter_map(|i| i.hash.as_deref())
        .collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let held = crate::guardrail::held(client, &ids).map_err(|e| {
        anyhow::Error::new(e).context("listing guardrail assignments to settle an interrupted run")
    })?;
    let learned = crate::guardrail::Learned::read(&class.store)?;
    let mut decided = Vec::new();
    for intent in open {
        let body: GuardrailBody =
            serde_json::from_str(intent.body.as_deref().unwrap_or("{}")).unwrap_or_default();
        let id = intent.hash.clone().unwrap_or_default();
        let found = match intent.action {
            IntentAction::GuardrailCreate => listing
                .iter()
                .find(|g| g.name == intent.key_name)
                .map(|g| g.id.clone()),
            IntentAction::GuardrailPatch => {
                let g = match listing.iter().find(|g| g.id == id) {
                    Some(g) => Some(g.clone()),
                    None => client.get_guardrail(&id).ok(),
                };
                g.filter(|g| patch_landed(g, &body, &learned))
                    .map(|_| id.clone())
            }
            IntentAction::GuardrailDelete => match client.get_guardrail(&id) {
                Err(e) if e.status() == Some(404) => Some(id.clone()),
                _ => None,
            },
            IntentAction::GuardrailAssign => body
                .keys
                .iter()
                .all(|(_, hash, _)| held.get(hash) == Some(&id))
                .then(|| id.clone()),
            IntentAction::GuardrailUnassign => body
                .keys
                .iter()
                .all(|(_, hash, _)| held.get(hash) != Some(&id))
                .then(|| id.clone()),
            _ => None,
        };
        decided.push((intent, body, found));
    }
    let mut landed = 0;
    for (intent, body, found) in decided {
        match found {
            Some(id) => {
                record_guardrail(
                    class,
                    intent.id,
                    intent.action,
                    &id,
                    &intent.key_name,
                    &body,
                )?;
                landed += 1;
            }
            None => class.store.settle(&[intent.id], Settled::NotLanded)?,
        }
    }
    if landed > 0 {
        ctx.ui.note(format!(
            "classkeys: recorded {landed} guardrail change(s) an interrupted run had sent (found on the account)"
        ));
    }
    Ok(landed)
}

/// Whether a guardrail shows every setting a PATCH changed: the same field-by-field comparison
/// `update` plans with.
fn patch_landed(g: &Guardrail, body: &GuardrailBody, learned: &crate::guardrail::Learned) -> bool {
    let Some(spec) = &body.spec else {
        return false;
    };
    crate::guardrail::differences(spec, g, learned)
        .iter()
        .all(|d| !body.changes.iter().any(|(field, _, _)| field == d.field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journaled_patch_reads_back_with_its_nulls() {
        let p = Patch {
            limit: Some(None),
            disabled: Some(true),
            limit_reset: None,
        };
        assert_eq!(patch_of(&serde_json::to_string(&p).unwrap()), p);
        let mut key = Key {
            limit: Some(2.0),
            disabled: true,
            ..Key::default()
        };
        assert!(!shows(&key, &p));
        key.limit = None;
        assert!(shows(&key, &p));
    }
}
