//! `delete`, `disable`, `enable`: change the keys of chosen students (or of the whole roster)
//! after a confirmation. Keys outside the roster, and FIXME rows, are never touched by `--all`.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use serde::Serialize;

use super::class::{Class, open_store, sandbox_tag};
use crate::apply::{self, Applied, DeleteWhy, Done, Op};
use crate::cli::SelectArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::email_key;
use crate::files::limits::LimitsFile;
use crate::files::roster::Roster;
use crate::openrouter::{ApiError, Key, Patch};
use crate::store::run_time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delete,
    Disable,
    Enable,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Disable => "disable",
            Action::Enable => "enable",
        }
    }
    fn past(self) -> &'static str {
        match self {
            Action::Delete => "deleted",
            Action::Disable => "disabled",
            Action::Enable => "enabled",
        }
    }
    /// A key already in the wanted state needs nothing.
    fn needed(self, key: &Key) -> bool {
        match self {
            Action::Delete => true,
            Action::Disable => !key.disabled,
            Action::Enable => key.disabled,
        }
    }
}

#[derive(Serialize)]
struct Report {
    action: &'static str,
    dry_run: bool,
    keys: Vec<Target>,
    already: usize,
    failed: Vec<super::class::Failed>,
}

#[derive(Serialize, Clone)]
struct Target {
    email: String,
    name: String,
    key_name: String,
    hash: String,
    done: bool,
}

/// `1 key`, `2 keys`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Check `--email`s against the roster before anything is sent.
pub fn check_emails(roster: &Roster, emails: &[String]) -> Result<()> {
    for email in emails {
        match roster.find(email) {
            None => {
                let closest = roster
                    .students
                    .iter()
                    .filter(|s| !s.is_placeholder())
                    .map(|s| {
                        (
                            strsim::levenshtein(&email_key(email), &email_key(&s.email)),
                            s,
                        )
                    })
                    .filter(|(d, _)| *d <= 3)
                    .min_by_key(|(d, _)| *d);
                let hint = match closest {
                    Some((_, s)) => format!("; did you mean {}?", s.email),
                    None => "; check the spelling".to_string(),
                };
                return Err(input(format!(
                    "--email {email}: not in {}{hint}",
                    roster.path.display()
                )));
            }
            Some(s) if s.is_placeholder() => {
                return Err(input(format!(
                    "--email {email}: a FIXME row is a key nobody has claimed, not a student of the class; \
                     write the student's email into {} to adopt it first",
                    roster.path.display()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Without --yes the question needs a terminal: find that out before anything is sent.
pub fn can_confirm(yes: bool, what: &str) -> Result<()> {
    if yes || std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(input(format!(
        "refusing to {what} without confirmation: add --yes (or run it in a terminal to be asked). Nothing was changed"
    )))
}

/// Ask on a terminal; refuse without one. `Ok(false)` when the instructor says no.
pub fn confirm(ctx: &Ctx, yes: bool, question: &str) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    can_confirm(yes, question)?;
    let mut err = std::io::stderr().lock();
    write!(err, "{}{question}? [y/N] ", sandbox_tag(ctx))?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

pub fn run(ctx: &mut Ctx, args: SelectArgs, action: Action) -> Result<Exit> {
    let at = run_time();
    if !args.dry_run {
        can_confirm(args.yes, &format!("{} keys", action.verb()))?;
    }
    let store = open_store(&args.db.db)?;
    let roster = Roster::read(&args.roster.roster)?;
    check_emails(&roster, &args.emails)?;
    let limits = LimitsFile::read_or_empty(&args.limits.limits)?;
    let mut class = Class::load(ctx, store, roster, &args.db.db, args.dry_run)?;

    let view = class.view();
    let chosen: Vec<(String, String, Key)> = view
        .entries
        .iter()
        .filter(|e| {
            if args.all {
                !e.student.is_placeholder()
            } else {
                args.emails.iter().any(|m| {
                    crate::files::email_key(m) == crate::files::email_key(&e.student.email)
                })
            }
        })
        .flat_map(|e| {
            e.keys.iter().map(|k| {
                (
                    e.student.email.clone(),
                    e.student.name.clone(),
                    (*k).clone(),
                )
            })
        })
        .collect();
    drop(view);
    let (todo, already): (Vec<_>, Vec<_>) =
        chosen.into_iter().partition(|(_, _, k)| action.needed(k));
    let mut targets: Vec<Target> = todo
        .iter()
        .map(|(email, name, k)| Target {
            email: email.clone(),
            name: name.clone(),
            key_name: k.name.clone(),
            hash: k.hash.clone(),
            done: false,
        })
        .collect();

    if args.dry_run || todo.is_empty() {
        return finish(ctx, action, args.dry_run, targets, already.len(), None);
    }
    if !args.yes {
        // Say exactly what would change before asking.
        let mut lines: Vec<String> = todo
            .iter()
            .take(20)
            .map(|(email, name, k)| format!("  {email}  {name}  {}", k.name))
            .collect();
        if todo.len() > 20 {
            lines.push(format!("  … and {} more", todo.len() - 20));
        }
        for line in lines {
            ctx.ui.note(line);
        }
    }
    let students = {
        let mut e: Vec<&str> = todo.iter().map(|t| t.0.as_str()).collect();
        e.sort_unstable();
        e.dedup();
        e.len()
    };
    let question = format!(
        "{} {} of {}{}",
        action.verb(),
        plural(todo.len(), "key"),
        plural(students, "student"),
        if action == Action::Delete {
            " (a delete cannot be undone)"
        } else {
            ""
        }
    );
    if !confirm(ctx, args.yes, &question)? {
        return Err(input("not confirmed: nothing was changed"));
    }
    let (applied, failure) = change_keys(ctx, &mut class, &todo, action)?;
    for t in &mut targets {
        t.done = applied.patched(&t.hash) || applied.deleted().any(|k| k.hash == t.hash);
    }
    // So that a later `update` does not undo what was just done.
    let mut limits = limits;
    keep_targets(&mut limits, &applied);
    class.record(at)?;
    if limits.path.exists() {
        let view = class.view();
        limits.rewrite(view.with_keys())?;
    }
    finish(ctx, action, false, targets, already.len(), failure)
}

/// Send one disable, enable or delete per key through the executor.
pub fn change_keys(
    ctx: &Ctx,
    class: &mut Class,
    todo: &[(String, String, Key)],
    action: Action,
) -> Result<(Applied, Option<(String, ApiError)>)> {
    let ops = todo
        .iter()
        .map(|(email, _, key)| match action {
            Action::Delete => Op::Delete {
                email: email.clone(),
                key: key.clone(),
                why: DeleteWhy::Asked,
            },
            Action::Disable | Action::Enable => Op::Patch {
                email: email.clone(),
                before: key.clone(),
                patch: Patch {
                    disabled: Some(action == Action::Disable),
                    ..Default::default()
                },
            },
        })
        .collect();
    let mut applied = apply::execute(ctx, class, ops, action.past())?;
    let failure = applied.failure.take();
    Ok((applied, failure))
}

/// limits.csv's target_disabled follows what was just done, so that `update` does not undo it.
pub fn keep_targets(limits: &mut LimitsFile, applied: &Applied) {
    let now_disabled: HashMap<String, bool> = applied
        .done
        .iter()
        .filter_map(|(op, done)| match (op, done) {
            (Op::Patch { email, .. }, Done::Patched(key)) => Some((email, key)),
            _ => None,
        })
        .flat_map(|(email, key)| {
            [
                (key.hash.clone(), key.disabled),
                (email_key(email), key.disabled),
            ]
        })
        .collect();
    for row in &mut limits.rows {
        if let Some(d) = now_disabled
            .get(&row.hash)
            .or_else(|| now_disabled.get(&email_key(&row.email)))
        {
            row.target_disabled = Some(*d);
        }
    }
}

fn finish(
    ctx: &Ctx,
    action: Action,
    dry_run: bool,
    targets: Vec<Target>,
    already: usize,
    failure: Option<(String, ApiError)>,
) -> Result<Exit> {
    let done = targets.iter().filter(|t| t.done).count();
    if ctx.ui.json {
        ctx.ui.json(&Report {
            action: action.verb(),
            dry_run,
            keys: targets.clone(),
            already,
            failed: super::class::Failed::list(&failure),
        })?;
    } else {
        let rows = targets
            .iter()
            .map(|t| {
                let status = if dry_run {
                    format!("would be {}", action.past())
                } else if t.done {
                    action.past().into()
                } else {
                    "not done".into()
                };
                vec![t.email.clone(), t.name.clone(), t.key_name.clone(), status]
            })
            .collect::<Vec<_>>();
        if !rows.is_empty() {
            ctx.ui.table(&["Email", "Name", "Key name", "Status"], rows);
        }
        if dry_run {
            ctx.ui.say(format!(
                "{}dry run: would {} {} key(s); {already} already {}. Nothing was changed.",
                sandbox_tag(ctx),
                action.verb(),
                targets.len(),
                action.past()
            ));
        } else {
            ctx.ui.say(format!(
                "{}{} {done} key(s); {already} already {}",
                sandbox_tag(ctx),
                action.past(),
                action.past()
            ));
        }
    }
    if let Some((email, err)) = failure {
        return Err(anyhow::Error::new(err).context(format!(
            "stopped at {email}; the {done} key(s) {} before are recorded",
            action.past()
        )));
    }
    Ok(Exit::Ok)
}
