//! The class guardrail: classkeys.toml's `[guardrail]` compared with the guardrail the account
//! holds for the class, field by field, and the plan that makes them agree (create, PATCH,
//! assign to the class's keys, or unassign and delete). Planning is pure; `sync` reads the
//! account, plans, and hands the changes to the one executor (`apply::guardrail`).

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::apply::{self, GuardrailOp};
use crate::commands::class::Class;
use crate::context::Ctx;
use crate::domain::{Guardrail, GuardrailSpec, Interval, same_money};
use crate::files::config::ClassConfig;
use crate::openrouter::ApiError;

/// keys.db's `class_meta` names for the class guardrail.
pub const META_ID: &str = "guardrail_id";
pub const META_NAME: &str = "guardrail_name";
/// What classkeys sent as `allowed_models` last, and what the account answered with (its
/// canonical slugs): the same list again is no change.
pub const META_MODELS: &str = "guardrail_models";
/// Keys a bulk assignment carries at most.
pub const CHUNK: usize = 100;

/// One setting of the file, as the account holds it and as the file wants it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub old: String,
    pub new: String,
}

/// A key of the class and the guardrail it holds now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    pub email: String,
    pub hash: String,
    pub key_name: String,
    /// The guardrail the key holds (its id), if any.
    pub held: Option<String>,
    /// That guardrail's name, when it is not the class's (for the output and the changelog).
    pub held_name: Option<String>,
}

/// What happens to the guardrail itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Nothing,
    Create {
        body: Value,
    },
    Patch {
        changes: Vec<FieldChange>,
        body: Value,
    },
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub step: Step,
    /// Keys to give the class guardrail (among them, keys that hold another one: moved).
    pub assign: Vec<Holder>,
    /// Keys to take it off (the `[guardrail]` table was removed).
    pub unassign: Vec<Holder>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.step == Step::Nothing && self.assign.is_empty() && self.unassign.is_empty()
    }
}

/// What the account said when classkeys last sent `allowed_models`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Learned {
    pub sent: Vec<String>,
    pub seen: Vec<String>,
}

impl Learned {
    /// What keys.db remembers of the last `allowed_models` sent.
    pub fn read(store: &crate::store::Store) -> Result<Learned> {
        Ok(store
            .meta(META_MODELS)?
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default())
    }
}

/// The plan that makes the account's class guardrail (`current`) what the file asks (`spec`).
pub fn plan(
    spec: Option<&GuardrailSpec>,
    current: Option<&Guardrail>,
    keys: &[Holder],
    name: &str,
    learned: &Learned,
) -> Plan {
    match (spec, current) {
        (None, None) => Plan {
            step: Step::Nothing,
            assign: vec![],
            unassign: vec![],
        },
        (None, Some(g)) => Plan {
            step: Step::Delete,
            assign: vec![],
            unassign: keys
                .iter()
                .filter(|k| k.held.as_deref() == Some(g.id.as_str()))
                .cloned()
                .collect(),
        },
        (Some(spec), None) => Plan {
            step: Step::Create {
                body: create_body(spec, name),
            },
            assign: keys.to_vec(),
            unassign: vec![],
        },
        (Some(spec), Some(g)) => {
            let changes = differences(spec, g, learned);
            let step = if changes.is_empty() {
                Step::Nothing
            } else {
                let fields: Vec<&str> = changes.iter().map(|c| c.field).collect();
                Step::Patch {
                    body: Value::Object(body(spec, &fields)),
                    changes,
                }
            };
            Plan {
                step,
                assign: keys
                    .iter()
                    .filter(|k| k.held.as_deref() != Some(g.id.as_str()))
                    .cloned()
                    .collect(),
                unassign: vec![],
            }
        }
    }
}

/// The fields of the spec, by their classkeys.toml names, in the file's order.
fn fields(spec: &GuardrailSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if spec.models.is_some() {
        out.push("models");
    }
    if spec.providers.is_some() {
        out.push("providers");
    }
    if let Some(b) = spec.budget {
        out.push(b.interval.setting());
    }
    if spec.zero_data_retention.is_some() {
        out.push("zero_data_retention");
    }
    if spec.training.is_some() {
        out.push("training");
    }
    if spec.redact.is_some() {
        out.push("redact");
    }
    out
}

const ZDR: [&str; 5] = [
    "enforce_zdr_anthropic",
    "enforce_zdr_google",
    "enforce_zdr_openai",
    "enforce_zdr_other",
    "enforce_zdr_xai",
];
const TRAINING: [&str; 3] = [
    "enable_free_model_training",
    "enable_paid_model_training",
    "enable_free_model_publication",
];

/// `POST /guardrails`: the name, a description, and every setting the file gives.
pub fn create_body(spec: &GuardrailSpec, name: &str) -> Value {
    let mut b = body(spec, &fields(spec));
    b.insert("name".into(), json!(name));
    b.insert(
        "description".into(),
        json!("Made by classkeys for a class: edit the class's classkeys.toml, not here"),
    );
    Value::Object(b)
}

/// The request fields for these settings of the spec. Collections are sent whole (the API
/// replaces them).
pub fn body(spec: &GuardrailSpec, fields: &[&str]) -> Map<String, Value> {
    let mut b = Map::new();
    for f in fields {
        match *f {
            "models" => {
                b.insert("allowed_models".into(), json!(spec.models));
            }
            "providers" => {
                b.insert("allowed_providers".into(), json!(spec.providers));
            }
            "daily_limit" | "weekly_limit" | "monthly_limit" => {
                if let Some(budget) = spec.budget {
                    b.insert("limit_usd".into(), json!(budget.dollars));
                    b.insert("reset_interval".into(), json!(budget.interval.as_str()));
                }
            }
            "zero_data_retention" => {
                for flag in ZDR {
                    b.insert(flag.into(), json!(spec.zero_data_retention));
                }
            }
            "training" => {
                for flag in TRAINING {
                    b.insert(flag.into(), json!(spec.training));
                }
            }
            "redact" => {
                let list: Vec<Value> = spec
                    .redact
                    .iter()
                    .flatten()
                    .map(|s| json!({"slug": s, "action": "redact"}))
                    .collect();
                b.insert("content_filter_builtins".into(), Value::Array(list));
            }
            _ => {}
        }
    }
    b
}

/// The settings the file gives that the account's guardrail does not hold.
pub fn differences(spec: &GuardrailSpec, g: &Guardrail, learned: &Learned) -> Vec<FieldChange> {
    fields(spec)
        .into_iter()
        .filter_map(|field| {
            let (same, old, new) = compare(spec, g, learned, field)?;
            (!same).then_some(FieldChange { field, old, new })
        })
        .collect()
}

/// Every setting the file gives, as a new guardrail gets it.
pub fn settings(spec: &GuardrailSpec) -> Vec<FieldChange> {
    fields(spec)
        .into_iter()
        .filter_map(|field| {
            let (_, _, new) = compare(spec, &Guardrail::default(), &Learned::default(), field)?;
            Some(FieldChange {
                field,
                old: "-".into(),
                new,
            })
        })
        .collect()
}

/// One setting: whether the account's guardrail holds it, its value there, the file's.
fn compare(
    spec: &GuardrailSpec,
    g: &Guardrail,
    learned: &Learned,
    field: &'static str,
) -> Option<(bool, String, String)> {
    {
        let (same, old, new) = match field {
            "models" => {
                let want = spec.models.as_deref().unwrap_or_default();
                let have = g.allowed_models.as_deref();
                let same = have.is_some_and(|have| {
                    same_models(want, have)
                        || (as_set(&learned.sent) == as_set(want)
                            && as_set(&learned.seen) == as_set(have))
                });
                (same, list_text(have), list_text(Some(want)))
            }
            "providers" => {
                let want = spec.providers.as_deref().unwrap_or_default();
                let have = g.allowed_providers.as_deref();
                let same = have.is_some_and(|h| lower_set(h) == lower_set(want));
                (same, list_text(have), list_text(Some(want)))
            }
            "daily_limit" | "weekly_limit" | "monthly_limit" => {
                let budget = spec.budget?;
                let have_interval = g.reset_interval.as_deref().and_then(Interval::parse);
                let same = g.limit_usd.is_some()
                    && same_money(g.limit_usd, Some(budget.dollars))
                    && have_interval == Some(budget.interval);
                let old = match (g.limit_usd, g.reset_interval.as_deref()) {
                    (None, _) => "none".to_string(),
                    (Some(l), Some(i)) => format!("${l:.2} {i}"),
                    (Some(l), None) => format!("${l:.2}"),
                };
                (
                    same,
                    old,
                    format!("${:.2} {}", budget.dollars, budget.interval.as_str()),
                )
            }
            "zero_data_retention" => {
                let want = spec.zero_data_retention.unwrap_or_default();
                let have: Vec<bool> = [
                    g.enforce_zdr_anthropic,
                    g.enforce_zdr_google,
                    g.enforce_zdr_openai,
                    g.enforce_zdr_other,
                    g.enforce_zdr_xai,
                ]
                .iter()
                .map(|f| f.or(g.enforce_zdr).unwrap_or(false))
                .collect();
                (
                    have.iter().all(|h| *h == want),
                    flags_text(&have),
                    want.to_string(),
                )
            }
            "training" => {
                let want = spec.training.unwrap_or_default();
                let have: Vec<bool> = [
                    g.enable_free_model_training,
                    g.enable_paid_model_training,
                    g.enable_free_model_publication,
                ]
                .iter()
                .map(|f| f.unwrap_or(false))
                .collect();
                (
                    have.iter().all(|h| *h == want),
                    flags_text(&have),
                    want.to_string(),
                )
            }
            "redact" => {
                let want: BTreeSet<(String, String)> = spec
                    .redact
                    .iter()
                    .flatten()
                    .map(|s| (s.clone(), "redact".to_string()))
                    .collect();
                let have: BTreeSet<(String, String)> = g
                    .content_filter_builtins
                    .iter()
                    .flatten()
                    .map(|b| (b.slug.clone(), b.action.clone()))
                    .collect();
                let old = if have.is_empty() {
                    "none".to_string()
                } else {
                    have.iter()
                        .map(|(s, a)| {
                            if a == "redact" {
                                s.clone()
                            } else {
                                format!("{s} ({a})")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let new = if want.is_empty() {
                    "none".to_string()
                } else {
                    want.iter()
                        .map(|(s, _)| s.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                (have == want, old, new)
            }
            _ => return None,
        };
        Some((same, old, new))
    }
}

/// A setting's text in the output and the changelog.
fn list_text(list: Option<&[String]>) -> String {
    match list {
        None => "any".into(),
        Some(l) => l.join(", "),
    }
}

fn flags_text(flags: &[bool]) -> String {
    if flags.iter().all(|f| *f) {
        "true".into()
    } else if flags.iter().all(|f| !*f) {
        "false".into()
    } else {
        "mixed".into()
    }
}

fn as_set(list: &[String]) -> BTreeSet<&str> {
    list.iter().map(String::as_str).collect()
}

fn lower_set(list: &[String]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_lowercase()).collect()
}

/// Whether every model the file names is among the account's and the other way round, a
/// canonical slug (`openai/gpt-4o-mini-2024-07-18`) standing for the slug it dates
/// (`openai/gpt-4o-mini`).
pub fn same_models(file: &[String], account: &[String]) -> bool {
    account
        .iter()
        .all(|a| file.iter().any(|f| same_model(f, a)))
        && file
            .iter()
            .all(|f| account.iter().any(|a| same_model(f, a)))
}

/// `openai/gpt-4o-mini` is `openai/gpt-4o-mini-2024-07-18`; a variant (`:free`) must agree.
pub fn same_model(file: &str, account: &str) -> bool {
    let (f, fv) = file.split_once(':').unwrap_or((file, ""));
    let (a, av) = account.split_once(':').unwrap_or((account, ""));
    if !fv.eq_ignore_ascii_case(av) {
        return false;
    }
    if f.eq_ignore_ascii_case(a) {
        return true;
    }
    let (f, a) = (f.to_ascii_lowercase(), a.to_ascii_lowercase());
    a.strip_prefix(&f)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|date| {
            let digits = date.chars().filter(char::is_ascii_digit).count();
            digits >= 4 && date.chars().all(|c| c.is_ascii_digit() || c == '-')
        })
}

/// A guardrail's settings in one line (the changelog row of a create).
pub fn summary(spec: &GuardrailSpec) -> String {
    let parts: Vec<String> = settings(spec)
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.new))
        .collect();
    if parts.is_empty() {
        "OpenRouter's defaults".into()
    } else {
        parts.join("; ")
    }
}

// ---- Against the account ----

/// What the account holds for the class, read before planning.
pub struct Standing {
    /// The class guardrail (by the id keys.db records, or found by its name).
    pub current: Option<Guardrail>,
    /// Which guardrail each key of the account holds.
    pub held: HashMap<String, String>,
}

/// The class guardrail's name: the tag (or "class") and a random token, made once and kept
/// in keys.db, so that an interrupted create is found again by it.
pub fn class_name(class: &mut Class, dry_run: bool) -> Result<String> {
    if let Some(n) = class.store.meta(META_NAME)? {
        return Ok(n);
    }
    let label = class
        .naming
        .tag
        .as_ref()
        .map_or_else(|| "class".to_string(), |t| t.as_str().to_string());
    let name = format!("classkeys {label} {:08x}", fastrand::u32(..));
    if !dry_run {
        class.store.set_meta(META_NAME, &name)?;
    }
    Ok(name)
}

/// Read the class guardrail and the account's assignments. Records what it finds out (a
/// guardrail deleted outside classkeys, one an interrupted create made) unless `dry_run`.
pub fn read(ctx: &Ctx, class: &mut Class, dry_run: bool) -> Result<Standing> {
    let mut current = None;
    if let Some(id) = class.store.meta(META_ID)? {
        match class.client.get_guardrail(&id) {
            Ok(g) => current = Some(g),
            Err(e) if e.status() == Some(404) => {
                ctx.ui.warn(format!(
                    "the class guardrail ({id}) is gone from the account (deleted outside classkeys)"
                ));
                if !dry_run {
                    class.store.record_changes(
                        &[],
                        None,
                        &[crate::domain::Change {
                            hash: id.clone(),
                            email: String::new(),
                            action: "guardrail_deleted_outside",
                            old: class.store.meta(META_NAME)?,
                            new: None,
                        }],
                    )?;
                    class.store.delete_meta(META_ID)?;
                }
            }
            Err(e) => return Err(anyhow::Error::new(e).context("reading the class guardrail")),
        }
    }
    if current.is_none()
        && let Some(name) = class.store.meta(META_NAME)?
    {
        // An interrupted create may have made it: found by its name, it is the class's.
        let found: Vec<Guardrail> = class
            .client
            .list_guardrails()
            .map_err(|e| anyhow::Error::new(e).context("listing guardrails"))?
            .into_iter()
            .filter(|g| g.name == name)
            .collect();
        if let Some(g) = found.into_iter().next() {
            if !dry_run {
                class.store.set_meta(META_ID, &g.id)?;
            }
            current = Some(g);
        }
    }
    let ids: Vec<&str> = current.iter().map(|g| g.id.as_str()).collect();
    let held = held(&class.client, &ids)
        .map_err(|e| anyhow::Error::new(e).context("listing guardrail assignments"))?;
    Ok(Standing { current, held })
}

/// Which guardrail each key holds: the account-wide listing, or (where a server lacks it) the
/// listings of the guardrails `ids` names.
pub fn held(
    client: &crate::openrouter::Client,
    ids: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    match client.key_assignments() {
        Ok(list) => Ok(list
            .into_iter()
            .map(|a| (a.key_hash, a.guardrail_id))
            .collect()),
        Err(e) if matches!(e.status(), Some(404 | 405 | 501)) => {
            let mut held = HashMap::new();
            for id in ids {
                for a in client.guardrail_keys(id)? {
                    held.insert(a.key_hash, id.to_string());
                }
            }
            Ok(held)
        }
        Err(e) => Err(e),
    }
}

/// The hashes of the keys that hold the class guardrail, as the account reports it; `None`
/// when the class has none.
pub fn holders(class: &Class) -> Result<Option<std::collections::HashSet<String>>> {
    let Some(id) = class.store.meta(META_ID)? else {
        return Ok(None);
    };
    match class.client.guardrail_keys(&id) {
        Ok(list) => Ok(Some(list.into_iter().map(|a| a.key_hash).collect())),
        Err(e) if e.status() == Some(404) => Ok(Some(Default::default())),
        Err(e) => Err(anyhow::Error::new(e).context("listing the keys of the class guardrail")),
    }
}

/// What happens to the guardrail itself, as the output and `--json` say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Unchanged,
    Created,
    Changed,
    Deleted,
}

/// What `sync` planned and did, for the output.
#[derive(Debug, Default, Serialize)]
pub struct Synced {
    pub name: String,
    pub id: Option<String>,
    /// What was (or, in a dry run, would be) done to the guardrail.
    pub action: Action,
    pub changes: Vec<FieldChange>,
    pub assigned: Vec<Holder>,
    pub unassigned: Vec<Holder>,
    #[serde(skip)]
    pub failure: Option<ApiError>,
}

impl Synced {
    /// Keys that held another guardrail and were (or would be) given the class's.
    pub fn moved(&self) -> impl Iterator<Item = &Holder> {
        self.assigned.iter().filter(|h| h.held.is_some())
    }
}

/// Make the account's class guardrail what classkeys.toml asks for, and give it to every key
/// of the class (or take it off them and delete it, when the file no longer asks for one), and
/// say what was done (or would be, in a dry run) unless the output is `--json`.
/// Sends nothing when there is nothing to do, or for `dry_run`. `None`: the class has no
/// guardrail and wants none (no request was sent).
pub fn sync(
    ctx: &Ctx,
    class: &mut Class,
    config: &ClassConfig,
    dry_run: bool,
) -> Result<Option<Synced>> {
    let synced = plan_and_send(ctx, class, config, dry_run)?;
    if let Some(s) = &synced
        && !ctx.ui.json
    {
        tell(ctx, s, dry_run);
    }
    Ok(synced)
}

fn plan_and_send(
    ctx: &Ctx,
    class: &mut Class,
    config: &ClassConfig,
    dry_run: bool,
) -> Result<Option<Synced>> {
    let spec = config.guardrail.as_ref();
    if spec.is_none() && class.store.meta(META_ID)?.is_none() {
        return Ok(None);
    }
    let name = class_name(class, dry_run)?;
    let standing = read(ctx, class, dry_run)?;
    if spec.is_none() && standing.current.is_none() {
        // The file asks for none, and the one keys.db knew of is gone already.
        return Ok(None);
    }
    let keys = class_keys(class, &standing.held);
    let learned = Learned::read(&class.store)?;
    let mut plan = plan(spec, standing.current.as_ref(), &keys, &name, &learned);
    // Name the guardrails the class's keys are moved from.
    let mut names: HashMap<String, String> = HashMap::new();
    for h in plan.assign.iter_mut().filter(|h| h.held.is_some()) {
        let id = h.held.clone().unwrap_or_default();
        let n = names.entry(id.clone()).or_insert_with(|| {
            class
                .client
                .get_guardrail(&id)
                .map(|g| g.name)
                .unwrap_or_else(|_| id.clone())
        });
        h.held_name = Some(n.clone());
    }
    let mut synced = Synced {
        name: standing
            .current
            .as_ref()
            .map_or(name.clone(), |g| g.name.clone()),
        id: standing.current.as_ref().map(|g| g.id.clone()),
        action: match &plan.step {
            Step::Nothing => Action::Unchanged,
            Step::Create { .. } => Action::Created,
            Step::Patch { .. } => Action::Changed,
            Step::Delete => Action::Deleted,
        },
        changes: match &plan.step {
            Step::Patch { changes, .. } => changes.clone(),
            Step::Create { .. } => spec.map_or_else(Vec::new, settings),
            _ => vec![],
        },
        assigned: plan.assign.clone(),
        unassigned: plan.unassign.clone(),
        failure: None,
    };
    if dry_run || plan.is_empty() {
        return Ok(Some(synced));
    }
    let mut ops = Vec::new();
    let id = synced.id.clone().unwrap_or_default();
    match &plan.step {
        Step::Create { body } => ops.push(GuardrailOp::Create {
            name: name.clone(),
            body: body.clone(),
            summary: spec.map(summary).unwrap_or_default(),
        }),
        Step::Patch { body, changes } => ops.push(GuardrailOp::Patch {
            id: id.clone(),
            name: synced.name.clone(),
            body: body.clone(),
            changes: changes.clone(),
            spec: spec.cloned().unwrap_or_default(),
        }),
        _ => {}
    }
    for chunk in plan.unassign.chunks(CHUNK) {
        ops.push(GuardrailOp::Unassign {
            id: id.clone(),
            name: synced.name.clone(),
            keys: chunk.to_vec(),
        });
    }
    if plan.step == Step::Delete {
        ops.push(GuardrailOp::Delete {
            id: id.clone(),
            name: synced.name.clone(),
        });
    }
    for chunk in plan.assign.chunks(CHUNK) {
        ops.push(GuardrailOp::Assign {
            // Filled in by the executor once a create has answered.
            id: id.clone(),
            name: synced.name.clone(),
            keys: chunk.to_vec(),
        });
    }
    let done = apply::guardrail(ctx, class, ops)?;
    if let Some(g) = &done.guardrail {
        synced.id = Some(g.id.clone());
    }
    if let (Some(spec), Some(g)) = (spec, &done.guardrail)
        && let (Some(sent), Some(seen)) = (&spec.models, &g.allowed_models)
    {
        let learned = Learned {
            sent: sent.clone(),
            seen: seen.clone(),
        };
        class
            .store
            .set_meta(META_MODELS, &serde_json::to_string(&learned)?)?;
    }
    synced.failure = done.failure;
    if synced.failure.is_some() {
        synced.assigned.retain(|h| done.assigned.contains(&h.hash));
        synced
            .unassigned
            .retain(|h| done.unassigned.contains(&h.hash));
    }
    Ok(Some(synced))
}

/// Give new keys (just created, or rotated) the class guardrail, if the class has one.
pub fn assign_new(ctx: &Ctx, class: &mut Class, keys: Vec<Holder>) -> Result<Option<ApiError>> {
    let Some(id) = class.store.meta(META_ID)? else {
        return Ok(None);
    };
    if keys.is_empty() {
        return Ok(None);
    }
    let name = class.store.meta(META_NAME)?.unwrap_or_else(|| id.clone());
    let ops = keys
        .chunks(CHUNK)
        .map(|c| GuardrailOp::Assign {
            id: id.clone(),
            name: name.clone(),
            keys: c.to_vec(),
        })
        .collect();
    Ok(apply::guardrail(ctx, class, ops)?.failure)
}

/// Every key of the class's roster students, with the guardrail it holds.
fn class_keys(class: &Class, held: &HashMap<String, String>) -> Vec<Holder> {
    class
        .view()
        .rows()
        .into_iter()
        .map(|(email, _, key)| Holder {
            email: email.to_string(),
            hash: key.hash.clone(),
            key_name: key.name.clone(),
            held: held.get(&key.hash).cloned(),
            held_name: None,
        })
        .collect()
}

/// Say what `sync` did (or would do).
fn tell(ctx: &Ctx, s: &Synced, dry_run: bool) {
    let would = |done: &str, planned: &str| {
        if dry_run {
            format!("would {planned}")
        } else {
            done.to_string()
        }
    };
    let g = format!("guardrail {:?}", s.name);
    match s.action {
        Action::Created => ctx
            .ui
            .say(format!("{g}: {}", would("created", "create it"))),
        Action::Changed => ctx.ui.say(format!("{g}: {}", would("changed", "change"))),
        Action::Deleted => ctx.ui.say(format!(
            "{g}: {} (classkeys.toml asks for none)",
            would("deleted", "delete it")
        )),
        _ => {}
    }
    for c in &s.changes {
        if s.action == Action::Created {
            ctx.ui.say(format!("  {}: {}", c.field, c.new));
        } else {
            ctx.ui.say(format!("  {}: {} → {}", c.field, c.old, c.new));
        }
    }
    for h in s.moved() {
        ctx.ui.warn(format!(
            "key {} of {} held guardrail {:?}; {} to the class guardrail",
            h.key_name,
            h.email,
            h.held_name.as_deref().or(h.held.as_deref()).unwrap_or("?"),
            if dry_run { "would be moved" } else { "moved" }
        ));
    }
    let fresh = s.assigned.iter().filter(|h| h.held.is_none()).count();
    if fresh > 0 {
        ctx.ui.say(format!(
            "{g}: {} {fresh} key(s)",
            would("assigned to", "assign it to")
        ));
    }
    if !s.unassigned.is_empty() {
        ctx.ui.say(format!(
            "{g}: {} {} key(s)",
            would("taken off", "take it off"),
            s.unassigned.len()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Budget, Builtin};

    fn spec() -> GuardrailSpec {
        GuardrailSpec {
            models: Some(vec![
                "openai/gpt-4o-mini".into(),
                "google/gemini-2.5-flash".into(),
            ]),
            providers: Some(vec!["openai".into()]),
            budget: Some(Budget {
                dollars: 1.0,
                interval: Interval::Daily,
            }),
            zero_data_retention: Some(true),
            training: Some(false),
            redact: Some(vec!["email".into(), "phone".into()]),
        }
    }

    /// The guardrail the account holds after creating `spec()`, in canonical slugs.
    fn made() -> Guardrail {
        Guardrail {
            id: "g1".into(),
            name: "classkeys class 1".into(),
            allowed_models: Some(vec![
                "openai/gpt-4o-mini-2024-07-18".into(),
                "google/gemini-2.5-flash".into(),
            ]),
            allowed_providers: Some(vec!["OpenAI".into()]),
            limit_usd: Some(1.0),
            reset_interval: Some("daily".into()),
            enforce_zdr_anthropic: Some(true),
            enforce_zdr_google: Some(true),
            enforce_zdr_openai: Some(true),
            enforce_zdr_other: Some(true),
            enforce_zdr_xai: Some(true),
            enable_free_model_training: Some(false),
            enable_paid_model_training: Some(false),
            enable_free_model_publication: Some(false),
            content_filter_builtins: Some(vec![
                Builtin {
                    slug: "phone".into(),
                    action: "redact".into(),
                },
                Builtin {
                    slug: "email".into(),
                    action: "redact".into(),
                },
            ]),
            ..Guardrail::default()
        }
    }

    fn holder(hash: &str, held: Option<&str>) -> Holder {
        Holder {
            email: format!("{hash}@uni.edu"),
            hash: hash.into(),
            key_name: format!("20261201_{hash}"),
            held: held.map(String::from),
            held_name: None,
        }
    }

    #[test]
    fn the_create_body_carries_every_setting_and_nothing_left_out() {
        let b = create_body(&spec(), "classkeys class 1");
        assert_eq!(
            b["allowed_models"],
            json!(["openai/gpt-4o-mini", "google/gemini-2.5-flash"])
        );
        assert_eq!(b["limit_usd"], json!(1.0));
        assert_eq!(b["reset_interval"], json!("daily"));
        for f in ZDR {
            assert_eq!(b[f], json!(true), "{f}");
        }
        for f in TRAINING {
            assert_eq!(b[f], json!(false), "{f}");
        }
        assert_eq!(
            b["content_filter_builtins"],
            json!([{"slug": "email", "action": "redact"}, {"slug": "phone", "action": "redact"}])
        );
        let only = create_body(
            &GuardrailSpec {
                training: Some(true),
                redact: Some(vec![]),
                ..GuardrailSpec::default()
            },
            "n",
        );
        let keys: BTreeSet<&str> = only
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "name",
                "description",
                "enable_free_model_training",
                "enable_paid_model_training",
                "enable_free_model_publication",
                "content_filter_builtins"
            ])
        );
        assert_eq!(only["enable_paid_model_training"], json!(true));
        assert_eq!(only["content_filter_builtins"], json!([]));
    }

    #[test]
    fn what_the_account_made_of_the_file_is_no_change() {
        assert!(differences(&spec(), &made(), &Learned::default()).is_empty());
        // Fields the file does not set are not compared.
        let mut g = made();
        g.allowed_providers = None;
        let s = GuardrailSpec {
            providers: None,
            ..spec()
        };
        assert!(differences(&s, &g, &Learned::default()).is_empty());
    }

    #[test]
    fn each_setting_that_differs_is_one_change_with_old_and_new() {
        let mut g = made();
        g.limit_usd = Some(2.0);
        g.enforce_zdr_xai = Some(false);
        g.allowed_models = Some(vec!["openai/gpt-4o-2024-08-06".into()]);
        let c = differences(&spec(), &g, &Learned::default());
        let fields: Vec<&str> = c.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["models", "daily_limit", "zero_data_retention"]);
        assert_eq!(c[1].old, "$2.00 daily");
        assert_eq!(c[1].new, "$1.00 daily");
        assert_eq!(c[2].old, "mixed");
        let p = plan(Some(&spec()), Some(&g), &[], "n", &Learned::default());
        let Step::Patch { body, .. } = p.step else {
            panic!("a patch")
        };
        let keys: BTreeSet<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(keys.contains("allowed_models") && keys.contains("limit_usd"));
        assert!(!keys.contains("allowed_providers") && !keys.contains("content_filter_builtins"));
    }

    #[test]
    fn slugs_and_their_canonical_forms() {
        assert!(same_model(
            "openai/gpt-4o-mini",
            "openai/gpt-4o-mini-2024-07-18"
        ));
        assert!(same_model("openai/gpt-4o-mini", "openai/gpt-4o-mini"));
        assert!(same_model("deepseek/r1:free", "deepseek/r1-0528:free"));
        assert!(!same_model(
            "openai/gpt-4o",
            "openai/gpt-4o-mini-2024-07-18"
        ));
        assert!(!same_model("openai/gpt-4o-mini", "openai/gpt-4o-mini:free"));
        assert!(!same_model("openai/gpt-4", "openai/gpt-4-turbo"));
        // What the account answered last time counts, whatever its canonical names.
        let learned = Learned {
            sent: vec!["anthropic/claude-opus-4.5".into()],
            seen: vec!["anthropic/claude-4.5-opus-20251124".into()],
        };
        let s = GuardrailSpec {
            models: Some(learned.sent.clone()),
            ..GuardrailSpec::default()
        };
        let g = Guardrail {
            allowed_models: Some(learned.seen.clone()),
            ..Guardrail::default()
        };
        assert!(differences(&s, &g, &Learned::default()).len() == 1);
        assert!(differences(&s, &g, &learned).is_empty());
    }

    #[test]
    fn plans_assign_what_lacks_it_move_what_holds_another_and_undo_when_removed() {
        let keys = [
            holder("a", None),
            holder("b", Some("g1")),
            holder("c", Some("other")),
        ];
        let p = plan(
            Some(&spec()),
            Some(&made()),
            &keys,
            "n",
            &Learned::default(),
        );
        assert_eq!(p.step, Step::Nothing);
        let assigned: Vec<&str> = p.assign.iter().map(|h| h.hash.as_str()).collect();
        assert_eq!(assigned, ["a", "c"]);
        let p = plan(Some(&spec()), None, &keys, "n", &Learned::default());
        assert!(matches!(p.step, Step::Create { .. }));
        assert_eq!(p.assign.len(), 3);
        let p = plan(None, Some(&made()), &keys, "n", &Learned::default());
        assert_eq!(p.step, Step::Delete);
        let unassigned: Vec<&str> = p.unassign.iter().map(|h| h.hash.as_str()).collect();
        assert_eq!(unassigned, ["b"]);
        assert!(plan(None, None, &keys, "n", &Learned::default()).is_empty());
    }
}
