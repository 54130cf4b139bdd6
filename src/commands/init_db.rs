//! `init-db`: create keys.db owner-only, or upgrade one written by an older tool.

use anyhow::Result;
use serde_json::json;

use crate::cli::DbArgs;
use crate::context::Ctx;
use crate::error::Exit;
use crate::store::{SCHEMA_VERSION, Store};

pub fn run(ctx: &mut Ctx, args: DbArgs) -> Result<Exit> {
    let what = Store::init(&args.db)?;
    if ctx.ui.json {
        ctx.ui.json(&json!({ "db": args.db.display().to_string(), "schema": SCHEMA_VERSION, "message": what }))?;
    } else {
        ctx.ui
            .say(format!("{}{what}", super::class::sandbox_tag(ctx)));
    }
    Ok(Exit::Ok)
}
