//! roster.csv: who the students are (`email,name`, optional `limit`, `limit_reset`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

pub use crate::domain::Student;

use super::{
    CsvOut, PLAIN_MODE, check_email, email_key, parse_money, parse_reset, read_table, write_atomic,
};

/// What `Roster::edit` does with a row.
pub enum RowEdit {
    Keep,
    Drop,
    Email(String),
}

#[derive(Debug, Clone)]
pub struct Roster {
    pub path: PathBuf,
    pub students: Vec<Student>,
}

impl Roster {
    pub fn read(path: &Path) -> Result<Roster> {
        let table = read_table(path, "the roster")?;
        let email_col = table.require("email", "each student's email")?;
        let name_col = table.require("name", "each student's name")?;
        let limit_col = table.column("limit");
        let reset_col = table.column("limit_reset");
        let mut students: Vec<Student> = Vec::with_capacity(table.rows.len());
        let mut seen: HashMap<String, u64> = HashMap::new();
        for row in &table.rows {
            let email = row.get(Some(email_col)).to_string();
            let name = row.get(Some(name_col)).to_string();
            // The Python tool built FIXME emails from key names as they were (a comma, a space, a
            // second `@`): such a row is a FIXME row all the same.
            if !super::is_placeholder(&email) {
                check_email(&email).map_err(|m| table.error(row.line, m))?;
            }
            if name.is_empty() {
                return Err(table.error(row.line, format!("the name of {email} is empty")));
            }
            if let Some(first) = seen.insert(email_key(&email), row.line) {
                return Err(table.error(
                    row.line,
                    format!(
                        "duplicate email {email} (also on line {first}); each student appears once"
                    ),
                ));
            }
            let limit = match row.get(limit_col) {
                "" => None,
                s => Some(parse_money(s).map_err(|m| table.error(row.line, m))?),
            };
            let limit_reset =
                parse_reset(row.get(reset_col)).map_err(|m| table.error(row.line, m))?;
            students.push(Student {
                email,
                name,
                limit,
                limit_reset,
                line: row.line,
            });
        }
        if students.is_empty() {
            return Err(table.error(
                table.header_line + 1,
                "no students: add one line per student under the header, like ada@uni.edu,Ada Lovelace",
            ));
        }
        Ok(Roster {
            path: path.to_path_buf(),
            students,
        })
    }

    /// Add rows at the end, keeping the file as it was (its other columns stay empty for them,
    /// its lines end as its first line does).
    pub fn append(&mut self, added: &[(String, String)]) -> Result<()> {
        if added.is_empty() {
            return Ok(());
        }
        let original = std::fs::read(&self.path)?;
        let table = read_table(&self.path, "the roster")?;
        let (email_col, name_col) = (table.column("email"), table.column("name"));
        let crlf = original
            .iter()
            .position(|b| *b == b'\n')
            .is_some_and(|i| i > 0 && original[i - 1] == b'\r');
        write_atomic(&self.path, PLAIN_MODE, |w: &mut dyn Write| {
            w.write_all(&original)?;
            if !original.is_empty() && !original.ends_with(b"\n") {
                w.write_all(if crlf { b"\r\n" } else { b"\n" })?;
            }
            let mut out = if crlf {
                CsvOut::crlf(w)
            } else {
                CsvOut::new(w)
            };
            for (email, name) in added {
                let mut cells = vec![String::new(); table.headers.len()];
                if let (Some(e), Some(n)) = (email_col, name_col) {
                    cells[e] = email.clone();
                    cells[n] = name.clone();
                }
                out.row(&cells)?;
            }
            out.finish()?;
            Ok(())
        })?;
        let next = self.students.last().map_or(2, |s| s.line + 1);
        for (i, (email, name)) in added.iter().enumerate() {
            self.students.push(Student {
                email: email.clone(),
                name: name.clone(),
                limit: None,
                limit_reset: None,
                line: next + i as u64,
            });
        }
        Ok(())
    }

    /// Rewrite the file with some rows' email changed or rows removed, every other row and
    /// column kept as read (line ends as the file's first line). Returns how many rows changed.
    pub fn edit(&mut self, change: impl Fn(&str) -> RowEdit) -> Result<usize> {
        let original = std::fs::read(&self.path)?;
        let table = read_table(&self.path, "the roster")?;
        let email_col = table.require("email", "each student's email")?;
        let crlf = original
            .iter()
            .position(|b| *b == b'\n')
            .is_some_and(|i| i > 0 && original[i - 1] == b'\r');
        let header: Vec<String> = {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .from_reader(
                    original
                        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                        .unwrap_or(&original),
                );
            r.headers()?.iter().map(|h| h.to_string()).collect()
        };
        let mut changed = 0;
        write_atomic(&self.path, PLAIN_MODE, |w: &mut dyn Write| {
            let mut out = if crlf {
                CsvOut::crlf(w)
            } else {
                CsvOut::new(w)
            };
            out.row(&header)?;
            for row in &table.rows {
                let mut cells = row.cells.clone();
                match change(&cells[email_col]) {
                    RowEdit::Keep => {}
                    RowEdit::Drop => {
                        changed += 1;
                        continue;
                    }
                    RowEdit::Email(new) => {
                        changed += 1;
                        cells[email_col] = new;
                    }
                }
                out.row(&cells)?;
            }
            out.finish()?;
            Ok(())
        })?;
        *self = Roster::read(&self.path)?;
        Ok(changed)
    }

    pub fn find(&self, email: &str) -> Option<&Student> {
        let k = email_key(email);
        self.students.iter().find(|s| email_key(&s.email) == k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8]) -> Result<Roster> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.csv");
        std::fs::write(&path, text).unwrap();
        Roster::read(&path)
    }

    #[test]
    fn bom_crlf_spaces_and_optional_columns() {
        let r = read(b"\xEF\xBB\xBF Email , Name ,limit,limit_reset\r\n ada@uni.edu , Ada Lovelace ,5,monthly\r\nbob@uni.edu,Bob,,\r\n")
            .unwrap();
        assert_eq!(r.students.len(), 2);
        assert_eq!(r.students[0].email, "ada@uni.edu");
        assert_eq!(r.students[0].name, "Ada Lovelace");
        assert_eq!(r.students[0].limit, Some(Some(5.0)));
        assert_eq!(r.students[0].limit_reset.as_deref(), Some("monthly"));
        assert_eq!(r.students[1].limit, None);
    }

    #[test]
    fn append_keeps_the_file_and_its_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.csv");
        for (text, added) in [
            (
                "email,name\r\nada@uni.edu,Ada Lovelace\r\n",
                "barbara.liskov@FIXME.edu,Barbara Liskov\r\n",
            ),
            (
                "email,name\r\nada@uni.edu,Ada Lovelace",
                "\r\nbarbara.liskov@FIXME.edu,Barbara Liskov\r\n",
            ),
            (
                "email,name\nada@uni.edu,Ada Lovelace\n",
                "barbara.liskov@FIXME.edu,Barbara Liskov\n",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let mut r = Roster::read(&path).unwrap();
            r.append(&[("barbara.liskov@FIXME.edu".into(), "Barbara Liskov".into())])
                .unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                format!("{text}{added}")
            );
            let again = Roster::read(&path).unwrap();
            assert_eq!(again.students.len(), 2);
            assert_eq!(again.students[1].line, 3);
        }
    }

    #[test]
    fn errors_name_the_line() {
        let e = read(b"email,name\nada@uni.edu,Ada\nnot-an-email,Bob\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("not-an-email"), "{e}");
        let e = read(b"email,name\nada@uni.edu,Ada\nADA@uni.edu,Ada2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("duplicate") && e.contains("line 2"),
            "{e}"
        );
        let e = read(b"mail,name\n").unwrap_err().to_string();
        assert!(e.contains("missing column `email`"), "{e}");
        let e = read(b"email,name,limit\na@b.edu,A,-3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("non-negative"), "{e}");
        let e = read(b"email,name,limit_reset\na@b.edu,A,hourly\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("hourly"), "{e}");
        let e = read(b"email,name\na@b.edu,Sm\xe9th\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("UTF-8"), "{e}");
        let e = read(b"email,name\na@b.edu,Smith, John\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("quotes"), "{e}");
        let e = read(b"email,name\n,Nobody\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("empty"), "{e}");
    }
}
