//! The OpenRouter API client: one request funnel (auth, timeout, pacing, retry,
//! error mapping) and the calls classkeys makes through it.

mod pace;
mod types;

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::blocking::Response;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use pace::Pace;
pub use types::{Analytics, Created, Credits, Key, NewKey, Patch, parse_time};
use types::{CreditsData, ErrorBody, GuardrailData, KeyData, KeyList, Page};

use crate::domain::{Assignment, Guardrail};

pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";
/// `GET /keys` returns at most this many keys a page.
pub const PAGE_SIZE: usize = 100;
/// More pages than any account holds (100,000 keys at 100 a page).
pub const MAX_PAGES: usize = 1000;
/// Longer than any real listing takes.
const MAX_LISTING: Duration = Duration::from_secs(600);

/// The management key. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct ManagementKey(String);

impl ManagementKey {
    pub fn new(key: String) -> Self {
        ManagementKey(key)
    }
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManagementKey(redacted)")
    }
}

/// How the funnel retries what can safely be retried.
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeout: Duration,
    /// A request gives up after this long, counting every retry.
    pub retry_window: Duration,
    pub jobs: usize,
}

/// An API failure, typed so callers can decide (auth, not found, maybe-created).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what}: OpenRouter answered {status}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what}: no clear answer from OpenRouter ({detail}); the key may or may not exist")]
    Ambiguous { what: String, detail: String },
    #[error("{what}: gave up after {tries} tries in {secs} s: {detail}")]
    GaveUp {
        what: String,
        tries: u32,
        secs: u64,
        detail: String,
    },
    #[error("{what}: OpenRouter's answer could not be read: {detail}")]
    Decode { what: String, detail: String },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// 401 or 403: the management key is wrong; nothing else will work either.
    pub fn is_auth(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }
    /// A create that may have made a key whose secret we never saw.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, ApiError::Ambiguous { .. })
    }
}

pub struct Client {
    http: reqwest::blocking::Client,
    base: Url,
    settings: Settings,
    pace: Pace,
    /// Whether the instructor was told that requests are being retried.
    told: std::sync::atomic::AtomicBool,
    /// The class's workspace: every listing and create names it (a plain listing shows only
    /// the default workspace).
    workspace: Option<String>,
}

/// What one try of a request came to.
enum Try<T> {
    Done(T),
    /// Safe to try again after the wait (or a backoff when `None`).
    Again {
        wait: Option<Duration>,
        detail: String,
    },
    Fail(ApiError),
}

impl Client {
    /// Checks the base URL before anything is sent: the management key goes only over
    /// https, or over http to a loopback address (local testing, the sandbox).
    pub fn new(base_url: &str, key: ManagementKey, settings: Settings) -> anyhow::Result<Client> {
        let mut base = Url::parse(base_url.trim()).map_err(|e| {
            crate::error::input(format!(
                "--base-url {base_url:?} is not a URL ({e}); the default is {DEFAULT_BASE_URL}"
            ))
        })?;
        let loopback = is_loopback(&base);
        match base.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(crate::error::input(format!(
                    "refusing to send the management key over plain http to {}: use https \
                     (http is allowed only to a loopback address such as 127.0.0.1)",
                    base.host_str().unwrap_or("?")
                )));
            }
            other => {
                return Err(crate::error::input(format!(
                    "--base-url must be an https URL, not {other}: (the default is {DEFAULT_BASE_URL})"
                )));
            }
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.0)).map_err(|_| {
            crate::error::input(
                "the management key contains characters that cannot be sent in a header",
            )
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let mut builder = reqwest::blocking::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("classkeys/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(16)
            .tcp_nodelay(true)
            // The API never redirects; following one could carry the key somewhere else.
            .redirect(reqwest::redirect::Policy::none());
        if loopback {
            // A proxy would carry the key in clear text: loopback traffic never uses one.
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        let pace = Pace::new(settings.jobs);
        Ok(Client {
            http,
            base,
            settings,
            pace,
            told: Default::default(),
            workspace: None,
        })
    }

    /// Work in this workspace (its id) from now on.
    pub fn in_workspace(mut self, id: Option<String>) -> Client {
        self.workspace = id;
        self
    }

    /// A workspace by id or slug: its id (`GET /workspaces/{id}`).
    pub fn workspace_id(&self, id_or_slug: &str) -> Result<String, ApiError> {
        let what = format!("reading workspace {id_or_slug:?}");
        let w: serde_json::Value = self.call(
            Method::GET,
            &["workspaces", id_or_slug],
            &[],
            None::<&()>,
            false,
            &what,
        )?;
        w["data"]["id"]
            .as_str()
            .filter(|id| plain_hash(id))
            .map(String::from)
            .ok_or_else(|| ApiError::Decode {
                what,
                detail: "the answer names no workspace id".into(),
            })
    }

    pub fn jobs(&self) -> usize {
        self.settings.jobs
    }

    /// Every key of the account, disabled ones too, all pages, de-duplicated by hash. Pages are
    /// read until one comes back empty (a short page is not the last: a server may page by 50),
    /// and never more than any account holds.
    pub fn list_keys(&self) -> Result<Vec<Key>, ApiError> {
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0;
        let started = Instant::now();
        for _ in 0..MAX_PAGES {
            if started.elapsed() > MAX_LISTING {
                return Err(ApiError::GaveUp {
                    what: "listing keys".into(),
                    tries: 1,
                    secs: started.elapsed().as_secs(),
                    detail: format!(
                        "the listing took longer than {} minutes ({} keys so far); nothing was changed",
                        MAX_LISTING.as_secs() / 60,
                        keys.len()
                    ),
                });
            }
            let what = format!("listing keys (offset {offset})");
            let mut query = vec![
                ("include_disabled", "true".to_string()),
                ("offset", offset.to_string()),
            ];
            if let Some(ws) = &self.workspace {
                query.push(("workspace_id", ws.clone()));
            }
            let page: KeyList =
                self.call(Method::GET, &["keys"], &query, None::<&()>, false, &what)?;
            let n = page.data.len();
            let mut new = 0;
            for (i, value) in page.data.into_iter().enumerate() {
                let key = match serde_json::from_value::<Key>(value) {
                    Ok(k) if plain_hash(&k.hash) => k,
                    Ok(k) => {
                        eprintln!(
                            "warning: the account lists a key whose hash {} is not a plain token; it is left alone",
                            crate::ui::shown(&crate::files::excerpt(&k.hash))
                        );
                        continue;
                    }
                    Err(e) => {
                        eprintln!(
                            "warning: the account lists a key classkeys cannot read (entry {} of the page at offset {offset}: {}); it is left alone",
                            i + 1,
                            crate::ui::shown(&e.to_string())
                        );
                        continue;
                    }
                };
                if seen.insert(key.hash.clone()) {
                    keys.push(key);
                    new += 1;
                }
            }
            // An empty page is the end; a page of nothing new means the server ignores offset.
            if n == 0 || new == 0 {
                return Ok(keys);
            }
            offset += n;
        }
        Err(ApiError::Decode {
            what: "listing keys".into(),
            detail: format!(
                "the account answered more than {MAX_PAGES} pages ({} keys) and kept going; no account holds that many: \
                 check --base-url",
                keys.len()
            ),
        })
    }

    pub fn get_key(&self, hash: &str) -> Result<Key, ApiError> {
        let what = format!("reading key {}", short(hash));
        let k: KeyData = self.call(
            Method::GET,
            &key_path(hash, &what)?,
            &[],
            None::<&()>,
            false,
            &what,
        )?;
        Ok(k.data)
    }

    /// Never retried blindly: a timeout, dropped connection or 5xx is `ApiError::Ambiguous`.
    pub fn create_key(&self, new: &NewKey) -> Result<Created, ApiError> {
        let what = format!("creating key {:?}", new.name);
        let mut body = serde_json::to_value(new).map_err(|e| ApiError::Decode {
            what: what.clone(),
            detail: e.to_string(),
        })?;
        if let (Some(ws), Some(obj)) = (&self.workspace, body.as_object_mut()) {
            obj.insert("workspace_id".into(), serde_json::Value::String(ws.clone()));
        }
        self.call(Method::POST, &["keys"], &[], Some(&body), true, &what)
    }

    pub fn update_key(&self, hash: &str, patch: &Patch) -> Result<Key, ApiError> {
        let what = format!("updating key {}", short(hash));
        let k: KeyData = self.call(
            Method::PATCH,
            &key_path(hash, &what)?,
            &[],
            Some(patch),
            false,
            &what,
        )?;
        Ok(k.data)
    }

    /// Deleting a key that is already gone (404) counts as done.
    pub fn delete_key(&self, hash: &str) -> Result<(), ApiError> {
        let what = format!("deleting key {}", short(hash));
        self.delete(&key_path(hash, &what)?, &what)
    }

    /// `DELETE`, where a 404 (gone already) is done.
    fn delete(&self, path: &[&str], what: &str) -> Result<(), ApiError> {
        match self.call::<serde_json::Value>(Method::DELETE, path, &[], None::<&()>, false, what) {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn credits(&self) -> Result<Credits, ApiError> {
        let c: CreditsData = self.call(
            Method::GET,
            &["credits"],
            &[],
            None::<&()>,
            false,
            "reading credits",
        )?;
        Ok(c.data)
    }

    // ---- Guardrails ----

    /// Every guardrail of the class's workspace (the default one without a workspace).
    pub fn list_guardrails(&self) -> Result<Vec<Guardrail>, ApiError> {
        let mut query = Vec::new();
        if let Some(ws) = &self.workspace {
            query.push(("workspace_id", ws.clone()));
        }
        self.paged(
            &["guardrails"],
            &query,
            "listing guardrails",
            |g: &Guardrail| g.id.clone(),
        )
    }

    pub fn get_guardrail(&self, id: &str) -> Result<Guardrail, ApiError> {
        let what = format!("reading guardrail {}", short(id));
        let g: GuardrailData = self.call(
            Method::GET,
            &guardrail_path(id, &what)?,
            &[],
            None::<&()>,
            false,
            &what,
        )?;
        Ok(g.data)
    }

    /// Never retried blindly, as a key's create: a second try could make a second guardrail.
    pub fn create_guardrail(&self, body: &serde_json::Value) -> Result<Guardrail, ApiError> {
        let what = format!("creating guardrail {}", body["name"]);
        let mut body = body.clone();
        if let (Some(ws), Some(obj)) = (&self.workspace, body.as_object_mut()) {
            obj.insert("workspace_id".into(), serde_json::Value::String(ws.clone()));
        }
        let g: GuardrailData =
            self.call(Method::POST, &["guardrails"], &[], Some(&body), true, &what)?;
        Ok(g.data)
    }

    pub fn update_guardrail(
        &self,
        id: &str,
        body: &serde_json::Value,
    ) -> Result<Guardrail, ApiError> {
        let what = format!("updating guardrail {}", short(id));
        let g: GuardrailData = self.call(
            Method::PATCH,
            &guardrail_path(id, &what)?,
            &[],
            Some(body),
            false,
            &what,
        )?;
        Ok(g.data)
    }

    /// Deleting a guardrail that is already gone (404) counts as done.
    pub fn delete_guardrail(&self, id: &str) -> Result<(), ApiError> {
        let what = format!("deleting guardrail {}", short(id));
        self.delete(&guardrail_path(id, &what)?, &what)
    }

    /// Give keys this guardrail (a key holds one: it replaces what the key held), or take it
    /// off them (`assign` false).
    pub fn assign_guardrail(
        &self,
        id: &str,
        hashes: &[String],
        assign: bool,
    ) -> Result<(), ApiError> {
        let what = format!(
            "{} guardrail {} {} {} key(s)",
            if assign { "assigning" } else { "unassigning" },
            short(id),
            if assign { "to" } else { "from" },
            hashes.len()
        );
        let [g, id] = guardrail_path(id, &what)?;
        let path: Vec<&str> = if assign {
            vec![g, id, "assignments", "keys"]
        } else {
            vec![g, id, "assignments", "keys", "remove"]
        };
        let body = serde_json::json!({ "key_hashes": hashes });
        self.call::<serde_json::Value>(Method::POST, &path, &[], Some(&body), false, &what)?;
        Ok(())
    }

    /// Which guardrail each key of the account holds (keys that hold none are not listed).
    pub fn key_assignments(&self) -> Result<Vec<Assignment>, ApiError> {
        self.paged(
            &["guardrails", "assignments", "keys"],
            &[],
            "listing guardrail assignments",
            |a: &Assignment| a.key_hash.clone(),
        )
    }

    /// The keys that hold this guardrail.
    pub fn guardrail_keys(&self, id: &str) -> Result<Vec<Assignment>, ApiError> {
        let what = format!("listing the keys of guardrail {}", short(id));
        let [g, id] = guardrail_path(id, &what)?;
        self.paged(
            &[g, id, "assignments", "keys"],
            &[],
            &what,
            |a: &Assignment| a.key_hash.clone(),
        )
    }

    /// `POST /analytics/query`.
    pub fn analytics(&self, query: &serde_json::Value) -> Result<Analytics, ApiError> {
        let a: types::AnalyticsData = self.call(
            Method::POST,
            &["analytics", "query"],
            &[],
            Some(query),
            false,
            "querying analytics",
        )?;
        Ok(a.data)
    }

    /// A listing paged by `offset` and `limit` (100 a page) until a page is empty, brings
    /// nothing new, or the `total_count` is reached.
    fn paged<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
        what: &str,
        id: impl Fn(&T) -> String,
    ) -> Result<Vec<T>, ApiError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0;
        for _ in 0..MAX_PAGES {
            let mut q = query.to_vec();
            q.push(("offset", offset.to_string()));
            q.push(("limit", PAGE_SIZE.to_string()));
            let page: Page<T> = self.call(
                Method::GET,
                path,
                &q,
                None::<&()>,
                false,
                &format!("{what} (offset {offset})"),
            )?;
            let n = page.data.len();
            let mut new = 0;
            for item in page.data {
                if seen.insert(id(&item)) {
                    out.push(item);
                    new += 1;
                }
            }
            if n == 0 || new == 0 || page.total_count.is_some_and(|t| out.len() as u64 >= t) {
                return Ok(out);
            }
            offset += n;
        }
        Err(ApiError::Decode {
            what: what.into(),
            detail: format!("the account answered more than {MAX_PAGES} pages and kept going"),
        })
    }

    /// The funnel every request goes through.
    ///
    /// Also notes that this process has sent a request: a file error before the first one is
    /// bad input (exit 2), after it a failure (exit 1).
    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
        create: bool,
        what: &str,
    ) -> Result<T, ApiError> {
        // Each segment percent-encoded: nothing from the account can change which path is sent.
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| ApiError::Decode {
                what: what.into(),
                detail: "the base URL cannot take a path".into(),
            })?
            .pop_if_empty()
            .extend(path);
        let started = Instant::now();
        let mut tries = 0u32;
        SENT.store(true, std::sync::atomic::Ordering::SeqCst);
        loop {
            tries += 1;
            let outcome = {
                let _slot = self.pace.acquire();
                let mut req = self.http.request(method.clone(), url.clone());
                if !query.is_empty() {
                    req = req.query(query);
                }
                if let Some(body) = body {
                    req = req.json(body);
                }
                match req.send() {
                    Ok(resp) => self.answer(resp, create, what),
                    Err(e) if create && !e.is_connect() => Try::Fail(ApiError::Ambiguous {
                        what: what.into(),
                        detail: describe(&e),
                    }),
                    Err(e) => Try::Again {
                        wait: None,
                        detail: describe(&e),
                    },
                }
            };
            match outcome {
                Try::Done(v) => {
                    self.pace.succeeded();
                    return Ok(v);
                }
                Try::Fail(e) => return Err(e),
                Try::Again { wait, detail } => {
                    let pause = wait.unwrap_or_else(|| backoff(tries));
                    if started.elapsed() + pause > self.settings.retry_window {
                        return Err(ApiError::GaveUp {
                            what: what.into(),
                            tries,
                            secs: started.elapsed().as_secs(),
                            detail,
                        });
                    }
                    if wait.is_some() {
                        self.pace.throttled(pause);
                    }
                    if !self.told.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        eprintln!(
                            "classkeys: {}: {}; retrying (for up to {} s)…",
                            crate::ui::shown(what),
                            crate::ui::shown(&detail),
                            self.settings.retry_window.as_secs()
                        );
                    }
                    std::thread::sleep(pause);
                }
            }
        }
    }

    fn answer<T: DeserializeOwned>(&self, resp: Response, create: bool, what: &str) -> Try<T> {
        let status = resp.status();
        if status.is_success() {
            let text = match read_limited(resp, MAX_BODY) {
                Ok(t) => t,
                Err(e) if create => {
                    return Try::Fail(ApiError::Ambiguous {
                        what: what.into(),
                        detail: e,
                    });
                }
                Err(e) if e.starts_with("the answer is") => {
                    return Try::Fail(ApiError::Decode {
                        what: what.into(),
                        detail: e,
                    });
                }
                Err(e) => {
                    return Try::Again {
                        wait: None,
                        detail: e,
                    };
                }
            };
            // A body that is not quite JSON (a bare NaN, a lone surrogate in a name) is read
            // leniently, so that one odd key is left alone instead of failing the whole page.
            let parsed = serde_json::from_str(&text)
                .or_else(|e| serde_json::from_str(&lenient(&text)).map_err(|_| e));
            return match parsed {
                Ok(v) => Try::Done(v),
                Err(e) if create => Try::Fail(ApiError::Ambiguous {
                    what: what.into(),
                    detail: format!("unreadable answer: {e}"),
                }),
                Err(e) => Try::Fail(ApiError::Decode {
                    what: what.into(),
                    detail: e.to_string(),
                }),
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = rate_limit_wait(resp.headers())
                .unwrap_or_else(|| backoff(1).max(Duration::from_secs(1)));
            return Try::Again {
                wait: Some(wait),
                detail: "rate limited (429)".into(),
            };
        }
        let transient = matches!(status.as_u16(), 500 | 502 | 503 | 504);
        let message = error_message(resp);
        if transient && create {
            // A gateway can answer 5xx after the key was made.
            return Try::Fail(ApiError::Ambiguous {
                what: what.into(),
                detail: format!("{status}: {message}"),
            });
        }
        if transient {
            return Try::Again {
                wait: None,
                detail: format!("{status}: {message}"),
            };
        }
        Try::Fail(ApiError::Status {
            what: what.into(),
            status: status.as_u16(),
            message,
        })
    }
}

/// The API's `{"error": {"message": …}}`, or the start of whatever came instead.
fn error_message(resp: Response) -> String {
    let status = resp.status();
    let text = read_limited(resp, MAX_ERROR_BODY).unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) if !body.error.message.is_empty() => body.error.message,
        _ if text.trim().is_empty() => status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string(),
        _ => text.chars().take(200).collect(),
    };
    // Gateways echo requests back: the management key (or any key) never leaves in a message.
    let message: String = crate::ui::redact(&message).chars().take(500).collect();
    message
}

/// An error body is read up to this size (a real one is a few hundred bytes).
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// An answer is read up to this size: a page of 100 keys is about 60 KB.
pub const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Read a body as text, refusing one larger than `max` bytes.
fn read_limited(resp: Response, max: u64) -> Result<String, String> {
    use std::io::Read;
    let mut buf = Vec::new();
    resp.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > max {
        return Err(format!(
            "the answer is larger than {} MB",
            max / (1024 * 1024)
        ));
    }
    String::from_utf8(buf).map_err(|_| "the answer is not UTF-8 text".to_string())
}

/// JSON with what some servers send instead of it made readable: `NaN`, `Infinity` and
/// `-Infinity` outside strings become `null`, and lone UTF-16 surrogate escapes inside strings
/// become U+FFFD.
fn lenient(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_str = false;
    let hex = |at: usize| -> Option<u16> {
        text.get(at..at + 4)
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' && b.get(i + 1) == Some(&b'u') {
                if let Some(u) = hex(i + 2) {
                    let high = (0xD800..0xDC00).contains(&u);
                    let low = (0xDC00..0xE000).contains(&u);
                    let paired = high
                        && b.get(i + 6) == Some(&b'\\')
                        && b.get(i + 7) == Some(&b'u')
                        && hex(i + 8).is_some_and(|l| (0xDC00..0xE000).contains(&l));
                    if (high && !paired) || low {
                        out.push_str("\\ufffd");
                        i += 6;
                        continue;
                    }
                    if paired {
                        out.push_str(&text[i..i + 12]);
                        i += 12;
                        continue;
                    }
                }
                out.push_str(&text[i..i + 2]);
                i += 2;
                continue;
            }
            if c == b'\\' {
                let end = (i + 2).min(b.len());
                out.push_str(text.get(i..end).unwrap_or(""));
                i = end;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else {
            let rest = &text[i..];
            if let Some(word) = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|w| rest.starts_with(w))
            {
                out.push_str("null");
                i += word.len();
                continue;
            }
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// `Retry-After` (seconds) first, then `X-RateLimit-Reset` (epoch ms or s, or seconds from now).
fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    let num =
        |name| -> Option<f64> { headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok() };
    if let Some(secs) = num(RETRY_AFTER.as_str()).filter(|s| s.is_finite() && *s >= 0.0) {
        return Some(Duration::from_secs_f64(secs.min(3600.0)));
    }
    let reset = num("x-ratelimit-reset").filter(|s| s.is_finite() && *s >= 0.0)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let secs = if reset > 1e12 {
        reset / 1000.0 - now
    } else if reset > 1e9 {
        reset - now
    } else {
        reset
    };
    Some(Duration::from_secs_f64(secs.clamp(0.0, 3600.0)))
}

/// Exponential backoff with jitter: 0.25 s, 0.5 s, 1 s … at most 8 s, each scaled by 0.5..1.
fn backoff(tries: u32) -> Duration {
    let base = 0.25 * 2f64.powi(tries.saturating_sub(1).min(5) as i32);
    Duration::from_secs_f64(base.min(8.0) * (0.5 + fastrand::f64() * 0.5))
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the answer"
    } else if e.is_request() {
        "connection dropped"
    } else {
        "network error"
    };
    // reqwest's message names the URL, never the headers.
    let mut detail = kind.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        detail = format!("{detail}: {s}");
        src = s.source();
    }
    crate::ui::redact(&detail).into_owned()
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Whether a key's hash is a plain token (the API's are 64 hex digits): anything else is never
/// put into a request.
static SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process has sent any request to the API yet.
pub fn any_request_sent() -> bool {
    SENT.load(std::sync::atomic::Ordering::SeqCst)
}

pub fn plain_hash(hash: &str) -> bool {
    !hash.is_empty()
        && hash.len() <= 128
        && hash
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn key_path<'a>(hash: &'a str, what: &str) -> Result<[&'a str; 2], ApiError> {
    if !plain_hash(hash) {
        return Err(ApiError::Decode {
            what: what.into(),
            detail: format!(
                "the key's hash {} is not a plain token; nothing was sent for it",
                crate::ui::shown(&crate::files::excerpt(hash))
            ),
        });
    }
    Ok(["keys", hash])
}

fn guardrail_path<'a>(id: &'a str, what: &str) -> Result<[&'a str; 2], ApiError> {
    if !plain_hash(id) {
        return Err(ApiError::Decode {
            what: what.into(),
            detail: format!(
                "the guardrail id {} is not a plain token; nothing was sent for it",
                crate::ui::shown(&crate::files::excerpt(id))
            ),
        });
    }
    Ok(["guardrails", id])
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            timeout: Duration::from_secs(5),
            retry_window: Duration::from_secs(5),
            jobs: 2,
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let key = || ManagementKey::new("sk-or-v1-sentinel".into());
        assert!(Client::new("http://127.0.0.1:9/api/v1", key(), settings()).is_ok());
        assert!(Client::new("http://localhost:9/api/v1", key(), settings()).is_ok());
        assert!(Client::new("http://[::1]:9/api/v1", key(), settings()).is_ok());
        assert!(Client::new("https://openrouter.ai/api/v1", key(), settings()).is_ok());
        let err = Client::new("http://example.com/api/v1", key(), settings())
            .err()
            .unwrap();
        assert!(err.to_string().contains("plain http"), "{err}");
        assert!(!format!("{err:?}").contains("sentinel"));
        assert!(Client::new("ftp://x", key(), settings()).is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(
            !format!("{:?}", ManagementKey::new("sk-or-v1-sentinel".into())).contains("sentinel")
        );
    }

    #[test]
    fn retry_after_wins_then_reset_header() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", HeaderValue::from_static("3"));
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(1)));
        let mut h = HeaderMap::new();
        let in_2s = (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 2000)
            .to_string();
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&in_2s).unwrap());
        let w = rate_limit_wait(&h).unwrap();
        assert!(
            w > Duration::from_millis(1500) && w <= Duration::from_secs(2),
            "{w:?}"
        );
        assert_eq!(rate_limit_wait(&HeaderMap::new()), None);
    }

    #[test]
    fn odd_json_is_read_leniently() {
        let v: serde_json::Value = serde_json::from_str(&lenient(
            r#"{"a": NaN, "b": -Infinity, "c": "x\ud800y", "d": "\ud83d\ude00", "e": "NaN \" q"}"#,
        ))
        .unwrap();
        assert_eq!(v["a"], serde_json::Value::Null);
        assert_eq!(v["b"], serde_json::Value::Null);
        assert_eq!(v["c"], "x\u{fffd}y");
        assert_eq!(v["d"], "\u{1f600}");
        assert_eq!(v["e"], "NaN \" q");
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) <= Duration::from_millis(250));
        assert!(backoff(3) >= Duration::from_millis(500));
        assert!(backoff(30) <= Duration::from_secs(8));
    }
}
