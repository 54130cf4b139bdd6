//! The sandbox account: its keys (with their secrets and every simulated spend), its credits,
//! and how it is kept in sandbox.json so that consecutive commands see the same account.
//!
//! Usage is kept as a list of spends with their time rather than as running totals, so that
//! `usage_daily/weekly/monthly` and a resetting limit behave as OpenRouter's do (periods start
//! at midnight UTC, weeks on Monday) whenever the account is looked at.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::files::{SECRET_MODE, write_atomic};

/// What a new sandbox account has to spend, in dollars.
pub const DEFAULT_CREDITS: f64 = 100.0;
/// Marks the file as ours (and its layout's version).
const FORMAT: u32 = 1;
/// Shown as `creator_user_id` and `workspace_id`: fields the spec requires, meaningless here.
const SANDBOX_USER: &str = "user_classkeys_sandbox";
pub const SANDBOX_WORKSPACE: &str = "00000000-0000-4000-8000-000000000000";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Account {
    pub classkeys_sandbox: u32,
    pub total_credits: f64,
    /// What keys spent before they were deleted: the account spent it all the same.
    #[serde(default)]
    pub deleted_usage: f64,
    /// Oldest first (the API lists them newest first).
    #[serde(default)]
    pub keys: Vec<SandboxKey>,
    /// Guardrails, oldest first, each as the API shows it.
    #[serde(default)]
    pub guardrails: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SandboxKey {
    pub hash: String,
    /// The secret the create answered with: kept so tests and rehearsals can compare.
    pub secret: String,
    pub name: String,
    #[serde(default)]
    pub disabled: bool,
    pub limit: Option<f64>,
    pub limit_reset: Option<String>,
    #[serde(default)]
    pub include_byok_in_limit: bool,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub spends: Vec<Spend>,
    /// `None`: the default workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// The guardrail the key holds (its id).
    #[serde(default)]
    pub guardrail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spend {
    pub at: DateTime<Utc>,
    pub amount: f64,
    /// `None` in files written before models were recorded: the default model.
    #[serde(default)]
    pub model: Option<String>,
}

/// What `sandbox spend` spends on when no model is named.
pub const DEFAULT_MODEL: &str = "openai/gpt-4o-mini";

impl Spend {
    pub fn model(&self) -> &str {
        self.model.as_deref().unwrap_or(DEFAULT_MODEL)
    }
}

/// A key as the API shows it: every field of the spec's Key schema, never the secret.
#[derive(Debug, Serialize)]
pub struct KeyView<'a> {
    pub hash: &'a str,
    pub name: &'a str,
    pub label: String,
    pub disabled: bool,
    pub limit: Option<f64>,
    pub limit_remaining: Option<f64>,
    pub limit_reset: Option<&'a str>,
    pub include_byok_in_limit: bool,
    pub usage: f64,
    pub usage_daily: f64,
    pub usage_weekly: f64,
    pub usage_monthly: f64,
    pub byok_usage: f64,
    pub byok_usage_daily: f64,
    pub byok_usage_weekly: f64,
    pub byok_usage_monthly: f64,
    pub created_at: &'a str,
    pub updated_at: Option<&'a str>,
    pub expires_at: Option<&'a str>,
    pub creator_user_id: &'static str,
    pub workspace_id: &'a str,
}

/// A create, already checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    pub name: String,
    pub limit: Option<f64>,
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    pub expires_at: Option<String>,
    pub workspace_id: Option<String>,
}

/// What a simulated spend came to.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendOutcome {
    pub added: f64,
    /// Why less than asked was added (the limit, a disabled or expired key).
    pub stopped: Option<String>,
    pub key: SandboxKey,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            classkeys_sandbox: FORMAT,
            total_credits: DEFAULT_CREDITS,
            deleted_usage: 0.0,
            keys: Vec::new(),
            guardrails: Vec::new(),
        }
    }
}

impl Account {
    /// Read the account; a missing file is a new, empty account.
    pub fn load(path: &Path) -> Result<Account> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Account::default()),
            Err(e) => {
                return Err(e).with_context(|| format!("reading the sandbox {}", path.display()));
            }
        };
        let account: Account = serde_json::from_slice(&bytes).map_err(|e| {
            crate::error::input(format!(
                "{} is not a classkeys sandbox account ({e}); `classkeys sandbox reset` empties it",
                path.display()
            ))
        })?;
        if account.classkeys_sandbox != FORMAT {
            return Err(crate::error::input(format!(
                "{} was written by another classkeys (sandbox format {}, this one reads {FORMAT}); \
                 `classkeys sandbox reset` empties it",
                path.display(),
                account.classkeys_sandbox
            )));
        }
        Ok(account)
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(self).context("encoding the sandbox account")?;
        out.push(b'\n');
        Ok(out)
    }

    /// Replace the file atomically, owner-only: it holds the keys' secrets.
    pub fn write(path: &Path, json: &[u8]) -> Result<()> {
        write_atomic(path, SECRET_MODE, |w: &mut dyn Write| {
            w.write_all(json)?;
            Ok(())
        })
        .with_context(|| format!("saving the sandbox account to {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        Account::write(path, &self.to_json()?)
    }

    /// One page of one workspace's keys (`None`: the default one), newest first.
    pub fn page(
        &self,
        offset: usize,
        include_disabled: bool,
        size: usize,
        workspace: Option<&str>,
    ) -> Vec<&SandboxKey> {
        self.keys
            .iter()
            .rev()
            .filter(|k| include_disabled || !k.disabled)
            .filter(|k| k.workspace_id.as_deref() == workspace)
            .skip(offset)
            .take(size)
            .collect()
    }

    pub fn find(&self, hash: &str) -> Option<&SandboxKey> {
        self.keys.iter().find(|k| k.hash == hash)
    }

    pub fn find_mut(&mut self, hash: &str) -> Option<&mut SandboxKey> {
        self.keys.iter_mut().find(|k| k.hash == hash)
    }

    pub fn create(&mut self, new: NewKey, now: DateTime<Utc>) -> &SandboxKey {
        let key = SandboxKey {
            hash: random_hex(),
            secret: format!("sk-or-v1-{}", random_hex()),
            name: new.name,
            disabled: false,
            limit: new.limit,
            limit_reset: new.limit_reset,
            include_byok_in_limit: new.include_byok_in_limit,
            created_at: timestamp(now),
            updated_at: None,
            expires_at: new.expires_at,
            spends: Vec::new(),
            workspace_id: new.workspace_id,
            guardrail: None,
        };
        self.keys.push(key);
        let last = self.keys.len() - 1;
        &self.keys[last]
    }

    /// Remove a key; false when there is none with this hash.
    pub fn delete(&mut self, hash: &str) -> bool {
        match self.keys.iter().position(|k| k.hash == hash) {
            Some(i) => {
                let key = self.keys.remove(i);
                self.deleted_usage = money(self.deleted_usage + key.usage());
                true
            }
            None => false,
        }
    }

    /// (total_credits, total_usage).
    pub fn credits(&self) -> (f64, f64) {
        let used: f64 = self.keys.iter().map(SandboxKey::usage).sum();
        (self.total_credits, money(self.deleted_usage + used))
    }

    /// Add usage to a key as if its student had spent `amount`: a real key stops at its limit,
    /// and a disabled or expired key spends nothing.
    pub fn spend(
        &mut self,
        hash: &str,
        amount: f64,
        model: &str,
        now: DateTime<Utc>,
    ) -> Option<SpendOutcome> {
        let guardrail = self
            .find(hash)?
            .guardrail
            .as_ref()
            .and_then(|id| self.guardrails.iter().find(|g| g["id"] == *id.as_str()))
            .cloned();
        let key = self.find_mut(hash)?;
        let refused = guardrail.as_ref().and_then(|g| refusal(g, model));
        let (added, stopped) = if let Some(why) = refused {
            (0.0, Some(why))
        } else if key.disabled {
            (
                0.0,
                Some("the key is disabled: a disabled key cannot spend".to_string()),
            )
        } else if key.expired(now) {
            (
                0.0,
                Some("the key has expired: it cannot spend".to_string()),
            )
        } else {
            match key.limit_remaining(now) {
                Some(left) if amount > left + 1e-12 => (
                    left,
                    Some(format!(
                        "capped at the key's limit of ${:.2}: a real key stops there",
                        key.limit.unwrap_or(0.0)
                    )),
                ),
                _ => (amount, None),
            }
        };
        // The guardrail's budget applies too: the lower one wins.
        let (added, stopped) = match guardrail.as_ref().and_then(|g| budget_left(g, key, now)) {
            Some((left, limit)) if added > left + 1e-12 => (
                left,
                Some(format!(
                    "capped at the guardrail's budget of ${limit:.2}: a real key stops there"
                )),
            ),
            _ => (added, stopped),
        };
        let added = money(added);
        if added > 0.0 {
            key.spends.push(Spend {
                at: now,
                amount: added,
                model: Some(model.to_string()),
            });
        }
        Some(SpendOutcome {
            added,
            stopped,
            key: key.clone(),
        })
    }
}

/// Why the key's guardrail refuses a request to this model, if it does.
fn refusal(g: &serde_json::Map<String, serde_json::Value>, model: &str) -> Option<String> {
    let allowed = g.get("allowed_models")?.as_array()?;
    let ok = allowed
        .iter()
        .filter_map(|m| m.as_str())
        .any(|m| crate::guardrail::same_model(m, model) || crate::guardrail::same_model(model, m));
    (!ok).then(|| {
        format!(
            "the key's guardrail does not allow {model} (it allows {}): OpenRouter refuses the request",
            allowed
                .iter()
                .filter_map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// What the guardrail's budget leaves the key in this period, and the budget.
fn budget_left(
    g: &serde_json::Map<String, serde_json::Value>,
    key: &SandboxKey,
    now: DateTime<Utc>,
) -> Option<(f64, f64)> {
    let limit = g.get("limit_usd")?.as_f64()?;
    let period = g.get("reset_interval")?.as_str()?;
    Some((
        money((limit - key.usage_since(period_start(period, now))).max(0.0)),
        limit,
    ))
}

impl SandboxKey {
    pub fn usage(&self) -> f64 {
        money(self.spends.iter().map(|s| s.amount).sum())
    }

    pub fn usage_since(&self, since: DateTime<Utc>) -> f64 {
        money(
            self.spends
                .iter()
                .filter(|s| s.at >= since)
                .map(|s| s.amount)
                .sum(),
        )
    }

    /// What counts against the limit: everything, or only the current period of a resetting limit.
    fn limited_usage(&self, now: DateTime<Utc>) -> f64 {
        match self.limit_reset.as_deref() {
            Some(period) => self.usage_since(period_start(period, now)),
            None => self.usage(),
        }
    }

    pub fn limit_remaining(&self, now: DateTime<Utc>) -> Option<f64> {
        self.limit
            .map(|l| money((l - self.limited_usage(now)).max(0.0)))
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at
            .as_deref()
            .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
            .is_some_and(|e| e <= now)
    }

    /// `sk-or-v1-0e6...1c96`, as OpenRouter masks a secret.
    pub fn label(&self) -> String {
        let s = &self.secret;
        match (s.get(..12), s.get(s.len().saturating_sub(4)..)) {
            (Some(head), Some(tail)) if s.len() > 16 => format!("{head}...{tail}"),
            _ => "sk-or-v1-...".into(),
        }
    }

    pub fn view(&self, now: DateTime<Utc>) -> KeyView<'_> {
        KeyView {
            hash: &self.hash,
            name: &self.name,
            label: self.label(),
            disabled: self.disabled,
            limit: self.limit,
            limit_remaining: self.limit_remaining(now),
            limit_reset: self.limit_reset.as_deref(),
            include_byok_in_limit: self.include_byok_in_limit,
            usage: self.usage(),
            usage_daily: self.usage_since(period_start("daily", now)),
            usage_weekly: self.usage_since(period_start("weekly", now)),
            usage_monthly: self.usage_since(period_start("monthly", now)),
            byok_usage: 0.0,
            byok_usage_daily: 0.0,
            byok_usage_weekly: 0.0,
            byok_usage_monthly: 0.0,
            created_at: &self.created_at,
            updated_at: self.updated_at.as_deref(),
            expires_at: self.expires_at.as_deref(),
            creator_user_id: SANDBOX_USER,
            workspace_id: self.workspace_id.as_deref().unwrap_or(SANDBOX_WORKSPACE),
        }
    }
}

/// Midnight UTC of today, of this week's Monday, or of the month's first day.
pub fn period_start(period: &str, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.date_naive();
    let day = match period {
        "weekly" => today - Duration::days(i64::from(today.weekday().num_days_from_monday())),
        "monthly" => today.with_day(1).unwrap_or(today),
        _ => today,
    };
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The API's timestamp form: `2025-02-19T20:52:27.363244+00:00`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// Sums of fractions of a cent without binary noise (0.1 + 0.2 shows as 0.3), and never -0
/// (the sum of no spends is -0.0 in Rust, shown as `$-0.00`).
fn money(v: f64) -> f64 {
    (v * 1e10).round() / 1e10 + 0.0
}

/// 64 hex digits: a key's hash, or the random part of its secret.
pub(super) fn random_hex() -> String {
    (0..4)
        .map(|_| format!("{:016x}", fastrand::u64(..)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, limit: Option<f64>, reset: Option<&str>) -> NewKey {
        NewKey {
            name: name.into(),
            limit,
            limit_reset: reset.map(String::from),
            include_byok_in_limit: false,
            expires_at: None,
            workspace_id: None,
        }
    }

    #[test]
    fn spends_stop_at_the_limit_and_periods_reset() {
        let mut acc = Account::default();
        let monday = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let h = acc
            .create(new("20260302_Ada", Some(2.0), None), monday)
            .hash
            .clone();
        let out = acc.spend(&h, 0.1, "openai/gpt-4o-mini", monday).unwrap();
        assert_eq!((out.added, out.stopped.is_none()), (0.1, true));
        acc.spend(&h, 0.2, "openai/gpt-4o-mini", monday).unwrap();
        let out = acc.spend(&h, 5.0, "openai/gpt-4o-mini", monday).unwrap();
        assert_eq!(out.added, 1.7);
        assert!(out.stopped.unwrap().contains("capped"));
        let k = acc.find(&h).unwrap();
        assert_eq!(k.usage(), 2.0);
        assert_eq!(k.limit_remaining(monday), Some(0.0));

        let d = acc
            .create(new("20260302_Bob", Some(1.0), Some("daily")), monday)
            .hash
            .clone();
        acc.spend(&d, 1.0, "openai/gpt-4o-mini", monday).unwrap();
        let tuesday = monday + Duration::days(1);
        let v = acc.find(&d).unwrap().view(tuesday);
        assert_eq!((v.usage, v.usage_daily, v.usage_weekly), (1.0, 0.0, 1.0));
        assert_eq!(v.limit_remaining, Some(1.0), "a daily limit starts afresh");
        let next_week = monday + Duration::days(7);
        assert_eq!(acc.find(&d).unwrap().view(next_week).usage_weekly, 0.0);

        acc.find_mut(&d).unwrap().disabled = true;
        assert_eq!(
            acc.spend(&d, 0.5, "openai/gpt-4o-mini", tuesday)
                .unwrap()
                .added,
            0.0
        );
        assert!(
            acc.spend("nope", 1.0, "openai/gpt-4o-mini", monday)
                .is_none()
        );
        assert_eq!(acc.credits(), (100.0, 3.0));
        assert!(acc.delete(&h));
        assert!(!acc.delete(&h));
        assert_eq!(
            acc.credits(),
            (100.0, 3.0),
            "deleted keys' usage stays spent"
        );
    }

    #[test]
    fn hashes_secrets_and_labels_look_like_openrouters() {
        let mut acc = Account::default();
        let k = acc.create(new("x", None, None), Utc::now()).clone();
        assert_eq!(k.hash.len(), 64);
        assert!(k.hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(k.secret.starts_with("sk-or-v1-") && k.secret.len() == 73);
        let label = k.label();
        assert!(label.starts_with(&k.secret[..12]) && label.ends_with(&k.secret[69..]));
        assert!(label.contains("...") && !label.contains(&k.secret[12..69]));
    }

    #[test]
    fn file_round_trips_and_bad_files_say_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.json");
        assert_eq!(Account::load(&path).unwrap(), Account::default());
        let mut acc = Account::default();
        let h = acc
            .create(new("a", Some(1.5), None), Utc::now())
            .hash
            .clone();
        acc.spend(&h, 0.25, "openai/gpt-4o-mini", Utc::now())
            .unwrap();
        acc.save(&path).unwrap();
        assert_eq!(Account::load(&path).unwrap(), acc);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "{not json").unwrap();
        let e = Account::load(&path).unwrap_err();
        assert!(e.to_string().contains("sandbox.json"), "{e}");
        assert!(e.to_string().contains("classkeys sandbox reset"), "{e}");
        assert_eq!(crate::error::exit_code(&e), crate::Exit::Input);
    }
}
