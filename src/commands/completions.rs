//! `completions SHELL`: a completion script on stdout.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Exit;

pub fn run(json: bool, args: CompletionsArgs) -> Result<Exit> {
    if json {
        return Err(crate::error::input(
            "`completions` prints a shell script, it has no --json form: leave out --json",
        ));
    }
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "classkeys", &mut std::io::stdout());
    Ok(Exit::Ok)
}
