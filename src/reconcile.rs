//! Pure logic, no I/O: which key belongs to which student, what to create, what to change.
//!
//! A class owns its keys by hash: a key keys.db records as the class's goes to the student
//! recorded for it, and to nobody else. A key keys.db does not know is never given to a
//! student by its name alone: in an untagged class it becomes a FIXME row (once: a row the
//! instructor deletes is dismissed for good); in a tagged class only `TAG_…` keys can be the
//! class's, and one named for exactly one roster student without a key is adopted for them.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::domain::{
    Change, Credits, Intent, IntentAction, Key, KnownKey, Naming, Owner, Patch, Student,
    dated_name, email_key, is_placeholder, money_cell, reset_cell, same_money,
};
use crate::files::limits::{LimitsFile, LimitsRow};

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

/// A key with the email and name it is shown under, outside the roster's students.
#[derive(Debug)]
pub struct Orphan<'a> {
    pub key: &'a Key,
    pub email: String,
    pub name: String,
}

/// Why a key became the class's in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adoption {
    /// The instructor wrote the student's email into the key's FIXME row.
    FixmeCorrected,
    /// A `TAG_YYYYMMDD_<name>` key of a tagged class, for the one student of that name.
    TagName,
}

#[derive(Debug)]
pub struct Adopted<'a> {
    pub key: &'a Key,
    pub email: String,
    pub name: String,
    pub why: Adoption,
}

/// A roster email without a key whose name is that of a student who left the roster with a
/// live key: most likely the same student under a corrected email.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Renamed {
    /// The roster email without a key.
    #[serde(rename = "email")]
    pub new_email: String,
    pub old_email: String,
    pub name: String,
}

/// What keys.db knows, as matching needs it.
#[derive(Debug, Clone, Default)]
pub struct Books {
    pub keys: Vec<KnownKey>,
    /// Names keys.db knows for emails (lower-cased email -> name).
    pub names: HashMap<String, String>,
    /// Emails keys.db has recorded as students (lower-cased).
    pub students: HashSet<String>,
    /// Students dropped with `drop-student` (lower-cased).
    pub dropped: HashSet<String>,
}

impl Books {
    pub fn with_keys(keys: Vec<KnownKey>) -> Books {
        Books {
            keys,
            ..Books::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct ClassView<'a> {
    /// Every roster row, FIXME rows included, with its keys.
    pub entries: Vec<Entry<'a>>,
    /// Unknown keys that may be the class's: FIXME rows to add (`check` adds them).
    pub orphans: Vec<Orphan<'a>>,
    /// The class's keys whose student is not on the roster (dropped, or an email changed by hand).
    pub off_roster: Vec<Orphan<'a>>,
    /// Keys that became the class's in this run (already placed in `entries`).
    pub adopted: Vec<Adopted<'a>>,
    /// FIXME keys whose row the instructor deleted.
    pub dismissed: Vec<&'a Key>,
    /// Keys that may be leftovers of an interrupted create: claimed by nobody until settled.
    pub suspects: Vec<&'a Key>,
    /// Roster students who look like a student whose email changed.
    pub renamed: Vec<Renamed>,
    /// Roster students without a key whose same-name classmate holds two keys of that name
    /// (manage_keys.py recorded both under one email): who holds which is not known.
    pub ambiguous: Vec<Renamed>,
    /// Keys of the account that are not the class's (other classes, the instructor's own,
    /// FIXME rows, dismissed ones).
    pub not_ours: usize,
}

impl<'a> ClassView<'a> {
    /// Every (email, name, key) of the class's students, roster order: the class's figures.
    pub fn rows(&self) -> Vec<(&str, &str, &'a Key)> {
        self.entries
            .iter()
            .filter(|e| !e.student.is_placeholder())
            .flat_map(|e| {
                e.keys
                    .iter()
                    .map(|k| (e.student.email.as_str(), e.student.name.as_str(), *k))
            })
            .collect()
    }

    /// FIXME rows with their keys: listed apart, never counted.
    pub fn fixme_rows(&self) -> Vec<(&str, &str, &'a Key)> {
        self.entries
            .iter()
            .filter(|e| e.student.is_placeholder())
            .flat_map(|e| {
                e.keys
                    .iter()
                    .map(|k| (e.student.email.as_str(), e.student.name.as_str(), *k))
            })
            .collect()
    }

    /// Each student of the roster that has a key, with that key: the rows of limits.csv.
    pub fn with_keys(&self) -> Vec<(&str, &str, &'a Key)> {
        self.entries
            .iter()
            .filter(|e| !e.student.is_placeholder())
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

    pub fn renamed_for(&self, email: &str) -> Option<&Renamed> {
        let k = email_key(email);
        self.renamed
            .iter()
            .chain(&self.ambiguous)
            .find(|r| email_key(&r.new_email) == k)
    }
}

/// The student name a key name carries: `20250907_Alice Smith` -> `Alice Smith`, also after a
/// class tag (`CS101_20250907_Alice Smith`).
pub fn student_name(key_name: &str) -> &str {
    if let Some(n) = dated_name(key_name) {
        return n;
    }
    if let Some((tag, rest)) = key_name.split_once('_')
        && !tag.is_empty()
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && let Some(n) = dated_name(rest)
    {
        return n;
    }
    key_name
}

/// A key's name made fit for a roster row: one line, no control characters, not empty, not huge.
pub fn roster_name(key_name: &str, hash: &str) -> String {
    let one_line: String = student_name(key_name)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = one_line.split_whitespace().collect();
    let mut name: String = words.join(" ").chars().take(200).collect();
    if name.trim().is_empty() {
        name = format!("key {}", hash.get(..8).unwrap_or(hash));
    }
    name
}

pub fn match_keys<'a>(
    roster: &'a [Student],
    ledger: &Books,
    account: &'a [Key],
    suspects: &HashSet<&str>,
    naming: &Naming,
) -> ClassView<'a> {
    let by_email: HashMap<String, usize> = roster
        .iter()
        .enumerate()
        .map(|(i, s)| (email_key(&s.email), i))
        .collect();
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in roster.iter().enumerate() {
        if !s.is_placeholder() {
            by_name.entry(s.name.as_str()).or_default().push(i);
        }
    }
    let known: HashMap<&str, &KnownKey> =
        ledger.keys.iter().map(|k| (k.hash.as_str(), k)).collect();
    let mut view = ClassView::default();
    let mut keys_of: Vec<Vec<&'a Key>> = vec![Vec::new(); roster.len()];
    let mut fixme_left: Vec<(&'a Key, &str)> = Vec::new();
    let mut unknown: Vec<&'a Key> = Vec::new();

    for key in account {
        if suspects.contains(key.hash.as_str()) {
            view.suspects.push(key);
            continue;
        }
        match known.get(key.hash.as_str()) {
            Some(k) if k.owner == Owner::Class && !k.email.is_empty() => {
                match by_email.get(&email_key(&k.email)) {
                    Some(&i) => keys_of[i].push(key),
                    None => {
                        let name = ledger
                            .names
                            .get(&email_key(&k.email))
                            .filter(|n| !n.is_empty())
                            .cloned()
                            .unwrap_or_else(|| roster_name(&key.name, &key.hash));
                        view.off_roster.push(Orphan {
                            key,
                            email: k.email.clone(),
                            name,
                        });
                    }
                }
            }
            Some(k) if k.owner == Owner::Fixme => match by_email.get(&email_key(&k.email)) {
                Some(&i) => {
                    keys_of[i].push(key);
                    view.not_ours += 1;
                }
                None => fixme_left.push((key, k.email.as_str())),
            },
            Some(k) if k.owner == Owner::Dismissed => view.not_ours += 1,
            _ => unknown.push(key),
        }
    }
    // Oldest first, so that re-runs give the same answer.
    let oldest = |a: &&Key, b: &&Key| (a.created(), &a.hash).cmp(&(b.created(), &b.hash));
    fixme_left.sort_by(|(a, _), (b, _)| oldest(a, b));
    unknown.sort_by(oldest);
    // The one roster student of this name who has no key yet and (for a corrected FIXME row)
    // whom keys.db has never seen: a new email the instructor just wrote in.
    let free = |name: &str, keys_of: &[Vec<&Key>], new_only: bool| -> Option<usize> {
        let c: Vec<usize> = by_name
            .get(name)?
            .iter()
            .copied()
            .filter(|i| keys_of[*i].is_empty())
            .filter(|i| !new_only || !ledger.students.contains(&email_key(&roster[*i].email)))
            .collect();
        (c.len() == 1).then(|| c[0])
    };
    // The one roster student without a key whom a key name of this class designates (by name,
    // or by pseudonym).
    let by_pseudonym: HashMap<String, Vec<usize>> = match &naming.pseudonym_secret {
        Some(secret) => {
            let mut m: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, s) in roster
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.is_placeholder())
            {
                m.entry(crate::domain::pseudonym(secret, &s.email))
                    .or_default()
                    .push(i);
            }
            m
        }
        None => HashMap::new(),
    };
    let designated = |key_name: &str, keys_of: &[Vec<&Key>]| -> Option<usize> {
        let who = naming.student_of(key_name)?;
        let c: Vec<usize> = by_name
            .get(who)
            .into_iter()
            .chain(by_pseudonym.get(who))
            .flatten()
            .copied()
            .filter(|i| keys_of[*i].is_empty())
            .collect();
        (c.len() == 1).then(|| c[0])
    };
    for (key, placeholder) in fixme_left {
        let name = ledger
            .names
            .get(&email_key(placeholder))
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| roster_name(&key.name, &key.hash));
        match free(&name, &keys_of, true) {
            Some(i) => {
                keys_of[i].push(key);
                view.adopted.push(Adopted {
                    key,
                    email: roster[i].email.clone(),
                    name: roster[i].name.clone(),
                    why: Adoption::FixmeCorrected,
                });
            }
            None => {
                view.dismissed.push(key);
                view.not_ours += 1;
            }
        }
    }
    let mut taken: HashSet<String> = roster.iter().map(|s| email_key(&s.email)).collect();
    let recorded: HashSet<String> = ledger.keys.iter().map(|k| email_key(&k.email)).collect();
    let mut unclaimed_fixme: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in roster.iter().enumerate() {
        if s.is_placeholder() && keys_of[i].is_empty() && !recorded.contains(&email_key(&s.email)) {
            unclaimed_fixme.entry(s.name.as_str()).or_default().push(i);
        }
    }
    taken.extend(view.off_roster.iter().map(|o| email_key(&o.email)));
    for key in unknown {
        if !naming.may_be_ours(&key.name) {
            view.not_ours += 1;
            continue;
        }
        if naming.tag.is_some()
            && let Some(i) = designated(&key.name, &keys_of)
        {
            keys_of[i].push(key);
            view.adopted.push(Adopted {
                key,
                email: roster[i].email.clone(),
                name: roster[i].name.clone(),
                why: Adoption::TagName,
            });
            continue;
        }
        let name = roster_name(&key.name, &key.hash);
        view.not_ours += 1;
        // A FIXME row of this name already in the roster that keys.db never recorded a key for:
        // a `check` that added it died before it recorded the key. The row is this key's.
        if let Some(i) = unclaimed_fixme
            .get_mut(name.as_str())
            .and_then(|rows| (!rows.is_empty()).then(|| rows.remove(0)))
        {
            keys_of[i].push(key);
            continue;
        }
        let email = placeholder_email(&name, &key.hash, &mut taken);
        view.orphans.push(Orphan { key, email, name });
    }
    // A keyless student named like a student who left the roster with a live key.
    let mut gone_by_name: HashMap<&str, &Orphan> = HashMap::new();
    for o in &view.off_roster {
        if !ledger.dropped.contains(&email_key(&o.email)) && !o.key.disabled {
            gone_by_name.entry(o.name.as_str()).or_insert(o);
        }
    }
    for (i, s) in roster.iter().enumerate() {
        if keys_of[i].is_empty()
            && !s.is_placeholder()
            && let Some(o) = gone_by_name.get(s.name.as_str())
        {
            view.renamed.push(Renamed {
                new_email: s.email.clone(),
                old_email: o.email.clone(),
                name: s.name.clone(),
            });
        }
    }
    // A keyless student whose same-name classmate holds two keys named for that name.
    for (i, s) in roster.iter().enumerate() {
        if !keys_of[i].is_empty() || s.is_placeholder() {
            continue;
        }
        let holder = by_name.get(s.name.as_str()).and_then(|c| {
            c.iter().copied().find(|j| {
                *j != i
                    && keys_of[*j]
                        .iter()
                        .filter(|k| student_name(&k.name) == s.name)
                        .count()
                        >= 2
            })
        });
        if let Some(j) = holder {
            view.ambiguous.push(Renamed {
                new_email: s.email.clone(),
                old_email: roster[j].email.clone(),
                name: s.name.clone(),
            });
        }
    }
    view.entries = roster
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
    view
}

/// `Ada Lovelace` -> `ada.lovelace@FIXME.edu`, made unique against `taken`.
pub fn placeholder_email(name: &str, hash: &str, taken: &mut HashSet<String>) -> String {
    let words: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    let mut stem = if words.is_empty() {
        format!("key.{}", hash.get(..8).unwrap_or(hash))
    } else {
        words.join(".")
    };
    stem = stem.chars().take(60).collect();
    let mut email = format!("{stem}@FIXME.edu");
    let mut n = 2;
    while !taken.insert(email_key(&email)) {
        email = format!("{stem}.{n}@FIXME.edu");
        n += 1;
    }
    email
}

/// How far before a legacy attempt's recorded start a key may have been created (clock skew).
/// Creates journaled since schema 4 do not depend on any clock.
const SKEW: i64 = 120;

/// Keys that an unsettled create may have made: the same name, a hash keys.db does not know,
/// and not among the keys of that name the account had when the create was sent. Returns, per
/// open create, the keys to delete.
pub fn leftovers<'a>(
    intents: &[Intent],
    account: &'a [Key],
    known: &[KnownKey],
) -> Vec<(i64, Vec<&'a Key>)> {
    let known: HashSet<&str> = known.iter().map(|k| k.hash.as_str()).collect();
    intents
        .iter()
        .filter(|i| i.action == IntentAction::Create)
        .map(|a| {
            let keys = account
                .iter()
                .filter(|k| k.name == a.key_name && !known.contains(k.hash.as_str()))
                .filter(|k| match &a.before {
                    Some(before) => !before.contains(&k.hash),
                    None => {
                        let since = a.started_at - Duration::seconds(SKEW);
                        k.created().is_none_or(|c| c >= since)
                    }
                })
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
        .with_keys()
        .into_iter()
        .map(|(e, _, k)| (email_key(e), (e.to_string(), k)))
        .collect();
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    for row in &limits.rows {
        if is_placeholder(&row.email) {
            skipped.push(Skipped {
                email: row.email.clone(),
                line: row.line,
                why: "a FIXME row is not a student of the class: write the student's email into roster.csv to adopt its key".into(),
            });
            continue;
        }
        // A row's hash counts only if it is the key of that row's student.
        let found = by_hash
            .get(row.hash.as_str())
            .filter(|(e, _)| email_key(e) == email_key(&row.email))
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
        let mut patch = patch_for(row, key);
        if limits.python_zero(row, key) {
            // manage_keys.py wrote `unlimited` for this $0 limit: it meant $0.
            patch.limit = None;
        }
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

    fn known_as(hash: &str, email: &str, owner: Owner) -> KnownKey {
        KnownKey {
            owner,
            ..known(hash, email)
        }
    }

    impl Books {
        fn new(keys: Vec<KnownKey>) -> Books {
            Books::with_keys(keys)
        }
        fn view<'a>(
            &self,
            roster: &'a [Student],
            account: &'a [Key],
            naming: &Naming,
        ) -> ClassView<'a> {
            match_keys(roster, self, account, &HashSet::new(), naming)
        }
    }

    fn tagged(tag: &str) -> Naming {
        Naming {
            tag: Some(crate::domain::Tag::parse(tag).unwrap()),
            pseudonym_secret: None,
        }
    }

    #[test]
    fn keys_go_by_hash_only_and_a_same_name_key_of_another_class_is_not_taken() {
        let roster = vec![
            student("a1@u.edu", "Alex Kim"),
            student("a2@u.edu", "Alex Kim"),
            student("b@u.edu", "Bo"),
        ];
        let account = vec![
            key("h2", "20250101_Alex Kim", "2025-01-01T10:00:02Z"),
            key("h1", "20250101_Alex Kim", "2025-01-01T10:00:01Z"),
            // Another class's Bo, on the same account.
            key("h3", "20250101_Bo", "2025-01-01T10:00:03Z"),
        ];
        let books = Books::new(vec![known("h2", "a2@u.edu"), known("h1", "a1@u.edu")]);
        let view = books.view(&roster, &account, &Naming::default());
        assert_eq!(view.entries[0].key().unwrap().hash, "h1");
        assert_eq!(view.entries[1].key().unwrap().hash, "h2");
        assert!(
            view.entries[2].keys.is_empty(),
            "Bo does not get the other class's key"
        );
        assert_eq!(view.keyless().len(), 1);
        assert_eq!(view.orphans.len(), 1);
        assert_eq!(view.orphans[0].email, "bo@FIXME.edu");
        assert_eq!(view.rows().len(), 2, "only the class's keys are counted");
        assert_eq!(view.not_ours, 1);
        // A tagged class does not even list it.
        let view = books.view(&roster, &account, &tagged("CS1"));
        assert!(view.orphans.is_empty());
        assert_eq!(view.not_ours, 1);
    }

    #[test]
    fn unknown_keys_become_placeholders_and_off_roster_keys_stay_apart() {
        let roster = vec![student("a@u.edu", "Ada")];
        let account = vec![
            key("h1", "20250101_Barbara Liskov", "2025-01-01T10:00:00Z"),
            key("h2", "My Production Key", "2025-01-01T10:00:00Z"),
            key("h3", "20250101_Grace", "2025-01-01T10:00:00Z"),
            key("h4", "20250102_Barbara Liskov", "2025-01-02T10:00:00Z"),
            key("h5", "line\nbreak\r\u{1b}[2J", "2025-01-02T10:00:00Z"),
            key("h6", "", "2025-01-02T10:00:00Z"),
        ];
        let mut books = Books::new(vec![known("h3", "grace@u.edu")]);
        books
            .names
            .insert("grace@u.edu".to_string(), "Grace Hopper".to_string());
        let view = books.view(&roster, &account, &Naming::default());
        let emails: Vec<_> = view
            .orphans
            .iter()
            .map(|o| (o.email.as_str(), o.name.as_str()))
            .collect();
        assert!(emails.contains(&("barbara.liskov@FIXME.edu", "Barbara Liskov")));
        assert!(emails.contains(&("barbara.liskov.2@FIXME.edu", "Barbara Liskov")));
        assert!(emails.contains(&("my.production.key@FIXME.edu", "My Production Key")));
        assert!(emails.contains(&("line.break.2j@FIXME.edu", "line break [2J")));
        assert!(emails.contains(&("key.h6@FIXME.edu", "key h6")));
        assert_eq!(view.off_roster.len(), 1);
        assert_eq!(view.off_roster[0].email, "grace@u.edu");
        assert_eq!(view.off_roster[0].name, "Grace Hopper");
        assert_eq!(view.keyless().len(), 1);
    }

    #[test]
    fn a_corrected_fixme_row_adopts_and_a_deleted_one_dismisses() {
        let account = vec![key("h1", "20250101_Barbara Liskov", "2025-01-01T10:00:00Z")];
        let books = Books::new(vec![known_as(
            "h1",
            "barbara.liskov@FIXME.edu",
            Owner::Fixme,
        )]);
        // Still a FIXME row: listed apart, not counted.
        let roster = vec![student("barbara.liskov@FIXME.edu", "Barbara Liskov")];
        let view = books.view(&roster, &account, &Naming::default());
        assert_eq!(view.fixme_rows().len(), 1);
        assert!(view.rows().is_empty());
        // The row was given her email: the key is hers.
        let roster = vec![student("barbara@uni.edu", "Barbara Liskov")];
        let view = books.view(&roster, &account, &Naming::default());
        assert_eq!(view.entries[0].key().unwrap().hash, "h1");
        assert_eq!(view.adopted.len(), 1);
        assert_eq!(view.adopted[0].why, Adoption::FixmeCorrected);
        // The row was deleted (a student of that name keys.db already knew is no correction).
        let mut books = books;
        books.students.insert("barbara@uni.edu".into());
        let view = books.view(&roster, &account, &Naming::default());
        assert!(view.entries[0].keys.is_empty());
        assert_eq!(view.dismissed.len(), 1);
        assert!(view.orphans.is_empty());
        // Dismissed: never listed again.
        let books = Books::new(vec![known_as(
            "h1",
            "barbara.liskov@FIXME.edu",
            Owner::Dismissed,
        )]);
        let view = books.view(&roster, &account, &Naming::default());
        assert!(view.orphans.is_empty() && view.dismissed.is_empty());
        assert_eq!(view.not_ours, 1);
    }

    #[test]
    fn a_fixme_row_whose_key_was_never_recorded_takes_that_key_again() {
        // `check` appended the row, then died before keys.db recorded the key.
        let roster = vec![
            student("ada@u.edu", "Ada"),
            student("my.key@FIXME.edu", "My key"),
        ];
        let account = vec![key("h1", "My key", "2025-01-01T10:00:00Z")];
        let view = Books::new(vec![]).view(&roster, &account, &Naming::default());
        assert!(view.orphans.is_empty(), "no second row");
        assert_eq!(view.fixme_rows().len(), 1);
        assert_eq!(view.fixme_rows()[0].0, "my.key@FIXME.edu");
    }

    #[test]
    fn a_tagged_class_adopts_its_own_names_for_exactly_one_student() {
        let roster = vec![
            student("a@u.edu", "Ada"),
            student("k1@u.edu", "Kim"),
            student("k2@u.edu", "Kim"),
        ];
        let account = vec![
            key("h1", "CS1_20250101_Ada", "2025-01-01T10:00:00Z"),
            key("h2", "CS1_20250101_Kim", "2025-01-01T10:00:00Z"),
            key("h3", "CS2_20250101_Ada", "2025-01-01T10:00:00Z"),
            key("h4", "20250101_Ada", "2025-01-01T10:00:00Z"),
        ];
        let view = Books::new(vec![]).view(&roster, &account, &tagged("CS1"));
        assert_eq!(view.entries[0].key().unwrap().hash, "h1");
        assert_eq!(view.adopted.len(), 1);
        assert_eq!(view.adopted[0].why, Adoption::TagName);
        // Two Kims: a FIXME row, not a guess.
        assert_eq!(view.orphans.len(), 1);
        assert_eq!(view.orphans[0].key.hash, "h2");
        assert_eq!(view.not_ours, 3);
        // Untagged, the same account gives nobody a key by name.
        let view = Books::new(vec![]).view(&roster, &account, &Naming::default());
        assert!(view.adopted.is_empty());
        assert_eq!(view.keyless().len(), 3);
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
        let view =
            Books::new(vec![known("h1", "a@u.edu")]).view(&roster, &account, &Naming::default());
        let keyless: Vec<_> = view.keyless().iter().map(|s| s.email.clone()).collect();
        assert_eq!(keyless, vec!["b@u.edu"]);
    }

    #[test]
    fn a_new_email_with_the_name_of_a_student_who_left_is_flagged() {
        let account = vec![key("h1", "20250101_Ada Lovelace", "2025-01-01T10:00:00Z")];
        let mut books = Books::new(vec![known("h1", "ada@uni.edu")]);
        books
            .names
            .insert("ada@uni.edu".into(), "Ada Lovelace".into());
        let roster = vec![student("ada.l@uni.edu", "Ada Lovelace")];
        let view = books.view(&roster, &account, &Naming::default());
        assert_eq!(view.renamed.len(), 1);
        assert_eq!(view.renamed[0].old_email, "ada@uni.edu");
        assert!(view.renamed_for("ada.l@uni.edu").is_some());
        // Dropped on purpose: no hint.
        books.dropped.insert("ada@uni.edu".into());
        let view = books.view(&roster, &account, &Naming::default());
        assert!(view.renamed.is_empty());
    }

    #[test]
    fn suspects_are_claimed_by_nobody() {
        let roster = vec![student("a@u.edu", "Ada")];
        let account = vec![key("h1", "20250101_Ada", "2025-01-01T10:00:00Z")];
        let view = match_keys(
            &roster,
            &Books::default(),
            &account,
            &HashSet::from(["h1"]),
            &Naming::default(),
        );
        assert_eq!(view.suspects.len(), 1);
        assert_eq!(view.keyless().len(), 1);
        assert!(view.orphans.is_empty());
    }

    fn create_intent(before: Option<Vec<String>>, at: DateTime<Utc>) -> Intent {
        Intent {
            id: 7,
            action: IntentAction::Create,
            email: "a@u.edu".into(),
            hash: None,
            key_name: "20250101_Ada".into(),
            body: None,
            prior: None,
            before,
            started_at: at,
        }
    }

    #[test]
    fn leftovers_are_same_name_unknown_and_new_since_the_create_whatever_the_clocks() {
        let account = vec![
            key("new", "20250101_Ada", "2025-01-01T10:00:01Z"),
            key("old", "20250101_Ada", "2024-12-01T10:00:00Z"),
            key("known", "20250101_Ada", "2025-01-01T10:00:02Z"),
            key("other", "20250101_Bob", "2025-01-01T10:00:02Z"),
        ];
        // The local clock an hour ahead of the server's, or behind: the answer is the same.
        for skew in [-3600, 0, 3600] {
            let at =
                "2025-01-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(skew);
            let intent = create_intent(Some(vec!["old".into()]), at);
            let found = leftovers(&[intent], &account, &[known("known", "a@u.edu")]);
            let hashes: Vec<_> = found[0].1.iter().map(|k| k.hash.as_str()).collect();
            assert_eq!(hashes, vec!["new"], "skew {skew}");
        }
        // A create journaled by an older classkeys falls back to the time.
        let at = "2025-01-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let found = leftovers(
            &[create_intent(None, at)],
            &account,
            &[known("known", "a@u.edu")],
        );
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
        let books = Books::new(vec![
            known("h1", "a@u.edu"),
            known("h2", "b@u.edu"),
            known("h3", "c@u.edu"),
        ]);
        let view = books.view(&roster, &account, &Naming::default());
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
