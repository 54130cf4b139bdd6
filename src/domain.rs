//! The words every layer shares: who owns a key, what a journaled change is and where it
//! stands, what kind of account a class lives on, and how the class names its keys.
//! No I/O here; the store persists these, the client and the files convert to and from them.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// Whose a key recorded in keys.db is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Owner {
    /// Made by the class, imported, or adopted by the instructor: the class's.
    #[default]
    Class,
    /// A key nobody knew, listed in roster.csv as a FIXME row; not the class's until adopted.
    Fixme,
    /// A FIXME row the instructor deleted: never listed again.
    Dismissed,
}

impl Owner {
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Class => "class",
            Owner::Fixme => "fixme",
            Owner::Dismissed => "dismissed",
        }
    }
    pub fn parse(s: &str) -> Owner {
        match s {
            "fixme" => Owner::Fixme,
            "dismissed" => Owner::Dismissed,
            _ => Owner::Class,
        }
    }
}

/// What kind of change to the account an intent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentAction {
    Create,
    Patch,
    Delete,
    /// The class guardrail: made, changed, deleted, assigned to keys, taken off keys.
    GuardrailCreate,
    GuardrailPatch,
    GuardrailDelete,
    GuardrailAssign,
    GuardrailUnassign,
}

impl IntentAction {
    /// A change to the class guardrail or its assignments (not to one key).
    pub fn is_guardrail(self) -> bool {
        !matches!(
            self,
            IntentAction::Create | IntentAction::Patch | IntentAction::Delete
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            IntentAction::Create => "create",
            IntentAction::Patch => "patch",
            IntentAction::Delete => "delete",
            IntentAction::GuardrailCreate => "guardrail_create",
            IntentAction::GuardrailPatch => "guardrail_patch",
            IntentAction::GuardrailDelete => "guardrail_delete",
            IntentAction::GuardrailAssign => "guardrail_assign",
            IntentAction::GuardrailUnassign => "guardrail_unassign",
        }
    }
    pub fn parse(s: &str) -> Option<IntentAction> {
        match s {
            "create" => Some(IntentAction::Create),
            "patch" => Some(IntentAction::Patch),
            "delete" => Some(IntentAction::Delete),
            "guardrail_create" => Some(IntentAction::GuardrailCreate),
            "guardrail_patch" => Some(IntentAction::GuardrailPatch),
            "guardrail_delete" => Some(IntentAction::GuardrailDelete),
            "guardrail_assign" => Some(IntentAction::GuardrailAssign),
            "guardrail_unassign" => Some(IntentAction::GuardrailUnassign),
            _ => None,
        }
    }
}

/// How a journaled change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The account shows the change (answered, or found by a later run).
    Landed,
    /// The account does not show it: it was refused, never sent, or never arrived.
    NotLanded,
    /// A create that landed without anyone seeing its secret: the key was deleted.
    Discarded,
}

impl Settled {
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Landed => "landed",
            Settled::NotLanded => "not_landed",
            Settled::Discarded => "discarded",
        }
    }
}

/// Whether a class lives on a real OpenRouter account or in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Real,
    Sandbox,
}

impl AccountKind {
    pub fn of(sandbox: bool) -> AccountKind {
        if sandbox {
            AccountKind::Sandbox
        } else {
            AccountKind::Real
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Real => "real",
            AccountKind::Sandbox => "sandbox",
        }
    }
    pub fn parse(s: &str) -> Option<AccountKind> {
        match s {
            "real" => Some(AccountKind::Real),
            "sandbox" => Some(AccountKind::Sandbox),
            _ => None,
        }
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccountKind::Real => "a real OpenRouter account",
            AccountKind::Sandbox => "the sandbox",
        })
    }
}

/// A class tag: letters, digits and `-`, so that `TAG_` can never be part of a student's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, String> {
        let t = s.trim();
        if t.is_empty() || t.len() > 32 {
            return Err(format!(
                "--class {s:?}: give 1 to 32 letters, digits or `-` (for example CS101-A)"
            ));
        }
        if !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "--class {s:?}: only letters, digits and `-` (for example CS101-A)"
            ));
        }
        Ok(Tag(t.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `CS101_`: the start of every key name of this class.
    pub fn prefix(&self) -> String {
        format!("{}_", self.0)
    }
}

/// How the class names its keys: `[TAG_]YYYYMMDD_<name>`, or with pseudonymous names
/// `[TAG_]YYYYMMDD_<10 hex>`, the hex derived from the student's email and a secret of the class.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    pub tag: Option<Tag>,
    /// The class's secret for pseudonyms (set: names are pseudonymous).
    pub pseudonym_secret: Option<String>,
}

impl Naming {
    /// The name of a new key of this student.
    pub fn key_name(&self, date: &str, student: &Student) -> String {
        let who = match &self.pseudonym_secret {
            Some(secret) => pseudonym(secret, &student.email),
            None => student.name.clone(),
        };
        match &self.tag {
            Some(t) => format!("{}{date}_{who}", t.prefix()),
            None => format!("{date}_{who}"),
        }
    }

    /// What a key name of this class says after its date (a student's name or pseudonym), if
    /// it is one of this class's names: `CS101_20250907_Alice Smith` -> `Alice Smith` (tagged),
    /// `20250907_Alice Smith` (untagged).
    pub fn student_of<'a>(&self, key_name: &'a str) -> Option<&'a str> {
        let rest = match &self.tag {
            Some(t) => key_name.strip_prefix(&t.prefix())?,
            None => key_name,
        };
        dated_name(rest)
    }

    /// Whether a key's name designates this student: their name, or their pseudonym.
    pub fn designates(&self, key_name: &str, student: &Student) -> bool {
        match self.student_of(key_name) {
            Some(who) => {
                who == student.name
                    || self
                        .pseudonym_secret
                        .as_ref()
                        .is_some_and(|s| who == pseudonym(s, &student.email))
            }
            None => false,
        }
    }

    /// Whether an unknown key may be this class's at all: in a tagged class, only `TAG_…` keys.
    pub fn may_be_ours(&self, key_name: &str) -> bool {
        match &self.tag {
            Some(t) => key_name.starts_with(&t.prefix()),
            None => true,
        }
    }
}

/// A student's pseudonym in key names: 10 lowercase hex digits of HMAC-SHA256(class secret,
/// lower-cased email). Nobody without keys.db can tell whose key it is.
pub fn pseudonym(secret: &str, email: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(email_key(email).as_bytes());
    mac.finalize().into_bytes()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `20250907_Alice Smith` -> `Alice Smith`.
pub fn dated_name(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    (b.len() > 9 && b[..8].iter().all(u8::is_ascii_digit) && b[8] == b'_').then(|| &s[9..])
}

// ---- The class guardrail: what classkeys.toml asks for and what the account holds ----

/// How often a guardrail's budget starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Daily,
    Weekly,
    Monthly,
}

impl Interval {
    pub const ALL: [Interval; 3] = [Interval::Daily, Interval::Weekly, Interval::Monthly];
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Daily => "daily",
            Interval::Weekly => "weekly",
            Interval::Monthly => "monthly",
        }
    }
    pub fn parse(s: &str) -> Option<Interval> {
        Interval::ALL.into_iter().find(|i| i.as_str() == s)
    }
    /// The classkeys.toml setting that names this budget.
    pub fn setting(self) -> &'static str {
        match self {
            Interval::Daily => "daily_limit",
            Interval::Weekly => "weekly_limit",
            Interval::Monthly => "monthly_limit",
        }
    }
}

/// A guardrail's budget: dollars per key per period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub dollars: f64,
    pub interval: Interval,
}

/// What the class guardrail should be (classkeys.toml's `[guardrail]`). A setting left out
/// (`None`) is not sent: OpenRouter's default applies and the account's value is not compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardrailSpec {
    pub models: Option<Vec<String>>,
    pub providers: Option<Vec<String>>,
    pub budget: Option<Budget>,
    pub zero_data_retention: Option<bool>,
    pub training: Option<bool>,
    pub redact: Option<Vec<String>>,
}

/// One builtin content filter of a guardrail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Builtin {
    pub slug: String,
    pub action: String,
}

/// A guardrail as the account reports it. Every field but the id is optional: the account
/// may leave out what is unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Guardrail {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_providers: Option<Vec<String>>,
    #[serde(default)]
    pub limit_usd: Option<f64>,
    #[serde(default)]
    pub reset_interval: Option<String>,
    #[serde(default)]
    pub enforce_zdr: Option<bool>,
    #[serde(default)]
    pub enforce_zdr_anthropic: Option<bool>,
    #[serde(default)]
    pub enforce_zdr_google: Option<bool>,
    #[serde(default)]
    pub enforce_zdr_openai: Option<bool>,
    #[serde(default)]
    pub enforce_zdr_other: Option<bool>,
    #[serde(default)]
    pub enforce_zdr_xai: Option<bool>,
    #[serde(default)]
    pub enable_free_model_training: Option<bool>,
    #[serde(default)]
    pub enable_paid_model_training: Option<bool>,
    #[serde(default)]
    pub enable_free_model_publication: Option<bool>,
    #[serde(default)]
    pub content_filter_builtins: Option<Vec<Builtin>>,
    #[serde(default)]
    pub workspace_id: Option<String>,
}

/// Which guardrail a key holds, as the account reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Assignment {
    pub key_hash: String,
    pub guardrail_id: String,
}

// ---- Keys, as the account shows them and as keys.db remembers them ----

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
    /// What the key may still spend (in this period, for a limit with a reset), as OpenRouter
    /// reports it; `None`: unlimited.
    pub fn remaining(&self) -> Option<f64> {
        let limit = self.limit?;
        let left = self
            .limit_remaining
            .filter(|r| r.is_finite())
            .unwrap_or(limit - self.usage);
        Some(left.clamp(0.0, limit.max(0.0)))
    }

    /// The used share of the limit, in whole percent from exact cents (half up): (limit −
    /// remaining) / limit. A $0 limit is fully used; an unlimited key has none.
    pub fn used_percent(&self) -> Option<i64> {
        let limit = self.limit?;
        let cents = |x: f64| (x * 100.0).round() as i64;
        let (l, r) = (cents(limit), cents(self.remaining().unwrap_or(0.0)));
        if l <= 0 {
            return Some(100);
        }
        Some(((l - r) * 200 + l) / (2 * l))
    }

    /// Where the key stands against its limit.
    pub fn standing(&self) -> Standing {
        match (self.remaining(), self.used_percent()) {
            (Some(r), _) if r <= 0.0 => Standing::AtLimit,
            (_, Some(p)) if p >= NEAR_LIMIT_PERCENT => Standing::Near,
            _ => Standing::Fine,
        }
    }

    pub fn created(&self) -> Option<DateTime<Utc>> {
        self.created_at.as_deref().and_then(parse_time)
    }
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

// ---- The ledger: what keys.db records ----

/// A key as keys.db remembers it.
#[derive(Debug, Clone, Default)]
pub struct KnownKey {
    pub hash: String,
    pub email: String,
    pub key_name: String,
    pub deleted: bool,
    pub owner: Owner,
    pub has_secret: bool,
}

/// A change to the account, journaled before it was sent and not yet settled.
#[derive(Debug, Clone)]
pub struct Intent {
    pub id: i64,
    pub action: IntentAction,
    pub email: String,
    /// The key changed or deleted (none for a create).
    pub hash: Option<String>,
    pub key_name: String,
    /// The request body sent (JSON).
    pub body: Option<String>,
    /// The key as it was before the change.
    pub prior: Option<Key>,
    /// For a create: the keys of that name the account already had when it was sent
    /// (none for creates journaled before schema 4, which fall back to the time).
    pub before: Option<Vec<String>>,
    pub started_at: DateTime<Utc>,
}

/// An intent to journal.
#[derive(Debug, Clone)]
pub struct NewIntent {
    pub action: IntentAction,
    pub email: String,
    pub hash: Option<String>,
    pub key_name: String,
    pub body: String,
    pub prior: Option<Key>,
    pub before: Option<Vec<String>>,
}

/// A key state to record, with whose it is.
pub struct Seen<'a> {
    pub key: &'a Key,
    pub email: &'a str,
    pub owner: Owner,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub hash: String,
    pub email: String,
    pub action: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// One row of `export-keys`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportRow {
    pub email: String,
    pub name: String,
    pub api_key: String,
    pub key_name: String,
    pub limit: Option<f64>,
    pub disabled: bool,
}

/// One usage observation, for reports.
#[derive(Debug, Clone)]
pub struct UsagePoint {
    pub hash: String,
    pub usage: f64,
    pub at: DateTime<Utc>,
}

/// What `report` needs to know of each key.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub hash: String,
    pub email: String,
    pub name: String,
    pub key_name: String,
    pub limit: Option<f64>,
    pub disabled: bool,
    pub deleted: bool,
    pub created_at: Option<DateTime<Utc>>,
}

// ---- The roster ----

#[derive(Debug, Clone, PartialEq)]
pub struct Student {
    pub email: String,
    pub name: String,
    /// `None`: use `--limit`. `Some(None)`: unlimited.
    pub limit: Option<Option<f64>>,
    pub limit_reset: Option<String>,
    pub line: u64,
}

impl Student {
    pub fn is_placeholder(&self) -> bool {
        is_placeholder(&self.email)
    }
}

/// A roster email that is a FIXME placeholder for a key nobody has claimed.
pub fn is_placeholder(email: &str) -> bool {
    email_key(email).ends_with("@fixme.edu")
}

/// Emails are compared without regard to case.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

// ---- Money and resets, as the class's files and audit rows write them ----

/// A dollar amount as classkeys writes it: `unlimited` for none, `2.0`, `0.75`.
pub fn money_cell(v: Option<f64>) -> String {
    match v {
        None => "unlimited".into(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.1}"),
        Some(v) => format!("{v}"),
    }
}

/// The used share (percent) from which a student is flagged as close to the limit.
pub const NEAR_LIMIT_PERCENT: i64 = 80;

/// A key against its limit: nothing remaining, at 80% or more, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    AtLimit,
    Near,
    Fine,
}

impl Standing {
    /// As a table shows it (a word, so that it reads without colour too).
    pub fn word(self) -> &'static str {
        match self {
            Standing::AtLimit => "at limit",
            Standing::Near => "80%+",
            Standing::Fine => "",
        }
    }
}

/// Two limits are the same (`None`: unlimited; `Some(0.0)` is a real $0 limit); amounts closer
/// than a billionth of a dollar are equal.
pub fn same_money(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() < 1e-9,
        _ => false,
    }
}

/// A limit reset as classkeys writes it: `daily`, `weekly`, `monthly`, or `none`.
pub fn reset_cell(r: Option<&str>) -> String {
    r.unwrap_or("none").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_share_from_remaining_in_whole_percent() {
        let key = |limit, usage, remaining| Key {
            limit,
            usage,
            limit_remaining: remaining,
            ..Key::default()
        };
        assert_eq!(key(Some(2.0), 0.85, Some(1.15)).used_percent(), Some(43));
        assert_eq!(key(Some(2.0), 0.85, None).used_percent(), Some(43));
        // A limit with a reset: what is left in this period counts, not the lifetime usage.
        assert_eq!(key(Some(1.0), 7.5, Some(0.25)).used_percent(), Some(75));
        assert_eq!(key(Some(0.0), 0.0, Some(0.0)).used_percent(), Some(100));
        assert_eq!(key(None, 3.0, None).used_percent(), None);
        assert_eq!(key(None, 3.0, None).remaining(), None);
        assert_eq!(key(Some(2.0), 2.5, Some(0.0)).remaining(), Some(0.0));
    }

    #[test]
    fn tags_and_names() {
        assert!(Tag::parse("CS101-A").is_ok());
        assert!(Tag::parse("cs 101").is_err());
        assert!(Tag::parse("a_b").is_err());
        assert!(Tag::parse("").is_err());
        let ada = Student {
            email: "Ada@uni.edu".into(),
            name: "Ada".into(),
            limit: None,
            limit_reset: None,
            line: 2,
        };
        let tagged = Naming {
            tag: Some(Tag::parse("CS101").unwrap()),
            pseudonym_secret: None,
        };
        assert_eq!(tagged.key_name("20261201", &ada), "CS101_20261201_Ada");
        assert_eq!(tagged.student_of("CS101_20261201_Ada"), Some("Ada"));
        assert_eq!(tagged.student_of("20261201_Ada"), None);
        assert!(!tagged.may_be_ours("20261201_Ada"));
        assert!(!tagged.may_be_ours("CS102_20261201_Ada"));
        let plain = Naming::default();
        assert_eq!(plain.key_name("20261201", &ada), "20261201_Ada");
        let hidden = Naming {
            tag: None,
            pseudonym_secret: Some("s3cret".into()),
        };
        let name = hidden.key_name("20261201", &ada);
        let hex = name.strip_prefix("20261201_").unwrap();
        assert_eq!(hex.len(), 10);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(!name.contains("Ada") && !name.to_lowercase().contains("ada@"));
        assert!(hidden.designates(&name, &ada));
        assert_eq!(
            pseudonym("s3cret", "ADA@uni.edu "),
            pseudonym("s3cret", "ada@uni.edu")
        );
        assert_ne!(pseudonym("other", "ada@uni.edu"), hex);
        assert_eq!(plain.student_of("20261201_Ada"), Some("Ada"));
        assert_eq!(plain.student_of("My key"), None);
    }

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
