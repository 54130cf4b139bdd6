//! `check`: fetch every key, settle the journal, match keys to the roster by hash, add keys
//! nobody knows to the roster as FIXME rows (once), record one usage row per key of the class,
//! write a snapshot, show the class.

use anyhow::Result;
use serde::Serialize;

use super::class::{Class, StudentJson, open_store, sandbox_tag, student_table};
use super::toggle::plural;
use crate::cli::CheckArgs;
use crate::context::Ctx;
use crate::domain::Standing;
use crate::error::Exit;
use crate::files::config::ClassConfig;
use crate::files::output::write_snapshot;
use crate::files::roster::Roster;
use crate::reconcile::Renamed;
use crate::store::run_time;

#[derive(Serialize)]
struct Report {
    students: Vec<StudentJson>,
    without_key: Vec<Person>,
    /// FIXME rows: keys nobody has claimed, listed apart and never counted.
    fixme: Vec<StudentJson>,
    added_to_roster: Vec<Person>,
    /// Keys of the class whose student is not on the roster.
    off_roster: Vec<StudentJson>,
    /// Roster emails that look like a student whose email changed.
    renamed: Vec<Renamed>,
    /// Roster emails whose same-name classmate holds both students' keys (from manage_keys.py).
    ambiguous: Vec<Renamed>,
    adopted: Vec<Person>,
    deleted_outside: Vec<Person>,
    unsettled_keys: Vec<String>,
    /// Students with nothing remaining.
    at_limit: usize,
    /// Keys of the account that are not the class's.
    not_class_keys: usize,
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
    let store = open_store(&args.db.db)?;
    let roster = Roster::read(&args.roster.roster)?;
    let config = ClassConfig::read(&ctx.dir())?;
    let mut class = Class::load(ctx, store, roster, &args.db.db, false)?;

    // Keys nobody knows become FIXME rows, once: keys.db remembers them from now on.
    let orphans: Vec<(crate::openrouter::Key, String, String)> = class
        .view()
        .orphans
        .iter()
        .map(|o| (o.key.clone(), o.email.clone(), o.name.clone()))
        .collect();
    let added: Vec<(String, String)> = orphans
        .iter()
        .map(|(_, e, n)| (e.clone(), n.clone()))
        .collect();
    let adopted: Vec<Person> = class
        .view()
        .adopted
        .iter()
        .map(|a| Person {
            email: a.email.clone(),
            name: a.key.name.clone(),
        })
        .collect();
    // A roster that cannot be rewritten (open in Excel, read-only, a synced share) costs the new
    // FIXME rows only: the class is still shown and recorded; the rows are added next time.
    let mut added = added;
    match class.roster.append(&added) {
        Ok(()) => {
            for (key, email, name) in &orphans {
                class
                    .store
                    .set_owner(key, email, name, crate::domain::Owner::Fixme, None)?;
            }
        }
        Err(e) => {
            ctx.ui.warn(format!(
                "the {} new FIXME row(s) could not be added to {} ({e:#}); they will be added by the next \
                 check once the file can be written",
                added.len(),
                class.roster.path.display()
            ));
            added.clear();
        }
    }
    class.refresh_known()?;
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
    let fixme = view.fixme_rows();
    // Which keys hold the class guardrail, as the account reports it.
    let guarded = crate::guardrail::holders(&class)?;
    if config.guardrail.is_some() && guarded.is_none() {
        ctx.ui.note(format!(
            "{} asks for a class guardrail that the account does not have yet: `classkeys provision` or `classkeys update` makes it",
            config.shown()
        ));
    }
    let json_of = |rows: &[(&str, &str, &crate::openrouter::Key)]| -> Vec<StudentJson> {
        rows.iter()
            .map(|(e, n, k)| StudentJson {
                guardrail: Some(guarded.as_ref().is_some_and(|g| g.contains(&k.hash))),
                ..StudentJson::new(e, n, k)
            })
            .collect()
    };
    let off_roster: Vec<(&str, &str, &crate::openrouter::Key)> = view
        .off_roster
        .iter()
        .map(|o| (o.email.as_str(), o.name.as_str(), o.key))
        .collect();
    // A fold from +0.0: `sum()` of no keys is -0.0, shown as "$-0.00".
    let total_usage: f64 = rows.iter().fold(0.0, |t, (_, _, k)| t + k.usage);
    let standing = |s: Standing| rows.iter().filter(|(_, _, k)| k.standing() == s).count();
    let (at_limit, near) = (standing(Standing::AtLimit), standing(Standing::Near));
    let renamed: Vec<Renamed> = view.renamed.clone();
    let ambiguous: Vec<Renamed> = view.ambiguous.clone();
    let deleted_outside: Vec<Person> = class
        .settled
        .gone_outside
        .iter()
        .map(|(email, name)| Person {
            email: email.clone(),
            name: name.clone(),
        })
        .collect();

    if ctx.ui.json {
        ctx.ui.json(&Report {
            students: json_of(&rows),
            without_key,
            fixme: json_of(&fixme),
            added_to_roster: added
                .into_iter()
                .map(|(email, name)| Person { email, name })
                .collect(),
            off_roster: json_of(&off_roster),
            renamed,
            ambiguous,
            adopted,
            deleted_outside,
            unsettled_keys: view.suspects.iter().map(|k| k.hash.clone()).collect(),
            at_limit,
            not_class_keys: view.not_ours,
            total_usage,
            snapshot: snapshot.display().to_string(),
        })?;
        return Ok(Exit::Ok);
    }
    if !rows.is_empty() {
        student_table(ctx, &rows, guarded.as_ref());
    }
    let disabled = rows.iter().filter(|(_, _, k)| k.disabled).count();
    let students = class
        .roster
        .students
        .iter()
        .filter(|s| !s.is_placeholder())
        .count();
    ctx.ui.say(format!(
        "{}{} on the roster, {} ({} disabled), total usage ${:.2}; {at_limit} at the limit, {near} at 80% or more",
        sandbox_tag(ctx),
        plural(students, "student"),
        plural(rows.len(), "key"),
        disabled,
        total_usage
    ));
    let deleted = class
        .books
        .keys
        .iter()
        .filter(|k| k.owner == crate::domain::Owner::Class && k.deleted)
        .count();
    if rows.is_empty() && deleted > 0 {
        ctx.ui.say(format!(
            "every key of this class is deleted ({}; the history stays in keys.db). To start the class \
             over, `classkeys provision` makes new ones",
            plural(deleted, "key")
        ));
    } else if !without_key.is_empty() {
        let names: Vec<&str> = without_key.iter().map(|p| p.email.as_str()).collect();
        ctx.ui.say(format!(
            "{} without a key (run `classkeys {}provision`): {}",
            names.len(),
            if ctx.global.sandbox { "--sandbox " } else { "" },
            names.join(", ")
        ));
    }
    for r in &renamed {
        ctx.ui.say(format!(
            "{} ({}) has no key, and {} left the roster with a live key: if it is the same student, run \
             `classkeys change-email --email {} --to {}`",
            r.new_email, r.name, r.old_email, r.old_email, r.new_email
        ));
    }
    for a in &ambiguous {
        ctx.ui.say(format!(
            "{} ({}) has no key, and {} holds two keys of that name (manage_keys.py recorded both under one \
             email): run `classkeys import-keys api_keys_*.csv` to settle who holds which",
            a.new_email, a.name, a.old_email
        ));
    }
    // FIXME rows from earlier checks (the ones just added are listed below).
    let earlier: Vec<_> = fixme
        .iter()
        .filter(|(e, _, _)| !added.iter().any(|(a, _)| a == e))
        .collect();
    if !earlier.is_empty() {
        ctx.ui.say(format!(
            "{} FIXME row(s) in {}: keys nobody has claimed, not counted above (write a student's email \
             into a row to adopt its key, or delete the row to dismiss it):",
            earlier.len(),
            class.roster.path.display()
        ));
        for (email, _, key) in earlier {
            ctx.ui.say(format!("  {email}  {}", key.name));
        }
    }
    for (email, name) in &added {
        ctx.ui.say(format!(
            "added to {}: {email},{} (a key nobody knew; fix the email or delete the row)",
            class.roster.path.display(),
            crate::ui::clean(name)
        ));
    }
    for a in &adopted {
        ctx.ui.say(format!(
            "adopted key {} for {}",
            crate::ui::clean(&a.name),
            a.email
        ));
    }
    let (dropped, left): (Vec<&str>, Vec<&str>) = off_roster
        .iter()
        .map(|(e, _, _)| *e)
        .partition(|e| class.books.dropped.contains(&crate::files::email_key(e)));
    if !dropped.is_empty() {
        ctx.ui.say(format!(
            "{} key(s) of dropped students (not counted): {}",
            dropped.len(),
            dropped.join(", ")
        ));
    }
    if !left.is_empty() {
        ctx.ui.say(format!(
            "{} key(s) of the class belong to students no longer on the roster (not counted; \
             `classkeys drop-student` or `change-email` says what happened): {}",
            left.len(),
            left.join(", ")
        ));
    }
    if view.not_ours > 0 {
        ctx.ui.say(format!(
            "{} key(s) of the account are not the class's (other classes, your own keys, FIXME rows): left alone",
            view.not_ours
        ));
    }
    if !view.suspects.is_empty() {
        ctx.ui.warn(format!(
            "{} key(s) may be left over from an interrupted run; the next run settles them",
            view.suspects.len()
        ));
    }
    if let (Some(g), Some(_)) = (&guarded, &config.guardrail) {
        let lacking = rows.iter().filter(|(_, _, k)| !g.contains(&k.hash)).count();
        if lacking > 0 {
            ctx.ui.warn(format!(
                "{} of the class do not hold the class guardrail: run `classkeys update` to assign it",
                plural(lacking, "key")
            ));
        }
    }
    ctx.ui.say(format!("snapshot: {}", snapshot.display()));
    Ok(Exit::Ok)
}
