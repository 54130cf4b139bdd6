//! The emulated HTTP API, without the sockets: one request in, one status and JSON body out.
//! It follows `shared/openrouter-keys-openapi.yaml` and API-NOTES.md (pages of 100 keys newest
//! first, disabled keys hidden unless asked for, 201 on create with the secret beside `data`,
//! `{"error": {"code", "message"}}` bodies) so the real client code path runs unchanged.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::state::{Account, NewKey, timestamp};
use crate::openrouter::PAGE_SIZE;

const PREFIX: &str = "/api/v1";
const RESETS: [&str; 3] = ["daily", "weekly", "monthly"];
const CREATE_FIELDS: [&str; 7] = [
    "name",
    "limit",
    "limit_reset",
    "include_byok_in_limit",
    "expires_at",
    "creator_user_id",
    "workspace_id",
];
const PATCH_FIELDS: [&str; 5] = [
    "name",
    "disabled",
    "limit",
    "limit_reset",
    "include_byok_in_limit",
];

/// Which bearer tokens the emulator takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Only this one (the in-process sandbox: other local programs cannot use it by chance).
    Token(String),
    /// Any (the `sandbox serve` benchmark server).
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub(super) fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body: body.to_string(),
        }
    }
    pub fn error(status: u16, message: impl Into<String>) -> Answer {
        Answer::json(
            status,
            json!({"error": {"code": status, "message": message.into()}}),
        )
    }
}

/// `None` when the Authorization header is acceptable, else the 401 to send.
pub fn authorize(header: Option<&str>, auth: &Auth) -> Option<Answer> {
    let token = header
        .and_then(|h| h.trim().strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match (token, auth) {
        (None, _) => Some(Answer::error(401, "Missing Authentication header")),
        (Some(t), Auth::Token(want)) if t != want => Some(Answer::error(
            401,
            "Invalid management key: this is the classkeys sandbox, which takes only its own",
        )),
        _ => None,
    }
}

/// Answer one request. The flag says whether the account changed (and must be saved).
pub fn handle(
    account: &mut Account,
    method: &str,
    target: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> (Answer, bool) {
    let Ok(url) = url::Url::parse(&format!("http://sandbox{target}")) else {
        return (Answer::error(400, "Malformed request target"), false);
    };
    let path = url.path().trim_end_matches('/');
    let Some(route) = path.strip_prefix(PREFIX) else {
        return (Answer::error(404, "Not Found"), false);
    };
    let query = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match (method, route) {
        ("GET", "/keys") => (
            list(
                account,
                query("offset"),
                query("include_disabled"),
                query("workspace_id"),
                now,
            ),
            false,
        ),
        (_, r) if r.starts_with("/guardrails") => {
            super::guardrails::guardrails(account, method, r, &query, body, now)
        }
        ("POST", "/analytics/query") => (super::guardrails::analytics(account, body), false),
        ("GET", r) if r.starts_with("/workspaces/") && !r["/workspaces/".len()..].contains('/') => {
            (
                super::guardrails::workspace(&r["/workspaces/".len()..]),
                false,
            )
        }
        ("POST", "/keys") => create(account, body, now),
        ("GET", "/credits") => {
            let (total, used) = account.credits();
            let data = json!({"data": {"total_credits": total, "total_usage": used}});
            (Answer::json(200, data), false)
        }
        (_, "/keys" | "/credits") => (Answer::error(405, "Method Not Allowed"), false),
        (_, r) if r.starts_with("/keys/") && !r["/keys/".len()..].contains('/') => {
            let hash = &r["/keys/".len()..];
            one_key(account, method, hash, body, now)
        }
        _ => (Answer::error(404, "Not Found"), false),
    }
}

fn list(
    account: &Account,
    offset: Option<String>,
    include_disabled: Option<String>,
    workspace: Option<String>,
    now: DateTime<Utc>,
) -> Answer {
    let offset = match offset.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Answer::error(400, "offset must be a non-negative integer"),
    };
    let include_disabled = match include_disabled.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Answer::error(400, "include_disabled must be true or false"),
    };
    let page: Vec<_> = account
        .page(
            offset,
            include_disabled,
            PAGE_SIZE,
            super::guardrails::workspace_of(workspace.as_deref()),
        )
        .into_iter()
        .map(|k| k.view(now))
        .collect();
    Answer::json(200, json!({ "data": page }))
}

fn create(account: &mut Account, body: &[u8], now: DateTime<Utc>) -> (Answer, bool) {
    let fields = match object(body, &CREATE_FIELDS) {
        Ok(f) => f,
        Err(a) => return (a, false),
    };
    let name = match fields.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return (
                Answer::error(400, "name is required: a non-empty string"),
                false,
            );
        }
    };
    let checked = (|| {
        Ok::<_, Answer>(NewKey {
            name,
            limit: limit(&fields)?.unwrap_or(None),
            limit_reset: limit_reset(&fields)?.unwrap_or(None),
            include_byok_in_limit: flag(&fields, "include_byok_in_limit")?.unwrap_or(false),
            expires_at: expires_at(&fields)?,
            workspace_id: fields
                .get("workspace_id")
                .and_then(Value::as_str)
                .and_then(|w| super::guardrails::workspace_of(Some(w)))
                .map(String::from),
        })
    })();
    let new = match checked {
        Ok(n) => n,
        Err(a) => return (a, false),
    };
    for field in ["creator_user_id", "workspace_id"] {
        if let Some(v) = fields.get(field).filter(|v| !v.is_null() && !v.is_string()) {
            return (
                Answer::error(400, format!("{field} must be a string, not {v}")),
                false,
            );
        }
    }
    let key = account.create(new, now);
    let body = json!({ "data": key.view(now), "key": key.secret });
    (Answer::json(201, body), true)
}

fn one_key(
    account: &mut Account,
    method: &str,
    hash: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> (Answer, bool) {
    if !matches!(method, "GET" | "PATCH" | "DELETE") {
        return (Answer::error(405, "Method Not Allowed"), false);
    }
    if account.find(hash).is_none() {
        return (Answer::error(404, "API key not found"), false);
    }
    match method {
        "GET" => {
            let key = account.find(hash).map(|k| k.view(now));
            (Answer::json(200, json!({ "data": key })), false)
        }
        "DELETE" => {
            account.delete(hash);
            (Answer::json(200, json!({"deleted": true})), true)
        }
        _ => patch(account, hash, body, now),
    }
}

fn patch(account: &mut Account, hash: &str, body: &[u8], now: DateTime<Utc>) -> (Answer, bool) {
    let fields = match object(body, &PATCH_FIELDS) {
        Ok(f) => f,
        Err(a) => return (a, false),
    };
    let checked = (|| {
        let name = match fields.get("name") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(Answer::error(400, "name must be a non-empty string")),
        };
        Ok::<_, Answer>((
            name,
            flag(&fields, "disabled")?,
            limit(&fields)?,
            limit_reset(&fields)?,
            flag(&fields, "include_byok_in_limit")?,
        ))
    })();
    let (name, disabled, limit, reset, byok) = match checked {
        Ok(c) => c,
        Err(a) => return (a, false),
    };
    let Some(key) = account.find_mut(hash) else {
        return (Answer::error(404, "API key not found"), false);
    };
    if let Some(n) = name {
        key.name = n;
    }
    if let Some(d) = disabled {
        key.disabled = d;
    }
    if let Some(l) = limit {
        key.limit = l;
    }
    if let Some(r) = reset {
        key.limit_reset = r;
    }
    if let Some(b) = byok {
        key.include_byok_in_limit = b;
    }
    key.updated_at = Some(timestamp(now));
    (Answer::json(200, json!({ "data": key.view(now) })), true)
}

/// The body as a JSON object with only the fields the spec allows.
pub(super) fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, Answer> {
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(Answer::error(400, "The request body must be a JSON object")),
        Err(e) => return Err(Answer::error(400, format!("Invalid JSON body: {e}"))),
    };
    let unknown: Vec<&str> = fields
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if !unknown.is_empty() {
        let hint = if unknown.contains(&"expires_at") {
            " (expires_at can be set only when a key is created)"
        } else {
            ""
        };
        return Err(Answer::error(
            400,
            format!("Unrecognized field(s): {}{hint}", unknown.join(", ")),
        ));
    }
    Ok(fields)
}

/// `None`: not sent. `Some(None)`: null (unlimited).
fn limit(fields: &Map<String, Value>) -> Result<Option<Option<f64>>, Answer> {
    match fields.get("limit") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(Some(v))),
            _ => Err(Answer::error(
                400,
                format!("limit must be 0 or more, not {n}"),
            )),
        },
        Some(v) => Err(Answer::error(
            400,
            format!("limit must be a number of dollars or null, not {v}"),
        )),
    }
}

fn limit_reset(fields: &Map<String, Value>) -> Result<Option<Option<String>>, Answer> {
    match fields.get("limit_reset") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if RESETS.contains(&s.as_str()) => Ok(Some(Some(s.clone()))),
        Some(v) => Err(Answer::error(
            400,
            format!("limit_reset must be daily, weekly, monthly or null, not {v}"),
        )),
    }
}

fn flag(fields: &Map<String, Value>, name: &str) -> Result<Option<bool>, Answer> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(Answer::error(
            400,
            format!("{name} must be true or false, not {v}"),
        )),
    }
}

/// A UTC date-time (other time zones are rejected, as the spec says), kept as sent.
fn expires_at(fields: &Map<String, Value>) -> Result<Option<String>, Answer> {
    match fields.get("expires_at") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) if t.offset().local_minus_utc() == 0 => Ok(Some(s.clone())),
            Ok(_) => Err(Answer::error(
                400,
                "expires_at must be in UTC (end it with Z)",
            )),
            Err(_) => Err(Answer::error(
                400,
                format!(
                    "expires_at must be an ISO 8601 date-time such as 2027-12-31T23:59:59Z, not {s:?}"
                ),
            )),
        },
        Some(v) => Err(Answer::error(
            400,
            format!("expires_at must be a string or null, not {v}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(acc: &mut Account, method: &str, target: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (a, _) = handle(acc, method, target, &body, Utc::now());
        (a.status, serde_json::from_str(&a.body).unwrap())
    }

    fn create_n(acc: &mut Account, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let (s, v) = call(
                    acc,
                    "POST",
                    "/api/v1/keys",
                    json!({"name": format!("k{i}"), "limit": 1}),
                );
                assert_eq!(s, 201, "{v}");
                v["data"]["hash"].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn pages_of_100_newest_first_and_disabled_hidden_unless_asked() {
        let mut acc = Account::default();
        let hashes = create_n(&mut acc, 250);
        for i in (0..250).step_by(2) {
            acc.find_mut(&hashes[i]).unwrap().disabled = true;
        }
        let page = |acc: &mut Account, q: &str| {
            let (s, v) = call(acc, "GET", &format!("/api/v1/keys{q}"), Value::Null);
            assert_eq!(s, 200);
            v["data"].as_array().unwrap().clone()
        };
        let sizes: Vec<usize> = [
            "?offset=0&include_disabled=true",
            "?offset=100&include_disabled=true",
            "?offset=200&include_disabled=true",
            "?offset=300&include_disabled=true",
        ]
        .iter()
        .map(|q| page(&mut acc, q).len())
        .collect();
        assert_eq!(sizes, [100, 100, 50, 0]);
        let first = page(&mut acc, "?include_disabled=true");
        assert_eq!(first[0]["name"], "k249", "newest first");
        assert_eq!(
            page(&mut acc, "?offset=249&include_disabled=true")[0]["name"],
            "k0"
        );
        // Without include_disabled (or with false) only the 125 enabled keys show.
        let enabled: usize = [0, 100, 200]
            .iter()
            .map(|o| page(&mut acc, &format!("?offset={o}")).len())
            .sum();
        assert_eq!(enabled, 125);
        assert_eq!(
            page(&mut acc, "?include_disabled=false&offset=100").len(),
            25
        );
        assert!(page(&mut acc, "").iter().all(|k| k["disabled"] == false));
        let (s, v) = call(&mut acc, "GET", "/api/v1/keys?offset=-1", Value::Null);
        assert_eq!((s, v["error"]["code"].as_u64()), (400, Some(400)));
        let (s, _) = call(
            &mut acc,
            "GET",
            "/api/v1/keys?include_disabled=yes",
            Value::Null,
        );
        assert_eq!(s, 400);
    }

    #[test]
    fn create_answers_201_with_every_key_field_and_the_secret_beside_data() {
        let mut acc = Account::default();
        let (s, v) = call(
            &mut acc,
            "POST",
            "/api/v1/keys",
            json!({"name": "20260301_Ada", "limit": 2.5, "limit_reset": "monthly", "expires_at": "2027-12-31T23:59:59Z"}),
        );
        assert_eq!(s, 201, "{v}");
        let secret = v["key"].as_str().unwrap();
        assert!(secret.starts_with("sk-or-v1-") && secret.len() == 73);
        let d = &v["data"];
        for field in [
            "hash",
            "name",
            "label",
            "disabled",
            "limit",
            "limit_remaining",
            "limit_reset",
            "include_byok_in_limit",
            "usage",
            "usage_daily",
            "usage_weekly",
            "usage_monthly",
            "byok_usage",
            "byok_usage_daily",
            "byok_usage_weekly",
            "byok_usage_monthly",
            "created_at",
            "updated_at",
            "expires_at",
            "creator_user_id",
            "workspace_id",
        ] {
            assert!(d.get(field).is_some(), "missing {field}: {d}");
        }
        assert!(d.get("secret").is_none() && !d.to_string().contains(secret));
        assert_eq!(d["limit_remaining"], 2.5);
        assert_eq!(d["expires_at"], "2027-12-31T23:59:59Z");
        assert!(crate::openrouter::parse_time(d["created_at"].as_str().unwrap()).is_some());
        assert_eq!(
            acc.find(d["hash"].as_str().unwrap()).unwrap().secret,
            secret
        );
        // What the real client decodes.
        let _: crate::openrouter::Created = serde_json::from_value(v.clone()).unwrap();

        // null limit is unlimited; 0 is a real limit of zero.
        let (_, v) = call(
            &mut acc,
            "POST",
            "/api/v1/keys",
            json!({"name": "u", "limit": null}),
        );
        assert_eq!(
            (
                v["data"]["limit"].is_null(),
                v["data"]["limit_remaining"].is_null()
            ),
            (true, true)
        );
        let (_, v) = call(
            &mut acc,
            "POST",
            "/api/v1/keys",
            json!({"name": "z", "limit": 0}),
        );
        assert_eq!(v["data"]["limit"], 0.0);
    }

    #[test]
    fn bad_creates_are_400_and_make_nothing() {
        let mut acc = Account::default();
        for body in [
            json!({}),
            json!({"name": ""}),
            json!({"name": 3}),
            json!({"name": "a", "limit": -1}),
            json!({"name": "a", "limit": "5"}),
            json!({"name": "a", "limit_reset": "hourly"}),
            json!({"name": "a", "expires_at": "2027-12-31T23:59:59+02:00"}),
            json!({"name": "a", "expires_at": "next year"}),
            json!({"name": "a", "colour": "red"}),
            json!(["name"]),
        ] {
            let (s, v) = call(&mut acc, "POST", "/api/v1/keys", body.clone());
            assert_eq!(s, 400, "{body} -> {v}");
            assert_eq!(v["error"]["code"], 400);
            assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        }
        let (a, changed) = handle(&mut acc, "POST", "/api/v1/keys", b"{oops", Utc::now());
        assert_eq!((a.status, changed), (400, false));
        assert!(acc.keys.is_empty());
    }

    #[test]
    fn get_patch_delete_one_key() {
        let mut acc = Account::default();
        let h = create_n(&mut acc, 1).remove(0);
        let url = format!("/api/v1/keys/{h}");
        let (s, v) = call(&mut acc, "GET", &url, Value::Null);
        assert_eq!((s, v["data"]["hash"].as_str()), (200, Some(h.as_str())));
        let (s, v) = call(
            &mut acc,
            "PATCH",
            &url,
            json!({"disabled": true, "limit": null, "limit_reset": "weekly", "name": "n2", "include_byok_in_limit": true}),
        );
        assert_eq!(s, 200, "{v}");
        let d = &v["data"];
        assert_eq!(
            (
                d["disabled"].as_bool(),
                d["limit"].is_null(),
                d["limit_reset"].as_str(),
                d["name"].as_str()
            ),
            (Some(true), true, Some("weekly"), Some("n2"))
        );
        assert!(d["updated_at"].is_string());
        // A PATCH that leaves limit out changes nothing of it.
        let (_, v) = call(&mut acc, "PATCH", &url, json!({"limit": 4}));
        let (_, v2) = call(&mut acc, "PATCH", &url, json!({"disabled": false}));
        assert_eq!(
            (v["data"]["limit"].as_f64(), v2["data"]["limit"].as_f64()),
            (Some(4.0), Some(4.0))
        );
        for body in [
            json!({"expires_at": null}),
            json!({"limit": -2}),
            json!({"disabled": "yes"}),
            json!({"name": ""}),
        ] {
            let (s, v) = call(&mut acc, "PATCH", &url, body.clone());
            assert_eq!(s, 400, "{body} -> {v}");
        }
        let (s, v) = call(&mut acc, "DELETE", &url, Value::Null);
        assert_eq!((s, v), (200, json!({"deleted": true})));
        for m in ["GET", "PATCH", "DELETE"] {
            let (s, v) = call(&mut acc, m, &url, json!({}));
            assert_eq!((s, v["error"]["code"].as_u64()), (404, Some(404)), "{m}");
        }
        let (s, _) = call(&mut acc, "PUT", "/api/v1/keys", Value::Null);
        assert_eq!(s, 405);
        let (s, _) = call(&mut acc, "GET", "/api/v2/keys", Value::Null);
        assert_eq!(s, 404);
    }

    #[test]
    fn credits_and_auth() {
        let mut acc = Account::default();
        let h = create_n(&mut acc, 1).remove(0);
        acc.spend(&h, 0.75, "openai/gpt-4o-mini", Utc::now());
        let (s, v) = call(&mut acc, "GET", "/api/v1/credits", Value::Null);
        assert_eq!(
            (s, v),
            (
                200,
                json!({"data": {"total_credits": 100.0, "total_usage": 0.75}})
            )
        );

        let own = Auth::Token("sandbox".into());
        assert_eq!(authorize(None, &own).unwrap().status, 401);
        assert_eq!(authorize(Some("Basic abc"), &own).unwrap().status, 401);
        assert_eq!(authorize(Some("Bearer "), &own).unwrap().status, 401);
        assert_eq!(authorize(Some("Bearer other"), &own).unwrap().status, 401);
        assert!(authorize(Some("Bearer sandbox"), &own).is_none());
        assert!(authorize(Some("Bearer anything"), &Auth::Any).is_none());
        assert!(authorize(None, &Auth::Any).is_some());
        let body: Value = serde_json::from_str(&authorize(None, &Auth::Any).unwrap().body).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": 401, "message": "Missing Authentication header"}})
        );
    }

    #[test]
    fn guardrails_are_made_assigned_one_a_key_enforced_and_deleted() {
        let mut acc = Account::default();
        let keys = create_n(&mut acc, 2);
        let (st, bad) = call(
            &mut acc,
            "POST",
            "/api/v1/guardrails",
            json!({"name": "g", "limit_usd": 1.0}),
        );
        assert_eq!((st, bad["error"]["code"].clone()), (400, json!(400)));
        let (st, g) = call(
            &mut acc,
            "POST",
            "/api/v1/guardrails",
            json!({"name": "g", "allowed_models": ["openai/gpt-4o-mini"], "limit_usd": 0.5,
                   "reset_interval": "daily", "content_filter_builtins": [{"slug": "email", "action": "redact"}]}),
        );
        assert_eq!(st, 201, "{g}");
        let id = g["data"]["id"].as_str().unwrap().to_string();
        assert_eq!(
            g["data"]["content_filter_builtins"][0]["label"],
            json!("[EMAIL]")
        );
        let (_, other) = call(
            &mut acc,
            "POST",
            "/api/v1/guardrails",
            json!({"name": "other"}),
        );
        let other = other["data"]["id"].as_str().unwrap().to_string();
        let assign = |acc: &mut Account, id: &str, hashes: &[String]| {
            call(
                acc,
                "POST",
                &format!("/api/v1/guardrails/{id}/assignments/keys"),
                json!({ "key_hashes": hashes }),
            )
        };
        assert_eq!(assign(&mut acc, &other, &keys).0, 200);
        // Assigning replaces what a key held.
        let (_, n) = assign(&mut acc, &id, &keys[..1]);
        assert_eq!(n, json!({"assigned_count": 1}));
        let (_, all) = call(
            &mut acc,
            "GET",
            "/api/v1/guardrails/assignments/keys",
            Value::Null,
        );
        assert_eq!(all["total_count"], json!(2));
        let (_, mine) = call(
            &mut acc,
            "GET",
            &format!("/api/v1/guardrails/{id}/assignments/keys"),
            Value::Null,
        );
        assert_eq!(mine["data"][0]["key_hash"], json!(keys[0]));
        // The guardrail refuses other models and caps spend at its budget.
        let now = Utc::now();
        let out = acc.spend(&keys[0], 1.0, "openai/gpt-4o", now).unwrap();
        assert_eq!(out.added, 0.0);
        assert!(
            out.stopped
                .unwrap()
                .contains("does not allow openai/gpt-4o")
        );
        let out = acc
            .spend(&keys[0], 2.0, "openai/gpt-4o-mini-2024-07-18", now)
            .unwrap();
        assert_eq!(out.added, 0.5);
        assert!(out.stopped.unwrap().contains("guardrail's budget"));
        // Analytics reports it per key name and model.
        acc.spend(&keys[1], 0.25, "google/gemini-2.5-flash", now)
            .unwrap();
        let (st, a) = call(
            &mut acc,
            "POST",
            "/api/v1/analytics/query",
            json!({"metrics": ["total_usage", "request_count"], "dimensions": ["api_key_id", "model"],
                   "filters": [{"field": "api_key_id", "operator": "in", "value": [keys[1]]}]}),
        );
        assert_eq!(st, 200, "{a}");
        let name = acc.find(&keys[1]).unwrap().name.clone();
        assert_eq!(
            a["data"]["data"],
            json!([{"api_key_id": name, "model": "google/gemini-2.5-flash", "total_usage": 0.25, "request_count": 1}])
        );
        // What the sandbox does not know is refused, not answered with nothing.
        for q in [
            json!({"metrics": ["tokens"], "dimensions": ["model"]}),
            json!({"metrics": ["total_usage"], "dimensions": ["country"]}),
            json!({"metrics": []}),
        ] {
            let (st, e) = call(&mut acc, "POST", "/api/v1/analytics/query", q);
            assert_eq!(st, 400, "{e}");
        }
        // Deleting the guardrail frees its keys.
        let (st, _) = call(
            &mut acc,
            "DELETE",
            &format!("/api/v1/guardrails/{id}"),
            Value::Null,
        );
        assert_eq!(st, 200);
        assert_eq!(acc.find(&keys[0]).unwrap().guardrail, None);
        let (st, _) = call(
            &mut acc,
            "GET",
            &format!("/api/v1/guardrails/{id}"),
            Value::Null,
        );
        assert_eq!(st, 404);
    }

    #[test]
    fn workspaces_resolve_by_slug_and_keep_their_keys_apart() {
        let mut acc = Account::default();
        let (_, w) = call(&mut acc, "GET", "/api/v1/workspaces/cs101", Value::Null);
        let id = w["data"]["id"].as_str().unwrap().to_string();
        let (_, again) = call(
            &mut acc,
            "GET",
            &format!("/api/v1/workspaces/{id}"),
            Value::Null,
        );
        assert_eq!(again["data"]["id"], json!(id));
        let (st, _) = call(
            &mut acc,
            "POST",
            "/api/v1/keys",
            json!({"name": "k", "limit": 1.0, "workspace_id": id}),
        );
        assert_eq!(st, 201);
        let (_, plain) = call(&mut acc, "GET", "/api/v1/keys", Value::Null);
        assert_eq!(plain["data"], json!([]));
        let (_, there) = call(
            &mut acc,
            "GET",
            &format!("/api/v1/keys?workspace_id={id}"),
            Value::Null,
        );
        assert_eq!(there["data"][0]["workspace_id"], json!(id));
    }
}
