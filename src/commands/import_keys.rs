//! `import-keys FILE...`: bring secrets from api_keys_*.csv files (the Python tool's or
//! classkeys' own) into keys.db, so `export-keys` can hand them out again. A row is matched to
//! a key of the account by key name and email, and its secret must fit the key's masked label.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::class::sandbox_tag;
use crate::cli::ImportArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::{check_email, email_key, read_table};
use crate::openrouter::Key;
use crate::store::{SecretSet, Store};

/// One row of an api_keys file.
pub struct Row {
    file: PathBuf,
    line: u64,
    email: String,
    name: String,
    secret: String,
    key_name: String,
}

#[derive(Serialize)]
struct Report {
    imported: Vec<Item>,
    already_stored: Vec<Item>,
    unmatched: Vec<Unmatched>,
    /// Rows whose secret differs from the one keys.db holds: never replaced.
    conflicts: Vec<Unmatched>,
}

#[derive(Serialize)]
struct Item {
    email: String,
    key_name: String,
    hash: String,
}

#[derive(Serialize)]
struct Unmatched {
    file: String,
    line: u64,
    email: String,
    key_name: String,
    reason: String,
}

pub fn run(ctx: &mut Ctx, args: ImportArgs) -> Result<Exit> {
    let rows = read_all(&args.files)?;
    let mut store = Store::open(&args.db.db)?;
    super::class::check_account_kind(ctx, &store, &args.db.db)?;
    let client = ctx.client()?.in_workspace(store.meta("workspace")?);
    let account = client.list_keys()?;
    let known = store.known_keys()?;
    let known_email = |hash: &str| {
        known
            .iter()
            .find(|k| k.hash == hash)
            .map(|k| email_key(&k.email))
    };

    let shared = |hash: &str| {
        known.iter().find(|k| k.hash == hash).is_some_and(|k| {
            known
                .iter()
                .filter(|o| {
                    !o.deleted
                        && o.key_name == k.key_name
                        && email_key(&o.email) == email_key(&k.email)
                })
                .count()
                >= 2
        })
    };
    let mut report = Report {
        imported: Vec::new(),
        already_stored: Vec::new(),
        unmatched: Vec::new(),
        conflicts: Vec::new(),
    };
    for row in &rows {
        let unmatched = |reason: &str| Unmatched {
            file: row.file.display().to_string(),
            line: row.line,
            email: row.email.clone(),
            key_name: row.key_name.clone(),
            reason: reason.to_string(),
        };
        let same_name: Vec<&Key> = account.iter().filter(|k| k.name == row.key_name).collect();
        if same_name.is_empty() {
            report
                .unmatched
                .push(unmatched("no key of that name on the account (deleted?)"));
            continue;
        }
        let fits: Vec<&Key> = same_name
            .into_iter()
            .filter(|k| label_fits(&k.label, &row.secret))
            .collect();
        // keys.db's email for the key must agree; a key keys.db does not know takes the file's email.
        let found = fits
            .iter()
            .find(|k| known_email(&k.hash).as_deref() == Some(email_key(&row.email).as_str()))
            .or_else(|| fits.iter().find(|k| known_email(&k.hash).is_none()))
            // manage_keys.py recorded two same-name students' keys under the first one's email:
            // the file's row says whose this one is.
            .or_else(|| fits.iter().find(|k| shared(&k.hash)));
        let Some(key) = found else {
            report.unmatched.push(unmatched(if fits.is_empty() {
                "the secret does not fit the masked label of any key of that name"
            } else {
                "keys.db records that key under another email"
            }));
            continue;
        };
        let item = Item {
            email: row.email.clone(),
            key_name: key.name.clone(),
            hash: key.hash.clone(),
        };
        match store.set_secret(key, &row.email, &row.name, &row.secret)? {
            SecretSet::Stored => report.imported.push(item),
            SecretSet::Already => report.already_stored.push(item),
            SecretSet::Conflict => report.conflicts.push(unmatched(
                "keys.db already holds a different secret for this key (the one its create returned); nothing was replaced",
            )),
        }
    }

    // Like every command that looked at the account: one usage row per key keys.db knows.
    let emails: HashMap<String, (String, crate::domain::Owner)> = store
        .known_keys()?
        .into_iter()
        .filter(|k| k.owner != crate::domain::Owner::Dismissed)
        .map(|k| (k.hash, (k.email, k.owner)))
        .collect();
    let seen: Vec<crate::store::Seen> = account
        .iter()
        .filter_map(|k| {
            emails.get(&k.hash).map(|(e, owner)| crate::store::Seen {
                key: k,
                email: e.as_str(),
                owner: *owner,
            })
        })
        .collect();
    store.record_state(crate::store::run_time(), &[], &seen)?;

    if ctx.ui.json {
        ctx.ui.json(&report)?;
    } else {
        ctx.ui.say(format!(
            "{}imported {} secret(s); {} already stored; {} row(s) not matched",
            sandbox_tag(ctx),
            report.imported.len(),
            report.already_stored.len(),
            report.unmatched.len()
        ));
        for u in &report.unmatched {
            ctx.ui.warn(format!(
                "{}: line {}: {} ({}): {}",
                u.file, u.line, u.email, u.key_name, u.reason
            ));
        }
        for u in &report.conflicts {
            ctx.ui.warn(format!(
                "{}: line {}: {} ({}): {}",
                u.file, u.line, u.email, u.key_name, u.reason
            ));
        }
        if !report.imported.is_empty() {
            ctx.ui
                .say("`classkeys export-keys` now hands these keys out again");
        }
    }
    if !report.conflicts.is_empty() {
        return Err(anyhow::anyhow!(
            "{} row(s) carry a secret that differs from the one keys.db holds; nothing was replaced. \
             If a student's key does not work, re-issue it with `classkeys rotate --email …`",
            report.conflicts.len()
        ));
    }
    Ok(Exit::Ok)
}

/// Every row of the given api_keys files, checked (file and line in every error).
pub fn read_all(files: &[PathBuf]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for file in files {
        let table = read_table(file, "the keys file")?;
        let Some(secret_col) = table.column("api_key") else {
            return Err(input(format!(
                "{}: line {}: no `api_key` column, so no secrets to import: give the api_keys_*.csv files \
                 that provision wrote (columns email,name,api_key,key_name)",
                table.shown(),
                table.header_line
            )));
        };
        let email_col = table.require("email", "the student's email")?;
        let kn_col = table.require("key_name", "the key's name")?;
        let name_col = table.column("name");
        if table.rows.is_empty() {
            return Err(table.error(
                table.header_line + 1,
                "no keys in this file: give the api_keys_*.csv files that provision wrote",
            ));
        }
        let mut seen: HashMap<String, u64> = HashMap::new();
        for r in &table.rows {
            let email = r.get(Some(email_col)).to_string();
            check_email(&email).map_err(|m| table.error(r.line, m))?;
            if let Some(first) = seen.insert(email_key(&email), r.line) {
                return Err(table.error(
                    r.line,
                    format!("duplicate email {email} (also on line {first}); one key per student and file"),
                ));
            }
            let key_name = r.get(Some(kn_col)).to_string();
            if key_name.is_empty() {
                return Err(table.error(
                    r.line,
                    format!("the key_name of {email} is empty: it finds the key on the account"),
                ));
            }
            let secret = r.get(Some(secret_col)).to_string();
            if !secret.starts_with("sk-") || secret.contains("...") {
                return Err(table.error(
                    r.line,
                    "api_key is not a key secret (sk-or-v1-…); masked labels cannot be imported",
                ));
            }
            rows.push(Row {
                file: file.clone(),
                line: r.line,
                email,
                name: r.get(name_col).to_string(),
                secret,
                key_name,
            });
        }
    }
    Ok(rows)
}

/// A label like `sk-or-v1-2f4...0fdc` shows the start and end of the secret.
fn label_fits(label: &str, secret: &str) -> bool {
    match label.split_once("...") {
        Some((head, tail)) => secret.starts_with(head) && secret.ends_with(tail),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels() {
        let s = "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";
        assert!(super::label_fits("sk-or-v1-2f4...0fdc", s));
        assert!(!super::label_fits("sk-or-v1-2f5...0fdc", s));
        assert!(super::label_fits("", s));
    }
}
