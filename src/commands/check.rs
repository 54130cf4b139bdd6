//! `check`: fetch every key, match keys to the roster, add unknown keys to the roster,
//! record one usage row per key, write a snapshot, show the class.

use anyhow::Result;
use serde::Serialize;

use super::class::{Class, StudentJson, sandbox_tag, student_table};
use crate::cli::CheckArgs;
use crate::context::Ctx;
use crate::error::Exit;
use crate::files::output::write_snapshot;
use crate::store::run_time;

#[derive(Serialize)]
struct Report {
    students: Vec<StudentJson>,
    without_key: Vec<Person>,
    added_to_roster: Vec<Person>,
    unsettled_keys: Vec<String>,
    total_usage: f64,
    snapshot: String,
}

#[derive(Serialize)]
struct Person {
    email: String,
    name: String,
}

pub fn run(ctx: &mut Ctx, args: CheckArgs) -> Result<Exit> {
    let at = run_time();
    let mut class = Class::load(ctx, &args.roster.roster, &args.db.db)?;

    // Keys nobody knows become roster rows (FIXME placeholders, or the email keys.db knows).
    let added: Vec<(String, String)> = class
        .view()
        .orphans
        .iter()
        .map(|o| (o.email.clone(), o.name.clone()))
        .collect();
    class.roster.append(&added)?;
    class.record(at)?;

    let view = class.view();
    let rows = view.rows();
    let snapshot = write_snapshot(&ctx.dir(), at, rows.iter().copied())?;
    let without_key: Vec<Person> = view
        .keyless()
        .iter()
        .map(|s| Person {
            email: s.email.clone(),
            name: s.name.clone(),
        })
        .collect();
    // A fold from +0.0: `sum()` of no keys is -0.0, shown as "$-0.00".
    let total_usage: f64 = rows.iter().fold(0.0, |t, (_, _, k)| t + k.usage);

    if ctx.ui.json {
        ctx.ui.json(&Report {
            students: rows
                .iter()
                .map(|(e, n, k)| StudentJson::new(e, n, k))
                .collect(),
            without_key,
            added_to_roster: added
                .into_iter()
                .map(|(email, name)| Person { email, name })
                .collect(),
            unsettled_keys: view.suspects.iter().map(|k| k.hash.clone()).collect(),
            total_usage,
            snapshot: snapshot.display().to_string(),
        })?;
        return Ok(Exit::Ok);
    }
    if !rows.is_empty() {
        student_table(ctx, &rows);
    }
    let disabled = rows.iter().filter(|(_, _, k)| k.disabled).count();
    ctx.ui.say(format!(
        "{}{} students on the roster, {} keys ({} disabled), total usage ${:.2}",
        sandbox_tag(ctx),
        class
            .roster
            .students
            .iter()
            .filter(|s| !s.is_placeholder())
            .count(),
        rows.len(),
        disabled,
        total_usage
    ));
    if !without_key.is_empty() {
        let names: Vec<&str> = without_key.iter().map(|p| p.email.as_str()).collect();
        ctx.ui.say(format!(
            "{} without a key (run `classkeys {}provision`): {}",
            names.len(),
            if ctx.global.sandbox { "--sandbox " } else { "" },
            names.join(", ")
        ));
    }
    for (email, name) in &added {
        ctx.ui.say(format!(
            "added to {}: {email},{name} (a key nobody knew; fix the email or delete the row)",
            class.roster.path.display()
        ));
    }
    if !view.suspects.is_empty() {
        ctx.ui.warn(format!(
            "{} key(s) may be left over from an interrupted provision; the next `classkeys provision` settles them",
            view.suspects.len()
        ));
    }
    ctx.ui.say(format!("snapshot: {}", snapshot.display()));
    Ok(Exit::Ok)
}
