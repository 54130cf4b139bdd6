//! keys.db's schema: an append-only list of migrations applied by `PRAGMA user_version`
//! inside one transaction. Never edit or reorder a shipped step; add a new one.
//!
//! Version 1 is exactly the schema of the Python `manage_keys.py`, so a database it
//! wrote (user_version 0, its four tables) upgrades through the same steps as a new one.

use anyhow::{Context, Result};
use chrono::{DateTime, Local, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Transaction};

type RustStep = fn(&Transaction) -> rusqlite::Result<()>;

enum Step {
    Sql(&'static str),
    Rust(RustStep),
}

const STEPS: &[Step] = &[
    // 1: the Python tool's schema, as it created it.
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS student (email TEXT PRIMARY KEY, name TEXT, created_at TIMESTAMP);
         CREATE TABLE IF NOT EXISTS key (key_hash TEXT PRIMARY KEY, api_key TEXT, email TEXT, key_name TEXT,
             created_at TIMESTAMP, credit_limit REAL, disabled BOOLEAN, FOREIGN KEY(email) REFERENCES student(email));
         CREATE TABLE IF NOT EXISTS usage (id INTEGER PRIMARY KEY AUTOINCREMENT, key_hash TEXT, usage REAL,
             checked_at TIMESTAMP, FOREIGN KEY(key_hash) REFERENCES key(key_hash));
         CREATE TABLE IF NOT EXISTS changelog (id INTEGER PRIMARY KEY AUTOINCREMENT, key_hash TEXT, action TEXT,
             old_value TEXT, new_value TEXT, changed_at TIMESTAMP, FOREIGN KEY(key_hash) REFERENCES key(key_hash));",
    ),
    // 2: classkeys' additions. `api_key` holds only real secrets; the masked form is `label`.
    Step::Sql(
        "ALTER TABLE key ADD COLUMN label TEXT;
         ALTER TABLE key ADD COLUMN limit_reset TEXT;
         ALTER TABLE key ADD COLUMN expires_at TEXT;
         ALTER TABLE key ADD COLUMN usage REAL;
         ALTER TABLE key ADD COLUMN updated_at TEXT;
         ALTER TABLE key ADD COLUMN deleted_at TEXT;
         ALTER TABLE usage ADD COLUMN credit_limit REAL;
         ALTER TABLE usage ADD COLUMN disabled BOOLEAN;
         ALTER TABLE changelog ADD COLUMN email TEXT;
         CREATE TABLE create_attempt (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL,
             key_name TEXT NOT NULL, started_at TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
             key_hash TEXT, finished_at TEXT);
         CREATE INDEX usage_by_key_time ON usage(key_hash, checked_at);
         CREATE INDEX key_by_email ON key(email);
         UPDATE key SET label = api_key, api_key = NULL
             WHERE api_key IS NOT NULL AND (api_key LIKE '%...%' OR api_key LIKE '%…%' OR api_key NOT LIKE 'sk-%');",
    ),
    // 3: the Python tool wrote naive local times; classkeys writes UTC RFC 3339 everywhere.
    Step::Rust(utc_timestamps),
];

pub const LATEST: i64 = STEPS.len() as i64;

const PYTHON_TABLES: &[&str] = &["changelog", "key", "student", "usage"];

/// What kind of database a file holds, decided before anything is written to it.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Empty,
    Python,
    Classkeys(i64),
}

pub fn classify(conn: &Connection, shown: &str) -> Result<Kind> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| {
            crate::error::input(format!(
                "{shown} is not a SQLite database ({e}); it was left untouched"
            ))
        })?;
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if version > LATEST {
        return Err(crate::error::input(format!(
            "{shown} was written by a newer classkeys (schema {version}, this one knows up to {LATEST}); \
             upgrade classkeys. The database was left untouched."
        )));
    }
    if version > 0 {
        return Ok(Kind::Classkeys(version));
    }
    if tables.is_empty() {
        return Ok(Kind::Empty);
    }
    if tables == PYTHON_TABLES && has_python_key_table(conn)? {
        return Ok(Kind::Python);
    }
    Err(crate::error::input(format!(
        "{shown} is neither a classkeys nor a manage_keys.py database (tables: {}); it was left untouched. \
         Point --db at the class's keys.db, or run `classkeys init-db --db NEW.db` for a new one.",
        tables.join(", ")
    )))
}

fn has_python_key_table(conn: &Connection) -> Result<bool> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('key')")?;
    let cols: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok([
        "key_hash",
        "api_key",
        "email",
        "key_name",
        "credit_limit",
        "disabled",
    ]
    .iter()
    .all(|c| cols.iter().any(|have| have == c)))
}

/// Apply every step past the database's version, in one transaction.
pub fn upgrade(conn: &mut Connection, from: i64) -> Result<()> {
    let tx = conn.transaction()?;
    for (i, step) in STEPS.iter().enumerate().skip(from as usize) {
        let version = i as i64 + 1;
        match step {
            Step::Sql(sql) => tx.execute_batch(sql),
            Step::Rust(f) => f(&tx),
        }
        .with_context(|| format!("upgrading keys.db to schema {version}"))?;
    }
    tx.pragma_update(None, "user_version", LATEST)?;
    tx.commit().context("saving the upgraded keys.db")?;
    Ok(())
}

fn utc_timestamps(tx: &Transaction) -> rusqlite::Result<()> {
    for (table, id, col) in [
        ("usage", "id", "checked_at"),
        ("changelog", "id", "changed_at"),
        ("student", "email", "created_at"),
        ("key", "key_hash", "created_at"),
    ] {
        let rows: Vec<(String, String)> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT CAST({id} AS TEXT), {col} FROM {table} WHERE {col} IS NOT NULL"
            ))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut update = tx.prepare(&format!(
            "UPDATE {table} SET {col} = ?1 WHERE CAST({id} AS TEXT) = ?2"
        ))?;
        for (key, when) in rows {
            if let Some(utc) = to_utc(&when) {
                update.execute((utc, key))?;
            }
        }
    }
    Ok(())
}

/// A time with an offset keeps its instant; a naive one is this machine's local time,
/// as Python's `datetime.now().isoformat()` wrote it.
fn to_utc(s: &str) -> Option<String> {
    let utc = if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        t.with_timezone(&Utc)
    } else {
        let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f"))
            .ok()?;
        naive
            .and_local_timezone(Local)
            .earliest()?
            .with_timezone(&Utc)
    };
    Some(utc.to_rfc3339_opts(SecondsFormat::Micros, true))
}
