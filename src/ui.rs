//! What the instructor sees. Tables and summaries go to stdout (plain when it is not a
//! terminal); with `--json` stdout carries one JSON document and nothing else, and every
//! note goes to stderr. Progress bars appear only on a terminal.

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
        if self.json {
            eprintln!("{}", msg.as_ref());
        } else {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{}", msg.as_ref());
        }
    }

    /// A diagnostic: always stderr.
    pub fn note(&self, msg: impl AsRef<str>) {
        eprintln!("{}", msg.as_ref());
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        if self.color {
            eprintln!("\x1b[33mwarning:\x1b[0m {}", msg.as_ref());
        } else {
            eprintln!("warning: {}", msg.as_ref());
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
        table.set_header(headers.iter().map(Cell::new));
        for row in rows {
            table.add_row(row);
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
