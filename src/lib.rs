//! classkeys: hand out OpenRouter API keys to a class, watch usage, change limits, keep an audit trail.
//!
//! Data flows one way in every command: read inputs -> fetch the account -> pure plan
//! (`reconcile`) -> apply through the API client -> record in keys.db -> write files -> print.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod context;
pub mod domain;
pub mod error;
pub mod fault;
pub mod files;
pub mod guardrail;
pub mod mail;
pub mod openrouter;
pub mod pool;
pub mod reconcile;
pub mod report;
pub mod sandbox;
pub mod store;
pub mod ui;

use cli::{Cli, Command};
use context::Ctx;
pub use error::Exit;

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let mut global = cli.global;
    // `classkeys sandbox …` names the sandbox itself: it never needs --sandbox.
    if matches!(cli.command, Command::Sandbox(_)) {
        global.sandbox = true;
    }
    let mut ctx = Ctx::new(global)?;
    match cli.command {
        Command::InitDb(a) => commands::init_db::run(&mut ctx, a),
        Command::Check(a) => commands::check::run(&mut ctx, a),
        Command::Provision(a) => commands::provision::run(&mut ctx, a),
        Command::Update(a) => commands::update::run(&mut ctx, a),
        Command::RefreshLimitsFile(a) => commands::refresh_limits_file::run(&mut ctx, a),
        Command::ExportKeys(a) => commands::export_keys::run(&mut ctx, a),
        Command::Report(a) => commands::report::run(&mut ctx, a),
        Command::Rotate(a) => commands::rotate::run(&mut ctx, a),
        Command::Delete(a) => commands::toggle::run(&mut ctx, a, commands::toggle::Action::Delete),
        Command::Disable(a) => {
            commands::toggle::run(&mut ctx, a, commands::toggle::Action::Disable)
        }
        Command::Enable(a) => commands::toggle::run(&mut ctx, a, commands::toggle::Action::Enable),
        Command::Adopt(a) => commands::adopt::run(&mut ctx, a),
        Command::ChangeEmail(a) => commands::change_email::run(&mut ctx, a),
        Command::DropStudent(a) => commands::drop_student::run(&mut ctx, a),
        Command::SetLimit(a) => commands::set_limit::run(&mut ctx, a),
        Command::Log(a) => commands::log::run(&mut ctx, a),
        Command::ImportRoster(a) => commands::import_roster::run(&mut ctx, a),
        Command::SendKeys(a) => commands::send_keys::run(&mut ctx, a),
        Command::Watch(a) => commands::watch::run(&mut ctx, a),
        Command::ImportKeys(a) => commands::import_keys::run(&mut ctx, a),
        Command::Demo(a) => commands::demo::run(&mut ctx, a),
        Command::Sandbox(c) => commands::sandbox::run(&mut ctx, c),
        Command::Completions(a) => commands::completions::run(ctx.global.json, a),
    }
}
