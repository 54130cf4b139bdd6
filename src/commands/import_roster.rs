//! `import-roster`: merge an LMS export into roster.csv. New students are appended; existing
//! rows (and their extra columns) stay as they are; a changed name is reported, not applied;
//! students missing from the export are listed, not removed. Sends nothing.

use std::collections::HashMap;

use anyhow::Result;
use serde::Serialize;

use crate::cli::ImportRosterArgs;
use crate::context::Ctx;
use crate::error::Exit;
use crate::files::lms;
use crate::files::roster::Roster;
use crate::files::{PLAIN_MODE, email_key, write_atomic};

#[derive(Serialize, Default)]
struct Report {
    dry_run: bool,
    added: Vec<Person>,
    changed: Vec<Changed>,
    missing: Vec<Person>,
}

#[derive(Serialize, Clone)]
struct Person {
    email: String,
    name: String,
}

#[derive(Serialize)]
struct Changed {
    email: String,
    name: String,
    name_in_export: String,
}

pub fn run(ctx: &mut Ctx, args: ImportRosterArgs) -> Result<Exit> {
    let people = lms::read(&args.file, args.from, args.email_domain.as_deref())?;
    let path = &args.roster.roster;
    let mut roster = if path.exists() {
        Some(Roster::read(path)?)
    } else {
        None
    };
    let existing: HashMap<String, String> = roster
        .iter()
        .flat_map(|r| r.students.iter())
        .map(|s| (email_key(&s.email), s.name.clone()))
        .collect();
    let mut report = Report {
        dry_run: args.dry_run,
        ..Report::default()
    };
    let mut seen = std::collections::HashSet::new();
    for p in &people {
        let k = email_key(&p.email);
        if !seen.insert(k.clone()) {
            continue;
        }
        match existing.get(&k) {
            Some(name) if name != &p.name => report.changed.push(Changed {
                email: p.email.clone(),
                name: name.clone(),
                name_in_export: p.name.clone(),
            }),
            Some(_) => {}
            None => report.added.push(Person {
                email: p.email.clone(),
                name: p.name.clone(),
            }),
        }
    }
    if let Some(r) = &roster {
        report.missing = r
            .students
            .iter()
            .filter(|s| !s.is_placeholder() && !seen.contains(&email_key(&s.email)))
            .map(|s| Person {
                email: s.email.clone(),
                name: s.name.clone(),
            })
            .collect();
    }
    if !args.dry_run && !report.added.is_empty() {
        let added: Vec<(String, String)> = report
            .added
            .iter()
            .map(|p| (p.email.clone(), p.name.clone()))
            .collect();
        match &mut roster {
            Some(r) => r.append(&added)?,
            None => {
                write_atomic(path, PLAIN_MODE, |w| {
                    let mut out = crate::files::CsvOut::new(w);
                    out.row(["email", "name"])?;
                    for (e, n) in &added {
                        out.row([e, n])?;
                    }
                    out.finish()?;
                    Ok(())
                })?;
            }
        }
    }
    if ctx.ui.json {
        ctx.ui.json(&report)?;
        return Ok(Exit::Ok);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for p in &report.added {
        rows.push(vec![p.email.clone(), p.name.clone(), "added".into()]);
    }
    for c in &report.changed {
        rows.push(vec![
            c.email.clone(),
            c.name.clone(),
            format!("name in the export: {} (not applied)", c.name_in_export),
        ]);
    }
    for p in &report.missing {
        rows.push(vec![
            p.email.clone(),
            p.name.clone(),
            "not in the export (kept)".into(),
        ]);
    }
    if !rows.is_empty() {
        ctx.ui.table(&["Email", "Name", "What"], rows);
    }
    ctx.ui.say(format!(
        "{}{} {} from {} ({}); {} with another name there; {} not in the export",
        if args.dry_run { "dry run: " } else { "" },
        if args.dry_run { "would add" } else { "added" },
        super::toggle::plural(report.added.len(), "student"),
        args.file.display(),
        lms::format_name(args.from),
        report.changed.len(),
        report.missing.len()
    ));
    Ok(Exit::Ok)
}
