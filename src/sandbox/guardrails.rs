//! The emulated guardrails (create, read, update, delete, key assignments: one guardrail a
//! key), analytics over the spend the sandbox records per model, and workspaces by id or slug.
//! Answers follow `shared/openrouter-management-openapi.yaml`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::api::{Answer, object};
use super::state::{Account, SANDBOX_WORKSPACE, random_hex, timestamp};
use crate::files::config::BUILTINS;

const FIELDS: [&str; 20] = [
    "name",
    "description",
    "allowed_models",
    "allowed_providers",
    "ignored_models",
    "ignored_providers",
    "limit_usd",
    "reset_interval",
    "include_byok_in_budgets",
    "enforce_zdr",
    "enforce_zdr_anthropic",
    "enforce_zdr_google",
    "enforce_zdr_openai",
    "enforce_zdr_other",
    "enforce_zdr_xai",
    "enable_free_model_training",
    "enable_paid_model_training",
    "enable_free_model_publication",
    "content_filter_builtins",
    "workspace_id",
];
const ACTIONS: [&str; 3] = ["redact", "block", "flag"];

/// A workspace parameter as the account files it: the default workspace is `None`.
pub fn workspace_of(param: Option<&str>) -> Option<&str> {
    param.filter(|w| !w.is_empty() && *w != SANDBOX_WORKSPACE)
}

/// `GET /workspaces/{id}`: any id or slug is a workspace of the sandbox; a slug's id is
/// made from it, so every run finds the same one.
pub fn workspace(id_or_slug: &str) -> Answer {
    let id = if is_uuid(id_or_slug) {
        id_or_slug.to_string()
    } else {
        use sha2::Digest;
        let d = sha2::Sha256::digest(id_or_slug.as_bytes());
        let h: String = d.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-4{}-8{}-{}",
            &h[..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    };
    Answer::json(
        200,
        json!({"data": {"id": id, "slug": id_or_slug, "name": id_or_slug}}),
    )
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

pub fn guardrails(
    account: &mut Account,
    method: &str,
    route: &str,
    query: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now: DateTime<Utc>,
) -> (Answer, bool) {
    let rest: Vec<&str> = route["/guardrails".len()..]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let page = |items: Vec<Value>| -> Answer {
        let offset: usize = query("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
        let limit: usize = query("limit")
            .and_then(|o| o.parse().ok())
            .unwrap_or(50)
            .clamp(1, 100);
        let total = items.len();
        let data: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
        Answer::json(200, json!({"data": data, "total_count": total}))
    };
    let assignment = |account: &Account, hash: &str, id: &str| {
        let key = account.find(hash);
        json!({
            "id": format!("{}-{}", &id[..id.len().min(8)], &hash[..hash.len().min(12)]),
            "key_hash": hash,
            "guardrail_id": id,
            "key_name": key.map(|k| k.name.clone()),
            "key_label": key.map(|k| k.label()),
            "assigned_by": null,
            "created_at": key.map(|k| k.created_at.clone()),
        })
    };
    match (method, rest.as_slice()) {
        ("GET", []) => {
            let ws = workspace_of(query("workspace_id").as_deref()).map(String::from);
            let list: Vec<Value> = account
                .guardrails
                .iter()
                .filter(|g| {
                    g.get("workspace_id")
                        .and_then(Value::as_str)
                        .map(String::from)
                        == ws
                })
                .map(|g| Value::Object(g.clone()))
                .collect();
            (page(list), false)
        }
        ("POST", []) => {
            let fields = match object(body, &FIELDS) {
                Ok(f) => f,
                Err(a) => return (a, false),
            };
            if fields
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(|n| n.is_empty() || n.chars().count() > 200)
            {
                return (
                    Answer::error(400, "name is required: 1 to 200 characters"),
                    false,
                );
            }
            let h = random_hex();
            let mut g = Map::new();
            g.insert(
                "id".into(),
                json!(format!(
                    "{}-{}-4{}-8{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[13..16],
                    &h[17..20],
                    &h[20..32]
                )),
            );
            for f in [
                "allowed_models",
                "allowed_providers",
                "limit_usd",
                "reset_interval",
            ] {
                g.insert(f.into(), Value::Null);
            }
            g.insert("include_byok_in_budgets".into(), json!(false));
            g.insert("created_at".into(), json!(timestamp(now)));
            g.insert("updated_at".into(), Value::Null);
            g.insert("workspace_id".into(), Value::Null);
            if let Err(a) = set_fields(&mut g, fields) {
                return (a, false);
            }
            account.guardrails.push(g.clone());
            (Answer::json(201, json!({ "data": g })), true)
        }
        ("GET", ["assignments", "keys"]) => {
            let list: Vec<Value> = account
                .keys
                .iter()
                .filter_map(|k| {
                    k.guardrail
                        .as_ref()
                        .map(|g| assignment(account, &k.hash, g))
                })
                .collect();
            (page(list), false)
        }
        (_, [id, tail @ ..]) => {
            let Some(i) = account
                .guardrails
                .iter()
                .position(|g| g.get("id").and_then(Value::as_str) == Some(id))
            else {
                return (Answer::error(404, "Guardrail not found"), false);
            };
            let id = id.to_string();
            match (method, tail) {
                ("GET", []) => (
                    Answer::json(200, json!({"data": account.guardrails[i]})),
                    false,
                ),
                ("PATCH", []) => {
                    let fields = match object(body, &FIELDS) {
                        Ok(f) => f,
                        Err(a) => return (a, false),
                    };
                    let mut g = account.guardrails[i].clone();
                    if let Err(a) = set_fields(&mut g, fields) {
                        return (a, false);
                    }
                    g.insert("updated_at".into(), json!(timestamp(now)));
                    account.guardrails[i] = g.clone();
                    (Answer::json(200, json!({ "data": g })), true)
                }
                ("DELETE", []) => {
                    account.guardrails.remove(i);
                    for k in &mut account.keys {
                        if k.guardrail.as_deref() == Some(id.as_str()) {
                            k.guardrail = None;
                        }
                    }
                    (Answer::json(200, json!({"deleted": true})), true)
                }
                ("GET", ["assignments", "keys"]) => {
                    let list: Vec<Value> = account
                        .keys
                        .iter()
                        .filter(|k| k.guardrail.as_deref() == Some(id.as_str()))
                        .map(|k| assignment(account, &k.hash, &id))
                        .collect();
                    (page(list), false)
                }
                ("POST", ["assignments", "keys", more @ ..])
                    if more.is_empty() || more == ["remove"] =>
                {
                    let hashes = match key_hashes(body) {
                        Ok(h) => h,
                        Err(a) => return (a, false),
                    };
                    let assign = more.is_empty();
                    let mut n = 0;
                    for k in account.keys.iter_mut().filter(|k| hashes.contains(&k.hash)) {
                        if assign {
                            k.guardrail = Some(id.clone());
                            n += 1;
                        } else if k.guardrail.as_deref() == Some(id.as_str()) {
                            k.guardrail = None;
                            n += 1;
                        }
                    }
                    let field = if assign {
                        "assigned_count"
                    } else {
                        "unassigned_count"
                    };
                    (Answer::json(200, json!({ field: n })), n > 0)
                }
                _ => (Answer::error(405, "Method Not Allowed"), false),
            }
        }
        _ => (Answer::error(405, "Method Not Allowed"), false),
    }
}

fn key_hashes(body: &[u8]) -> Result<Vec<String>, Answer> {
    let fields = object(body, &["key_hashes"])?;
    match fields.get("key_hashes") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|h| {
                h.as_str()
                    .map(String::from)
                    .ok_or_else(|| Answer::error(400, "key_hashes must hold strings"))
            })
            .collect(),
        _ => Err(Answer::error(
            400,
            "key_hashes: a non-empty array of key hashes",
        )),
    }
}

/// Check and set a create's or update's fields (collections replace what was there).
fn set_fields(g: &mut Map<String, Value>, fields: Map<String, Value>) -> Result<(), Answer> {
    for (k, v) in fields {
        let bad = |what: &str| Err(Answer::error(400, format!("{k}: {what}")));
        match k.as_str() {
            "name" | "description" => {
                if !(v.is_string() || (k == "description" && v.is_null())) {
                    return bad("a string");
                }
            }
            "allowed_models" | "allowed_providers" | "ignored_models" | "ignored_providers" => {
                let ok = v.is_null()
                    || v.as_array()
                        .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
                if !ok {
                    return bad("null, or a non-empty array of strings");
                }
            }
            "limit_usd" => {
                if !(v.is_null() || v.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0)) {
                    return bad("null, or a number of dollars, 0 or more");
                }
            }
            "reset_interval" => {
                if !(v.is_null()
                    || ["daily", "weekly", "monthly"].contains(&v.as_str().unwrap_or("")))
                {
                    return bad("daily, weekly, monthly or null");
                }
            }
            "workspace_id" => {
                if !(v.is_null() || v.is_string()) {
                    return bad("a workspace id");
                }
                let ws = workspace_of(v.as_str()).map(String::from);
                g.insert(k, json!(ws));
                continue;
            }
            "content_filter_builtins" => {
                let Some(list) = v.as_array().cloned().or_else(|| v.is_null().then(Vec::new))
                else {
                    return bad("an array of {slug, action}");
                };
                let mut out = Vec::new();
                for b in list {
                    let slug = b.get("slug").and_then(Value::as_str).unwrap_or("");
                    let action = b.get("action").and_then(Value::as_str).unwrap_or("");
                    if !BUILTINS.contains(&slug) || !ACTIONS.contains(&action) {
                        return bad("each entry a known slug with action redact, block or flag");
                    }
                    out.push(json!({"slug": slug, "action": action, "label": format!("[{}]", slug.to_uppercase().replace('-', "_"))}));
                }
                g.insert(k, Value::Array(out));
                continue;
            }
            _ => {
                if !(v.is_null() || v.is_boolean()) {
                    return bad("true, false or null");
                }
            }
        }
        g.insert(k, v);
    }
    if g.get("limit_usd").is_some_and(|l| !l.is_null())
        && g.get("reset_interval").is_none_or(Value::is_null)
    {
        return Err(Answer::error(
            400,
            "limit_usd needs a reset_interval (daily, weekly or monthly)",
        ));
    }
    Ok(())
}

/// `POST /analytics/query` over the spend the sandbox records: metrics `total_usage` and
/// `request_count` (each spend is one request), dimensions `api_key_id` (shown as the key's
/// name) and `model`, filters on `api_key_id` (by hash, `eq` or `in`) and `model`.
pub fn analytics(account: &Account, body: &[u8]) -> Answer {
    let fields = match object(
        body,
        &[
            "metrics",
            "dimensions",
            "filters",
            "granularity",
            "time_range",
            "limit",
            "group_limit",
            "order_by",
        ],
    ) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let strings = |name: &str| -> Vec<String> {
        fields
            .get(name)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let metrics = strings("metrics");
    let dims = strings("dimensions");
    if metrics.is_empty() {
        return Answer::error(400, "metrics: name at least one");
    }
    let unknown = |what: &str, names: &[String], known: [&str; 2]| {
        names
            .iter()
            .find(|n| !known.contains(&n.as_str()))
            .map(|n| {
                Answer::error(
                    400,
                    format!(
                        "unknown {what} {n} (the sandbox has {})",
                        known.join(" and ")
                    ),
                )
            })
    };
    if let Some(a) = unknown("metric", &metrics, ["total_usage", "request_count"]) {
        return a;
    }
    if dims.len() > 2 {
        return Answer::error(400, "dimensions: at most two");
    }
    if let Some(a) = unknown("dimension", &dims, ["api_key_id", "model"]) {
        return a;
    }
    let time = |name: &str| {
        fields
            .get("time_range")
            .and_then(|t| t.get(name))
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let (start, end) = (time("start"), time("end"));
    let filters: Vec<(String, String, Vec<String>)> = fields
        .get("filters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| {
            let values = match &f["value"] {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => vec![],
            };
            (
                f["field"].as_str().unwrap_or("").to_string(),
                f["operator"].as_str().unwrap_or("").to_string(),
                values,
            )
        })
        .collect();
    if filters.len() > 20 {
        return Answer::error(400, "filters: at most 20");
    }
    let passes = |field: &str, value: &str| {
        filters
            .iter()
            .filter(|(f, _, _)| f == field)
            .all(|(_, op, values)| match op.as_str() {
                "eq" | "in" => values.iter().any(|v| v == value),
                "neq" | "not_in" => !values.iter().any(|v| v == value),
                _ => true,
            })
    };
    let mut groups: Vec<(Vec<String>, f64, u64)> = Vec::new();
    for key in &account.keys {
        if !passes("api_key_id", &key.hash) {
            continue;
        }
        for s in &key.spends {
            if start.is_some_and(|t| s.at < t) || end.is_some_and(|t| s.at > t) {
                continue;
            }
            if !passes("model", s.model()) {
                continue;
            }
            let group: Vec<String> = dims
                .iter()
                .map(|d| match d.as_str() {
                    "api_key_id" => key.name.clone(),
                    _ => s.model().to_string(),
                })
                .collect();
            match groups.iter_mut().find(|(g, _, _)| *g == group) {
                Some(g) => {
                    g.1 += s.amount;
                    g.2 += 1;
                }
                None => groups.push((group, s.amount, 1)),
            }
        }
    }
    let rows: Vec<Value> = groups
        .into_iter()
        .map(|(group, usd, n)| {
            let mut row = Map::new();
            for (d, v) in dims.iter().zip(group) {
                row.insert(d.clone(), json!(v));
            }
            if metrics.iter().any(|m| m == "total_usage") {
                row.insert("total_usage".into(), json!((usd * 1e6).round() / 1e6));
            }
            if metrics.iter().any(|m| m == "request_count") {
                row.insert("request_count".into(), json!(n));
            }
            Value::Object(row)
        })
        .collect();
    let n = rows.len();
    Answer::json(
        200,
        json!({"data": {"data": rows, "metadata": {"query_time_ms": 0, "row_count": n, "truncated": false}}}),
    )
}
