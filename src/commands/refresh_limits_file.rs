//! `refresh-limits-file`: pull the account's state into limits.csv's actual_* columns,
//! keeping every target the instructor set.

use anyhow::Result;
use serde_json::json;

use super::class::{Class, open_store, sandbox_tag};
use crate::cli::RefreshArgs;
use crate::context::Ctx;
use crate::error::Exit;
use crate::files::limits::LimitsFile;
use crate::files::roster::Roster;
use crate::reconcile::patch_for;
use crate::store::run_time;

pub fn run(ctx: &mut Ctx, args: RefreshArgs) -> Result<Exit> {
    let at = run_time();
    let store = open_store(&args.db.db)?;
    let limits = LimitsFile::read_or_empty(&args.limits.limits)?;
    let roster = Roster::read(&args.roster.roster)?;
    let mut class = Class::load(ctx, store, roster, &args.db.db, false)?;
    class.record(at)?;
    let view = class.view();
    let with_keys = view.with_keys();
    limits.rewrite(with_keys.iter().copied())?;
    let differing: Vec<&str> = with_keys
        .iter()
        .filter(|(email, _, key)| {
            limits
                .row_for(&key.hash, email)
                .is_some_and(|r| !patch_for(r, key).is_empty())
        })
        .map(|(email, _, _)| *email)
        .collect();
    if ctx.ui.json {
        ctx.ui.json(&json!({
            "limits_file": limits.path.display().to_string(),
            "rows": with_keys.len(),
            "target_differs": differing,
        }))?;
    } else {
        ctx.ui.say(format!(
            "{}refreshed {}: {} row(s), {} with a target that differs from the account (run `classkeys update` to apply)",
            sandbox_tag(ctx),
            limits.path.display(),
            with_keys.len(),
            differing.len()
        ));
    }
    Ok(Exit::Ok)
}
