//! One module per subcommand, each the short story of its job.

pub mod adopt;
pub mod change_email;
pub mod check;
pub mod class;
pub mod completions;
pub mod demo;
pub mod drop_student;
pub mod export_keys;
pub mod import_keys;
pub mod import_roster;
pub mod init_db;
pub mod log;
pub mod provision;
pub mod refresh_limits_file;
pub mod report;
pub mod rotate;
pub mod sandbox;
pub mod send_keys;
pub mod set_limit;
pub mod toggle;
pub mod update;
pub mod watch;
