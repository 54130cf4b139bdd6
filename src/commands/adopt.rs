//! `adopt --by-name`: the explicit recovery for a lost keys.db. Keys of the account that keys.db
//! does not know (or holds only as FIXME rows), named `[TAG_]YYYYMMDD_<name>` for exactly one
//! roster student without a key, become that student's. Nothing is sent that changes the account.

use std::collections::HashMap;

use anyhow::Result;
use serde::Serialize;

use super::class::{Class, open_store, sandbox_tag};
use crate::cli::AdoptArgs;
use crate::context::Ctx;
use crate::domain::Owner;
use crate::error::Exit;
use crate::files::roster::Roster;
use crate::openrouter::Key;
use crate::store::{Change, run_time};

#[derive(Serialize)]
struct Report {
    dry_run: bool,
    adopted: Vec<Item>,
    left_alone: Vec<Item>,
}

#[derive(Serialize, Clone)]
struct Item {
    email: String,
    name: String,
    key_name: String,
    hash: String,
    why: String,
}

pub fn run(ctx: &mut Ctx, args: AdoptArgs) -> Result<Exit> {
    let at = run_time();
    let store = open_store(&args.db.db)?;
    let roster = Roster::read(&args.roster.roster)?;
    let mut class = Class::load(ctx, store, roster, &args.db.db, args.dry_run)?;
    let view = class.view();

    // Candidates: unknown keys of this class's naming, and FIXME rows' keys.
    let mut candidates: Vec<&Key> = view.orphans.iter().map(|o| o.key).collect();
    candidates.extend(view.fixme_rows().into_iter().map(|(_, _, k)| k));
    let keyless: Vec<_> = view.keyless();
    // Who a key name can designate: a student's name, or (pseudonymous names) their pseudonym.
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, s) in keyless.iter().enumerate() {
        by_name.entry(s.name.clone()).or_default().push(i);
        if let Some(secret) = &class.naming.pseudonym_secret {
            by_name
                .entry(crate::domain::pseudonym(secret, &s.email))
                .or_default()
                .push(i);
        }
    }
    // Student index -> the keys named for them.
    let mut claims: HashMap<usize, Vec<&Key>> = HashMap::new();
    let mut left_alone = Vec::new();
    for key in candidates {
        let item = |why: &str| Item {
            email: String::new(),
            name: String::new(),
            key_name: key.name.clone(),
            hash: key.hash.clone(),
            why: why.to_string(),
        };
        let Some(name) = class.naming.student_of(&key.name) else {
            left_alone.push(item("its name is not one of this class's key names"));
            continue;
        };
        match by_name.get(name).map(Vec::as_slice) {
            Some([i]) => claims.entry(*i).or_default().push(key),
            Some(_) => {
                left_alone.push(item("several roster students without a key have that name"))
            }
            None => left_alone.push(item("no roster student without a key has that name")),
        }
    }
    let mut adopted = Vec::new();
    let mut plan: Vec<(Key, String, String)> = Vec::new();
    let mut order: Vec<_> = claims.into_iter().collect();
    order.sort_by_key(|(i, _)| *i);
    for (i, keys) in order {
        let s = keyless[i];
        if keys.len() > 1 {
            for k in keys {
                left_alone.push(Item {
                    email: s.email.clone(),
                    name: s.name.clone(),
                    key_name: k.name.clone(),
                    hash: k.hash.clone(),
                    why: format!("several keys are named for {}", s.email),
                });
            }
            continue;
        }
        let k = keys[0];
        adopted.push(Item {
            email: s.email.clone(),
            name: s.name.clone(),
            key_name: k.name.clone(),
            hash: k.hash.clone(),
            why: "named for this student".into(),
        });
        plan.push((k.clone(), s.email.clone(), s.name.clone()));
    }
    drop(view);
    if !args.dry_run {
        for (key, email, name) in &plan {
            class.store.set_owner(
                key,
                email,
                name,
                Owner::Class,
                Some(&Change {
                    hash: key.hash.clone(),
                    email: email.clone(),
                    action: "adopted",
                    old: Some(key.name.clone()),
                    new: Some("adopt --by-name".into()),
                }),
            )?;
        }
        class.refresh_known()?;
        class.record(at)?;
    }
    if ctx.ui.json {
        ctx.ui.json(&Report {
            dry_run: args.dry_run,
            adopted,
            left_alone,
        })?;
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = adopted
        .iter()
        .map(|a| vec![a.email.clone(), a.name.clone(), a.key_name.clone()])
        .collect();
    if !rows.is_empty() {
        ctx.ui.table(&["Email", "Name", "Key name"], rows);
    }
    ctx.ui.say(format!(
        "{}{} {} key(s); {} left alone",
        sandbox_tag(ctx),
        if args.dry_run {
            "dry run: would adopt"
        } else {
            "adopted"
        },
        adopted.len(),
        left_alone.len()
    ));
    for l in &left_alone {
        ctx.ui
            .say(format!("  left alone: {} ({})", l.key_name, l.why));
    }
    Ok(Exit::Ok)
}
