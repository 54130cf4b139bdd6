//! The files classkeys writes for people: snapshots, the secrets of new keys, exports.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::{CsvOut, PLAIN_MODE, SECRET_MODE, money_cell, one_line, reset_cell, write_new};
use crate::domain::{ExportRow, Key};

pub const SNAPSHOT_COLUMNS: [&str; 9] = [
    "email",
    "name",
    "key_name",
    "hash",
    "usage",
    "limit",
    "disabled",
    "limit_reset",
    "created_at",
];

/// `snapshot_YYYYMMDD_HHMMSS.csv`: every key of the class at `at`.
pub fn write_snapshot<'a>(
    dir: &Path,
    at: DateTime<Utc>,
    rows: impl IntoIterator<Item = (&'a str, &'a str, &'a Key)>,
) -> Result<PathBuf> {
    write_new(
        dir,
        "snapshot",
        "csv",
        at,
        PLAIN_MODE,
        |w: &mut dyn Write| {
            let mut out = CsvOut::new(w);
            out.row(SNAPSHOT_COLUMNS)?;
            for (email, name, key) in rows {
                out.row([
                    email,
                    name,
                    &one_line(&key.name),
                    &key.hash,
                    &key.usage.to_string(),
                    &money_cell(key.limit),
                    &key.disabled.to_string(),
                    &one_line(&reset_cell(key.limit_reset.as_deref())),
                    &one_line(key.created_at.as_deref().unwrap_or("")),
                ])?;
            }
            out.finish()?;
            Ok(())
        },
    )
}

/// One new secret, for `api_keys_*.csv`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewSecret {
    pub email: String,
    pub name: String,
    pub api_key: String,
    pub key_name: String,
}

/// `api_keys_YYYYMMDD_HHMMSS.csv`, owner-only: the secrets of the keys this run created.
pub fn write_api_keys(dir: &Path, at: DateTime<Utc>, secrets: &[NewSecret]) -> Result<PathBuf> {
    write_new(
        dir,
        "api_keys",
        "csv",
        at,
        SECRET_MODE,
        |w: &mut dyn Write| {
            let mut out = CsvOut::new(w);
            out.row(["email", "name", "api_key", "key_name"])?;
            for s in secrets {
                out.row([&s.email, &s.name, &s.api_key, &s.key_name])?;
            }
            out.finish()?;
            Ok(())
        },
    )
}

pub fn export_csv(w: &mut dyn Write, rows: &[ExportRow]) -> Result<()> {
    let mut out = CsvOut::new(w);
    out.row(["email", "name", "api_key", "key_name", "limit", "disabled"])?;
    for r in rows {
        out.row([
            &r.email,
            &r.name,
            &r.api_key,
            &r.key_name,
            &money_cell(r.limit),
            &r.disabled.to_string(),
        ])?;
    }
    out.finish()?;
    Ok(())
}

pub fn export_json(w: &mut dyn Write, rows: &[ExportRow]) -> Result<()> {
    serde_json::to_writer_pretty(&mut *w, rows)?;
    writeln!(w)?;
    Ok(())
}
