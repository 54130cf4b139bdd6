//! keys.db: opening (owner-only, migrated, locked for writers) and every query classkeys makes.
//! A change to a key and its audit row are written in one transaction.

mod lock;
mod migrate;

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Local, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::{AccountKind, IntentAction, Owner, Settled};
pub use crate::domain::{
    Change, ExportRow, Intent, Key, KeyInfo, KnownKey, NewIntent, Seen, UsagePoint, parse_time,
};
pub use lock::{ClassLock, set_patience};
use migrate::Kind;
pub use migrate::LATEST as SCHEMA_VERSION;

pub struct Store {
    conn: Connection,
    _lock: Option<ClassLock>,
}

/// One changelog row, as `log` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogRow {
    pub at: Option<DateTime<Utc>>,
    pub email: String,
    pub key_name: String,
    pub hash: String,
    pub action: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// What `set_secret` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSet {
    Stored,
    Already,
    /// keys.db holds another secret for that key: nothing was replaced.
    Conflict,
}

/// The instant a command runs at, to the second: usage rows and file names share it,
/// so a snapshot's name is exactly the time of the usage it holds.
pub fn run_time() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Who opens keys.db: a command that changes the class holds the class lock throughout; a
/// reader takes it only if the file needs upgrading, and only while it does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `init-db`: like Write, and an empty file becomes a new class.
    Init,
    Write,
    Read,
}

impl Store {
    /// `init-db`: create the file owner-only (or upgrade an existing one). Returns what it did.
    pub fn init(path: &Path) -> Result<String> {
        if path.exists() {
            let (store, notice) = Store::open_as(path, Access::Init)?;
            if let Some(notice) = notice {
                return Ok(notice);
            }
            let n: i64 = store
                .conn
                .query_row("SELECT COUNT(*) FROM student", [], |r| r.get(0))?;
            return Ok(format!(
                "{} is ready (schema {}, {n} students); nothing to do",
                shown(path),
                SCHEMA_VERSION
            ));
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| {
                format!(
                    "creating {}: check the folder exists and is writable",
                    shown(path)
                )
            })?;
        Store::open_as(path, Access::Init)?;
        Ok(format!(
            "created {} (owner-only, schema {})",
            shown(path),
            SCHEMA_VERSION
        ))
    }

    /// Open for a command that changes the class: takes the class lock first.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_told(path, Access::Write)
    }

    /// Open for reading only (export, report): no lock, and readers never wait for a writer
    /// (except once, while a database of an older schema is upgraded).
    pub fn open_read(path: &Path) -> Result<Store> {
        Store::open_told(path, Access::Read)
    }

    fn open_told(path: &Path, access: Access) -> Result<Store> {
        let (store, notice) = Store::open_as(path, access)?;
        if let Some(notice) = notice {
            eprintln!("classkeys: {notice}");
        }
        Ok(store)
    }

    /// Open keys.db, upgrading it if it is older. A file that is not a classkeys or
    /// manage_keys.py database is refused before anything is written, created or locked.
    /// Returns the store and, if it upgraded the database, what it did.
    fn open_as(path: &Path, access: Access) -> Result<(Store, Option<String>)> {
        if !path.exists() {
            return Err(crate::error::input(format!(
                "database not found: {}. Run `classkeys init-db` in the class folder first (or pass --db FILE)",
                shown(path)
            )));
        }
        side_files_are_its_own(path)?;
        let mut conn =
            Connection::open(path).with_context(|| format!("opening {}", shown(path)))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let mut kind = classify(&conn, path)?;
        if access != Access::Read {
            writable(&conn, path)?;
            // A Python tool's database is made owner-only by its upgrade, which says so.
            if kind != Kind::Python {
                owner_only(path);
            }
        }
        let current = kind == Kind::Classkeys(SCHEMA_VERSION);
        let mut lock = None;
        if kind == Kind::Empty && access != Access::Init {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            return Err(crate::error::input(format!(
                "{} is empty ({size} bytes): it is not a class's keys.db (a copy that went wrong, or a file                  emptied by accident); it was left untouched. Restore it from a backup, or, for a new class,                  run `classkeys init-db`",
                shown(path)
            )));
        }
        if access != Access::Read || !current {
            lock = Some(ClassLock::acquire(path)?);
            if !current {
                // Another classkeys may have upgraded it while this one waited for the lock.
                kind = classify(&conn, path)?;
            }
        }
        let mut notice = None;
        match kind {
            Kind::Classkeys(v) if v == SCHEMA_VERSION => {}
            Kind::Classkeys(v) => {
                migrate::upgrade(&mut conn, v)?;
                notice = Some(format!(
                    "upgraded {} from classkeys schema {v} to {SCHEMA_VERSION}",
                    shown(path)
                ));
            }
            Kind::Empty => migrate::upgrade(&mut conn, 0)?,
            Kind::Python => notice = Some(upgrade_python(&mut conn, path)?),
        }
        // The schema names foreign keys, but rows may outlive what they point at (a key deleted
        // from the account keeps its history; the Python tool never enforced them either).
        conn.pragma_update(None, "foreign_keys", false)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        if access == Access::Read {
            lock = None;
        }
        Ok((Store { conn, _lock: lock }, notice))
    }

    pub fn known_keys(&self) -> Result<Vec<KnownKey>> {
        let mut stmt = self.conn.prepare(
            "SELECT key_hash, COALESCE(email, ''), COALESCE(key_name, ''), deleted_at IS NOT NULL, owner,
                    api_key IS NOT NULL AND api_key != ''
             FROM key ORDER BY created_at, key_hash",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(KnownKey {
                hash: r.get(0)?,
                email: r.get(1)?,
                key_name: r.get(2)?,
                deleted: r.get(3)?,
                owner: Owner::parse(&r.get::<_, String>(4)?),
                has_secret: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A setting of the class (`class_meta`).
    pub fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM class_meta WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_meta(&mut self, name: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO class_meta (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .with_context(|| format!("saving the class's {name} in keys.db"))?;
        Ok(())
    }

    pub fn delete_meta(&mut self, name: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM class_meta WHERE name = ?1", [name])
            .with_context(|| format!("forgetting the class's {name} in keys.db"))?;
        Ok(())
    }

    /// A change to the class guardrail settled: its intents, its audit rows and what keys.db
    /// records of the guardrail (`None` forgets a setting), in one transaction.
    pub fn record_guardrail(
        &mut self,
        settle: &[(i64, Settled)],
        changes: &[Change],
        meta: &[(&str, Option<&str>)],
    ) -> Result<()> {
        let at = stamp(Utc::now());
        let tx = self.conn.transaction()?;
        for (id, how) in settle {
            settle_intent(&tx, *id, *how, None, &at)?;
        }
        for change in changes {
            insert_change(&tx, change, &at)?;
        }
        for (name, value) in meta {
            match value {
                Some(v) => tx.execute(
                    "INSERT INTO class_meta (name, value) VALUES (?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    params![name, v],
                )?,
                None => tx.execute("DELETE FROM class_meta WHERE name = ?1", [name])?,
            };
        }
        tx.commit()
            .context("saving the class guardrail's changes to keys.db")?;
        Ok(())
    }

    /// The kind of account this keys.db belongs to, if a command has said so yet.
    pub fn account_kind(&self) -> Result<Option<AccountKind>> {
        Ok(self
            .meta("account")?
            .as_deref()
            .and_then(AccountKind::parse))
    }

    /// Whether the class had keys and every one of them is deleted (the end of a term).
    pub fn all_deleted(&self) -> Result<bool> {
        let (all, deleted): (i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(deleted_at IS NOT NULL), 0) FROM key WHERE owner = 'class'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(all > 0 && all == deleted)
    }

    /// Emails of students dropped with `drop-student`.
    pub fn dropped(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT email FROM student WHERE dropped_at IS NOT NULL")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Names keys.db knows for emails (students added by earlier runs, or by the Python tool).
    pub fn student_names(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT email, COALESCE(name, '') FROM student")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Record what the account looks like now: students, each key's state, one usage row per key.
    pub fn record_state(
        &mut self,
        at: DateTime<Utc>,
        students: &[(&str, &str)],
        keys: &[Seen],
    ) -> Result<()> {
        let at = stamp(at);
        let tx = self.conn.transaction()?;
        {
            let mut student = tx.prepare_cached(
                "INSERT INTO student (email, name, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(email) DO UPDATE SET name = excluded.name",
            )?;
            for (email, name) in students {
                student.execute(params![email, name, at])?;
            }
            let mut usage = tx.prepare_cached(
                "INSERT INTO usage (key_hash, usage, checked_at, credit_limit, disabled) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for seen in keys {
                upsert_key(&tx, seen.key, seen.email, seen.owner)?;
                // Usage is the class's history: FIXME keys are not the class's.
                if seen.owner == Owner::Class {
                    let k = seen.key;
                    usage.execute(params![k.hash, k.usage, at, k.limit, k.disabled])?;
                }
            }
        }
        tx.commit().context("saving usage to keys.db")?;
        Ok(())
    }

    /// Before any change is sent: one journal row per change, in one transaction.
    pub fn journal(&mut self, intents: &[NewIntent]) -> Result<Vec<i64>> {
        let at = stamp(Utc::now());
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(intents.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO intent (action, email, key_hash, key_name, body, prior, before_hashes, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for i in intents {
                let prior = i.prior.as_ref().map(serde_json::to_string).transpose()?;
                let before = i.before.as_ref().map(|b| b.join(","));
                stmt.execute(params![
                    i.action.as_str(),
                    i.email,
                    i.hash,
                    i.key_name,
                    i.body,
                    prior,
                    before,
                    at
                ])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()
            .context("journaling the planned changes in keys.db (nothing was sent)")?;
        Ok(ids)
    }

    /// Every journaled change not yet settled, oldest first.
    pub fn open_intents(&self) -> Result<Vec<Intent>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, action, email, key_hash, COALESCE(key_name, ''), body, prior, before_hashes, started_at
             FROM intent WHERE state = 'open' ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, String>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, action, email, hash, key_name, body, prior, before, at) = row?;
            let Some(action) = IntentAction::parse(&action) else {
                continue;
            };
            out.push(Intent {
                id,
                action,
                email,
                hash,
                key_name,
                body,
                prior: prior.and_then(|p| serde_json::from_str(&p).ok()),
                before: before.map(|b| {
                    b.split(',')
                        .filter(|h| !h.is_empty())
                        .map(String::from)
                        .collect()
                }),
                started_at: parse_time(&at).unwrap_or_else(Utc::now),
            });
        }
        Ok(out)
    }

    /// Settle intents that changed nothing worth a changelog row (refused, never sent).
    pub fn settle(&mut self, ids: &[i64], how: Settled) -> Result<()> {
        self.record_changes(
            &ids.iter().map(|i| (*i, how)).collect::<Vec<_>>(),
            None,
            &[],
        )
    }

    /// The moment a create answers: its hash and secret, the key row and the audit row, committed at once.
    pub fn record_created(
        &mut self,
        intent: Option<i64>,
        email: &str,
        name: &str,
        key: &Key,
        secret: &str,
        extra: &[Change],
    ) -> Result<()> {
        let at = stamp(Utc::now());
        let tx = self.conn.transaction()?;
        add_student(&tx, email, name, &at)?;
        upsert_key(&tx, key, email, Owner::Class)?;
        tx.execute(
            "UPDATE key SET api_key = ?1 WHERE key_hash = ?2",
            params![secret, key.hash],
        )?;
        let created = Change {
            hash: key.hash.clone(),
            email: email.to_string(),
            action: "created",
            old: None,
            new: Some(describe_key(key)),
        };
        for change in std::iter::once(&created).chain(extra) {
            insert_change(&tx, change, &at)?;
        }
        if let Some(id) = intent {
            settle_intent(&tx, id, Settled::Landed, Some(&key.hash), &at)?;
        }
        tx.commit()
            .with_context(|| format!("saving the secret of new key {} to keys.db", key.name))?;
        Ok(())
    }

    /// A change settled: the intents it settles, the key's new state and its audit rows, in one
    /// transaction.
    pub fn record_changes(
        &mut self,
        settle: &[(i64, Settled)],
        key: Option<(&Key, &str)>,
        changes: &[Change],
    ) -> Result<()> {
        let at = stamp(Utc::now());
        let tx = self.conn.transaction()?;
        for (id, how) in settle {
            settle_intent(&tx, *id, *how, None, &at)?;
        }
        if let Some((key, email)) = key {
            upsert_key(&tx, key, email, Owner::Class)?;
        }
        for change in changes {
            insert_change(&tx, change, &at)?;
            if matches!(change.action, "deleted" | "deleted_outside") {
                tx.execute(
                    "UPDATE key SET deleted_at = ?1 WHERE key_hash = ?2",
                    params![at, change.hash],
                )?;
            }
        }
        tx.commit().context("saving changes to keys.db")?;
        Ok(())
    }

    /// Record whose a key is (adopted for a student, kept as a FIXME row, or dismissed), with
    /// the audit row that says why, in one transaction.
    pub fn set_owner(
        &mut self,
        key: &Key,
        email: &str,
        name: &str,
        owner: Owner,
        change: Option<&Change>,
    ) -> Result<()> {
        let at = stamp(Utc::now());
        let tx = self.conn.transaction()?;
        if owner == Owner::Class {
            add_student(&tx, email, name, &at)?;
        }
        upsert_key(&tx, key, email, owner)?;
        if let Some(change) = change {
            insert_change(&tx, change, &at)?;
        }
        tx.commit().context("saving whose a key is in keys.db")?;
        Ok(())
    }

    /// `change-email`: the student, their keys and their history move to the new email.
    /// Returns how many keys moved.
    pub fn change_email(&mut self, old: &str, new: &str, name: &str) -> Result<usize> {
        let at = stamp(Utc::now());
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO student (email, name, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(email) DO UPDATE SET name = excluded.name, dropped_at = NULL",
            params![new, name, at],
        )?;
        let hashes: Vec<String> = {
            let mut stmt = tx.prepare("SELECT key_hash FROM key WHERE lower(email) = lower(?1)")?;
            stmt.query_map([old], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        tx.execute(
            "UPDATE key SET email = ?1, owner = 'class' WHERE lower(email) = lower(?2)",
            params![new, old],
        )?;
        tx.execute(
            "UPDATE student SET dropped_at = ?1 WHERE lower(email) = lower(?2) AND lower(email) != lower(?3)",
            params![at, old, new],
        )?;
        for hash in hashes
            .iter()
            .map(Some)
            .chain(hashes.is_empty().then_some(None))
        {
            insert_change(
                &tx,
                &Change {
                    hash: hash.cloned().unwrap_or_default(),
                    email: new.to_string(),
                    action: "email_changed",
                    old: Some(old.to_string()),
                    new: Some(new.to_string()),
                },
                &at,
            )?;
        }
        tx.commit().context("saving the new email in keys.db")?;
        Ok(hashes.len())
    }

    /// `drop-student`: the student leaves the class; their history stays.
    pub fn mark_dropped(&mut self, email: &str, name: &str) -> Result<()> {
        let at = stamp(Utc::now());
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO student (email, name, created_at, dropped_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(email) DO UPDATE SET dropped_at = excluded.dropped_at",
            params![email, name, at],
        )?;
        insert_change(
            &tx,
            &Change {
                hash: String::new(),
                email: email.to_string(),
                action: "dropped",
                old: Some(name.to_string()),
                new: None,
            },
            &at,
        )?;
        tx.commit()
            .context("recording the dropped student in keys.db")?;
        Ok(())
    }

    /// Store a secret for a key keys.db knows (import-keys). Returns false when it already had it.
    pub fn set_secret(
        &mut self,
        key: &Key,
        email: &str,
        name: &str,
        secret: &str,
    ) -> Result<SecretSet> {
        let at = stamp(Utc::now());
        let tx = self.conn.transaction()?;
        let had: Option<Option<String>> = tx
            .query_row(
                "SELECT api_key FROM key WHERE key_hash = ?1",
                [&key.hash],
                |r| r.get(0),
            )
            .optional()?;
        match had.flatten().filter(|s| !s.is_empty()) {
            Some(stored) if stored == secret => return Ok(SecretSet::Already),
            // A stored secret is never replaced: it came from the create's own answer.
            Some(_) => return Ok(SecretSet::Conflict),
            None => {}
        }
        add_student(&tx, email, name, &at)?;
        upsert_key(&tx, key, email, Owner::Class)?;
        tx.execute(
            "UPDATE key SET api_key = ?1 WHERE key_hash = ?2",
            params![secret, key.hash],
        )?;
        let change = Change {
            hash: key.hash.clone(),
            email: email.to_string(),
            action: "secret_imported",
            old: None,
            new: Some(key.label.clone()),
        };
        insert_change(&tx, &change, &at)?;
        tx.commit()?;
        Ok(SecretSet::Stored)
    }

    /// Every stored secret of a key that is not deleted, with its student.
    pub fn export_rows(&self) -> Result<Vec<ExportRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT k.email, COALESCE(s.name, ''), k.api_key, COALESCE(k.key_name, ''), k.credit_limit, COALESCE(k.disabled, 0)
             FROM key k LEFT JOIN student s ON s.email = k.email
             WHERE k.api_key IS NOT NULL AND k.api_key != '' AND k.deleted_at IS NULL AND k.owner = 'class'
             ORDER BY k.email, k.created_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ExportRow {
                email: r.get(0)?,
                name: r.get(1)?,
                api_key: r.get(2)?,
                key_name: r.get(3)?,
                limit: r.get(4)?,
                disabled: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// (email, hash) of the keys made by a create whose journal entry says `marker` (the key
    /// must end disabled) and that no `disabled` changelog row has followed yet.
    pub fn undisabled_creates(&self, marker: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT i.email, i.key_hash FROM intent i
             WHERE i.action = 'create' AND i.outcome = 'landed' AND i.key_hash IS NOT NULL
               AND i.body LIKE '%' || ?1 || '%'
               AND NOT EXISTS (SELECT 1 FROM changelog c
                               WHERE c.key_hash = i.key_hash AND c.action IN ('disabled', 'deleted'))",
        )?;
        let rows = stmt.query_map([format!("\"{marker}\":true")], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Hashes of the keys whose secret `send-keys` has mailed.
    pub fn mailed(&self) -> Result<std::collections::HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT key_hash FROM changelog WHERE action = 'key_sent'")?;
        let rows = stmt.query_map([], |r| r.get::<_, Option<String>>(0))?;
        Ok(rows
            .filter_map(|r| r.ok().flatten())
            .collect::<std::collections::HashSet<String>>())
    }

    /// A key's secret, as its create returned it (`None`: keys.db never had it).
    pub fn secret(&self, hash: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT api_key FROM key WHERE key_hash = ?1 AND api_key IS NOT NULL AND api_key != ''",
                [hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The changelog, oldest first, with each row's key name.
    pub fn changelog(&self) -> Result<Vec<LogRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT c.changed_at, COALESCE(c.email, ''), COALESCE(k.key_name, ''), COALESCE(c.key_hash, ''),
                    COALESCE(c.action, ''), c.old_value, c.new_value
             FROM changelog c LEFT JOIN key k ON k.key_hash = c.key_hash ORDER BY c.changed_at, c.id",
        )?;
        let rows = stmt.query_map([], |r| {
            let at: Option<String> = r.get(0)?;
            Ok(LogRow {
                at: at.as_deref().and_then(parse_time),
                email: r.get(1)?,
                key_name: r.get(2)?,
                hash: r.get(3)?,
                action: r.get(4)?,
                old: r.get(5)?,
                new: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every key keys.db knows, with its student, for reports.
    pub fn key_infos(&self) -> Result<Vec<KeyInfo>> {
        let mut stmt = self.conn.prepare(
            "SELECT k.key_hash, COALESCE(k.email, ''), COALESCE(s.name, ''), COALESCE(k.key_name, ''), k.credit_limit,
                    COALESCE(k.disabled, 0), k.deleted_at IS NOT NULL, k.created_at
             FROM key k LEFT JOIN student s ON s.email = k.email WHERE k.owner = 'class'
             ORDER BY s.name, k.email",
        )?;
        let rows = stmt.query_map([], |r| {
            let created: Option<String> = r.get(7)?;
            Ok(KeyInfo {
                hash: r.get(0)?,
                email: r.get(1)?,
                name: r.get(2)?,
                key_name: r.get(3)?,
                limit: r.get(4)?,
                disabled: r.get(5)?,
                deleted: r.get(6)?,
                created_at: created.as_deref().and_then(parse_time),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The whole usage history, oldest first.
    pub fn usage_history(&self) -> Result<Vec<UsagePoint>> {
        let mut stmt = self.conn.prepare(
            "SELECT u.key_hash, COALESCE(u.usage, 0), u.checked_at FROM usage u
                 JOIN key k ON k.key_hash = u.key_hash AND k.owner = 'class'
                 ORDER BY u.checked_at, u.id",
        )?;
        let rows = stmt.query_map([], |r| {
            let at: String = r.get(2)?;
            Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?, at))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, usage, at) = row?;
            if let Some(at) = parse_time(&at) {
                out.push(UsagePoint { hash, usage, at });
            }
        }
        Ok(out)
    }
}

/// SQLite writes `keys.db-wal`, `-shm` and `-journal` beside the database and truncates them: a
/// planted link there would let it clobber another file. Any such link is refused, untouched.
fn side_files_are_its_own(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    for base in [path.to_path_buf(), real] {
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = base.clone().into_os_string();
            name.push(suffix);
            let side = PathBuf::from(name);
            let Ok(meta) = std::fs::symlink_metadata(&side) else {
                continue;
            };
            if meta.file_type().is_symlink() || (meta.is_file() && meta.nlink() > 1) {
                return Err(crate::error::input(format!(
                    "{} is a link, not SQLite's own file; it was left untouched and nothing was changed. \
                     Move it away and run the command again",
                    side.display()
                )));
            }
        }
    }
    Ok(())
}

/// What kind of database a file is, with every failure naming the file and what to do.
fn classify(conn: &Connection, path: &Path) -> Result<Kind> {
    migrate::classify(conn, &shown(path)).map_err(|e| {
        if e.downcast_ref::<crate::error::InputError>().is_some() {
            if let Err(why) = folder_writable(path) {
                return crate::error::input(format!("{} cannot be read: {why}", shown(path)));
            }
            return e;
        }
        crate::error::input(format!(
            "{} cannot be read as a class database ({e:#}); it was left untouched. If it is damaged, \
             restore it from a backup (keys.db.bak-* or your own); `classkeys export-keys` needs it too",
            shown(path)
        ))
    })
}

/// A command that may change the account must be able to record what it did: keys.db and its
/// folder (SQLite's journal lives beside it) are writable, or nothing is sent.
fn writable(conn: &Connection, path: &Path) -> Result<()> {
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(crate::error::input(format!(
            "{} is read-only: classkeys could change the account but not record it, so nothing was sent. \
             Make it writable (chmod u+w {}) and run the command again",
            shown(path),
            shown(path)
        )));
    }
    folder_writable(path).map_err(|why| {
        crate::error::input(format!(
            "{why}; nothing was sent. Make the folder writable and run the command again"
        ))
    })
}

fn folder_writable(path: &Path) -> std::result::Result<(), String> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::tempfile_in(dir).map(|_| ()).map_err(|e| {
        format!(
            "the folder {} is not writable ({e}): classkeys writes keys.db's journal, snapshots and key files there",
            dir.display()
        )
    })
}

/// keys.db holds secrets: a copy restored at 0644 is made owner-only before anything goes in.
fn owner_only(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => eprintln!(
            "classkeys: {} was readable by others (mode {mode:o}); it holds key secrets, so it is now owner-only (600)",
            shown(path)
        ),
        Err(e) => eprintln!(
            "warning: {} is readable by others (mode {mode:o}) and could not be made owner-only ({e}): run `chmod 600 {}`",
            shown(path),
            shown(path)
        ),
    }
}

/// A student keys.db has not seen yet (a known one keeps its name).
fn add_student(
    tx: &rusqlite::Transaction,
    email: &str,
    name: &str,
    at: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO student (email, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT(email) DO NOTHING",
    )?
    .execute(params![email, name, at])?;
    Ok(())
}

fn settle_intent(
    tx: &rusqlite::Transaction,
    id: i64,
    how: Settled,
    hash: Option<&str>,
    at: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE intent SET state = 'settled', outcome = ?1, settled_at = ?2,
             key_hash = COALESCE(?3, key_hash) WHERE id = ?4",
    )?
    .execute(params![how.as_str(), at, hash, id])?;
    Ok(())
}

fn upsert_key(
    tx: &rusqlite::Transaction,
    key: &Key,
    email: &str,
    owner: Owner,
) -> rusqlite::Result<()> {
    let created = key.created().map(stamp).or_else(|| key.created_at.clone());
    tx.prepare_cached(
        "INSERT INTO key (key_hash, email, key_name, created_at, credit_limit, disabled, label, limit_reset,
                          expires_at, usage, updated_at, owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(key_hash) DO UPDATE SET email = excluded.email, key_name = excluded.key_name,
             credit_limit = excluded.credit_limit, disabled = excluded.disabled, label = excluded.label,
             limit_reset = excluded.limit_reset, expires_at = excluded.expires_at, usage = excluded.usage,
             updated_at = excluded.updated_at, created_at = COALESCE(key.created_at, excluded.created_at),
             deleted_at = NULL, owner = excluded.owner",
    )?
    .execute(params![
        key.hash,
        email,
        key.name,
        created,
        key.limit,
        key.disabled,
        key.label,
        key.limit_reset,
        key.expires_at,
        key.usage,
        key.updated_at,
        owner.as_str()
    ])?;
    Ok(())
}

fn insert_change(tx: &rusqlite::Transaction, c: &Change, at: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO changelog (key_hash, action, old_value, new_value, changed_at, email) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![c.hash, c.action, c.old, c.new, at, c.email])?;
    Ok(())
}

/// How a new key is described in its `created` audit row.
pub fn describe_key(key: &Key) -> String {
    let mut s = format!(
        "name={} limit={}",
        key.name,
        crate::domain::money_cell(key.limit)
    );
    if let Some(r) = &key.limit_reset {
        s.push_str(&format!(" limit_reset={r}"));
    }
    if let Some(e) = &key.expires_at {
        s.push_str(&format!(" expires_at={e}"));
    }
    s
}

/// Upgrade a manage_keys.py database in place after copying it aside, make it owner-only
/// (it will hold secrets), and say what was done.
fn upgrade_python(conn: &mut Connection, path: &Path) -> Result<String> {
    let done = migrate::upgrade_python(conn, || backup_copy(path))?;
    let [students, keys, usage, changelog] = done.counts;
    let mut owner_only = String::new();
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        owner_only = match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => format!(", and {} is now owner-only", shown(path)),
            Err(e) => format!(
                "; warning: could not make {} owner-only ({e}): run `chmod 600 {}`",
                shown(path),
                shown(path)
            ),
        };
    }
    let without_secret: i64 =
        conn.query_row("SELECT COUNT(*) FROM key WHERE api_key IS NULL", [], |r| {
            r.get(0)
        })?;
    let hint = if without_secret > 0 {
        format!(
            " {without_secret} of its {keys} keys have only a masked label, not their secret: to hand them out \
             again with `classkeys export-keys`, first run `classkeys import-keys api_keys_*.csv`."
        )
    } else {
        String::new()
    };
    Ok(format!(
        "upgraded {} from manage_keys.py to classkeys schema {}: kept all {students} students, {keys} keys, \
         {usage} usage rows and {changelog} changelog rows; the original is saved as {} (owner-only){owner_only}.{hint}",
        shown(path),
        SCHEMA_VERSION,
        done.backup.display()
    ))
}

/// `keys.db.bak-YYYYMMDD_HHMMSS`, owner-only from the first byte, never over an older copy.
fn backup_copy(path: &Path) -> Result<PathBuf> {
    let base = format!(
        "{}.bak-{}",
        path.display(),
        Local::now().format("%Y%m%d_%H%M%S")
    );
    let mut target = PathBuf::from(&base);
    let mut n = 2;
    loop {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
        {
            Ok(mut out) => {
                let mut src = std::fs::File::open(path)
                    .with_context(|| format!("reading {}", shown(path)))?;
                std::io::copy(&mut src, &mut out)
                    .with_context(|| format!("writing {}", target.display()))?;
                out.sync_all()?;
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                target = PathBuf::from(format!("{base}-{n}"));
                n += 1;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("saving a copy of {} before upgrading it", shown(path))
                });
            }
        }
    }
}
