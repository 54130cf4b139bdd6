//! `demo` (to be written).

use anyhow::Result;

use crate::context::Ctx;
use crate::error::Exit;

pub fn run(_ctx: &mut Ctx, _args: crate::cli::DemoArgs) -> Result<Exit> {
    anyhow::bail!("not built yet")
}
