//! `sandbox spend|reset|serve`: what the sandbox needs that the real account does by itself.
//! Students spend money on their own; in a rehearsal `spend` plays them, so that `check`,
//! `update` and `report` have usage to show. `reset` starts the rehearsal over; the hidden
//! `serve` runs the emulator alone, for benchmarks against a slow "OpenRouter".

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::class::{limit_text, sandbox_tag};
use crate::cli::{SandboxCommand, ServeArgs, SpendArgs};
use crate::context::Ctx;
use crate::domain::Naming;
use crate::error::{Exit, input};
use crate::files::email_key;
use crate::files::roster::Roster;
use crate::files::roster::Student;
use crate::openrouter::Key;
use crate::reconcile;
use crate::sandbox::{self, Account, Emulator, Options};
use crate::store::{KnownKey, Store};

pub fn run(ctx: &mut Ctx, cmd: SandboxCommand) -> Result<Exit> {
    match cmd {
        SandboxCommand::Spend(args) => spend(ctx, args),
        SandboxCommand::Reset => reset(ctx),
        SandboxCommand::Serve(args) => serve(ctx, args),
    }
}

#[derive(Serialize)]
struct SpendJson {
    email: String,
    key_name: String,
    hash: String,
    model: String,
    requested: f64,
    added: f64,
    stopped: Option<String>,
    usage: f64,
    limit: Option<f64>,
    limit_remaining: Option<f64>,
    sandbox_file: String,
}

fn spend(ctx: &mut Ctx, args: SpendArgs) -> Result<Exit> {
    if !args.amount.is_finite() || args.amount < 0.0 {
        return Err(input(format!(
            "--amount {}: give a number of dollars, 0 or more (e.g. 0.40)",
            args.amount
        )));
    }
    // keys.db says whose key is whose; holding it also keeps other classkeys runs (and their
    // emulators, which save the account when they end) away while the account changes.
    let (store, known, naming) = if args.db.db.exists() {
        let store = Store::open(&args.db.db)?;
        super::class::check_account_kind(ctx, &store, &args.db.db)?;
        let known = store.known_keys()?;
        let naming = super::class::naming(&store)?;
        (Some(store), known, naming)
    } else {
        (None, Vec::new(), Naming::default())
    };
    let roster = if args.roster.roster.exists() {
        Some(Roster::read(&args.roster.roster)?)
    } else {
        None
    };
    let students: &[Student] = roster.as_ref().map_or(&[], |r| &r.students);
    let email = email_key(&args.email);
    if !students.iter().any(|s| email_key(&s.email) == email)
        && !known.iter().any(|k| email_key(&k.email) == email)
    {
        return Err(input(format!(
            "{} is neither in {} nor in {}: check the spelling",
            args.email,
            args.roster.roster.display(),
            args.db.db.display()
        )));
    }
    let now = Utc::now();
    let file = ctx.sandbox_file();
    let outcome = sandbox::update_account(&file, |account| {
        let hash = find_key(account, students, &known, &naming, &email, now).ok_or_else(|| {
            input(format!(
                "{} has no key in the sandbox: run `classkeys --sandbox provision` first",
                args.email
            ))
        })?;
        account
            .spend(&hash, args.amount, args.model.trim(), now)
            .context("the key vanished while spending")
    })?;
    drop(store);

    let key = &outcome.key;
    if ctx.ui.json {
        ctx.ui.json(&SpendJson {
            email: args.email,
            key_name: key.name.clone(),
            hash: key.hash.clone(),
            model: args.model.trim().to_string(),
            requested: args.amount,
            added: outcome.added,
            stopped: outcome.stopped,
            usage: key.usage(),
            limit: key.limit,
            limit_remaining: key.limit_remaining(now),
            sandbox_file: file.display().to_string(),
        })?;
        return Ok(Exit::Ok);
    }
    ctx.ui.say(format!(
        "{}{} spent ${:.2} on {} with key {}: usage now ${:.2} of {}",
        sandbox_tag(ctx),
        args.email,
        outcome.added,
        args.model.trim(),
        key.name,
        key.usage(),
        limit_text(key.limit)
    ));
    if let Some(why) = &outcome.stopped {
        ctx.ui.say(format!(
            "{}asked for ${:.2}, {why}",
            sandbox_tag(ctx),
            args.amount
        ));
    }
    Ok(Exit::Ok)
}

/// The student's key in the sandbox, matched exactly as every other command matches keys to
/// students (`reconcile::match_keys`: by keys.db's record of each key).
fn find_key(
    account: &Account,
    roster: &[Student],
    known: &[KnownKey],
    naming: &Naming,
    email: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    let keys: Vec<Key> = account
        .keys
        .iter()
        .filter_map(|k| serde_json::to_value(k.view(now)).ok())
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let books = reconcile::Books::with_keys(known.to_vec());
    let view = reconcile::match_keys(roster, &books, &keys, &HashSet::new(), naming);
    view.rows()
        .into_iter()
        .find(|(e, _, _)| email_key(e) == email)
        .map(|(_, _, k)| k.hash.clone())
}

fn reset(ctx: &mut Ctx) -> Result<Exit> {
    let file = ctx.sandbox_file();
    let had = sandbox::reset(&file)?;
    if ctx.ui.json {
        ctx.ui.json(&serde_json::json!({
            "sandbox_file": file.display().to_string(),
            "keys_removed": had,
        }))?;
        return Ok(Exit::Ok);
    }
    let what = match had {
        Some(n) => format!("{n} key(s) removed"),
        None => "it was unreadable".into(),
    };
    ctx.ui.say(format!(
        "{}emptied the sandbox account {} ({what}); keys.db keeps their history, and \
         `classkeys --sandbox provision` makes new keys",
        sandbox_tag(ctx),
        file.display()
    ));
    Ok(Exit::Ok)
}

fn serve(ctx: &mut Ctx, args: ServeArgs) -> Result<Exit> {
    let file = args.state.unwrap_or_else(|| ctx.sandbox_file());
    // Checked now: the saver thread could only warn about it later.
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(input(format!(
            "--state {}: the folder {} does not exist",
            file.display(),
            dir.display()
        )));
    }
    let emulator = Emulator::start_with(
        &file,
        Options::serve(args.port, Duration::from_millis(args.delay_ms)),
    )?;
    // The first line is for scripts: nothing may come before it on stdout.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", emulator.base_url())?;
    out.flush()?;
    drop(out);
    ctx.ui.note(format!(
        "classkeys: SANDBOX: serving the OpenRouter emulator at {} (account {}, {} ms per answer, any \
         management key accepted) until killed; changes are saved within half a second",
        emulator.base_url(),
        emulator.state_file().display(),
        args.delay_ms
    ));
    loop {
        std::thread::park();
    }
}
