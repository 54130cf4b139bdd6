//! Serde types of OpenRouter's key-management API (see shared/openrouter-keys-openapi.yaml).
//! Unknown fields are ignored; fields newer responses add are optional.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// One API key as the account reports it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Key {
    pub hash: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub disabled: bool,
    /// `None` is unlimited; `Some(0.0)` is a real limit of zero dollars.
    #[serde(default)]
    pub limit: Option<f64>,
    #[serde(default)]
    pub limit_remaining: Option<f64>,
    #[serde(default)]
    pub limit_reset: Option<String>,
    #[serde(default)]
    pub include_byok_in_limit: bool,
    #[serde(default)]
    pub usage: f64,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl Key {
    pub fn created(&self) -> Option<DateTime<Utc>> {
        self.created_at.as_deref().and_then(parse_time)
    }
}

#[derive(Debug, Deserialize)]
pub struct KeyList {
    pub data: Vec<Key>,
}

#[derive(Debug, Deserialize)]
pub struct KeyData {
    pub data: Key,
}

/// The answer to `POST /keys`: the secret sits next to `data`, not inside it.
#[derive(Debug, Deserialize)]
pub struct Created {
    pub data: Key,
    pub key: String,
}

/// Body of `POST /keys`. `limit` is always sent: `null` means unlimited.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewKey {
    pub name: String,
    pub limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_reset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Body of `PATCH /keys/{hash}`: a field left `None` is not sent and stays as it is;
/// `Some(None)` sends `null` (unlimited limit, no reset).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Patch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_reset: Option<Option<String>>,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.disabled.is_none() && self.limit.is_none() && self.limit_reset.is_none()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
pub struct Credits {
    pub total_credits: f64,
    pub total_usage: f64,
}

#[derive(Debug, Deserialize)]
pub struct CreditsData {
    pub data: Credits,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub message: String,
}

/// Parse the API's timestamps: `2025-08-24T10:30:00Z`, `2025-02-19T20:52:27.363244+00:00`,
/// and (from old databases) naive ISO times, read as UTC.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_timestamp_forms_parse() {
        let a = parse_time("2025-08-24T10:30:00Z").unwrap();
        let b = parse_time("2025-02-19T20:52:27.363244+00:00").unwrap();
        assert_eq!(a.to_rfc3339(), "2025-08-24T10:30:00+00:00");
        assert_eq!(b.timestamp(), 1739998347);
        assert!(parse_time("2026-11-27T10:08:29.520710").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn patch_sends_null_only_when_asked() {
        let p = Patch {
            limit: Some(None),
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"limit":null}"#);
        let p = Patch {
            limit: Some(Some(0.0)),
            disabled: Some(true),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"disabled":true,"limit":0.0}"#
        );
        assert_eq!(serde_json::to_string(&Patch::default()).unwrap(), "{}");
    }

    #[test]
    fn key_ignores_unknown_and_missing_optional_fields() {
        let k: Key = serde_json::from_str(
            r#"{"hash":"h","name":"n","label":"l","disabled":false,"limit":null,"usage":1.5,"future":1}"#,
        )
        .unwrap();
        assert_eq!(k.limit, None);
        assert_eq!(k.usage, 1.5);
    }
}
