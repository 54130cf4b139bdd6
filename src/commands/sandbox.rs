//! `sandbox spend|reset` (to be written).

use anyhow::Result;

use crate::cli::SandboxCommand;
use crate::context::Ctx;
use crate::error::Exit;

pub fn run(_ctx: &mut Ctx, _cmd: SandboxCommand) -> Result<Exit> {
    anyhow::bail!("not built yet")
}
