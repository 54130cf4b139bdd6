//! What several commands share: the class as it stands (roster, keys.db, the account's keys)
//! and how it is shown and recorded.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::apply::{self, Settlement};
use crate::context::Ctx;
use crate::domain::{AccountKind, Naming, Owner, Tag};
use crate::error::input;
use crate::files::email_key;
use crate::files::output::{NewSecret, write_api_keys};
use crate::files::roster::Roster;
use crate::openrouter::{Client, Key};
use crate::reconcile::{self, Adoption, Books, ClassView};
use crate::store::{Change, Seen, Store};

pub struct Class {
    pub roster: Roster,
    pub store: Store,
    pub client: Client,
    pub account: Vec<Key>,
    /// What keys.db knows: its keys, students' names, who was dropped.
    pub books: Books,
    pub naming: Naming,
    /// Hashes that unsettled creates may have made: claimed by no student.
    pub suspects: HashSet<String>,
    /// What settling the journal found when the class was loaded.
    pub settled: Settlement,
}

/// Open keys.db for a command that changes the class: the class lock is taken first, before
/// any other file of the class is read, so a second command sees what the first one did.
pub fn open_store(db: &Path) -> Result<Store> {
    Store::open(db)
}

/// Refuse a keys.db of the other kind of account (sandbox vs real) before anything is sent.
pub fn check_account_kind(ctx: &Ctx, store: &Store, db: &Path) -> Result<()> {
    let here = AccountKind::of(ctx.global.sandbox);
    match store.account_kind()? {
        Some(kind) if kind != here => {
            let hint = match here {
                AccountKind::Sandbox => {
                    "this class is real: `unset CLASSKEYS_SANDBOX` (and drop --sandbox), or rehearse in another folder"
                }
                AccountKind::Real => {
                    "this class is a rehearsal: add --sandbox (or export CLASSKEYS_SANDBOX=1), or run the real class in another folder"
                }
            };
            Err(input(format!(
                "{} belongs to {kind}, but this command runs against {here}; nothing was sent or changed. Hint: {hint}",
                db.display()
            )))
        }
        _ => Ok(()),
    }
}

/// What keys.db knows: its keys, students' names, who was dropped.
pub fn books(store: &Store) -> Result<Books> {
    let names = store.student_names()?;
    Ok(Books {
        keys: store.known_keys()?,
        students: names.iter().map(|(e, _)| email_key(e)).collect(),
        names: names.into_iter().map(|(e, n)| (email_key(&e), n)).collect(),
        dropped: store.dropped()?.iter().map(|e| email_key(e)).collect(),
    })
}

/// The class's naming policy, as keys.db records it.
pub fn naming(store: &Store) -> Result<Naming> {
    let tag = store.meta("tag")?.and_then(|t| Tag::parse(&t).ok());
    let pseudonym_secret = match store.meta("key_names")?.as_deref() {
        Some("pseudonymous") => store.meta("pseudonym_secret")?,
        _ => None,
    };
    Ok(Naming {
        tag,
        pseudonym_secret,
    })
}

impl Class {
    /// With keys.db open (and locked) and the roster read: fetch every key of the account, then
    /// settle the journal against it (unless `dry_run`, which writes nothing).
    pub fn load(
        ctx: &mut Ctx,
        mut store: Store,
        roster: Roster,
        db: &Path,
        dry_run: bool,
    ) -> Result<Class> {
        check_account_kind(ctx, &store, db)?;
        let naming = naming(&store)?;
        let client = ctx.client()?.in_workspace(store.meta("workspace")?);
        let account = client.list_keys()?;
        if !dry_run && store.account_kind()?.is_none() {
            store.set_meta("account", AccountKind::of(ctx.global.sandbox).as_str())?;
        }
        let mut class = Class {
            roster,
            store,
            client,
            account,
            books: Books::default(),
            naming,
            suspects: HashSet::new(),
            settled: Settlement::default(),
        };
        class.refresh_known()?;
        class.settled = apply::settle(ctx, &mut class, dry_run)?;
        if !dry_run {
            apply::settle_guardrail(ctx, &mut class)?;
        }
        class.tell_settled(ctx);
        Ok(class)
    }

    fn tell_settled(&self, ctx: &Ctx) {
        let s = &self.settled;
        if s.landed > 0 {
            ctx.ui.note(format!(
                "classkeys: recorded {} change(s) an interrupted run had sent (found on the account)",
                s.landed
            ));
        }
        for (email, key_name) in &s.gone_outside {
            ctx.ui.warn(format!(
                "key {key_name} of {email} is gone from the account (deleted outside classkeys); marked deleted"
            ));
        }
    }

    /// Re-read what keys.db knows (after keys were created or settled).
    pub fn refresh_known(&mut self) -> Result<()> {
        self.books = books(&self.store)?;
        let open = self.store.open_intents()?;
        self.suspects = reconcile::leftovers(&open, &self.account, &self.books.keys)
            .into_iter()
            .flat_map(|(_, keys)| keys.into_iter().map(|k| k.hash.clone()))
            .collect();
        Ok(())
    }

    pub fn view(&self) -> ClassView<'_> {
        let suspects: HashSet<&str> = self.suspects.iter().map(String::as_str).collect();
        reconcile::match_keys(
            &self.roster.students,
            &self.books,
            &self.account,
            &suspects,
            &self.naming,
        )
    }

    /// Record the class as the account shows it: students, each key's state, one usage row per
    /// key of the class, adoptions and dismissals. Unknown keys stay unknown (only `check`, which
    /// adds them to the roster, records them as FIXME rows).
    pub fn record(&mut self, at: DateTime<Utc>) -> Result<()> {
        // Field by field, so that the view can be read while the store is written.
        let suspects: HashSet<&str> = self.suspects.iter().map(String::as_str).collect();
        let view = reconcile::match_keys(
            &self.roster.students,
            &self.books,
            &self.account,
            &suspects,
            &self.naming,
        );
        let store = &mut self.store;
        for a in &view.adopted {
            let why = match a.why {
                Adoption::FixmeCorrected => "the FIXME row was given this email",
                Adoption::TagName => "named for this student with the class tag",
            };
            store.set_owner(
                a.key,
                &a.email,
                &a.name,
                Owner::Class,
                Some(&Change {
                    hash: a.key.hash.clone(),
                    email: a.email.clone(),
                    action: "adopted",
                    old: Some(a.key.name.clone()),
                    new: Some(why.into()),
                }),
            )?;
        }
        for key in &view.dismissed {
            let email = self
                .books
                .keys
                .iter()
                .find(|k| k.hash == key.hash)
                .map(|k| k.email.clone())
                .unwrap_or_default();
            store.set_owner(
                key,
                &email,
                "",
                Owner::Dismissed,
                Some(&Change {
                    hash: key.hash.clone(),
                    email: email.clone(),
                    action: "dismissed",
                    old: Some(key.name.clone()),
                    new: None,
                }),
            )?;
        }
        let students: Vec<(&str, &str)> = self
            .roster
            .students
            .iter()
            .filter(|s| !s.is_placeholder())
            .map(|s| (s.email.as_str(), s.name.as_str()))
            .collect();
        let mut seen: Vec<Seen> = view
            .rows()
            .into_iter()
            .map(|(email, _, key)| Seen {
                key,
                email,
                owner: Owner::Class,
            })
            .collect();
        seen.extend(view.fixme_rows().into_iter().map(|(email, _, key)| Seen {
            key,
            email,
            owner: Owner::Fixme,
        }));
        seen.extend(view.off_roster.iter().map(|o| Seen {
            key: o.key,
            email: &o.email,
            owner: Owner::Class,
        }));
        store.record_state(at, &students, &seen)?;
        drop(view);
        self.refresh_known()
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

/// `api_keys_*.csv` with the secrets of the keys a batch made (none: no file). The secrets are
/// in keys.db already; if the file cannot be written, the error says how to get them.
pub fn save_secrets(
    ctx: &Ctx,
    at: DateTime<Utc>,
    applied: &crate::apply::Applied,
) -> Result<Option<std::path::PathBuf>> {
    let secrets: Vec<NewSecret> = applied
        .created()
        .map(|(email, name, key, secret)| NewSecret {
            email: email.to_string(),
            name: name.to_string(),
            api_key: secret.to_string(),
            key_name: key.name.clone(),
        })
        .collect();
    if secrets.is_empty() {
        return Ok(None);
    }
    write_api_keys(&ctx.dir(), at, &secrets).map(Some).map_err(|e| {
        e.context(
            "the new keys and their secrets are saved in keys.db, but the api_keys file could not be \
             written: free some space (or fix the folder), then run `classkeys export-keys --output keys.csv`",
        )
    })
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
    /// (limit − remaining) / limit in whole percent; `null` for an unlimited key.
    pub used_percent: Option<i64>,
    /// OpenRouter's `limit_remaining` (this period's, for a limit with a reset); `null`: unlimited.
    pub remaining: Option<f64>,
    /// Whether the key holds the class guardrail, as the account reports it (`check` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<bool>,
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
            used_percent: key.used_percent(),
            remaining: key.remaining(),
            guardrail: None,
        }
    }
}

/// The human table of students and keys; with the hashes of the keys that hold the class
/// guardrail, a column says which do.
pub fn student_table(ctx: &Ctx, rows: &[(&str, &str, &Key)], guarded: Option<&HashSet<String>>) {
    let body = rows
        .iter()
        .map(|(email, name, key)| {
            let mut row = vec![
                email.to_string(),
                name.to_string(),
                key.name.clone(),
                format!("${:.2}", key.usage),
                limit_text(key.limit),
                key.used_percent()
                    .map_or_else(|| "-".into(), |p| format!("{p}%")),
                limit_text(key.remaining()),
                if key.disabled {
                    "disabled".into()
                } else {
                    "enabled".into()
                },
                key.standing().word().into(),
            ];
            if let Some(g) = guarded {
                row.push(if g.contains(&key.hash) { "yes" } else { "NO" }.into());
            }
            row
        })
        .collect();
    let mut headers = vec![
        "Email",
        "Name",
        "Key name",
        "Usage",
        "Limit",
        "Used %",
        "Remaining",
        "Status",
        "Flags",
    ];
    if guarded.is_some() {
        headers.push("Guardrail");
    }
    ctx.ui.table(&headers, body);
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
