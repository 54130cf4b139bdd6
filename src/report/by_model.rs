//! Spend per model from OpenRouter's analytics (`POST /analytics/query`): which queries to ask
//! and what their rows come to. Pure; `commands/report` sends the queries.
//!
//! * Metrics `total_usage` and `request_count`, dimensions `api_key_id` and `model`, filtered
//!   to the class's keys by hash.
//! * Analytics rows name a key by its **name**, not its hash: the keys whose name no other key
//!   of the class has go in one query (an `in` filter), and each key that shares its name (a
//!   rotated key and its replacement, two students of one name) is asked alone (`eq`), so that
//!   every row belongs to exactly one key.
//! * Whole-number metrics may arrive as strings.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::openrouter::Analytics;
use crate::store::KeyInfo;

/// Rows one query may return (the API's default is 1,000).
const ROW_LIMIT: u64 = 10_000;

/// One query, and the one key it is about when it asks for one alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub body: Value,
    pub alone: Option<String>,
}

/// The queries for these keys over `[start, end]`.
pub fn queries(keys: &[KeyInfo], start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Query> {
    let mut by_name: BTreeMap<&str, Vec<&KeyInfo>> = BTreeMap::new();
    for k in keys {
        by_name.entry(k.key_name.as_str()).or_default().push(k);
    }
    let body = |filter: Value| {
        json!({
            "metrics": ["total_usage", "request_count"],
            "dimensions": ["api_key_id", "model"],
            "filters": [filter],
            "time_range": {
                "start": start.to_rfc3339_opts(SecondsFormat::Secs, true),
                "end": end.to_rfc3339_opts(SecondsFormat::Secs, true),
            },
            "limit": ROW_LIMIT,
        })
    };
    let unique: Vec<&str> = by_name
        .values()
        .filter(|ks| ks.len() == 1)
        .map(|ks| ks[0].hash.as_str())
        .collect();
    let mut out = Vec::new();
    if !unique.is_empty() {
        out.push(Query {
            body: body(json!({"field": "api_key_id", "operator": "in", "value": unique})),
            alone: None,
        });
    }
    for k in by_name.values().filter(|ks| ks.len() > 1).flatten() {
        out.push(Query {
            body: body(json!({"field": "api_key_id", "operator": "eq", "value": k.hash})),
            alone: Some(k.hash.clone()),
        });
    }
    out
}

/// One student's spend on one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    pub email: String,
    pub name: String,
    pub model: String,
    pub spent: f64,
    pub requests: u64,
}

/// The class's spend on one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelTotal {
    pub model: String,
    pub spent: f64,
    pub requests: u64,
    pub students: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ByModel {
    /// Per student (by name, then email), then by spend.
    pub by_model: Vec<ModelRow>,
    /// Per model, by spend.
    pub models: Vec<ModelTotal>,
    /// Up to when the account's figures reach (analytics may lag behind).
    pub figures_until: Option<DateTime<Utc>>,
    /// What the account warned about, and rows classkeys could not place.
    pub warnings: Vec<String>,
}

/// What the answers to `queries` come to.
pub fn collect(
    keys: &[KeyInfo],
    answers: &[(Query, Analytics)],
    asked_at: DateTime<Utc>,
) -> ByModel {
    let by_hash: HashMap<&str, &KeyInfo> = keys.iter().map(|k| (k.hash.as_str(), k)).collect();
    let mut names: HashMap<&str, Vec<&KeyInfo>> = HashMap::new();
    for k in keys {
        names.entry(k.key_name.as_str()).or_default().push(k);
    }
    let mut sums: BTreeMap<(String, String, String), (f64, u64)> = BTreeMap::new();
    let mut out = ByModel::default();
    let mut until: Option<DateTime<Utc>> = None;
    for (query, answer) in answers {
        let cached = answer
            .cached_at
            .filter(|ms| ms.is_finite() && *ms > 0.0)
            .and_then(|ms| DateTime::<Utc>::from_timestamp_millis(ms as i64));
        let reach = cached.unwrap_or(asked_at);
        until = Some(until.map_or(reach, |u| u.min(reach)));
        out.warnings.extend(answer.warnings.iter().cloned());
        if answer.metadata.as_ref().is_some_and(|m| m.truncated) {
            out.warnings.push(
                "OpenRouter cut an answer short (truncated): the figures may be incomplete; ask for a shorter window"
                    .into(),
            );
        }
        for row in &answer.data {
            let label = row.get("api_key_id").map(text).unwrap_or_default();
            let key = match &query.alone {
                Some(hash) => by_hash.get(hash.as_str()).copied(),
                None => by_hash.get(label.as_str()).copied().or_else(|| {
                    names
                        .get(label.as_str())
                        .filter(|ks| ks.len() == 1)
                        .map(|ks| ks[0])
                }),
            };
            let Some(key) = key else {
                out.warnings.push(format!(
                    "analytics named a key that is not one of the class's ({}); left out",
                    crate::ui::clean(&label)
                ));
                continue;
            };
            let model = row.get("model").map(text).unwrap_or_default();
            let model = if model.is_empty() {
                "(unknown)".to_string()
            } else {
                model
            };
            let spent = row.get("total_usage").and_then(number).unwrap_or(0.0);
            let requests = row
                .get("request_count")
                .and_then(number)
                .map_or(0, |n| n.max(0.0).round() as u64);
            let who = (crate::files::email_key(&key.email), key.name.clone(), model);
            let e = sums.entry(who).or_default();
            e.0 += spent;
            e.1 += requests;
        }
    }
    let mut emails: HashMap<String, String> = HashMap::new();
    for k in keys {
        emails
            .entry(crate::files::email_key(&k.email))
            .or_insert_with(|| k.email.clone());
    }
    let mut totals: BTreeMap<String, (f64, u64, usize)> = BTreeMap::new();
    for ((email, name, model), (spent, requests)) in sums {
        let t = totals.entry(model.clone()).or_default();
        t.0 += spent;
        t.1 += requests;
        t.2 += 1;
        out.by_model.push(ModelRow {
            email: emails.get(&email).cloned().unwrap_or(email),
            name,
            model,
            spent,
            requests,
        });
    }
    out.by_model.sort_by(|a, b| {
        (a.name.to_lowercase(), a.email.to_lowercase())
            .cmp(&(b.name.to_lowercase(), b.email.to_lowercase()))
            .then(b.spent.total_cmp(&a.spent))
            .then(a.model.cmp(&b.model))
    });
    out.models = totals
        .into_iter()
        .map(|(model, (spent, requests, students))| ModelTotal {
            model,
            spent,
            requests,
            students,
        })
        .collect();
    out.models
        .sort_by(|a, b| b.spent.total_cmp(&a.spent).then(a.model.cmp(&b.model)));
    out.figures_until = until;
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A metric: a JSON number, or a number in a string.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|n| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hash: &str, email: &str, name: &str, key_name: &str) -> KeyInfo {
        KeyInfo {
            hash: hash.into(),
            email: email.into(),
            name: name.into(),
            key_name: key_name.into(),
            limit: None,
            disabled: false,
            deleted: false,
            created_at: None,
        }
    }

    fn answer(rows: Value) -> Analytics {
        serde_json::from_value(json!({ "data": rows })).unwrap()
    }

    #[test]
    fn same_named_keys_are_asked_alone_and_kept_apart() {
        let keys = [
            key("h1", "ada@uni.edu", "Ada", "20261201_Ada"),
            key("h2", "kim1@uni.edu", "Kim Lee", "20261201_Kim Lee"),
            key("h3", "kim2@uni.edu", "Kim Lee", "20261201_Kim Lee"),
            key("h4", "bob@uni.edu", "Bob", "20261201_Bob"),
        ];
        let t = Utc::now();
        let q = queries(&keys, t - chrono::Duration::days(1), t);
        assert_eq!(q.len(), 3);
        assert_eq!(q[0].body["filters"][0]["operator"], json!("in"));
        assert_eq!(q[0].body["filters"][0]["value"], json!(["h1", "h4"]));
        assert_eq!(q[1].alone.as_deref(), Some("h2"));
        assert_eq!(
            q[2].body["filters"][0],
            json!({"field": "api_key_id", "operator": "eq", "value": "h3"})
        );
        assert_eq!(q[0].body["dimensions"], json!(["api_key_id", "model"]));

        let answers = vec![
            (
                q[0].clone(),
                answer(json!([
                    {"api_key_id": "20261201_Ada", "model": "openai/gpt-4o-mini", "total_usage": 0.25, "request_count": "10"},
                    {"api_key_id": "20261201_Ada", "model": "google/gemini-2.5-flash", "total_usage": 0.5, "request_count": 3},
                    {"api_key_id": "20261201_Bob", "model": "openai/gpt-4o-mini", "total_usage": "0.125", "request_count": "1"},
                    {"api_key_id": "somebody else", "model": "x", "total_usage": 9, "request_count": 9}
                ])),
            ),
            (
                q[1].clone(),
                answer(
                    json!([{"api_key_id": "20261201_Kim Lee", "model": "openai/gpt-4o-mini", "total_usage": 1.0, "request_count": "4"}]),
                ),
            ),
            (
                q[2].clone(),
                answer(
                    json!([{"api_key_id": "20261201_Kim Lee", "model": "openai/gpt-4o-mini", "total_usage": 2.0, "request_count": "8"}]),
                ),
            ),
        ];
        let b = collect(&keys, &answers, t);
        let rows: Vec<(&str, &str, f64, u64)> = b
            .by_model
            .iter()
            .map(|r| (r.email.as_str(), r.model.as_str(), r.spent, r.requests))
            .collect();
        assert_eq!(
            rows,
            [
                ("ada@uni.edu", "google/gemini-2.5-flash", 0.5, 3),
                ("ada@uni.edu", "openai/gpt-4o-mini", 0.25, 10),
                ("bob@uni.edu", "openai/gpt-4o-mini", 0.125, 1),
                ("kim1@uni.edu", "openai/gpt-4o-mini", 1.0, 4),
                ("kim2@uni.edu", "openai/gpt-4o-mini", 2.0, 8),
            ]
        );
        assert_eq!(b.models[0].model, "openai/gpt-4o-mini");
        assert_eq!(b.models[0].spent, 3.375);
        assert_eq!(b.models[0].requests, 23);
        assert_eq!(b.models[0].students, 4);
        assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
        assert_eq!(b.figures_until, Some(t));
    }
}
