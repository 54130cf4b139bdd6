//! The class folder's files: reading CSVs strictly (file and line in every error),
//! writing them atomically with the right mode, and never over an older file.

pub mod config;
pub mod limits;
pub mod lms;
pub mod mail_txt;
pub mod output;
pub mod roster;

use std::fs::Permissions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Local, Utc};

use crate::error::input;

/// Files that hold secrets.
pub const SECRET_MODE: u32 = 0o600;
/// Files an instructor opens in a spreadsheet.
pub const PLAIN_MODE: u32 = 0o644;

/// A CSV file read and checked for encoding: headers (trimmed, lower-case) and rows with line numbers.
pub struct Table {
    pub path: PathBuf,
    /// The line of the header (1 unless blank lines come first).
    pub header_line: u64,
    pub headers: Vec<String>,
    pub rows: Vec<Row>,
}

pub struct Row {
    pub line: u64,
    pub cells: Vec<String>,
}

impl Table {
    pub fn shown(&self) -> String {
        self.path.display().to_string()
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    pub fn require(&self, name: &str, what: &str) -> Result<usize> {
        // A file saved with `;` or tabs (a spreadsheet in a European locale) is one column.
        if self.headers.len() == 1
            && let Some((_, word)) = [(';', "semicolons"), ('\t', "tabs")]
                .into_iter()
                .find(|(c, _)| self.headers[0].contains(*c))
        {
            return Err(input(format!(
                "{}: line {}: the columns are separated by {word}, not commas: save it as \"CSV UTF-8 \
                 (Comma delimited)\" (or replace the {word} with commas)",
                self.shown(),
                self.header_line
            )));
        }
        self.column(name).ok_or_else(|| {
            input(format!(
                "{}: line {}: missing column `{name}` ({what}); the header is: {}",
                self.shown(),
                self.header_line,
                excerpt(&self.headers.join(","))
            ))
        })
    }

    /// Error for a cell: `file: line N: message`.
    pub fn error(&self, line: u64, msg: impl std::fmt::Display) -> anyhow::Error {
        input(format!("{}: line {line}: {msg}", self.shown()))
    }
}

impl Row {
    pub fn get(&self, col: Option<usize>) -> &str {
        col.and_then(|c| self.cells.get(c))
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// The longest cell classkeys reads: anything longer is the wrong file, not a student.
const MAX_CELL: usize = 1000;

/// Read a CSV: UTF-8 (a byte-order mark is fine), CRLF or LF, cells trimmed, blank rows skipped,
/// spreadsheet-neutralised cells restored. A value that spans lines (a quote left open) or is
/// absurdly long is an error, never a row silently swallowed.
pub fn read_table(path: &Path, what: &str) -> Result<Table> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such file: check its name, and run classkeys in the class folder".to_string()
            }
            std::io::ErrorKind::IsADirectory => "it is a folder, not a file".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                format!("permission denied: make it readable (chmod u+r {shown})")
            }
            _ => e.to_string(),
        };
        input(format!("cannot read {what} {shown}: {why}"))
    })?;
    let body = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&bytes);
    if let Err(e) = std::str::from_utf8(body) {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        return Err(input(format!(
            "{shown}: line {line}: the file is not UTF-8 text. In Excel use File > Save As > \"CSV UTF-8 \
             (Comma delimited)\"; in LibreOffice choose the character set \"Unicode (UTF-8)\""
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .has_headers(true)
        .from_reader(body);
    let mut lines = Lines {
        body,
        at: 0,
        line: 1,
    };
    let header = reader
        .headers()
        .map_err(|e| input(format!("{shown}: line 1: cannot read the header: {e}")))?
        .clone();
    let header_line = lines.of(header.position().map_or(0, |p| p.byte()));
    check_cells(&header, header_line)
        .map_err(|m| input(format!("{shown}: line {header_line}: {m}")))?;
    let headers: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if headers.iter().all(|h| h.is_empty()) {
        return Err(input(format!(
            "{shown}: line 1: the file is empty; it needs a header line"
        )));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = lines.of(e.position().map_or(0, |p| p.byte()));
            input(format!("{shown}: line {line}: {e}"))
        })?;
        let line = lines.of(record.position().map_or(0, |p| p.byte()));
        if record.iter().all(|c| c.is_empty()) {
            continue;
        }
        check_cells(&record, line).map_err(|m| input(format!("{shown}: line {line}: {m}")))?;
        if record.len() > headers.len() && record.iter().skip(headers.len()).any(|c| !c.is_empty())
        {
            return Err(input(format!(
                "{shown}: line {line}: {} fields but the header has {}: put double quotes around a value \
                 that contains a comma",
                record.len(),
                headers.len()
            )));
        }
        let mut cells: Vec<String> = record.iter().map(restore_cell).collect();
        cells.resize(headers.len(), String::new());
        rows.push(Row { line, cells });
    }
    Ok(Table {
        path: path.to_path_buf(),
        header_line,
        headers,
        rows,
    })
}

/// Line numbers as a text editor shows them. The csv crate's own count misses CRLF line ends
/// (every line of a file saved on Windows would be reported one or more too low), and its record
/// positions point before the line ends and blank lines it skipped.
struct Lines<'a> {
    body: &'a [u8],
    at: usize,
    line: u64,
}

impl Lines<'_> {
    /// The line where the record the reader began at `byte` starts. Records come in order, so
    /// counting goes on from the last one.
    fn of(&mut self, byte: u64) -> u64 {
        let mut start = usize::try_from(byte).map_or(self.body.len(), |b| b.min(self.body.len()));
        while start < self.body.len() && matches!(self.body[start], b'\r' | b'\n') {
            start += 1;
        }
        for i in self.at..start {
            match self.body[i] {
                b'\n' => self.line += 1,
                b'\r' if self.body.get(i + 1) != Some(&b'\n') => self.line += 1,
                _ => {}
            }
        }
        self.at = start;
        self.line
    }
}

/// Cells no student's row has. A cell that spans lines can only come from a double quote left
/// open (the rows after it would silently become part of it); a huge one, from the wrong file.
fn check_cells(record: &csv::StringRecord, line: u64) -> std::result::Result<(), String> {
    for cell in record {
        if cell.contains(['\n', '\r']) {
            let end = line + cell.matches('\n').count() as u64;
            return Err(format!(
                "a value runs on to line {end}: a double quote (\") is not closed; quote a whole value \
                 (\"Lovelace, Ada\") or leave the quotes out"
            ));
        }
        if cell.chars().count() > MAX_CELL {
            return Err(format!(
                "a value of {} characters ({}): longer than {MAX_CELL}; is this the right file?",
                cell.chars().count(),
                excerpt(cell)
            ));
        }
    }
    Ok(())
}

/// Text from the account made fit for a cell the roster reader accepts back: one line, no
/// control characters, at most the longest cell classkeys reads.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CELL)
        .collect()
}

/// A value for an error message: quoted, control characters escaped, at most 40 characters.
pub fn excerpt(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

/// OWASP CSV-injection advice: a cell a spreadsheet would run as a formula gets a leading `'`.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = |c: char| matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r');
    let mut chars = cell.chars();
    let needs = match chars.next() {
        Some('-' | '+') => cell.parse::<f64>().is_err(),
        Some(c) if risky(c) => true,
        // Keep a literal leading quote before a risky character readable back as it was.
        Some('\'') => chars.next().is_some_and(risky),
        _ => false,
    };
    if needs {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

fn restore_cell(cell: &str) -> String {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) => rest.to_string(),
        _ => cell.to_string(),
    }
}

/// A CSV writer that neutralises every cell.
pub struct CsvOut<W: Write>(csv::Writer<W>);

impl<W: Write> CsvOut<W> {
    pub fn new(w: W) -> Self {
        CsvOut(
            csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(w),
        )
    }
    /// Lines ending in CRLF, to add rows to a file written that way (Python's csv module, Excel).
    pub fn crlf(w: W) -> Self {
        CsvOut(
            csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(w),
        )
    }
    pub fn row<I, S>(&mut self, cells: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let cells: Vec<String> = cells
            .into_iter()
            .map(|c| neutralise(c.as_ref()).into_owned())
            .collect();
        self.0.write_record(&cells)?;
        Ok(())
    }
    pub fn finish(self) -> Result<W> {
        self.0
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing CSV: {}", e.error()))
    }
}

/// Write `path` through a temp file in the same folder, created with `mode` from the first byte,
/// then renamed over the old file: a crash never leaves half a file. A file being replaced keeps
/// its mode where that is narrower (a roster made owner-only stays owner-only): never widened.
pub fn write_atomic(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mode = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => mode & m.permissions().mode() & 0o777,
        _ => mode,
    };
    let tmp = temp_beside(path, mode)?;
    let tmp = fill_temp(tmp, fill).with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| std::io::Error::from(e.error.kind()))
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Write a new file `DIR/STEM_YYYYMMDD_HHMMSS.EXT` (local time of `at`); if that name is taken,
/// `…_HHMMSS-2.EXT` and so on: never over an older file.
pub fn write_new(
    dir: &Path,
    stem: &str,
    ext: &str,
    at: DateTime<Utc>,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<PathBuf> {
    let name = format!(
        "{stem}_{}",
        at.with_timezone(&Local).format("%Y%m%d_%H%M%S")
    );
    let first = dir.join(format!("{name}.{ext}"));
    let mut tmp = fill_temp(temp_beside(&first, mode)?, fill)
        .with_context(|| format!("writing {}", first.display()))?;
    for n in 1.. {
        let target = if n == 1 {
            first.clone()
        } else {
            dir.join(format!("{name}-{n}.{ext}"))
        };
        match tmp.persist_noclobber(&target) {
            Ok(_) => return Ok(target),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                tmp = e.file
            }
            Err(e) => return Err(e.error).with_context(|| format!("saving {}", target.display())),
        }
    }
    unreachable!("the loop returns")
}

fn temp_beside(path: &Path, mode: u32) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".classkeys-")
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        // tempfile's error names its own temp file: the user's folder is what matters.
        .map_err(|e| std::io::Error::from(e.kind()))
        .with_context(|| {
            format!(
                "creating a file in {}: check the folder exists and is writable",
                dir.display()
            )
        })
}

fn fill_temp(
    tmp: tempfile::NamedTempFile,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<tempfile::NamedTempFile> {
    let mut w = BufWriter::new(tmp);
    fill(&mut w)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

pub use crate::domain::{email_key, money_cell, reset_cell};

/// A dollar amount as people write it: `2`, `2.50`, `$2`, or `unlimited` (None).
pub fn parse_money(s: &str) -> std::result::Result<Option<f64>, String> {
    let t = s.trim();
    if ["unlimited", "none", "null", "no limit"]
        .iter()
        .any(|w| t.eq_ignore_ascii_case(w))
    {
        return Ok(None);
    }
    let n = t.strip_prefix('$').unwrap_or(t).trim();
    match n.parse::<f64>() {
        // `-0` is zero, not a negative limit to send.
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v.abs())),
        Ok(_) => Err(format!(
            "the limit {t:?} is not a non-negative number of dollars (or `unlimited`)"
        )),
        Err(_) => Err(format!(
            "the limit {t:?} is not a number of dollars: write e.g. 2.5, or `unlimited`"
        )),
    }
}

/// `daily`, `weekly`, `monthly`; `none` or empty for no reset.
pub fn parse_reset(s: &str) -> std::result::Result<Option<String>, String> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "" | "none" | "never" => Ok(None),
        "daily" | "weekly" | "monthly" => Ok(Some(t)),
        _ => Err(format!(
            "unknown limit_reset {s:?}: use daily, weekly, monthly or leave it empty"
        )),
    }
}

pub fn parse_bool(s: &str) -> std::result::Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "y" => Ok(true),
        "false" | "no" | "0" | "n" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// An email classkeys accepts: one `@`, a dotted domain, no spaces or list separators.
pub fn check_email(email: &str) -> std::result::Result<(), String> {
    if email.is_empty() {
        return Err("the email is empty".into());
    }
    let ok = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && email.len() <= 254
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !email
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || ",;<>\"".contains(c))
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not an email address (like ada@uni.edu)",
            excerpt(email)
        ))
    }
}

/// A placeholder row `check` added for a key nobody knew: not a student.
pub use crate::domain::is_placeholder;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_read_back() {
        for cell in [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1+2",
            "-x",
            "@SUM(A1)",
            "\tx",
            "'=x",
        ] {
            let out = neutralise(cell);
            assert!(out.starts_with('\''), "{cell}");
            assert_eq!(restore_cell(&out), cell);
        }
        for cell in ["-1.5", "+2", "Ada", "a-b", "'plain"] {
            assert_eq!(neutralise(cell), cell);
            assert_eq!(restore_cell(cell), cell);
        }
    }

    #[test]
    fn line_numbers_count_crlf_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        for text in [
            "a,b\r\n1,2\r\n3,4\r\n\r\n5,6\r\n",
            "a,b\n1,2\n3,4\n\n5,6",
            "\u{feff}a,b\r\n1,2\r\n3,4\r\n\r\n5,6",
        ] {
            std::fs::write(&path, text).unwrap();
            let lines: Vec<u64> = read_table(&path, "x")
                .unwrap()
                .rows
                .iter()
                .map(|r| r.line)
                .collect();
            assert_eq!(lines, vec![2, 3, 5], "{text:?}");
        }
        std::fs::write(&path, "a,b\r\n1,2\r\n3,4,5\r\n").unwrap();
        let e = read_table(&path, "x").err().unwrap().to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn money_round_trips() {
        assert_eq!(parse_money("unlimited"), Ok(None));
        assert_eq!(parse_money(" $2.50 "), Ok(Some(2.5)));
        assert_eq!(parse_money("0"), Ok(Some(0.0)));
        assert!(parse_money("-1").is_err());
        assert!(parse_money("five").is_err());
        assert!(parse_money("NaN").is_err());
        assert_eq!(money_cell(Some(5.0)), "5.0");
        assert_eq!(money_cell(Some(0.75)), "0.75");
        assert_eq!(money_cell(None), "unlimited");
    }

    #[test]
    fn line_numbers_count_crlf_cr_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        for (text, want) in [
            (&b"a,b\n1,2\n\n3,4\n"[..], [2, 4]),
            (b"a,b\r\n1,2\r\n\r\n3,4\r\n", [2, 4]),
            (b"\xEF\xBB\xBFa,b\r\n1,2\r\n \r\n3,4", [2, 4]),
            (b"a,b\r1,2\r\r3,4\r", [2, 4]),
            (b"\n\na,b\n\"1\",\"x\"\n3,4\n", [4, 5]),
        ] {
            std::fs::write(&path, text).unwrap();
            let t = read_table(&path, "test").unwrap();
            let lines: Vec<u64> = t.rows.iter().map(|r| r.line).collect();
            assert_eq!(lines, want, "{:?}", String::from_utf8_lossy(text));
            assert_eq!(t.header_line, want[0] - 1);
        }
    }

    #[test]
    fn resets() {
        assert_eq!(parse_reset("Monthly"), Ok(Some("monthly".into())));
        assert_eq!(parse_reset(""), Ok(None));
        assert!(parse_reset("hourly").is_err());
    }
}
