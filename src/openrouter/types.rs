//! Wire types of OpenRouter's key-management API (see shared/openrouter-keys-openapi.yaml).
//! Unknown fields are ignored; fields newer responses add are optional.

use serde::Deserialize;

pub use crate::domain::{Credits, Key, NewKey, Patch, parse_time};

#[derive(Debug, Deserialize)]
pub struct KeyList {
    /// Read one by one: a malformed key is reported and left alone, not the end of the listing.
    pub data: Vec<serde_json::Value>,
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

#[derive(Debug, Deserialize)]
pub struct GuardrailData {
    pub data: crate::domain::Guardrail,
}

/// One page of a listing paged by offset and limit.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub total_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct AnalyticsData {
    pub data: Analytics,
}

/// The answer to `POST /analytics/query`: rows of dimension and metric values.
#[derive(Debug, Deserialize, Default)]
pub struct Analytics {
    #[serde(default)]
    pub data: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub metadata: Option<AnalyticsMeta>,
    /// When the figures were computed (milliseconds since 1970), if they come from a cache.
    #[serde(default, rename = "cachedAt")]
    pub cached_at: Option<f64>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct AnalyticsMeta {
    #[serde(default)]
    pub truncated: bool,
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
