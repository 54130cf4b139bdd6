//! `completions SHELL`: a completion script on stdout.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Exit;

pub fn run(args: CompletionsArgs) -> Result<Exit> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "classkeys", &mut std::io::stdout());
    Ok(Exit::Ok)
}
