//! The command line: clap definitions only. Every subcommand's options live here;
//! `commands/` reads them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  failed: the API or the network refused something; what was done is recorded
  2  bad usage or bad input (a file, an option, a folder that cannot be written
     before any request); nothing was changed, no request sent
  3  the management key is missing, invalid, or not a management key
  4  another classkeys is working on the same keys.db
  130 `watch` was stopped with Ctrl-C";

const ENV_HELP: &str = "\
Environment:
  OPENROUTER_PROVISIONING_KEY  the management key (OPENROUTER_MANAGEMENT_KEY is accepted too)
  OPENROUTER_BASE_URL          the API base (default https://openrouter.ai/api/v1)
  CLASSKEYS_SANDBOX=1          same as --sandbox
  CLASSKEYS_SMTP_PASSWORD      the mail server's password (send-keys)
  SSL_CERT_FILE                a CA certificate to trust besides the system's (send-keys)
  NO_COLOR                     no colours";

/// Hand out OpenRouter API keys to a class, watch their usage, change limits, keep an audit trail.
#[derive(Debug, Parser)]
#[command(
    name = "classkeys",
    version,
    about,
    long_about = "Hand out OpenRouter API keys to a class, each with a dollar limit; watch usage before, during \
and after class; change limits and disable keys on the fly; re-issue and delete keys; keep a complete audit \
trail in keys.db (SQLite).\n\nTypical class: classkeys init-db; classkeys check; classkeys provision --limit 2; \
hand out api_keys_*.csv; classkeys check during class; edit limits.csv and classkeys update.",
    after_help = format!("{EXIT_CODES}\n\n{ENV_HELP}"),
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// OpenRouter API base URL (https, or http only to a loopback address)
    /// [default: https://openrouter.ai/api/v1]
    // No clap default: one would show in every usage line as if the option were required.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "OPENROUTER_BASE_URL",
        value_name = "URL"
    )]
    pub base_url: Option<String>,

    /// Print one JSON document on stdout instead of tables
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Use the built-in OpenRouter emulator (state in sandbox.json): no management key, no money
    #[arg(long, global = true, help_heading = "Global options", env = "CLASSKEYS_SANDBOX", value_parser = clap::builder::FalseyValueParser::new())]
    pub sandbox: bool,

    /// Requests in flight at once (1 to 16)
    #[arg(long, global = true, help_heading = "Global options", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=16), value_name = "N")]
    pub jobs: u16,

    /// Seconds one HTTP request may take before it is retried (or, for a create, checked)
    #[arg(long, global = true, help_heading = "Global options", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600), value_name = "SECS")]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create keys.db (owner-only), or upgrade an older one; set the class's tag
    #[command(
        long_about = "Create keys.db (owner-only), or upgrade an older one (also a Python tool's). \
--class TAG names the class's new keys TAG_YYYYMMDD_<name>, so that several classes can share one account: \
a tagged class never takes another's keys for its own. A tag may be set on an existing class; its older keys \
keep their names.",
        after_help = "Example:\n  classkeys init-db\n  classkeys init-db --class CS101-A --key-names pseudonymous"
    )]
    InitDb(InitArgs),

    /// Fetch every key, match keys to the roster, record usage, write a snapshot
    #[command(
        long_about = "Fetch every key of the account (all pages, disabled ones too), settle what an interrupted \
run left, match the class's keys to roster.csv by the hash keys.db records, record one usage row per key of \
the class, add keys nobody knows to roster.csv as first.last@FIXME.edu rows (once: a deleted row is \
dismissed), and write snapshot_YYYYMMDD_HHMMSS.csv. Keys of other classes and your own are counted apart \
and never touched.",
        after_help = "Example:\n  classkeys check\n  classkeys check --json | jq '.students[] | select(.usage > 1)'"
    )]
    Check(CheckArgs),

    /// Create a key for every roster student who has none; write api_keys_*.csv with the secrets
    #[command(
        long_about = "Create one key named YYYYMMDD_<name> for every roster student who has no key (enabled or \
disabled), with the roster's per-student limit or --limit. FIXME rows are skipped. The secrets go to keys.db \
and api_keys_YYYYMMDD_HHMMSS.csv (owner-only); limits.csv and a snapshot are rewritten.",
        after_help = "Example:\n  classkeys provision --limit 5 --dry-run\n  classkeys provision --limit 5"
    )]
    Provision(ProvisionArgs),

    /// Apply the target columns of limits.csv (limit, disabled, limit reset) to the account
    #[command(after_help = "Example:\n  classkeys update --dry-run\n  classkeys update")]
    Update(UpdateArgs),

    /// Refresh the actual_* columns of limits.csv from the account, keeping every target
    #[command(after_help = "Example:\n  classkeys refresh-limits-file")]
    RefreshLimitsFile(RefreshArgs),

    /// Print (or write) every stored key secret, for handing keys out again
    #[command(
        after_help = "Example:\n  classkeys export-keys --output keys.csv\n  classkeys export-keys --format json"
    )]
    ExportKeys(ExportArgs),

    /// Who spent what, and when: usage between two moments from keys.db's history
    #[command(
        after_help = "Example:\n  classkeys report --since snapshot_20261127_090000.csv --until snapshot_20261127_120000.csv\n  classkeys report --html report.html"
    )]
    Report(ReportArgs),

    /// Re-issue students' keys: a new key in the old one's state, then the old one deleted
    #[command(
        long_about = "Re-issue students' keys (lost or leaked): a new key with the same name, reset, expiry and \
disabled state, whose limit is what the student had left (old limit minus old usage; a limit with a reset \
stays the same; --fresh-limit gives the full limit). Its secret is saved before the old key is deleted.",
        after_help = "Example:\n  classkeys rotate --email ada@uni.edu\n  classkeys rotate --email ada@uni.edu --fresh-limit"
    )]
    Rotate(RotateArgs),

    /// Delete students' keys from the account (they stay in keys.db, marked deleted)
    #[command(
        after_help = "Example:\n  classkeys delete --all --dry-run\n  classkeys delete --all --yes"
    )]
    Delete(SelectArgs),

    /// Disable students' keys
    #[command(after_help = "Example:\n  classkeys disable --email bob@uni.edu --yes")]
    Disable(SelectArgs),

    /// Enable students' keys again
    #[command(after_help = "Example:\n  classkeys enable --all --yes")]
    Enable(SelectArgs),

    /// Adopt keys the class lost track of (a lost keys.db), by their names
    #[command(
        long_about = "Adopt keys of the account that keys.db does not know, whose name is [TAG_]YYYYMMDD_<name> \
of exactly one roster student without a key: the explicit recovery when keys.db was lost. Lists what it \
adopted and what it left alone; sends no request that changes the account.",
        after_help = "Example:\n  classkeys adopt --by-name --dry-run\n  classkeys adopt --by-name"
    )]
    Adopt(AdoptArgs),

    /// Move a student (their keys and history) to a new email
    #[command(
        long_about = "Move a student to a new email in keys.db, roster.csv and limits.csv: their keys, targets \
and history go with them (a changelog row says so). The keys keep their names; nothing is sent to the account.",
        after_help = "Example:\n  classkeys change-email --email ada@uni.edu --to ada.lovelace@uni.edu"
    )]
    ChangeEmail(ChangeEmailArgs),

    /// Take a student off the class: disable (or delete) their keys, remove their roster row
    #[command(
        long_about = "Disable the student's keys (or delete them with --delete), remove their row from roster.csv \
and limits.csv, and keep their history in keys.db. A dropped student is never added back by `check`.",
        after_help = "Example:\n  classkeys drop-student --email bob@uni.edu --yes\n  classkeys drop-student --email bob@uni.edu --delete --yes"
    )]
    DropStudent(DropArgs),

    /// Change limits at once, without editing limits.csv (which is rewritten to agree)
    #[command(
        long_about = "Set students' limits to AMOUNT (dollars, or `unlimited`), or change them by --add AMOUNT \
(which may be negative; never below $0; an unlimited key stays unlimited). --all is every key of the \
roster's students, disabled ones included, never FIXME rows, and asks first (or --yes). limits.csv's \
targets and actuals are rewritten to agree.",
        after_help = "Example:\n  classkeys set-limit --email ada@uni.edu 5\n  classkeys set-limit --email ada@uni.edu --add 1\n  classkeys set-limit --all --add -0.50 --yes"
    )]
    SetLimit(SetLimitArgs),

    /// A live, full-screen view of the class, with one-key changes
    #[command(
        long_about = "A full-screen view of the class, refreshed every --every seconds: per student usage, limit, \
used %, spend since the view opened; at the limit in red, at 80% or more in yellow, no key in grey. Keys: \
up/down or j/k select, + and - change the selected student's limit by --step, d disables or enables their \
key (after y/n), r refreshes now, q quits (Ctrl-C: exit 130). Changes go through the journal like `update` \
and limits.csv is rewritten to agree. The class lock is held only while a change is made, so other commands \
run beside it. Needs a terminal: for scripts use `classkeys check`.",
        after_help = "Example:\n  classkeys watch\n  classkeys watch --every 10 --step 0.50"
    )]
    Watch(WatchArgs),

    /// The changelog: who, which key, what changed, old → new (newest last)
    #[command(
        after_help = "Example:\n  classkeys log --email ada@uni.edu\n  classkeys log --since 2026-12-01 --action limit_changed\n  classkeys --json log | jq '.[] | select(.action == \"deleted\")'"
    )]
    Log(LogArgs),

    /// Mail each student their own key (SMTP settings in classkeys.toml's [mail])
    #[command(
        long_about = "Mail each student of the class their own key, through the mail server that classkeys.toml's \
[mail] table names (from, smtp_host, smtp_port, security, username, bcc; the password from \
CLASSKEYS_SMTP_PASSWORD). The message is mail.txt in the class folder (`Subject: …`, a blank line, the body; \
minijinja templates with name, email, key, key_name, limit, limit_reset, expires_at, models), else a built-in \
one. Without --email: every student whose live key has not been mailed. Each mail the server accepts is \
recorded (changelog key_sent) before the next is sent, so a second run sends nothing. Never a FIXME row, a \
dropped student, or a deleted or disabled key.",
        after_help = "Example:\n  classkeys send-keys --dry-run      # writes outbox/<email>.eml, sends nothing\n  \
export CLASSKEYS_SMTP_PASSWORD=…; classkeys send-keys\n  classkeys send-keys --email ada@uni.edu --resend"
    )]
    SendKeys(SendKeysArgs),

    /// Merge a roster exported from an LMS into roster.csv
    #[command(
        long_about = "Merge an LMS export into roster.csv (created if missing): new students are appended, \
existing rows and their other columns kept, a changed name reported (not applied), students missing from \
the export listed (not removed). Emails compare without case; names become \"First Last\". Formats: canvas \
(gradebook export), moodle, blackboard (Grade Center), brightspace, github-classroom; UTF-8, UTF-16, and \
comma, semicolon or tab separated.",
        after_help = "Example:\n  classkeys import-roster grades.csv --from canvas --email-domain uni.edu --dry-run\n  classkeys import-roster participants.csv --from moodle"
    )]
    ImportRoster(ImportRosterArgs),

    /// Read secrets from api_keys_*.csv files (the Python tool's or classkeys') into keys.db
    #[command(after_help = "Example:\n  classkeys import-keys api_keys_*.csv")]
    ImportKeys(ImportArgs),

    /// Rehearse a whole class in a fresh folder with the sandbox
    #[command(after_help = "Example:\n  classkeys demo --dir /tmp/class-demo")]
    Demo(DemoArgs),

    /// Change the sandbox account: simulate spending, or empty it
    #[command(
        subcommand,
        after_help = "Example:\n  classkeys sandbox spend --email ada@uni.edu --amount 0.40\n  classkeys sandbox reset"
    )]
    Sandbox(SandboxCommand),

    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  classkeys completions bash > ~/.local/share/bash-completion/completions/classkeys"
    )]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args, Clone)]
pub struct InitArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Tag the class's new keys TAG_YYYYMMDD_<name> (letters, digits, `-`)
    #[arg(long = "class", value_name = "TAG")]
    pub class: Option<String>,
    /// How new keys are named: `names` (YYYYMMDD_<student name>, the default) or `pseudonymous`
    /// (YYYYMMDD_<10 hex digits>: no name or email reaches OpenRouter)
    #[arg(long, value_enum, value_name = "HOW")]
    pub key_names: Option<KeyNames>,
    /// Keep the class's keys in this OpenRouter workspace (its id or slug; needs the management key)
    #[arg(long, value_name = "ID")]
    pub workspace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyNames {
    Names,
    Pseudonymous,
}

#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// The class database
    #[arg(long, default_value = "keys.db", value_name = "FILE")]
    pub db: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct RosterArgs {
    /// The class roster (email,name[,limit,limit_reset])
    #[arg(long, default_value = "roster.csv", value_name = "FILE")]
    pub roster: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct LimitsArgs {
    /// The limits file (targets you edit, actuals classkeys writes)
    #[arg(long, default_value = "limits.csv", value_name = "FILE")]
    pub limits: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub roster: RosterArgs,
    /// Dollar limit of each new key, where the roster has no limit of its own ("unlimited" for none)
    #[arg(long, default_value = "2.0", value_name = "DOLLARS")]
    pub limit: String,
    /// Expiry of the new keys: an RFC 3339 date-time, or a date (its end, UTC)
    #[arg(long, value_name = "DATE-TIME")]
    pub expires: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub limits: LimitsArgs,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub limits: LimitsArgs,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Write to this file (created owner-only) instead of standard output
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Start of the window: a date-time (RFC 3339, or local like "2026-11-27 09:00"), a date (the
    /// start of that local day) or a snapshot_*.csv file (default: the beginning)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// End of the window: a date-time, a date (the start of that local day) or a snapshot_*.csv
    /// file (default: now)
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Also write a self-contained HTML page with charts
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also show spend and requests per model, from OpenRouter's analytics (needs the
    /// management key; the rest of the report reads keys.db only)
    #[arg(long)]
    pub by_model: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Seconds between refreshes (5 or more)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(5..=3600), value_name = "SECS")]
    pub every: u64,
    /// Dollars that + and - add to or take from the selected student's limit
    #[arg(long, default_value = "1", value_name = "DOLLARS")]
    pub step: String,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

#[derive(Debug, Args)]
pub struct SendKeysArgs {
    /// Only this student (repeatable); one already mailed is skipped unless --resend
    #[arg(long = "email", value_name = "EMAIL", add = roster_emails())]
    pub emails: Vec<String>,
    /// Mail the students named by --email again, even if they were mailed
    #[arg(long, requires = "emails")]
    pub resend: bool,
    /// Write each message to outbox/<email>.eml (owner-only) and send nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Student whose key to re-issue (repeatable)
    #[arg(long = "email", value_name = "EMAIL", required = true, add = roster_emails())]
    pub emails: Vec<String>,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// Give the new key its full limit (by default it keeps what the student had left)
    #[arg(long)]
    pub fresh_limit: bool,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Student whose key to change (repeatable)
    #[arg(
        long = "email",
        value_name = "EMAIL",
        add = roster_emails(),
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub emails: Vec<String>,
    /// Every key of the roster's students (never FIXME rows, never keys outside the roster)
    #[arg(long)]
    pub all: bool,
    /// Do it without asking
    #[arg(long, short)]
    pub yes: bool,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

#[derive(Debug, Args)]
pub struct SetLimitArgs {
    /// Whose limits: --email E… or --all (every key of the roster's students, disabled ones too)
    #[command(flatten)]
    pub select: SelectArgs,
    /// The new limit: dollars (`5`, `$2.50`) or `unlimited`
    #[arg(
        value_name = "AMOUNT",
        required_unless_present = "add",
        conflicts_with = "add"
    )]
    pub amount: Option<String>,
    /// Change each limit by this many dollars instead (may be negative)
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    pub add: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportRosterArgs {
    /// The LMS's export file
    pub file: PathBuf,
    /// Which LMS wrote it
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub from: crate::files::lms::Format,
    /// Domain for students known only by user name (user@DOMAIN)
    #[arg(long, value_name = "D")]
    pub email_domain: Option<String>,
    #[command(flatten)]
    pub roster: RosterArgs,
    /// Print what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Only this student's rows (repeatable)
    #[arg(long = "email", value_name = "EMAIL", add = roster_emails())]
    pub emails: Vec<String>,
    /// From this moment on (inclusive): a date-time, a date (start of that local day) or a snapshot file
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Before this moment (exclusive): a date-time, a date or a snapshot file
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only rows of this action (repeatable): created, limit_changed, disabled, enabled, deleted, …
    #[arg(long = "action", value_name = "A")]
    pub actions: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// Match unknown keys to roster students by the name in the key's name
    #[arg(long, required = true)]
    pub by_name: bool,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Print what would be adopted and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ChangeEmailArgs {
    /// The student's email now
    #[arg(long, value_name = "OLD", add = roster_emails())]
    pub email: String,
    /// The student's new email
    #[arg(long, value_name = "NEW")]
    pub to: String,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

#[derive(Debug, Args)]
pub struct DropArgs {
    /// The student to take off the class
    #[arg(long, value_name = "EMAIL", add = roster_emails())]
    pub email: String,
    /// Delete the keys instead of disabling them (cannot be undone)
    #[arg(long)]
    pub delete: bool,
    /// Do not ask for confirmation
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// api_keys_*.csv files (columns email,name,api_key,key_name)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder to rehearse in (created; must be empty if it exists)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Add usage to a student's sandbox key
    #[command(
        after_help = "Example:\n  classkeys --sandbox sandbox spend --email ada@uni.edu --amount 0.40"
    )]
    Spend(SpendArgs),
    /// Empty the sandbox account (sandbox.json)
    #[command(after_help = "Example:\n  classkeys --sandbox sandbox reset")]
    Reset,
    /// Serve the emulator in the foreground until killed; its base URL is stdout's first line
    #[command(
        hide = true,
        after_help = "Example:\n  classkeys sandbox serve --port 8787 --delay-ms 150 --state /tmp/bench.json &\n  \
classkeys --base-url http://127.0.0.1:8787/api/v1 check   (any management key is accepted)"
    )]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0: any free port)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub port: u16,
    /// Every answer waits this many milliseconds (to benchmark many requests in flight)
    #[arg(long, default_value_t = 0, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub delay_ms: u64,
    /// The account file (default: sandbox.json in the current folder)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SpendArgs {
    /// The student (their key is found through keys.db or the roster)
    #[arg(long, value_name = "EMAIL")]
    pub email: String,
    /// Dollars to add to the key's usage
    #[arg(long, value_name = "DOLLARS")]
    pub amount: f64,
    /// The model spent on (what `report --by-model` shows; the key's guardrail may refuse it)
    #[arg(long, value_name = "MODEL", default_value = crate::sandbox::DEFAULT_MODEL)]
    pub model: String,
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Commands that send no request to OpenRouter: their help leaves out the global options about
/// requests (they are still accepted, so that a script's `--base-url` never breaks them).
const OFFLINE: [&str; 4] = ["export-keys", "log", "import-roster", "change-email"];
const REQUEST_OPTIONS: [&str; 3] = ["--base-url", "--jobs", "--timeout"];

/// A command's help as clap wrote it, with "Global options" showing only the options that
/// affect the command (`command`: the subcommand named on the command line, if any).
pub fn help_for(text: &str, command: Option<&str>) -> String {
    let drop_all = command == Some("completions");
    let drop_requests = command.is_some_and(|c| OFFLINE.contains(&c));
    if !drop_all && !drop_requests {
        return text.to_string();
    }
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == "Global options:") else {
        return text.to_string();
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.is_empty() && !l.starts_with(' '))
        .map_or(lines.len(), |i| start + 1 + i);
    // The section's entries: each starts with an option's line (indented by at most 6).
    let mut entries: Vec<Vec<&str>> = Vec::new();
    for line in &lines[start + 1..end] {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with('-') && indent <= 6 {
            entries.push(vec![line]);
        } else if let Some(e) = entries.last_mut() {
            e.push(line);
        }
    }
    let mut kept: Vec<&str> = entries
        .into_iter()
        .filter(|e| {
            let first = e[0].trim_start();
            !drop_all && !REQUEST_OPTIONS.iter().any(|o| first.starts_with(o))
        })
        .flatten()
        .collect();
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let mut out: Vec<&str> = lines[..start].to_vec();
    if kept.is_empty() {
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
    } else {
        out.push(lines[start]);
        out.extend(kept);
    }
    // One blank line between the options and what follows, as clap writes it.
    if end < lines.len() {
        out.push("");
    }
    out.extend(&lines[end..]);
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    joined
}

/// The subcommand named on this command line, if any.
pub fn named_command(args: &[String]) -> Option<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    args.iter()
        .skip(1)
        .find(|a| cmd.find_subcommand(a.as_str()).is_some())
        .cloned()
}

pub fn parse() -> Result<Cli, clap::Error> {
    Cli::try_parse()
}

/// Dynamic completion of `--email`: the emails of roster.csv in the current folder.
fn roster_emails() -> clap_complete::engine::ArgValueCompleter {
    clap_complete::engine::ArgValueCompleter::new(|current: &std::ffi::OsStr| {
        let typed = current.to_string_lossy().to_lowercase();
        crate::files::roster::Roster::read(std::path::Path::new("roster.csv"))
            .map(|r| {
                r.students
                    .into_iter()
                    .filter(|s| !s.is_placeholder())
                    .filter(|s| s.email.to_lowercase().starts_with(&typed))
                    .map(|s| {
                        clap_complete::engine::CompletionCandidate::new(s.email)
                            .help(Some(s.name.into()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_commands_show_only_the_global_options_that_affect_them() {
        use clap::CommandFactory;
        for (name, long) in [("log", false), ("log", true), ("change-email", true)] {
            let mut cmd = Cli::command();
            cmd.build();
            let sub = cmd.find_subcommand_mut(name).unwrap();
            let text = if long {
                sub.render_long_help().to_string()
            } else {
                sub.render_help().to_string()
            };
            let shown = help_for(&text, Some(name));
            assert!(
                !shown.contains("--base-url") && !shown.contains("--jobs"),
                "{shown}"
            );
            assert!(!shown.contains("--timeout"), "{shown}");
            assert!(
                shown.contains("--json") && shown.contains("Example:"),
                "{shown}"
            );
            assert!(!shown.contains("\n\n\n"), "{shown}");
            assert!(shown.contains("\n\nExample:"), "{shown}");
        }
        let mut cmd = Cli::command();
        cmd.build();
        let text = cmd
            .find_subcommand_mut("completions")
            .unwrap()
            .render_help()
            .to_string();
        let shown = help_for(&text, Some("completions"));
        assert!(
            !shown.contains("Global options") && !shown.contains("--json"),
            "{shown}"
        );
        let mut cmd = Cli::command();
        cmd.build();
        let text = cmd
            .find_subcommand_mut("check")
            .unwrap()
            .render_help()
            .to_string();
        assert_eq!(help_for(&text, Some("check")), text);
    }
}
