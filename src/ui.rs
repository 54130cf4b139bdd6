//! What the instructor sees. Tables and summaries go to stdout (plain when it is not a
//! terminal); with `--json` stdout carries one JSON document and nothing else, and every
//! note goes to stderr. Progress bars appear only on a terminal.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};

use comfy_table::{Cell, ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct Ui {
    pub json: bool,
    pub sandbox: bool,
    stdout_tty: bool,
    stderr_tty: bool,
    color: bool,
}

impl Ui {
    pub fn new(json: bool, sandbox: bool) -> Ui {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let stderr_tty = std::io::stderr().is_terminal();
        Ui {
            json,
            sandbox,
            stdout_tty: std::io::stdout().is_terminal(),
            stderr_tty,
            color: stderr_tty && !no_color,
        }
    }

    /// A line of the human report (stdout), or a note on stderr under `--json`. A closed stdout
    /// (`classkeys check | head -1`) is not worth a panic: the work is done and recorded.
    pub fn say(&self, msg: impl AsRef<str>) {
        let msg = shown(msg.as_ref());
        if self.json {
            eprintln!("{msg}");
        } else {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{msg}");
        }
    }

    /// A diagnostic: always stderr.
    pub fn note(&self, msg: impl AsRef<str>) {
        eprintln!("{}", shown(msg.as_ref()));
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        let msg = shown(msg.as_ref());
        if self.color {
            eprintln!("\x1b[33mwarning:\x1b[0m {msg}");
        } else {
            eprintln!("warning: {msg}");
        }
    }

    /// A table for people; skipped under `--json`.
    pub fn table(&self, headers: &[&str], rows: Vec<Vec<String>>) {
        if self.json {
            return;
        }
        let mut table = Table::new();
        if self.stdout_tty {
            table
                .load_style(presets::UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic);
        } else {
            table.load_style(presets::NOTHING);
        }
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|c| shown(c)).collect())
            .collect();
        // Columns with no space in any cell (emails, money, percentages) are never broken: a
        // narrow terminal wraps the others at word boundaries. The first column (the email or
        // the time) is always whole.
        let whole: Vec<bool> = (0..headers.len())
            .map(|i| {
                i == 0
                    || (!headers[i].contains(' ')
                        && rows
                            .iter()
                            .all(|r| r.get(i).is_none_or(|c| !c.contains(' '))))
            })
            .collect();
        if self.stdout_tty {
            // The narrowest such a table can be, with borders: too wide, and it goes borderless.
            let widest = |i: usize| {
                let cells = rows.iter().filter_map(|r| r.get(i)).map(String::as_str);
                let cells: Vec<&str> = std::iter::once(headers[i]).chain(cells).collect();
                if whole[i] {
                    cells.iter().map(|c| c.chars().count()).max().unwrap_or(0)
                } else {
                    cells
                        .iter()
                        .flat_map(|c| c.split(' '))
                        .map(|w| w.chars().count())
                        .max()
                        .unwrap_or(0)
                }
            };
            let content: usize = (0..headers.len()).map(widest).sum();
            let n = headers.len();
            if let Some(w) = table.width().map(usize::from) {
                if content + 4 * n + 1 > w {
                    table.load_style(presets::NOTHING);
                }
                // Narrower than the narrowest layout: no wrapping at all (the terminal folds
                // whole lines) rather than columns one letter wide.
                if content + 3 * n > w {
                    table.set_content_arrangement(ContentArrangement::Disabled);
                }
            }
        }
        table.set_header(headers.iter().map(Cell::new));
        for row in rows {
            table.add_row(row);
        }
        for (i, keep) in whole.iter().enumerate() {
            if *keep && let Some(col) = table.column_mut(i) {
                col.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
            }
        }
        let text = table.to_string();
        let mut out = std::io::stdout().lock();
        for line in text.lines() {
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }

    /// The one JSON document of a `--json` run. In the sandbox it says so.
    pub fn json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let mut value = serde_json::to_value(value)?;
        redact_json(&mut value);
        if let (true, Some(obj)) = (self.sandbox, value.as_object_mut()) {
            obj.insert("sandbox".into(), serde_json::Value::Bool(true));
        }
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
        Ok(())
    }

    pub fn progress(&self, len: usize, what: &str) -> ProgressBar {
        if !self.stderr_tty || len == 0 {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar
    }
}

/// Text from the account or a file, made safe for a terminal: control characters (escape
/// sequences, carriage returns, newlines) are shown escaped, never sent raw.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

static SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// The management key (or the SMTP password), so that nothing classkeys prints can hold it,
/// whatever a server echoes.
pub fn register_secret(secret: &str) {
    let secret = secret.trim();
    if secret.len() >= 6
        && let Ok(mut list) = SECRETS.write()
        && !list.iter().any(|s| s == secret)
    {
        list.push(secret.to_string());
    }
}

/// Text with every secret taken out: the management key, and anything shaped like an
/// OpenRouter key (`sk-or-…` with more than a masked label's few characters).
pub fn redact(s: &str) -> Cow<'_, str> {
    let mut out: Cow<str> = Cow::Borrowed(s);
    if let Ok(list) = SECRETS.read() {
        for secret in list.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), "(redacted)"));
            }
        }
    }
    if !out.contains("sk-or-") {
        return out;
    }
    let text = out.into_owned();
    let mut result = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("sk-or-") {
        result.push_str(&rest[..i]);
        let token = &rest[i..];
        let len = token
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            .map_or(token.len(), |(j, _)| j);
        if len >= 24 {
            result.push_str("sk-or-…(redacted)");
        } else {
            result.push_str(&token[..len]);
        }
        rest = &token[len..];
    }
    result.push_str(rest);
    Cow::Owned(result)
}

/// What may reach a terminal or a log: secrets redacted, control characters escaped.
pub fn shown(s: &str) -> String {
    clean(&redact(s))
}

/// Secrets out of every string of a JSON document (its text otherwise exact).
pub fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_json),
        serde_json::Value::Object(o) => o.values_mut().for_each(redact_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_labels_kept() {
        let key = "sk-or-v1-0123456789abcdef0123456789abcdef";
        let s = format!("Invalid key {key}, label sk-or-v1-2f4...0fdc");
        let r = redact(&s);
        assert!(!r.contains(key), "{r}");
        assert!(r.contains("sk-or-v1-2f4...0fdc"), "{r}");
        assert_eq!(clean("a\x1b[2Jb\r\n"), "a\\u{1b}[2Jb\\r\\n");
    }
}
