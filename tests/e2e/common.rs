//! The fake OpenRouter and the helpers every test uses.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The one workspace of the fake account besides the default one (slug `cs101`).
pub const WORKSPACE_ID: &str = "0df9e665-d932-5740-b2c7-b52af166bc11";

/// A management key no output or file may ever contain.
pub const SENTINEL: &str = "sk-or-v1-SENTINEL-management-key-0123456789abcdef";

/// Something the fake does instead of answering normally, once.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer normally (to let some requests through before a fault).
    Pass,
    /// Answer this status with an OpenRouter error body; do nothing.
    Status(u16),
    /// 429 with `Retry-After: secs`.
    RateLimit(u64),
    /// Do the request (e.g. create the key), then answer this status.
    DoThenStatus(u16),
    /// Do the request, then answer only after this long (the client times out first).
    DoThenHang(Duration),
    /// Answer this status with a body that echoes the request's Authorization header back, as
    /// some gateways do.
    Echo(u16),
}

#[derive(Debug, Clone)]
pub struct FakeKey {
    pub data: Value,
    pub secret: String,
}

#[derive(Default)]
pub struct State {
    /// Newest first, like the API lists them.
    pub keys: Vec<FakeKey>,
    pub seq: u64,
    pub faults: Vec<(String, VecDeque<Fault>)>,
    pub credits: (f64, f64),
    /// When set, `GET /credits` answers this error status.
    pub credits_status: Option<u16>,
    /// Every answer waits this long (to make runs overlap).
    pub delay: Option<Duration>,
    /// Keys a listing page holds (0: OpenRouter's 100).
    pub page_size: usize,
    /// Keys another class deletes right after the first page of a listing was served.
    pub deleted_after_first_page: Vec<String>,
    /// A hostile account: every listing page is full of keys never seen before.
    pub endless: bool,
    /// A hostile account: listings answer a body of this many bytes.
    pub huge_listing: Option<usize>,
    /// A hostile account: the first listing page is this text, as sent (not quite JSON).
    pub raw_first_page: Option<String>,
    /// The server's clock is this many seconds off ours (created_at of new keys).
    pub skew_secs: i64,
    /// Guardrails, oldest first, as the API shows them.
    pub guardrails: Vec<Value>,
    /// (key hash, guardrail id): which guardrail each key holds.
    pub assignments: Vec<(String, String)>,
    /// Spend the analytics report: (key hash, model, dollars, requests).
    pub spend: Vec<(String, String, f64, u64)>,
    /// A server without the account-wide `GET /guardrails/assignments/keys` (404).
    pub no_global_assignments: bool,
}

impl State {
    /// A fault for `METHOD` (any path), or for `METHOD /path-end` (paths ending so), first one
    /// that has any left.
    fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        self.faults
            .iter_mut()
            .filter(|(m, q)| {
                !q.is_empty()
                    && match m.split_once(' ') {
                        None => m == method,
                        Some((mm, end)) => mm == method && path.ends_with(end),
                    }
            })
            .find_map(|(_, q)| q.pop_front())
    }

    pub fn add_key(
        &mut self,
        name: &str,
        limit: Option<f64>,
        disabled: bool,
        usage: f64,
    ) -> (String, String) {
        self.seq += 1;
        let seq = self.seq;
        let hash = format!("{:064x}", 0xabc000 + seq);
        let secret = format!("sk-or-v1-{:064x}", 0x5ec000 + seq);
        let label = format!("{}...{}", &secret[..12], &secret[secret.len() - 4..]);
        let created = chrono::Utc::now()
            + chrono::Duration::seconds(self.skew_secs)
            + chrono::Duration::milliseconds(seq as i64);
        let data = json!({
            "hash": hash, "name": name, "label": label, "disabled": disabled, "limit": limit,
            "limit_remaining": limit.map(|l| (l - usage).max(0.0)), "limit_reset": null,
            "include_byok_in_limit": false, "usage": usage, "usage_daily": usage, "usage_weekly": usage,
            "usage_monthly": usage, "byok_usage": 0.0, "byok_usage_daily": 0.0, "byok_usage_weekly": 0.0,
            "byok_usage_monthly": 0.0,
            "created_at": created.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
            "updated_at": null, "creator_user_id": null, "workspace_id": null
        });
        self.keys.insert(
            0,
            FakeKey {
                data,
                secret: secret.clone(),
            },
        );
        (hash, secret)
    }
}

fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"code": status, "message": message}}))
}

struct Responder(Arc<Mutex<State>>);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap();
        let method = req.method.as_str().to_string();
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bearer {SENTINEL}") {
            return error(401, "Missing Authentication header");
        }
        let fault = st.take_fault(&method, req.url.path().trim_end_matches('/'));
        match &fault {
            Some(Fault::Status(s)) => return error(*s, "Injected failure"),
            Some(Fault::Echo(s)) => {
                return error(
                    *s,
                    &format!("Invalid request, headers were: authorization: {auth}"),
                );
            }
            Some(Fault::RateLimit(secs)) => {
                return error(429, "Rate limit exceeded")
                    .insert_header("Retry-After", secs.to_string().as_str());
            }
            _ => {}
        }
        let path = req.url.path().trim_end_matches('/').to_string();
        let mut answer = route(&mut st, &method, &path, req);
        if let Some(d) = st.delay {
            answer = answer.set_delay(d);
        }
        match fault {
            Some(Fault::DoThenStatus(s)) => error(s, "Bad gateway"),
            Some(Fault::DoThenHang(d)) => answer.set_delay(d),
            _ => answer,
        }
    }
}

fn route(st: &mut State, method: &str, path: &str, req: &Request) -> ResponseTemplate {
    let query = |name: &str| {
        req.url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    };
    match (method, path) {
        ("GET", "/api/v1/keys") if st.endless => {
            let offset: usize = query("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            let page: Vec<Value> = (0..100)
                .map(|i| json!({"hash": format!("{:064x}", offset + i + 1), "name": format!("k{}", offset + i), "label": "sk-or-v1-000...0000", "disabled": false, "limit": null, "usage": 0.0}))
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({ "data": page }))
        }
        ("GET", "/api/v1/keys") if st.raw_first_page.is_some() => {
            let offset: usize = query("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            let body = match offset {
                0 => st.raw_first_page.clone().unwrap_or_default(),
                _ => "{\"data\": []}".to_string(),
            };
            ResponseTemplate::new(200).set_body_raw(body, "application/json")
        }
        ("GET", "/api/v1/keys") if st.huge_listing.is_some() => {
            let n = st.huge_listing.unwrap_or(0);
            let body = format!("{{\"data\": [], \"pad\": \"{}\"}}", "x".repeat(n));
            ResponseTemplate::new(200).set_body_raw(body, "application/json")
        }
        ("GET", "/api/v1/keys") => {
            let offset: usize = query("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            let with_disabled = query("include_disabled").as_deref() == Some("true");
            // As OpenRouter: without workspace_id, only the default workspace's keys.
            let workspace = query("workspace_id")
                .map(Value::String)
                .unwrap_or(Value::Null);
            let visible: Vec<&Value> = st
                .keys
                .iter()
                .map(|k| &k.data)
                .filter(|d| with_disabled || d["disabled"] == json!(false))
                .filter(|d| d.get("workspace_id").cloned().unwrap_or(Value::Null) == workspace)
                .collect();
            let size = if st.page_size == 0 { 100 } else { st.page_size };
            let page: Vec<Value> = visible
                .into_iter()
                .skip(offset)
                .take(size)
                .cloned()
                .collect();
            if offset == 0 && !st.deleted_after_first_page.is_empty() {
                let gone = std::mem::take(&mut st.deleted_after_first_page);
                st.keys
                    .retain(|k| !gone.iter().any(|h| k.data["hash"] == json!(h)));
            }
            ResponseTemplate::new(200).set_body_json(json!({ "data": page }))
        }
        ("POST", "/api/v1/keys") => {
            let body: Value = match serde_json::from_slice(&req.body) {
                Ok(b) => b,
                Err(_) => return error(400, "Invalid JSON"),
            };
            let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
                return error(400, "name is required");
            };
            for k in body.as_object().unwrap().keys() {
                if ![
                    "name",
                    "limit",
                    "limit_reset",
                    "include_byok_in_limit",
                    "expires_at",
                    "workspace_id",
                ]
                .contains(&k.as_str())
                {
                    return error(400, &format!("unknown field {k}"));
                }
            }
            let limit = body["limit"].as_f64();
            let (hash, secret) = st.add_key(name, limit, false, 0.0);
            let data = &mut st.keys[0].data;
            data["limit_reset"] = body["limit_reset"].clone();
            if body.get("expires_at").is_some() {
                data["expires_at"] = body["expires_at"].clone();
            }
            if let Some(ws) = body.get("workspace_id") {
                data["workspace_id"] = ws.clone();
            }
            let _ = hash;
            ResponseTemplate::new(201).set_body_json(json!({ "data": data.clone(), "key": secret }))
        }
        ("POST", "/api/v1/analytics/query") => analytics(st, req),
        (_, p) if p.starts_with("/api/v1/guardrails") => guardrails(st, method, p, req),
        ("GET", p) if p.starts_with("/api/v1/workspaces/") => {
            let id = &p["/api/v1/workspaces/".len()..];
            if id == WORKSPACE_ID || id == "cs101" {
                ResponseTemplate::new(200).set_body_json(
                    json!({"data": {"id": WORKSPACE_ID, "slug": "cs101", "name": "CS 101"}}),
                )
            } else {
                error(404, "Workspace not found")
            }
        }
        ("GET", "/api/v1/credits") => {
            if let Some(status) = st.credits_status {
                return error(status, "Only management keys can perform this operation");
            }
            let (total, used) = st.credits;
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"total_credits": total, "total_usage": used}}))
        }
        (_, p) if p.starts_with("/api/v1/keys/") => {
            let hash = &p["/api/v1/keys/".len()..];
            let Some(i) = st.keys.iter().position(|k| k.data["hash"] == json!(hash)) else {
                return error(404, "Key not found");
            };
            match method {
                "GET" => ResponseTemplate::new(200)
                    .set_body_json(json!({"data": st.keys[i].data.clone()})),
                "DELETE" => {
                    st.keys.remove(i);
                    ResponseTemplate::new(200).set_body_json(json!({"deleted": true}))
                }
                "PATCH" => {
                    let body: Value = serde_json::from_slice(&req.body).unwrap_or(json!({}));
                    let data = &mut st.keys[i].data;
                    for (k, v) in body.as_object().cloned().unwrap_or_default() {
                        if ![
                            "name",
                            "disabled",
                            "limit",
                            "limit_reset",
                            "include_byok_in_limit",
                        ]
                        .contains(&k.as_str())
                        {
                            return error(400, &format!("unknown field {k}"));
                        }
                        data[k.as_str()] = v;
                    }
                    data["updated_at"] = json!(chrono::Utc::now().to_rfc3339());
                    ResponseTemplate::new(200).set_body_json(json!({"data": data.clone()}))
                }
                _ => error(405, "Method not allowed"),
            }
        }
        _ => error(404, "Not found"),
    }
}

/// The guardrail fields OpenRouter takes on create and update.
const GUARDRAIL_FIELDS: [&str; 20] = [
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

/// OpenRouter stores models by canonical slug: the fake dates one of them.
fn canonical(model: &Value) -> Value {
    match model.as_str() {
        Some("openai/gpt-4o-mini") => json!("openai/gpt-4o-mini-2024-07-18"),
        _ => model.clone(),
    }
}

/// A 400 message when the body is one OpenRouter refuses.
fn set_guardrail_fields(g: &mut Value, body: &Value) -> Result<(), String> {
    let Some(fields) = body.as_object() else {
        return Err("body must be an object".into());
    };
    for (k, v) in fields {
        if !GUARDRAIL_FIELDS.contains(&k.as_str()) {
            return Err(format!("unknown field {k}"));
        }
        let v = match k.as_str() {
            "allowed_models" => match v.as_array() {
                Some(a) if a.is_empty() => return Err("allowed_models: at least one".into()),
                Some(a) => Value::Array(a.iter().map(canonical).collect()),
                None => v.clone(),
            },
            "content_filter_builtins" => Value::Array(
                v.as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut b| {
                        let label =
                            format!("[{}]", b["slug"].as_str().unwrap_or("").to_uppercase());
                        b["label"] = json!(label);
                        b
                    })
                    .collect(),
            ),
            _ => v.clone(),
        };
        g[k.as_str()] = v;
    }
    if !g["limit_usd"].is_null() && g["reset_interval"].is_null() {
        return Err("limit_usd needs a reset_interval".into());
    }
    Ok(())
}

fn guardrails(st: &mut State, method: &str, path: &str, req: &Request) -> ResponseTemplate {
    let query = |name: &str| {
        req.url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    };
    let page = |items: Vec<Value>| {
        let offset: usize = query("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
        let limit: usize = query("limit").and_then(|o| o.parse().ok()).unwrap_or(50);
        let total = items.len();
        let data: Vec<Value> = items
            .into_iter()
            .skip(offset)
            .take(limit.min(100))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"data": data, "total_count": total}))
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(json!({}));
    let rest: Vec<&str> = path["/api/v1/guardrails".len()..]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let assignment = |st: &State, hash: &str, gid: &str| {
        let name = st
            .keys
            .iter()
            .find(|k| k.data["hash"] == json!(hash))
            .map(|k| k.data["name"].clone())
            .unwrap_or(Value::Null);
        json!({"id": format!("as-{hash}"), "key_hash": hash, "guardrail_id": gid, "key_name": name,
               "key_label": "sk-or-v1-000...0000", "assigned_by": null, "created_at": "2026-12-01T00:00:00Z"})
    };
    match (method, rest.as_slice()) {
        ("GET", []) => {
            let ws = query("workspace_id")
                .map(Value::String)
                .unwrap_or(Value::Null);
            let list: Vec<Value> = st
                .guardrails
                .iter()
                .filter(|g| g["workspace_id"] == ws)
                .cloned()
                .collect();
            page(list)
        }
        ("POST", []) => {
            if body["name"].as_str().is_none_or(str::is_empty) {
                return error(400, "name is required");
            }
            st.seq += 1;
            let mut g = json!({
                "id": format!("00000000-0000-4000-8000-{:012x}", st.seq), "name": "",
                "description": null, "allowed_models": null, "allowed_providers": null,
                "ignored_models": null, "ignored_providers": null, "limit_usd": null,
                "reset_interval": null, "include_byok_in_budgets": false, "enforce_zdr": null,
                "content_filter_builtins": null, "content_filters": null,
                "created_at": chrono::Utc::now().to_rfc3339(), "updated_at": null, "workspace_id": null
            });
            if let Err(e) = set_guardrail_fields(&mut g, &body) {
                return error(400, &e);
            }
            st.guardrails.push(g.clone());
            ResponseTemplate::new(201).set_body_json(json!({ "data": g }))
        }
        ("GET", ["assignments", "keys"]) if st.no_global_assignments => error(404, "Not found"),
        ("GET", ["assignments", "keys"]) => {
            let list: Vec<Value> = st
                .assignments
                .iter()
                .map(|(h, g)| assignment(st, h, g))
                .collect();
            page(list)
        }
        (_, [id, tail @ ..]) => {
            let Some(i) = st.guardrails.iter().position(|g| g["id"] == json!(id)) else {
                return error(404, "Guardrail not found");
            };
            let id = id.to_string();
            let hashes: Vec<String> = body["key_hashes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h.as_str().map(String::from))
                .collect();
            match (method, tail) {
                ("GET", []) => {
                    ResponseTemplate::new(200).set_body_json(json!({"data": st.guardrails[i]}))
                }
                ("PATCH", []) => {
                    let mut g = st.guardrails[i].clone();
                    if let Err(e) = set_guardrail_fields(&mut g, &body) {
                        return error(400, &e);
                    }
                    g["updated_at"] = json!(chrono::Utc::now().to_rfc3339());
                    st.guardrails[i] = g.clone();
                    ResponseTemplate::new(200).set_body_json(json!({ "data": g }))
                }
                ("DELETE", []) => {
                    st.guardrails.remove(i);
                    st.assignments.retain(|(_, g)| *g != id);
                    ResponseTemplate::new(200).set_body_json(json!({"deleted": true}))
                }
                ("GET", ["assignments", "keys"]) => {
                    let list: Vec<Value> = st
                        .assignments
                        .iter()
                        .filter(|(_, g)| *g == id)
                        .map(|(h, g)| assignment(st, h, g))
                        .collect();
                    page(list)
                }
                ("POST", ["assignments", "keys"]) => {
                    if hashes.is_empty() {
                        return error(400, "key_hashes: at least one");
                    }
                    for h in &hashes {
                        st.assignments.retain(|(k, _)| k != h);
                        st.assignments.push((h.clone(), id.clone()));
                    }
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"assigned_count": hashes.len()}))
                }
                ("POST", ["assignments", "keys", "remove"]) => {
                    let before = st.assignments.len();
                    st.assignments
                        .retain(|(k, g)| !(*g == id && hashes.contains(k)));
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"unassigned_count": before - st.assignments.len()}))
                }
                _ => error(405, "Method not allowed"),
            }
        }
        _ => error(405, "Method not allowed"),
    }
}

/// `POST /analytics/query` over the recorded spend, grouped by the dimensions asked, rows
/// naming keys by name (as OpenRouter's do) and request counts as strings.
fn analytics(st: &mut State, req: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(json!({}));
    let mut wanted: Option<Vec<String>> = None;
    for f in body["filters"].as_array().into_iter().flatten() {
        if f["field"] == json!("api_key_id") {
            let values: Vec<String> = match &f["value"] {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => vec![],
            };
            wanted = Some(values);
        }
    }
    let dims: Vec<String> = body["dimensions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(String::from))
        .collect();
    let mut groups: Vec<(Vec<Value>, f64, u64)> = Vec::new();
    for (hash, model, usd, n) in &st.spend {
        if wanted.as_ref().is_some_and(|w| !w.contains(hash)) {
            continue;
        }
        let name = st
            .keys
            .iter()
            .find(|k| k.data["hash"] == json!(hash))
            .map(|k| k.data["name"].clone())
            .unwrap_or(Value::Null);
        let key: Vec<Value> = dims
            .iter()
            .map(|d| match d.as_str() {
                "api_key_id" => name.clone(),
                "model" => json!(model),
                _ => Value::Null,
            })
            .collect();
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some(g) => {
                g.1 += usd;
                g.2 += n;
            }
            None => groups.push((key, *usd, *n)),
        }
    }
    let rows: Vec<Value> = groups
        .into_iter()
        .map(|(key, usd, n)| {
            let mut row = serde_json::Map::new();
            for (d, v) in dims.iter().zip(key) {
                row.insert(d.clone(), v);
            }
            row.insert("total_usage".into(), json!(usd));
            row.insert("request_count".into(), json!(n.to_string()));
            Value::Object(row)
        })
        .collect();
    let n = rows.len();
    ResponseTemplate::new(200).set_body_json(json!({"data": {"data": rows, "metadata":
        {"query_time_ms": 1, "row_count": n, "truncated": false}, "cachedAt": 1764547200000.0_f64}}))
}

pub struct Fake {
    server: Option<MockServer>,
    pub state: Arc<Mutex<State>>,
}

/// wiremock's `Drop` blocks on a tokio lock; inside a test task that has used up its tokio co-op
/// budget that lock never comes free and the test hangs. Dropping it on a plain thread (no
/// runtime, no budget) always finishes.
impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = std::thread::spawn(move || drop(server)).join();
        }
    }
}

impl Fake {
    pub async fn start() -> Fake {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            credits: (1000.0, 0.0),
            ..Default::default()
        }));
        Mock::given(any())
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        Fake {
            server: Some(server),
            state,
        }
    }

    fn server(&self) -> &MockServer {
        self.server
            .as_ref()
            .expect("the fake is running until dropped")
    }

    pub fn url(&self) -> String {
        format!("{}/api/v1", self.server().uri())
    }

    pub fn add_key(&self, name: &str, limit: Option<f64>, disabled: bool, usage: f64) -> String {
        self.state
            .lock()
            .unwrap()
            .add_key(name, limit, disabled, usage)
            .0
    }

    /// Put keys on the account as given (e.g. a fixture's openrouter-state.json): each object's
    /// `secret` is kept aside as the key's secret, `seq` dropped, everything else is the key as
    /// the API shows it. The account lists them newest first, as OpenRouter does.
    pub fn load_state(&self, keys: &[Value]) {
        let mut loaded: Vec<FakeKey> = keys
            .iter()
            .map(|k| {
                let mut data = k.clone();
                let obj = data.as_object_mut().expect("a key is a JSON object");
                let secret = obj
                    .remove("secret")
                    .and_then(|s| s.as_str().map(String::from))
                    .expect("every key of the state has its secret");
                obj.remove("seq");
                if !obj.contains_key("limit_remaining") {
                    let remaining = match (
                        obj.get("limit").and_then(Value::as_f64),
                        obj.get("usage").and_then(Value::as_f64),
                    ) {
                        (Some(l), u) => json!((l - u.unwrap_or(0.0)).max(0.0)),
                        (None, _) => Value::Null,
                    };
                    obj.insert("limit_remaining".into(), remaining);
                }
                FakeKey { data, secret }
            })
            .collect();
        loaded.sort_by(|a, b| {
            b.data["created_at"]
                .as_str()
                .cmp(&a.data["created_at"].as_str())
        });
        let mut st = self.state.lock().unwrap();
        loaded.append(&mut st.keys);
        st.keys = loaded;
    }

    /// Put a key on the account exactly as given (a hostile or malformed one).
    pub fn add_raw(&self, data: Value) {
        self.state.lock().unwrap().keys.insert(
            0,
            FakeKey {
                data,
                secret: String::new(),
            },
        );
    }

    pub fn fault(&self, method: &str, fault: Fault) {
        let mut st = self.state.lock().unwrap();
        match st.faults.iter_mut().find(|(m, _)| m == method) {
            Some((_, q)) => q.push_back(fault),
            None => st
                .faults
                .push((method.to_string(), VecDeque::from([fault]))),
        }
    }

    pub fn keys(&self) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .keys
            .iter()
            .map(|k| k.data.clone())
            .collect()
    }

    pub fn secret_of(&self, hash: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .keys
            .iter()
            .find(|k| k.data["hash"] == json!(hash))
            .map(|k| k.secret.clone())
    }

    pub fn set(&self, hash: &str, field: &str, value: Value) {
        let mut st = self.state.lock().unwrap();
        if let Some(k) = st.keys.iter_mut().find(|k| k.data["hash"] == json!(hash)) {
            k.data[field] = value;
            // As OpenRouter does: what is left of the limit follows usage and limit.
            if field == "usage" || field == "limit" {
                let remaining = match (k.data["limit"].as_f64(), k.data["usage"].as_f64()) {
                    (Some(l), u) => json!((l - u.unwrap_or(0.0)).max(0.0)),
                    (None, _) => Value::Null,
                };
                k.data["limit_remaining"] = remaining;
            }
        }
    }

    /// Take a key off the account (a delete in OpenRouter's dashboard), keeping it to put back.
    pub fn take(&self, hash: &str) -> Option<FakeKey> {
        let mut st = self.state.lock().unwrap();
        let i = st.keys.iter().position(|k| k.data["hash"] == json!(hash))?;
        Some(st.keys.remove(i))
    }

    /// Put a key (back) on the account: a create that lands late.
    pub fn put(&self, key: FakeKey) {
        self.state.lock().unwrap().keys.insert(0, key);
    }

    pub fn hash_of(&self, name: &str) -> String {
        self.keys_named(name)
            .first()
            .and_then(|k| k["hash"].as_str().map(String::from))
            .unwrap_or_else(|| panic!("no key named {name}"))
    }

    pub fn keys_named(&self, name: &str) -> Vec<Value> {
        self.keys()
            .into_iter()
            .filter(|k| k["name"] == json!(name))
            .collect()
    }

    /// (method, path?query, body) of every request received so far.
    pub async fn requests(&self) -> Vec<(String, String, String)> {
        self.server()
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let pq = match r.url.query() {
                    Some(q) => format!("{}?{q}", r.url.path()),
                    None => r.url.path().to_string(),
                };
                (
                    r.method.to_string(),
                    pq,
                    String::from_utf8_lossy(&r.body).to_string(),
                )
            })
            .collect()
    }

    /// The guardrails on the account.
    pub fn guardrails(&self) -> Vec<Value> {
        self.state.lock().unwrap().guardrails.clone()
    }

    /// The id of the guardrail this key holds.
    pub fn guardrail_of(&self, hash: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .assignments
            .iter()
            .find(|(h, _)| h == hash)
            .map(|(_, g)| g.clone())
    }

    /// Put a guardrail on the account (one the instructor made), returning its id.
    pub fn add_guardrail(&self, name: &str) -> String {
        let mut st = self.state.lock().unwrap();
        st.seq += 1;
        let id = format!("11111111-0000-4000-8000-{:012x}", st.seq);
        st.guardrails
            .push(json!({"id": id, "name": name, "workspace_id": null,
            "include_byok_in_budgets": false, "created_at": "2026-11-01T00:00:00Z"}));
        id
    }

    pub fn assign(&self, hash: &str, guardrail: &str) {
        let mut st = self.state.lock().unwrap();
        st.assignments.retain(|(h, _)| h != hash);
        st.assignments
            .push((hash.to_string(), guardrail.to_string()));
    }

    /// A student spending on a model: what analytics will report.
    pub fn spend(&self, hash: &str, model: &str, dollars: f64, requests: u64) {
        self.state.lock().unwrap().spend.push((
            hash.to_string(),
            model.to_string(),
            dollars,
            requests,
        ));
    }

    pub async fn count(&self, method: &str) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|r| r.0 == method)
            .count()
    }
}

/// A class folder with a roster.
pub struct Class {
    pub dir: tempfile::TempDir,
}

impl Class {
    pub fn new(roster: &str) -> Class {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("roster.csv"), roster).unwrap();
        Class { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    /// Files whose names start with `prefix`, sorted.
    pub fn files(&self, prefix: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        v.sort();
        v
    }

    /// The binary, with a clean environment, in this folder, talking to `fake`.
    pub fn cmd(&self, fake: &Fake) -> assert_cmd::Command {
        let mut cmd = bare(self.dir.path());
        cmd.env("OPENROUTER_PROVISIONING_KEY", SENTINEL)
            .env("OPENROUTER_BASE_URL", fake.url());
        cmd
    }

    /// The same command as `cmd`, started in the background (for runs that overlap or get killed).
    pub fn spawn(&self, fake: &Fake, args: &[&str]) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("classkeys"))
            .env_clear()
            .current_dir(self.dir.path())
            .env("OPENROUTER_PROVISIONING_KEY", SENTINEL)
            .env("OPENROUTER_BASE_URL", fake.url())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `export-keys --format json` (no management key needed), as rows.
    pub fn exported(&self) -> Vec<Value> {
        let out = bare(self.dir.path())
            .args(["export-keys", "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "export-keys: {}", stderr(&out));
        json(&out)
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("export-keys gave no list: {}", stdout(&out)))
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("keys.db")).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// The binary with nothing from the caller's environment.
pub fn bare(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("classkeys").unwrap();
    cmd.env_clear()
        .current_dir(dir)
        .env("CLASSKEYS_RETRY_WINDOW", "10")
        .env("TZ", "UTC");
    cmd
}

/// A roster of `n` students: s0001@uni.edu, Student 0001 …
pub fn roster(n: usize) -> String {
    let mut s = String::from("email,name\n");
    for i in 1..=n {
        s.push_str(&format!("s{i:04}@uni.edu,Student {i:04}\n"));
    }
    s
}

/// The output of a run that must have succeeded; otherwise the test fails showing both streams.
pub fn assert_ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    out
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", stdout(out)))
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Parse a CSV file into header-keyed rows.
pub fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The binary as an ordinary user would run it: root writes through any file mode, so as root
/// the class folder is handed to `nobody` and the command runs as that user.
pub fn as_user(class: &Class, fake: &Fake, args: &[&str]) -> std::process::Output {
    let bin = assert_cmd::cargo::cargo_bin("classkeys");
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        // The build folder may sit where `nobody` cannot reach it (under /root): run a copy.
        let bin = user_binary(&bin);
        let status = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(class.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    cmd.env_clear()
        .current_dir(class.dir.path())
        .env("OPENROUTER_PROVISIONING_KEY", SENTINEL)
        .env("OPENROUTER_BASE_URL", fake.url())
        .env("CLASSKEYS_RETRY_WINDOW", "5")
        .args(args)
        .output()
        .unwrap()
}

/// A copy of the binary that any user can run, made once per test process.
fn user_binary(bin: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("classkeys-as-user-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("classkeys");
        std::fs::copy(bin, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    })
    .clone()
}
