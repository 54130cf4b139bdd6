//! What several commands share: the class as it stands (roster, keys.db, the account's keys)
//! and how it is shown and recorded.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::context::Ctx;
use crate::files::email_key;
use crate::files::roster::Roster;
use crate::openrouter::{Client, Key};
use crate::reconcile::{self, ClassView};
use crate::store::{KnownKey, Store};

pub struct Class {
    pub roster: Roster,
    pub store: Store,
    pub client: Client,
    pub account: Vec<Key>,
    pub known: Vec<KnownKey>,
    pub known_names: HashMap<String, String>,
    /// Hashes that unsettled creates may have made: claimed by no student.
    pub suspects: HashSet<String>,
}

impl Class {
    /// Read the roster (any error here is bad input: nothing has been sent), open keys.db,
    /// then fetch every key of the account.
    pub fn load(ctx: &mut Ctx, roster: &Path, db: &Path) -> Result<Class> {
        let roster = Roster::read(roster)?;
        Class::load_with(ctx, roster, db)
    }

    pub fn load_with(ctx: &mut Ctx, roster: Roster, db: &Path) -> Result<Class> {
        let store = Store::open(db)?;
        let client = ctx.client()?;
        let account = client.list_keys()?;
        let mut class = Class {
            roster,
            store,
            client,
            account,
            known: Vec::new(),
            known_names: HashMap::new(),
            suspects: HashSet::new(),
        };
        class.refresh_known()?;
        Ok(class)
    }

    /// Re-read what keys.db knows (after keys were created or settled).
    pub fn refresh_known(&mut self) -> Result<()> {
        self.known = self.store.known_keys()?;
        self.known_names = self
            .store
            .student_names()?
            .into_iter()
            .map(|(e, n)| (email_key(&e), n))
            .collect();
        let pending = self.store.pending_attempts()?;
        self.suspects = reconcile::leftovers(&pending, &self.account, &self.known)
            .into_iter()
            .flat_map(|(_, keys)| keys.into_iter().map(|k| k.hash.clone()))
            .collect();
        Ok(())
    }

    pub fn view(&self) -> ClassView<'_> {
        view_of(
            &self.roster,
            &self.known,
            &self.known_names,
            &self.account,
            &self.suspects,
        )
    }

    /// One usage row per key of the class, the students, and each key's state, in one transaction.
    pub fn record(&mut self, at: DateTime<Utc>) -> Result<()> {
        // Field by field, so that the view can be read while the store is written.
        let view = view_of(
            &self.roster,
            &self.known,
            &self.known_names,
            &self.account,
            &self.suspects,
        );
        let rows = view.rows();
        let students: Vec<(&str, &str)> = self
            .roster
            .students
            .iter()
            .map(|s| (s.email.as_str(), s.name.as_str()))
            .chain(
                view.orphans
                    .iter()
                    .map(|o| (o.email.as_str(), o.name.as_str())),
            )
            .collect();
        let keys: Vec<(&Key, &str)> = rows.iter().map(|(e, _, k)| (*k, *e)).collect();
        self.store.record_state(at, &students, &keys)
    }

    /// Take the keys' state from what the API answered (create, PATCH): no re-listing.
    pub fn apply(&mut self, keys: Vec<Key>) {
        let index: HashMap<String, usize> = self
            .account
            .iter()
            .enumerate()
            .map(|(i, k)| (k.hash.clone(), i))
            .collect();
        for key in keys {
            match index.get(&key.hash) {
                Some(&i) => self.account[i] = key,
                None => self.account.push(key),
            }
        }
    }

    /// Forget keys the API deleted.
    pub fn remove(&mut self, hashes: &[String]) {
        let gone: HashSet<&str> = hashes.iter().map(String::as_str).collect();
        self.account.retain(|k| !gone.contains(k.hash.as_str()));
    }
}

fn view_of<'a>(
    roster: &'a Roster,
    known: &[KnownKey],
    known_names: &HashMap<String, String>,
    account: &'a [Key],
    suspects: &HashSet<String>,
) -> ClassView<'a> {
    let suspects: HashSet<&str> = suspects.iter().map(String::as_str).collect();
    reconcile::match_keys(&roster.students, known, known_names, account, &suspects)
}

/// A student and their key, as `--json` shows it.
#[derive(Debug, Serialize)]
pub struct StudentJson {
    pub email: String,
    pub name: String,
    pub key_name: String,
    pub hash: String,
    pub usage: f64,
    pub limit: Option<f64>,
    pub disabled: bool,
    pub limit_reset: Option<String>,
    pub expires_at: Option<String>,
}

impl StudentJson {
    pub fn new(email: &str, name: &str, key: &Key) -> Self {
        StudentJson {
            email: email.into(),
            name: name.into(),
            key_name: key.name.clone(),
            hash: key.hash.clone(),
            usage: key.usage,
            limit: key.limit,
            disabled: key.disabled,
            limit_reset: key.limit_reset.clone(),
            expires_at: key.expires_at.clone(),
        }
    }
}

/// The human table of students and keys.
pub fn student_table(ctx: &Ctx, rows: &[(&str, &str, &Key)]) {
    let body = rows
        .iter()
        .map(|(email, name, key)| {
            vec![
                email.to_string(),
                name.to_string(),
                key.name.clone(),
                format!("${:.2}", key.usage),
                limit_text(key.limit),
                if key.disabled {
                    "disabled".into()
                } else {
                    "enabled".into()
                },
            ]
        })
        .collect();
    ctx.ui.table(
        &["Email", "Name", "Key name", "Usage", "Limit", "Status"],
        body,
    );
}

pub fn limit_text(limit: Option<f64>) -> String {
    match limit {
        None => "unlimited".into(),
        Some(l) => format!("${l:.2}"),
    }
}

pub fn sandbox_tag(ctx: &Ctx) -> &'static str {
    if ctx.global.sandbox { "[sandbox] " } else { "" }
}

/// The request that stopped a run, as `--json` shows it.
#[derive(Debug, Serialize)]
pub struct Failed {
    pub email: String,
    pub error: String,
}

impl Failed {
    pub fn list(failure: &Option<(String, crate::openrouter::ApiError)>) -> Vec<Failed> {
        failure
            .iter()
            .map(|(email, e)| Failed {
                email: email.clone(),
                error: e.to_string(),
            })
            .collect()
    }
}
