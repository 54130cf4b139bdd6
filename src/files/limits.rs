//! limits.csv: the control plane. The instructor edits `target_*`; classkeys applies them
//! (`update`) and writes `actual_*` from the account, keeping every target.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{
    CsvOut, PLAIN_MODE, check_email, email_key, money_cell, one_line, parse_bool, parse_money,
    parse_reset, read_table, reset_cell, write_atomic,
};
use crate::domain::Key;

pub const COLUMNS: [&str; 10] = [
    "email",
    "name",
    "target_limit",
    "actual_limit",
    "target_disabled",
    "actual_disabled",
    "key_name",
    "hash",
    "target_limit_reset",
    "actual_limit_reset",
];

/// One row as read. A target left empty means "leave it as it is".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsRow {
    pub email: String,
    pub name: String,
    /// `Some(None)`: unlimited.
    pub target_limit: Option<Option<f64>>,
    pub target_disabled: Option<bool>,
    /// `Some(None)`: no reset.
    pub target_limit_reset: Option<Option<String>>,
    pub key_name: String,
    pub hash: String,
    /// `actual_limit` as the file has it: classkeys writes it; an edit there applies nothing.
    pub actual_limit: String,
    pub line: u64,
    pub extra: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LimitsFile {
    pub path: PathBuf,
    pub rows: Vec<LimitsRow>,
    pub extra_headers: Vec<String>,
    /// Written by manage_keys.py (no `target_limit_reset` column): it wrote `unlimited` for a
    /// $0 limit, so that word on a $0 key means $0.
    pub python: bool,
    /// The file's bytes when this run read it (none if it did not exist), and its rows then:
    /// a rewrite keeps whatever the instructor changed since.
    pub read_bytes: Option<Vec<u8>>,
    pub read_rows: Vec<LimitsRow>,
}

impl LimitsFile {
    /// A missing file is an empty one (the first `provision` writes it).
    pub fn read_or_empty(path: &Path) -> Result<LimitsFile> {
        if !path.exists() {
            return Ok(LimitsFile {
                path: path.to_path_buf(),
                ..Default::default()
            });
        }
        LimitsFile::read(path)
    }

    pub fn read(path: &Path) -> Result<LimitsFile> {
        let bytes = std::fs::read(path).ok();
        let mut file = LimitsFile::parse(path)?;
        file.read_rows = file.rows.clone();
        file.read_bytes = bytes;
        Ok(file)
    }

    fn parse(path: &Path) -> Result<LimitsFile> {
        let table = read_table(path, "the limits file")?;
        let email_col = table.require("email", "the student's email")?;
        let limit_col = table.require(
            "target_limit",
            "the limit you want, in dollars, or `unlimited`",
        )?;
        let col = |n| table.column(n);
        let (name_col, dis_col, reset_col, kn_col, hash_col, actual_col) = (
            col("name"),
            col("target_disabled"),
            col("target_limit_reset"),
            col("key_name"),
            col("hash"),
            col("actual_limit"),
        );
        let extra_idx: Vec<usize> = (0..table.headers.len())
            .filter(|i| !COLUMNS.contains(&table.headers[*i].as_str()))
            .collect();
        let mut seen: HashMap<String, (u64, String)> = HashMap::new();
        let mut rows = Vec::with_capacity(table.rows.len());
        for row in &table.rows {
            let email = row.get(Some(email_col)).to_string();
            check_email(&email).map_err(|m| table.error(row.line, m))?;
            let hash = row.get(hash_col);
            if let Some((first, first_hash)) =
                seen.insert(email_key(&email), (row.line, hash.to_string()))
            {
                // Two keys of one student, each named by its hash (the Python tool wrote two
                // same-name students' keys under one email): rows of keys, not a mistake.
                if hash.is_empty() || first_hash.is_empty() || hash == first_hash {
                    return Err(table.error(
                        row.line,
                        format!("duplicate email {email} (also on line {first})"),
                    ));
                }
            }
            let target_limit = match row.get(Some(limit_col)) {
                "" => None,
                s => Some(
                    parse_money(s)
                        .map_err(|m| table.error(row.line, format!("target_limit: {m}")))?,
                ),
            };
            let target_disabled = match row.get(dis_col) {
                "" => None,
                s => Some(
                    parse_bool(s)
                        .map_err(|m| table.error(row.line, format!("target_disabled: {m}")))?,
                ),
            };
            let target_limit_reset = match row.get(reset_col) {
                "" => None,
                s => Some(
                    parse_reset(s)
                        .map_err(|m| table.error(row.line, format!("target_limit_reset: {m}")))?,
                ),
            };
            rows.push(LimitsRow {
                email,
                name: row.get(name_col).to_string(),
                target_limit,
                target_disabled,
                target_limit_reset,
                key_name: row.get(kn_col).to_string(),
                hash: row.get(hash_col).to_string(),
                actual_limit: row.get(actual_col).to_string(),
                line: row.line,
                extra: extra_idx.iter().map(|i| row.cells[*i].clone()).collect(),
            });
        }
        let extra_headers = extra_idx
            .iter()
            .map(|i| table.headers[*i].clone())
            .collect();
        Ok(LimitsFile {
            path: path.to_path_buf(),
            rows,
            extra_headers,
            python: table.column("target_limit_reset").is_none(),
            ..Default::default()
        })
    }

    /// This run's rows, with every target the instructor changed in the file since this run
    /// read it taken from the file as it is now. A file that changed and can no longer be read
    /// is not overwritten.
    fn merged(&self) -> Result<Vec<LimitsRow>> {
        let now = std::fs::read(&self.path).ok();
        if now == self.read_bytes || now.is_none() {
            return Ok(self.rows.clone());
        }
        let current = LimitsFile::parse(&self.path).map_err(|e| {
            e.context(format!(
                "{} was edited while classkeys ran and cannot be read now, so it was not rewritten; \
                 fix it, then run `classkeys refresh-limits-file`",
                self.path.display()
            ))
        })?;
        let then: HashMap<String, &LimitsRow> = self
            .read_rows
            .iter()
            .map(|r| (email_key(&r.email), r))
            .collect();
        let mut rows = self.rows.clone();
        let mut index: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (email_key(&r.email), i))
            .collect();
        for cur in current.rows {
            let k = email_key(&cur.email);
            let was = then.get(&k);
            match index.get(&k) {
                Some(&i) => {
                    let row = &mut rows[i];
                    if was.is_none_or(|w| w.target_limit != cur.target_limit) {
                        row.target_limit = cur.target_limit;
                    }
                    if was.is_none_or(|w| w.target_disabled != cur.target_disabled) {
                        row.target_disabled = cur.target_disabled;
                    }
                    if was.is_none_or(|w| w.target_limit_reset != cur.target_limit_reset) {
                        row.target_limit_reset = cur.target_limit_reset.clone();
                    }
                }
                None => {
                    index.insert(k, rows.len());
                    rows.push(cur);
                }
            }
        }
        Ok(rows)
    }

    /// Write the rows as they stand (after an email change), actuals as they were.
    pub fn rewrite_rows(&self) -> Result<()> {
        let table = read_table(&self.path, "the limits file")?;
        let email_col = table.require("email", "the student's email")?;
        let by_line: HashMap<u64, &LimitsRow> = self.rows.iter().map(|r| (r.line, r)).collect();
        write_atomic(&self.path, PLAIN_MODE, |w: &mut dyn Write| {
            let mut out = CsvOut::new(w);
            out.row(&table.headers)?;
            for row in &table.rows {
                let mut cells = row.cells.clone();
                if let Some(r) = by_line.get(&row.line) {
                    cells[email_col] = r.email.clone();
                }
                out.row(&cells)?;
            }
            out.finish()?;
            Ok(())
        })
    }

    /// Whether a row's `unlimited` target is the Python tool's way of writing a $0 limit.
    pub fn python_zero(&self, row: &LimitsRow, key: &Key) -> bool {
        self.python && row.target_limit == Some(None) && key.limit == Some(0.0)
    }

    /// The row for a key: by its hash, else by the student's email.
    pub fn row_for(&self, hash: &str, email: &str) -> Option<&LimitsRow> {
        self.rows
            .iter()
            .find(|r| !r.hash.is_empty() && r.hash == hash)
            .or_else(|| {
                self.rows
                    .iter()
                    .find(|r| email_key(&r.email) == email_key(email))
            })
    }

    /// Rewrite the file: one row per (email, name, key) given, actuals from the key, targets kept
    /// from the old row (an empty target is filled with the actual value).
    pub fn rewrite<'a>(
        &self,
        keys: impl IntoIterator<Item = (&'a str, &'a str, &'a Key)>,
    ) -> Result<()> {
        let merged = self.merged()?;
        let by_email: HashMap<String, &LimitsRow> =
            merged.iter().map(|r| (email_key(&r.email), r)).collect();
        let by_hash: HashMap<&str, &LimitsRow> = merged
            .iter()
            .filter(|r| !r.hash.is_empty())
            .map(|r| (r.hash.as_str(), r))
            .collect();
        write_atomic(&self.path, PLAIN_MODE, |w: &mut dyn Write| {
            let mut out = CsvOut::new(w);
            out.row(
                COLUMNS
                    .iter()
                    .copied()
                    .chain(self.extra_headers.iter().map(String::as_str)),
            )?;
            for (email, name, key) in keys {
                let old = by_hash
                    .get(key.hash.as_str())
                    .or_else(|| by_email.get(&email_key(email)))
                    .copied();
                // An empty target is filled with the key's value, if that is one a target can
                // hold: a value outside the API's spec (a negative limit, an unknown reset) is
                // shown as it is in the actual column and leaves the target empty, so the file
                // never blocks the next command.
                let t_limit = match old.and_then(|r| r.target_limit) {
                    Some(_) if old.is_some_and(|r| self.python_zero(r, key)) => {
                        money_cell(key.limit)
                    }
                    Some(t) => money_cell(t),
                    None if key.limit.is_some_and(|l| !l.is_finite() || l < 0.0) => String::new(),
                    None => money_cell(key.limit),
                };
                let t_disabled = old.and_then(|r| r.target_disabled).unwrap_or(key.disabled);
                let t_reset = match old.and_then(|r| r.target_limit_reset.clone()) {
                    Some(t) => reset_cell(t.as_deref()),
                    None if parse_reset(&reset_cell(key.limit_reset.as_deref())).is_err() => {
                        String::new()
                    }
                    None => reset_cell(key.limit_reset.as_deref()),
                };
                let mut cells = vec![
                    email.to_string(),
                    name.to_string(),
                    t_limit,
                    money_cell(key.limit),
                    t_disabled.to_string(),
                    key.disabled.to_string(),
                    one_line(&key.name),
                    key.hash.clone(),
                    t_reset,
                    one_line(&reset_cell(key.limit_reset.as_deref())),
                ];
                let extra = old.map(|r| r.extra.clone()).unwrap_or_default();
                cells.extend(
                    (0..self.extra_headers.len())
                        .map(|i| extra.get(i).cloned().unwrap_or_default()),
                );
                out.row(&cells)?;
            }
            out.finish()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_python_file_and_keeps_targets_on_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.csv");
        std::fs::write(
            &path,
            "email,name,target_limit,actual_limit,target_disabled,actual_disabled,key_name,hash\n\
             alice@uni.edu,Alice,5.0,2.0,false,false,20250907_Alice,abc\n\
             bob@uni.edu,Bob,unlimited,2.0,true,false,20250907_Bob,def\n",
        )
        .unwrap();
        let file = LimitsFile::read(&path).unwrap();
        assert_eq!(file.rows[0].target_limit, Some(Some(5.0)));
        assert_eq!(file.rows[1].target_limit, Some(None));
        assert_eq!(file.rows[1].target_disabled, Some(true));
        assert_eq!(file.rows[0].target_limit_reset, None);
        let key = |hash: &str, name: &str| Key {
            hash: hash.into(),
            name: name.into(),
            limit: Some(2.0),
            ..serde_json::from_str(r#"{"hash":"x"}"#).unwrap()
        };
        let (a, b) = (key("abc", "20250907_Alice"), key("def", "20250907_Bob"));
        file.rewrite([("alice@uni.edu", "Alice", &a), ("bob@uni.edu", "Bob", &b)])
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("alice@uni.edu,Alice,5.0,2.0,false,false,20250907_Alice,abc,none,none"),
            "{text}"
        );
        assert!(
            text.contains("bob@uni.edu,Bob,unlimited,2.0,true,false"),
            "{text}"
        );
    }

    #[test]
    fn bad_targets_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.csv");
        std::fs::write(&path, "email,target_limit\na@b.edu,1\nc@d.edu,lots\n").unwrap();
        let e = LimitsFile::read(&path).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("lots"), "{e}");
    }
}
