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
