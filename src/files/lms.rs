//! Rosters as the LMSs export them (Canvas, Moodle, Blackboard, Brightspace, GitHub Classroom):
//! read into (email, "First Last") pairs. UTF-8 (with or without a byte-order mark) and UTF-16
//! (Excel's "Unicode text") are read, with commas, semicolons or tabs between the columns.

use std::path::Path;

use anyhow::Result;

use crate::error::input;
use crate::files::{check_email, excerpt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Canvas,
    Moodle,
    Blackboard,
    Brightspace,
    GithubClassroom,
}

/// One student of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub email: String,
    pub name: String,
    pub line: u64,
}

/// The file's text: UTF-16 with its byte-order mark, else UTF-8 (a mark is dropped).
fn decode(path: &Path, bytes: &[u8]) -> Result<String> {
    let shown = path.display();
    let utf16 = |le: bool, body: &[u8]| -> Result<String> {
        let units: Vec<u16> = body
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units)
            .map_err(|_| input(format!("{shown}: the file is not valid UTF-16 text")))
    };
    if let Some(body) = bytes.strip_prefix(b"\xFF\xFE".as_slice()) {
        return utf16(true, body);
    }
    if let Some(body) = bytes.strip_prefix(b"\xFE\xFF".as_slice()) {
        return utf16(false, body);
    }
    let body = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(bytes);
    String::from_utf8(body.to_vec()).map_err(|e| {
        let line = body[..e.utf8_error().valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        input(format!(
            "{shown}: line {line}: the file is neither UTF-8 nor UTF-16 text: export it again as CSV (UTF-8)"
        ))
    })
}

/// The separator the header line uses most: `,`, `;` or a tab.
fn separator(text: &str) -> u8 {
    let first = text.lines().next().unwrap_or("");
    [b'\t', b';', b',']
        .into_iter()
        .max_by_key(|c| first.bytes().filter(|b| b == c).count())
        .unwrap_or(b',')
}

/// Read an export; `domain` makes emails from user names where the format needs one.
pub fn read(path: &Path, format: Format, domain: Option<&str>) -> Result<Vec<Person>> {
    let domain = domain
        .map(|d| d.trim().trim_start_matches('@'))
        .filter(|d| !d.is_empty());
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| input(format!("cannot read {shown}: {e}")))?;
    let text = decode(path, &bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(separator(&text))
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| input(format!("{shown}: line 1: {e}")))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    let col = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| headers.iter().position(|h| h == n))
    };
    let need = |names: &[&str]| {
        col(names).ok_or_else(|| {
            input(format!(
                "{shown}: line 1: no `{}` column, so this is not a {} export (the header is {})",
                names[0],
                format_name(format),
                excerpt(&headers.join(","))
            ))
        })
    };
    let needs_domain = || {
        domain.ok_or_else(|| {
            input(format!(
                "{shown}: some students have a user name but no email: give --email-domain (like uni.edu) to make \
                 their emails"
            ))
        })
    };
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| input(format!("{shown}: {e}")))?;
        let line = record.position().map_or(i as u64 + 2, |p| p.line());
        let strip = |s: &str| s.trim().trim_start_matches('#').trim().to_string();
        let get = |c: usize| record.get(c).map(strip).unwrap_or_default();
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let (email, name) = match format {
            Format::Canvas => {
                let student = get(need(&["student"])?);
                if student.is_empty()
                    || student.contains("Points Possible")
                    || student.contains("Manual Posting")
                    || student == "Student, Test"
                {
                    continue;
                }
                let name = match student.split_once(',') {
                    Some((last, first)) => format!("{} {}", first.trim(), last.trim()),
                    None => student,
                };
                let login = get(need(&["sis login id"])?);
                let email = if login.contains('@') {
                    login
                } else {
                    format!("{login}@{}", needs_domain()?)
                };
                (email, name)
            }
            Format::Moodle => {
                let first = get(need(&["first name"])?);
                let last = get(need(&["last name", "surname"])?);
                (get(need(&["email address"])?), format!("{first} {last}"))
            }
            Format::Blackboard => {
                let first = get(need(&["first name"])?);
                let last = get(need(&["last name"])?);
                let user = get(need(&["username"])?);
                (
                    format!("{user}@{}", needs_domain()?),
                    format!("{first} {last}"),
                )
            }
            Format::Brightspace => {
                let first = get(need(&["first name"])?);
                let last = get(need(&["last name"])?);
                let email = col(&["email"]).map(get).unwrap_or_default();
                let email = if email.is_empty() {
                    format!("{}@{}", get(need(&["username"])?), needs_domain()?)
                } else {
                    email
                };
                (email, format!("{first} {last}"))
            }
            Format::GithubClassroom => {
                let id = get(need(&["identifier"])?);
                let user = get(need(&["github_username"])?);
                let name = col(&["name"]).map(get).unwrap_or_default();
                let email = if id.contains('@') {
                    id
                } else {
                    format!("{user}@{}", needs_domain()?)
                };
                (email, if name.is_empty() { user } else { name })
            }
        };
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        check_email(&email).map_err(|m| input(format!("{shown}: line {line}: {m}")))?;
        if name.is_empty() {
            return Err(input(format!(
                "{shown}: line {line}: the name of {email} is empty"
            )));
        }
        out.push(Person { email, name, line });
    }
    Ok(out)
}

pub fn format_name(f: Format) -> &'static str {
    match f {
        Format::Canvas => "Canvas",
        Format::Moodle => "Moodle",
        Format::Blackboard => "Blackboard",
        Format::Brightspace => "Brightspace",
        Format::GithubClassroom => "GitHub Classroom",
    }
}
