//! keys.db's schema: an append-only list of migrations applied by `PRAGMA user_version`
//! inside one transaction. Never edit or reorder a shipped step; add a new one.
//!
//! Version 1 is exactly the schema of the Python `manage_keys.py`, so a database it
//! wrote (user_version 0, its four tables) upgrades through the same steps as a new one.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Local, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};

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
             WHERE api_key IS NOT NULL AND (api_key LIKE '%...%' OR api_key LIKE '%…%' OR api_key NOT LIKE 'sk-%');
         UPDATE changelog SET email = (SELECT k.email FROM key k WHERE k.key_hash = changelog.key_hash)
             WHERE email IS NULL;",
    ),
    // 3: the Python tool wrote naive local times; classkeys writes UTC RFC 3339 everywhere.
    Step::Rust(utc_timestamps),
    // 4: the class ledger. `class_meta` holds what kind of account the class lives on and its
    // tag; `key.owner` says whether a key is the class's (made, imported, adopted), a FIXME row
    // the instructor has not claimed, or one they dismissed; `intent` journals every change to
    // the account before it is sent (creates in progress move over from create_attempt).
    Step::Sql(
        "CREATE TABLE class_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
         ALTER TABLE key ADD COLUMN owner TEXT NOT NULL DEFAULT 'class';
         ALTER TABLE student ADD COLUMN dropped_at TEXT;
         UPDATE key SET owner = 'fixme' WHERE lower(trim(email)) LIKE '%@fixme.edu';
         CREATE TABLE intent (id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL,
             email TEXT NOT NULL, key_hash TEXT, key_name TEXT, body TEXT, prior TEXT,
             before_hashes TEXT, started_at TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open',
             settled_at TEXT, outcome TEXT);
         CREATE INDEX intent_open ON intent(state);
         INSERT INTO intent (action, email, key_name, started_at)
             SELECT 'create', email, key_name, started_at FROM create_attempt
             WHERE state IN ('pending', 'ambiguous');
         UPDATE create_attempt SET state = 'moved' WHERE state IN ('pending', 'ambiguous');",
    ),
];

pub const LATEST: i64 = STEPS.len() as i64;

const PYTHON_TABLES: &[&str] = &["changelog", "key", "student", "usage"];
/// Tables a classkeys database of schema 2 or later has besides the Python ones.
const CLASSKEYS_TABLES: &[&str] = &["create_attempt"];
/// Tables a classkeys database of schema 4 or later has besides those.
const LEDGER_TABLES: &[&str] = &["class_meta", "intent"];

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
    let has = |names: &[&str]| names.iter().all(|n| tables.iter().any(|t| t == n));
    if version > 0 {
        // A user_version alone proves little: the tables classkeys made must be there.
        let ours = has(PYTHON_TABLES)
            && (version < 2 || has(CLASSKEYS_TABLES))
            && (version < 4 || has(LEDGER_TABLES));
        if ours && has_python_key_table(conn)? {
            return Ok(Kind::Classkeys(version));
        }
    } else if tables.is_empty() {
        return Ok(Kind::Empty);
    } else if tables == PYTHON_TABLES && has_python_key_table(conn)? {
        return Ok(Kind::Python);
    }
    Err(crate::error::input(format!(
        "{shown} is neither a classkeys nor a manage_keys.py database (schema {version}, tables: {}); \
         it was left untouched. Point --db at the class's keys.db, or run `classkeys init-db --db NEW.db` \
         for a new one.",
        if tables.is_empty() {
            "none".to_string()
        } else {
            tables.join(", ")
        }
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

/// Apply every step past the database's version, in one transaction. The caller holds the
/// class lock; `from` is what `classify` found.
pub fn upgrade(conn: &mut Connection, from: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if version_of(&tx)? != from {
        bail!("keys.db changed while classkeys was opening it; run the command again");
    }
    apply_steps(&tx, from)?;
    tx.commit().context("saving the upgraded keys.db")?;
    Ok(())
}

/// What upgrading a manage_keys.py database did.
#[derive(Debug)]
pub struct PythonUpgrade {
    /// Rows of student, key, usage, changelog: the same before and after.
    pub counts: [i64; 4],
    pub backup: PathBuf,
}

/// Upgrade a database manage_keys.py wrote: `copy` saves the file aside first (while nothing
/// holds it: closing a second descriptor of the file would drop SQLite's locks), then every step
/// runs in one transaction that commits only if every row of the four tables is still there.
pub fn upgrade_python(
    conn: &mut Connection,
    copy: impl FnOnce() -> Result<PathBuf>,
) -> Result<PythonUpgrade> {
    // A database in WAL mode keeps recent commits beside the file: fold them in before copying.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let seen = data_version(conn)?;
    let before = counts(conn)?;
    let backup = copy()?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if data_version(&tx)? != seen || version_of(&tx)? != 0 {
        bail!(
            "keys.db changed while it was being copied to {} (is manage_keys.py still running?); \
             nothing was upgraded. Let it finish, then run the command again",
            backup.display()
        );
    }
    apply_steps(&tx, 0)?;
    let after = counts(&tx)?;
    if after != before {
        bail!(
            "upgrading keys.db would have changed its row counts (students, keys, usage, changelog: \
             {before:?} before, {after:?} after); nothing was changed. The copy is {}",
            backup.display()
        );
    }
    tx.commit().context("saving the upgraded keys.db")?;
    Ok(PythonUpgrade {
        counts: after,
        backup,
    })
}

fn apply_steps(tx: &Transaction, from: i64) -> Result<()> {
    for (i, step) in STEPS.iter().enumerate().skip(from as usize) {
        let version = i as i64 + 1;
        match step {
            Step::Sql(sql) => tx.execute_batch(sql),
            Step::Rust(f) => f(tx),
        }
        .with_context(|| format!("upgrading keys.db to schema {version}"))?;
    }
    tx.pragma_update(None, "user_version", LATEST)?;
    Ok(())
}

fn version_of(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

/// Row counts of student, key, usage, changelog.
pub fn counts(conn: &Connection) -> Result<[i64; 4]> {
    let mut out = [0; 4];
    for (i, t) in ["student", "key", "usage", "changelog"].iter().enumerate() {
        out[i] = conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))?;
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn python_db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        let Step::Sql(schema) = STEPS[0] else {
            unreachable!()
        };
        conn.execute_batch(schema).unwrap();
        conn.execute_batch(
            "INSERT INTO student VALUES ('ada@uni.edu', 'Ada', '2026-11-27T10:08:33.999592');
             INSERT INTO key VALUES ('h1', 'sk-or-v1-2f4...0fdc', 'ada@uni.edu', '20261127_Ada', '2026-11-27T10:08:29.973204+00:00', 2.0, 0);
             INSERT INTO key VALUES ('h2', 'sk-or-v1-0123456789', 'ada@uni.edu', '20261127_Ada', '2026-11-27 10:08:30', NULL, 1);
             INSERT INTO usage (key_hash, usage, checked_at) VALUES ('h1', 0.5, '2026-11-27T10:08:34.461460');
             INSERT INTO changelog (key_hash, action, old_value, new_value, changed_at)
                 VALUES ('h1', 'update_limit', '2.0', '5.0', '2026-11-27T10:08:34.901002');",
        )
        .unwrap();
        conn
    }

    #[test]
    fn kinds() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(classify(&conn, "x").unwrap(), Kind::Empty);
        let conn = python_db();
        assert_eq!(classify(&conn, "x").unwrap(), Kind::Python);
        conn.pragma_update(None, "user_version", 1).unwrap();
        assert_eq!(classify(&conn, "x").unwrap(), Kind::Classkeys(1));
        // Schema 2 has create_attempt; without it this is not a classkeys database.
        conn.pragma_update(None, "user_version", 2).unwrap();
        let e = classify(&conn, "x").unwrap_err().to_string();
        assert!(e.contains("neither") && e.contains("untouched"), "{e}");
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        let e = classify(&conn, "x").unwrap_err().to_string();
        assert!(e.contains("newer") && e.contains("untouched"), "{e}");
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE key (key_hash TEXT)")
            .unwrap();
        let e = classify(&conn, "x").unwrap_err().to_string();
        assert!(e.contains("tables: key"), "{e}");
    }

    #[test]
    fn python_upgrade_keeps_rows_and_real_secrets_and_moves_labels() {
        let mut conn = python_db();
        let done = upgrade_python(&mut conn, || Ok(PathBuf::from("copy"))).unwrap();
        assert_eq!(done.counts, [1, 2, 1, 1]);
        assert_eq!(version_of(&conn).unwrap(), LATEST);
        assert_eq!(classify(&conn, "x").unwrap(), Kind::Classkeys(LATEST));
        let row = |hash: &str| -> (Option<String>, Option<String>, String) {
            conn.query_row(
                "SELECT api_key, label, created_at FROM key WHERE key_hash = ?1",
                [hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
        };
        let (secret, label, created) = row("h1");
        assert_eq!(
            (secret, label.as_deref()),
            (None, Some("sk-or-v1-2f4...0fdc"))
        );
        assert_eq!(created, "2026-11-27T10:08:29.973204Z");
        let (secret, label, _) = row("h2");
        assert_eq!(
            (secret.as_deref(), label),
            (Some("sk-or-v1-0123456789"), None)
        );
        let email: String = conn
            .query_row("SELECT email FROM changelog", [], |r| r.get(0))
            .unwrap();
        assert_eq!(email, "ada@uni.edu");
    }

    #[test]
    fn python_upgrade_stops_if_the_file_changes_while_it_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        python_db()
            .execute("VACUUM INTO ?1", [path.to_str().unwrap()])
            .unwrap();
        let mut conn = Connection::open(&path).unwrap();
        let e = upgrade_python(&mut conn, || {
            // manage_keys.py, still running, records one more usage row.
            Connection::open(&path)
                .unwrap()
                .execute("INSERT INTO usage (key_hash, usage) VALUES ('h1', 0.6)", [])
                .unwrap();
            Ok(PathBuf::from("copy"))
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("changed while it was being copied"), "{e}");
        assert_eq!(version_of(&conn).unwrap(), 0);
        assert_eq!(classify(&conn, "x").unwrap(), Kind::Python);
    }

    #[test]
    fn python_times() {
        // Naive local times are checked end to end under several TZ values (tests/e2e/migrate.rs).
        assert_eq!(
            to_utc("2026-11-27T10:08:29.973204+00:00").as_deref(),
            Some("2026-11-27T10:08:29.973204Z")
        );
        assert_eq!(
            to_utc("2026-11-27T12:08:29+02:00").as_deref(),
            Some("2026-11-27T10:08:29.000000Z")
        );
        assert!(to_utc("2026-11-27 10:08:30").is_some());
        assert_eq!(to_utc("yesterday"), None);
    }
}
