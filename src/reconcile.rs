//! Pure logic, no I/O: which key belongs to which student, what to create, what to change.
//!
//! Matching: a key keys.db has seen goes to the email recorded for it; any other key goes to a
//! roster student of the same name (the name after `YYYYMMDD_`) who has no key yet, oldest key
//! first, so two students with one name each get one key. Keys nobody claims are orphans.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::files::limits::{LimitsFile, LimitsRow};
use crate::files::roster::Student;
use crate::files::{email_key, is_placeholder, money_cell, reset_cell};
use crate::openrouter::{Credits, Key, Patch};
use crate::store::{Attempt, Change, KnownKey};

/// A roster row and the keys that are its.
#[derive(Debug)]
pub struct Entry<'a> {
    pub student: &'a Student,
    /// Enabled before disabled, then newest first: `keys[0]` is "the" key.
    pub keys: Vec<&'a Key>,
}

impl<'a> Entry<'a> {
    pub fn key(&self) -> Option<&'a Key> {
        self.keys.first().copied()
    }
}

/// A key of the account no roster row claims.
#[derive(Debug)]
pub struct Orphan<'a> {
    pub key: &'a Key,
    /// The email keys.db knows for it, or a `first.last@FIXME.edu` placeholder.
    pub email: String,
    pub name: String,
}

#[derive(Debug)]
pub struct ClassView<'a> {
    pub entries: Vec<Entry<'a>>,
    pub orphans: Vec<Orphan<'a>>,
    /// Keys that may be leftovers of an interrupted create: claimed by nobody until settled.
    pub suspects: Vec<&'a Key>,
}

impl<'a> ClassView<'a> {
    /// Every (email, name, key) of the class, roster order, then orphans.
    pub fn rows(&self) -> Vec<(&str, &str, &'a Key)> {
        let mut out: Vec<(&str, &str, &'a Key)> = Vec::new();
        for e in &self.entries {
            for k in &e.keys {
                out.push((e.student.email.as_str(), e.student.name.as_str(), *k));
            }
        }
        for o in &self.orphans {
            out.push((o.email.as_str(), o.name.as_str(), o.key));
        }
        out
    }

    /// Each roster row that has a key, with that key: the rows of limits.csv.
    pub fn with_keys(&self) -> Vec<(&str, &str, &'a Key)> {
        self.entries
            .iter()
            .filter_map(|e| {
                e.key()
                    .map(|k| (e.student.email.as_str(), e.student.name.as_str(), k))
            })
            .collect()
    }

    /// Roster students (not placeholders) with no key at all, enabled or disabled.
    pub fn keyless(&self) -> Vec<&'a Student> {
        self.entries
            .iter()
            .filter(|e| e.keys.is_empty() && !e.student.is_placeholder())
            .map(|e| e.student)
            .collect()
    }

    pub fn entry(&self, email: &str) -> Option<&Entry<'a>> {
        let k = email_key(email);
        self.entries
            .iter()
            .find(|e| email_key(&e.student.email) == k)
    }
}

/// The student name a key name carries: `20250907_Alice Smith` -> `Alice Smith`.
pub fn student_name(key_name: &str) -> &str {
    let b = key_name.as_bytes();
    if b.len() > 9 && b[..8].iter().all(u8::is_ascii_digit) && b[8] == b'_' {
        &key_name[9..]
    } else {
        key_name
    }
}

pub fn key_name(date: &str, student: &str) -> String {
    format!("{date}_{student}")
}

pub fn match_keys<'a>(
    roster: &'a [Student],
    known: &[KnownKey],
    known_names: &HashMap<String, String>,
    account: &'a [Key],
    suspects: &HashSet<&str>,
) -> ClassView<'a> {
    let by_email: HashMap<String, usize> = roster
        .iter()
        .enumerate()
        .map(|(i, s)| (email_key(&s.email), i))
        .collect();
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in roster.iter().enumerate() {
        by_name.entry(s.name.as_str()).or_default().push(i);
    }
    let known: HashMap<&str, &KnownKey> = known.iter().map(|k| (k.hash.as_str(), k)).collect();
    let mut keys_of: Vec<Vec<&'a Key>> = vec![Vec::new(); roster.len()];
    let mut orphans = Vec::new();
    let mut suspect_keys = Vec::new();
    let mut unclaimed = Vec::new();

    for key in account {
        if suspects.contains(key.hash.as_str()) {
            suspect_keys.push(key);
            continue;
        }
        match known.get(key.hash.as_str()).filter(|k| !k.email.is_empty()) {
            Some(k) => match by_email.get(&email_key(&k.email)) {
                Some(&i) => keys_of[i].push(key),
                // A FIXME placeholder the instructor has since corrected in the roster: match by name.
                None if is_placeholder(&k.email) => unclaimed.push((key, Some(k.email.as_str()))),
                None => {
                    let name = known_names
                        .get(&email_key(&k.email))
                        .filter(|n| !n.is_empty())
                        .cloned()
                        .unwrap_or_else(|| student_name(&key.name).to_string());
                    orphans.push(Orphan {
                        key,
                        email: k.email.clone(),
                        name,
                    });
                }
            },
            None => unclaimed.push((key, None)),
        }
    }
    // Oldest first, so that re-runs give the same answer.
    unclaimed.sort_by(|(a, _), (b, _)| (a.created(), &a.hash).cmp(&(b.created(), &b.hash)));
    let mut taken: HashSet<String> = roster.iter().map(|s| email_key(&s.email)).collect();
    taken.extend(orphans.iter().map(|o| email_key(&o.email)));
    for (key, placeholder) in unclaimed {
        let name = student_name(&key.name);
        let free = by_name
            .get(name)
            .and_then(|c| c.iter().copied().find(|i| keys_of[*i].is_empty()));
        match free {
            Some(i) => keys_of[i].push(key),
            None => {
                let email = match placeholder {
                    Some(p) if taken.insert(email_key(p)) => p.to_string(),
                    _ => placeholder_email(name, &key.hash, &mut taken),
                };
                orphans.push(Orphan {
                    key,
                    email,
                    name: name.to_string(),
                });
            }
        }
    }
    let entries = roster
        .iter()
        .zip(keys_of)
        .map(|(student, mut keys)| {
            keys.sort_by(|a, b| {
                a.disabled
                    .cmp(&b.disabled)
                    .then_with(|| b.created().cmp(&a.created()))
            });
            Entry { student, keys }
        })
        .collect();
    ClassView {
        entries,
        orphans,
        suspects: suspect_keys,
    }
}

/// `Ada Lovelace` -> `ada.lovelace@FIXME.edu`, made unique against `taken`.
pub fn placeholder_email(name: &str, hash: &str, taken: &mut HashSet<String>) -> String {
    let words: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    let stem = if words.is_empty() {
        format!("key.{}", hash.get(..8).unwrap_or(hash))
    } else {
        words.join(".")
    };
    let mut email = format!("{stem}@FIXME.edu");
    let mut n = 2;
    while !taken.insert(email_key(&email)) {
        email = format!("{stem}.{n}@FIXME.edu");
        n += 1;
    }
    email
}

/// How far before an attempt's recorded start a key may have been created (clock skew).
const SKEW: i64 = 120;

/// Keys that an unsettled create may have made: same name, created after the attempt, a hash
/// keys.db does not know. Returns, per attempt, the keys to delete.
pub fn leftovers<'a>(
    attempts: &[Attempt],
    account: &'a [Key],
    known: &[KnownKey],
) -> Vec<(i64, Vec<&'a Key>)> {
    let known: HashSet<&str> = known.iter().map(|k| k.hash.as_str()).collect();
    attempts
        .iter()
        .map(|a| {
            let since = a.started_at - Duration::seconds(SKEW);
            let keys = account
                .iter()
                .filter(|k| k.name == a.key_name && !known.contains(k.hash.as_str()))
                .filter(|k| k.created().is_none_or(|c| c >= since))
                .collect();
            (a.id, keys)
        })
        .collect()
}

/// The limit and reset a new key of this student gets.
pub fn new_key_limits(student: &Student, default: Option<f64>) -> (Option<f64>, Option<String>) {
    (
        student.limit.unwrap_or(default),
        student.limit_reset.clone(),
    )
}

fn same_money(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() < 1e-9,
        _ => false,
    }
}

/// One PATCH that `update` will send.
#[derive(Debug, Clone)]
pub struct PlannedPatch<'a> {
    pub email: String,
    pub key: &'a Key,
    pub patch: Patch,
}

/// A limits.csv row that `update` cannot apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub email: String,
    pub line: u64,
    pub why: String,
}

/// What `update` should send: only the fields whose target differs from the account.
pub fn plan_updates<'a>(
    view: &ClassView<'a>,
    limits: &LimitsFile,
) -> (Vec<PlannedPatch<'a>>, Vec<Skipped>) {
    let rows = view.rows();
    let by_hash: HashMap<&str, (&str, &'a Key)> = rows
        .iter()
        .map(|(e, _, k)| (k.hash.as_str(), (*e, *k)))
        .collect();
    let by_email: HashMap<String, (String, &'a Key)> = view
        .entries
        .iter()
        .filter_map(|e| {
            e.key()
                .map(|k| (email_key(&e.student.email), (e.student.email.clone(), k)))
        })
        .chain(
            view.orphans
                .iter()
                .map(|o| (email_key(&o.email), (o.email.clone(), o.key))),
        )
        .collect();
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    for row in &limits.rows {
        let found = by_hash
            .get(row.hash.as_str())
            .map(|(e, k)| (e.to_string(), *k))
            .or_else(|| by_email.get(&email_key(&row.email)).cloned());
        let Some((email, key)) = found else {
            skipped.push(Skipped {
                email: row.email.clone(),
                line: row.line,
                why: "no key on the account for this student (run `classkeys provision`, or `check` to refresh)".into(),
            });
            continue;
        };
        let patch = patch_for(row, key);
        if !patch.is_empty() {
            planned.push(PlannedPatch { email, key, patch });
        }
    }
    (planned, skipped)
}

pub fn patch_for(row: &LimitsRow, key: &Key) -> Patch {
    Patch {
        limit: row.target_limit.filter(|t| !same_money(*t, key.limit)),
        disabled: row.target_disabled.filter(|t| *t != key.disabled),
        limit_reset: row
            .target_limit_reset
            .clone()
            .filter(|t| *t != key.limit_reset),
    }
}

/// The audit rows for a key that went from `before` to `after`.
pub fn changes(email: &str, before: &Key, after: &Key) -> Vec<Change> {
    let mut out = Vec::new();
    let change = |action, old: String, new: String| Change {
        hash: after.hash.clone(),
        email: email.to_string(),
        action,
        old: Some(old),
        new: Some(new),
    };
    if !same_money(before.limit, after.limit) {
        out.push(change(
            "limit_changed",
            money_cell(before.limit),
            money_cell(after.limit),
        ));
    }
    if before.disabled != after.disabled {
        let action = if after.disabled {
            "disabled"
        } else {
            "enabled"
        };
        out.push(change(
            action,
            before.disabled.to_string(),
            after.disabled.to_string(),
        ));
    }
    if before.limit_reset != after.limit_reset {
        out.push(change(
            "limit_reset_changed",
            reset_cell(before.limit_reset.as_deref()),
            reset_cell(after.limit_reset.as_deref()),
        ));
    }
    out
}

/// Whether new keys' limits plus what existing enabled keys may still spend exceed the account's credits.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct CreditCheck {
    pub remaining_credits: f64,
    pub existing_remaining_limits: f64,
    pub new_limits: f64,
    pub unlimited_new_keys: usize,
    pub shortfall: Option<f64>,
}

pub fn credit_check(credits: &Credits, account: &[Key], new_limits: &[Option<f64>]) -> CreditCheck {
    let remaining_credits = credits.total_credits - credits.total_usage;
    let existing: f64 = account
        .iter()
        .filter(|k| !k.disabled)
        .filter_map(|k| {
            k.limit
                .map(|l| k.limit_remaining.unwrap_or(l - k.usage).max(0.0))
        })
        .sum::<f64>()
        + 0.0; // an empty sum is -0.0, which would print as "$-0.00"
    let new: f64 = new_limits.iter().flatten().sum::<f64>() + 0.0;
    let unlimited = new_limits.iter().filter(|l| l.is_none()).count();
    let need = existing + new;
    let shortfall = (need > remaining_credits + 1e-9).then_some(need - remaining_credits);
    CreditCheck {
        remaining_credits,
        existing_remaining_limits: existing,
        new_limits: new,
        unlimited_new_keys: unlimited,
        shortfall,
    }
}

/// Local date for key names: `YYYYMMDD`.
pub fn name_date(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono::Local)
        .format("%Y%m%d")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hash: &str, name: &str, created: &str) -> Key {
        Key {
            hash: hash.into(),
            name: name.into(),
            label: String::new(),
            disabled: false,
            limit: Some(2.0),
            limit_remaining: None,
            limit_reset: None,
            include_byok_in_limit: false,
            usage: 0.0,
            created_at: Some(created.into()),
            updated_at: None,
            expires_at: None,
        }
    }

    fn student(email: &str, name: &str) -> Student {
        Student {
            email: email.into(),
            name: name.into(),
            limit: None,
            limit_reset: None,
            line: 0,
        }
    }

    fn known(hash: &str, email: &str) -> KnownKey {
        KnownKey {
            hash: hash.into(),
            email: email.into(),
            ..Default::default()
        }
    }

    #[test]
    fn hash_first_then_name_and_same_names_get_one_key_each() {
        let roster = vec![
            student("a1@u.edu", "Alex Kim"),
            student("a2@u.edu", "Alex Kim"),
            student("b@u.edu", "Bo"),
        ];
        let account = vec![
            key("h2", "20250101_Alex Kim", "2025-01-01T10:00:02Z"),
            key("h1", "20250101_Alex Kim", "2025-01-01T10:00:01Z"),
            key("h3", "20250101_Bo", "2025-01-01T10:00:03Z"),
        ];
        // keys.db knows h2 belongs to the second Alex.
        let view = match_keys(
            &roster,
            &[known("h2", "a2@u.edu")],
            &HashMap::new(),
            &account,
            &HashSet::new(),
        );
        assert_eq!(view.entries[0].key().unwrap().hash, "h1");
        assert_eq!(view.entries[1].key().unwrap().hash, "h2");
        assert_eq!(view.entries[2].key().unwrap().hash, "h3");
        assert!(view.orphans.is_empty());
        assert!(view.keyless().is_empty());
    }

    #[test]
    fn unknown_keys_become_placeholders_and_known_emails_are_kept() {
        let roster = vec![student("a@u.edu", "Ada")];
        let account = vec![
            key("h1", "20250101_Barbara Liskov", "2025-01-01T10:00:00Z"),
            key("h2", "My Production Key", "2025-01-01T10:00:00Z"),
            key("h3", "20250101_Grace", "2025-01-01T10:00:00Z"),
            key("h4", "20250102_Barbara Liskov", "2025-01-02T10:00:00Z"),
        ];
        let names = HashMap::from([("grace@u.edu".to_string(), "Grace Hopper".to_string())]);
        let view = match_keys(
            &roster,
            &[known("h3", "grace@u.edu")],
            &names,
            &account,
            &HashSet::new(),
        );
        let emails: Vec<_> = view
            .orphans
            .iter()
            .map(|o| (o.email.as_str(), o.name.as_str()))
            .collect();
        assert!(emails.contains(&("grace@u.edu", "Grace Hopper")));
        assert!(emails.contains(&("barbara.liskov@FIXME.edu", "Barbara Liskov")));
        assert!(emails.contains(&("barbara.liskov.2@FIXME.edu", "Barbara Liskov")));
        assert!(emails.contains(&("my.production.key@FIXME.edu", "My Production Key")));
        assert_eq!(view.keyless().len(), 1);
    }

    #[test]
    fn a_corrected_placeholder_email_keeps_its_key() {
        let account = vec![key("h1", "20250101_Barbara Liskov", "2025-01-01T10:00:00Z")];
        let known = [known("h1", "barbara.liskov@FIXME.edu")];
        // The roster row was corrected: the key goes to it by name.
        let roster = vec![student("barbara@uni.edu", "Barbara Liskov")];
        let view = match_keys(&roster, &known, &HashMap::new(), &account, &HashSet::new());
        assert_eq!(view.entries[0].key().unwrap().hash, "h1");
        assert!(view.orphans.is_empty() && view.keyless().is_empty());
        // The row was deleted: the key stays an orphan under the placeholder it had.
        let roster = vec![student("ada@uni.edu", "Ada")];
        let view = match_keys(&roster, &known, &HashMap::new(), &account, &HashSet::new());
        assert_eq!(view.orphans[0].email, "barbara.liskov@FIXME.edu");
    }

    #[test]
    fn disabled_keys_count_and_placeholders_are_not_provisioned() {
        let roster = vec![
            student("a@u.edu", "Ada"),
            student("x.y@FIXME.edu", "X Y"),
            student("b@u.edu", "Bob"),
        ];
        let mut k = key("h1", "20250101_Ada", "2025-01-01T10:00:00Z");
        k.disabled = true;
        let account = vec![k];
        let view = match_keys(&roster, &[], &HashMap::new(), &account, &HashSet::new());
        let keyless: Vec<_> = view.keyless().iter().map(|s| s.email.clone()).collect();
        assert_eq!(keyless, vec!["b@u.edu"]);
    }

    #[test]
    fn suspects_are_claimed_by_nobody() {
        let roster = vec![student("a@u.edu", "Ada")];
        let account = vec![key("h1", "20250101_Ada", "2025-01-01T10:00:00Z")];
        let view = match_keys(
            &roster,
            &[],
            &HashMap::new(),
            &account,
            &HashSet::from(["h1"]),
        );
        assert_eq!(view.suspects.len(), 1);
        assert_eq!(view.keyless().len(), 1);
        assert!(view.orphans.is_empty());
    }

    #[test]
    fn leftovers_are_same_name_unknown_and_not_older_than_the_attempt() {
        let at = "2025-01-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let attempt = Attempt {
            id: 7,
            email: "a@u.edu".into(),
            key_name: "20250101_Ada".into(),
            started_at: at,
        };
        let account = vec![
            key("new", "20250101_Ada", "2025-01-01T10:00:01Z"),
            key("old", "20250101_Ada", "2024-12-01T10:00:00Z"),
            key("known", "20250101_Ada", "2025-01-01T10:00:02Z"),
            key("other", "20250101_Bob", "2025-01-01T10:00:02Z"),
        ];
        let found = leftovers(&[attempt], &account, &[known("known", "a@u.edu")]);
        assert_eq!(found.len(), 1);
        let hashes: Vec<_> = found[0].1.iter().map(|k| k.hash.as_str()).collect();
        assert_eq!(hashes, vec!["new"]);
    }

    #[test]
    fn update_sends_only_what_differs_and_zero_is_not_unlimited() {
        let roster = vec![
            student("a@u.edu", "Ada"),
            student("b@u.edu", "Bob"),
            student("c@u.edu", "Cy"),
        ];
        let account = vec![
            key("h1", "20250101_Ada", "2025-01-01T10:00:00Z"),
            key("h2", "20250101_Bob", "2025-01-01T10:00:00Z"),
            key("h3", "20250101_Cy", "2025-01-01T10:00:00Z"),
        ];
        let view = match_keys(&roster, &[], &HashMap::new(), &account, &HashSet::new());
        let row = |email: &str, limit, disabled| LimitsRow {
            email: email.into(),
            target_limit: limit,
            target_disabled: disabled,
            ..Default::default()
        };
        let limits = LimitsFile {
            rows: vec![
                row("a@u.edu", Some(None), None),
                row("b@u.edu", Some(Some(0.0)), Some(true)),
                row("c@u.edu", Some(Some(2.0)), Some(false)),
                row("ghost@u.edu", Some(Some(1.0)), None),
            ],
            ..Default::default()
        };
        let (planned, skipped) = plan_updates(&view, &limits);
        assert_eq!(planned.len(), 2);
        assert_eq!(
            planned[0].patch,
            Patch {
                limit: Some(None),
                ..Default::default()
            }
        );
        assert_eq!(
            planned[1].patch,
            Patch {
                limit: Some(Some(0.0)),
                disabled: Some(true),
                limit_reset: None
            }
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].email, "ghost@u.edu");
    }

    #[test]
    fn changes_name_old_and_new() {
        let before = key("h", "n", "2025-01-01T10:00:00Z");
        let mut after = before.clone();
        after.limit = None;
        after.disabled = true;
        let c = changes("a@u.edu", &before, &after);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].action, c[0].old.as_deref(), c[0].new.as_deref()),
            ("limit_changed", Some("2.0"), Some("unlimited"))
        );
        assert_eq!(c[1].action, "disabled");
    }

    #[test]
    fn credits_warn_only_when_short() {
        let credits = Credits {
            total_credits: 10.0,
            total_usage: 4.0,
        };
        let mut existing = key("h", "n", "2025-01-01T10:00:00Z");
        existing.limit = Some(3.0);
        existing.usage = 1.0;
        let fits = credit_check(&credits, &[existing.clone()], &[Some(2.0), Some(2.0)]);
        assert_eq!(fits.shortfall, None);
        let short = credit_check(&credits, &[existing], &[Some(2.0), Some(3.0)]);
        assert_eq!(short.shortfall, Some(1.0));
    }

    #[test]
    fn student_names_from_key_names() {
        assert_eq!(student_name("20250907_Alice Smith"), "Alice Smith");
        assert_eq!(student_name("My Key"), "My Key");
        assert_eq!(student_name("2025_x"), "2025_x");
    }
}
