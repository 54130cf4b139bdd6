//! `demo`: a whole class rehearsed in a fresh folder with the sandbox, so a new instructor sees
//! every step and every file before touching a real account. Each step is printed as it would
//! be typed, then run in this process through the same command modules (a fresh context per
//! step, as separate runs would have), so what the demo shows is what the commands do.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::cli::{Cli, Command, DemoArgs, Global, SandboxCommand};
use crate::commands;
use crate::context::{Ctx, SANDBOX_FILE};
use crate::error::{Exit, input};
use crate::files::{CsvOut, PLAIN_MODE, read_table, write_atomic};

const DEFAULT_DIR: &str = "classkeys-demo";

/// Eight students: one with a limit of her own, two with the same name.
const ROSTER: &str = "\
email,name,limit
ada.lovelace@example.edu,Ada Lovelace,
alan.turing@example.edu,Alan Turing,
grace.hopper@example.edu,Grace Hopper,5
edsger.dijkstra@example.edu,Edsger Dijkstra,
barbara.liskov@example.edu,Barbara Liskov,
kim.lee@example.edu,Kim Lee,
kim.lee2@example.edu,Kim Lee,
donald.knuth@example.edu,Donald Knuth,
";

/// The class's settings: a guardrail that keeps the class to two inexpensive models, keeps
/// prompts out of training and logs, and redacts personal data.
const SETTINGS: &str = "\
[guardrail]
models = [\"openai/gpt-4o-mini\", \"google/gemini-2.5-flash\"]
daily_limit = 3.00
zero_data_retention = true
training = false
redact = [\"email\", \"phone\", \"person-name\"]
";

/// The student whose limit the demo raises after she runs into it.
const RAISED: &str = "ada.lovelace@example.edu";

/// (email, dollars, model): a class's worth of spending, one student past her limit, one
/// trying a model the guardrail does not allow.
const SPENDS: [(&str, &str, &str); 6] = [
    (RAISED, "2.50", "openai/gpt-4o-mini"),
    ("alan.turing@example.edu", "0.40", "openai/gpt-4o-mini"),
    (
        "alan.turing@example.edu",
        "0.30",
        "anthropic/claude-opus-4.5",
    ),
    (
        "grace.hopper@example.edu",
        "0.75",
        "google/gemini-2.5-flash",
    ),
    ("grace.hopper@example.edu", "0.50", "openai/gpt-4o-mini"),
    ("kim.lee2@example.edu", "0.05", "google/gemini-2.5-flash"),
];

pub fn run(ctx: &mut Ctx, args: DemoArgs) -> Result<Exit> {
    if ctx.ui.json {
        return Err(input(
            "`classkeys demo` is a walkthrough for people: run it without --json",
        ));
    }
    // Without --dir, a fresh folder every time: classkeys-demo, then classkeys-demo-2, …
    let dir = args.dir.unwrap_or_else(fresh_default);
    prepare(&dir)?;
    let shown = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
    let _back = Cwd::change(&dir)?;

    // Every step runs in the sandbox, whatever the environment says.
    let global = Global {
        sandbox: true,
        json: false,
        ..ctx.global.clone()
    };
    let out = Demo { global };
    out.say(format!(
        "classkeys demo: a whole class rehearsed in {} with the SANDBOX (the built-in OpenRouter \
         emulator): no management key, no real keys, no money.\n",
        shown.display()
    ));

    out.say(format!(
        "$ mkdir -p {0} && cd {0}\n$ cat > roster.csv      # the class: one student with her own limit, two named Kim Lee",
        shown.display()
    ));
    write_atomic(Path::new("roster.csv"), PLAIN_MODE, |w: &mut dyn Write| {
        w.write_all(ROSTER.as_bytes())?;
        Ok(())
    })?;
    print!("{ROSTER}");
    out.say("$ cat > classkeys.toml  # what students may use: two models, no training, personal data redacted");
    write_atomic(
        Path::new(crate::files::config::FILE),
        PLAIN_MODE,
        |w: &mut dyn Write| {
            w.write_all(SETTINGS.as_bytes())?;
            Ok(())
        },
    )?;
    print!("{SETTINGS}");
    out.blank();

    out.step(&["init-db"], "create keys.db, the class's history")?;
    out.step(&["check"], "look at the account before handing out keys")?;
    out.step(
        &["provision", "--limit", "2"],
        "the class guardrail, then one key per student, $2 each (Grace's roster row says $5)",
    )?;
    for (email, amount, model) in SPENDS {
        out.step(
            &[
                "sandbox", "spend", "--email", email, "--amount", amount, "--model", model,
            ],
            "in class: a student uses the key (only the sandbox can pretend this)",
        )?;
    }
    out.step(&["check"], "who spent what: usage recorded, a new snapshot")?;

    out.say(format!(
        "$ edit limits.csv        # {RAISED} hit her $2 limit: set her target_limit to 5"
    ));
    set_target_limit(Path::new("limits.csv"), RAISED, "5")?;
    out.blank();
    out.step(&["update"], "apply limits.csv's targets to the keys")?;

    out.say(
        "$ classkeys --sandbox report --by-model --html report.html    # usage over the class and per model, as a page",
    );
    let report = out.run(&["report", "--by-model", "--html", "report.html"]);
    let report_written = match report {
        Ok(_) => Path::new("report.html").exists(),
        Err(e) if format!("{e:#}").contains("not built yet") => {
            out.say("(the report command is not built yet in this version of classkeys: skipped)");
            false
        }
        Err(e) => return Err(e.context("demo step `classkeys --sandbox report` failed")),
    };
    out.blank();

    out.say(format!(
        "Done. What to look at in {} (every key in it is a sandbox key):",
        shown.display()
    ));
    let mut files = vec![
        (
            "roster.csv".to_string(),
            "the students (you write this one)",
        ),
        (
            "keys.db".to_string(),
            "every key, usage row and change: `sqlite3 keys.db 'select * from changelog'`",
        ),
        (
            "limits.csv".to_string(),
            "targets you edit, actuals classkeys writes",
        ),
        (
            crate::files::config::FILE.to_string(),
            "the class's settings: the guardrail every key holds",
        ),
    ];
    for (prefix, what) in [
        (
            "api_keys_",
            "the new keys' secrets, to hand out (owner-only)",
        ),
        ("snapshot_", "the class at each check, provision and update"),
    ] {
        files.extend(files_named(prefix)?.into_iter().map(|f| (f, what)));
    }
    if report_written {
        files.push(("report.html".into(), "usage over the class, with charts"));
    }
    files.push((
        SANDBOX_FILE.into(),
        "the emulated OpenRouter account (`classkeys --sandbox sandbox reset` empties it)",
    ));
    let width = files.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
    for (file, what) in &files {
        out.say(format!("  {file:<width$}  {what}"));
    }
    let me = invocation();
    out.say(format!(
        "\nTry more in that folder: `cd {} && {me} --sandbox disable --email kim.lee@example.edu --yes`. \
         For a real class, leave out --sandbox and set OPENROUTER_PROVISIONING_KEY.",
        shown.display()
    ));
    Ok(Exit::Ok)
}

/// How the instructor can run this very classkeys from that folder: `classkeys` when it is
/// the one on PATH, else the binary's full path (`cargo run` leaves it in target/release).
fn invocation() -> String {
    let me = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("classkeys"))
            .find(|p| p.is_file())
    });
    let same = |a: &std::path::Path, b: &std::path::Path| {
        std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
    };
    match (&me, &on_path) {
        (Some(me), Some(p)) if same(me, p) => "classkeys".into(),
        (Some(me), _) => me.display().to_string(),
        _ => "classkeys".into(),
    }
}

fn fresh_default() -> PathBuf {
    (1..)
        .map(|n| {
            if n == 1 {
                PathBuf::from(DEFAULT_DIR)
            } else {
                PathBuf::from(format!("{DEFAULT_DIR}-{n}"))
            }
        })
        .find(|p| std::fs::read_dir(p).map_or(true, |mut e| e.next().is_none()) && !p.is_file())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// Create the folder, or accept an empty one: the demo never mixes with a real class's files.
fn prepare(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(input(format!(
                    "{} already exists and is not empty: give `classkeys demo --dir` a new folder",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the demo folder {}", dir.display())),
        Err(e) if dir.exists() && !dir.is_dir() => Err(input(format!(
            "{} is a file, not a folder: give `classkeys demo --dir` a new folder ({e})",
            dir.display()
        ))),
        Err(e) => Err(e).with_context(|| format!("reading the demo folder {}", dir.display())),
    }
}

/// Works in the demo folder, and goes back to where it was when done.
struct Cwd(Option<PathBuf>);

impl Cwd {
    fn change(dir: &Path) -> Result<Cwd> {
        let back = std::env::current_dir().ok();
        std::env::set_current_dir(dir)
            .with_context(|| format!("going into the demo folder {}", dir.display()))?;
        Ok(Cwd(back))
    }
}

impl Drop for Cwd {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::env::set_current_dir(dir);
        }
    }
}

struct Demo {
    global: Global,
}

impl Demo {
    fn say(&self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
    }

    fn blank(&self) {
        println!();
    }

    /// Print the command as the instructor would type it, run it, stop the demo if it fails.
    fn step(&self, args: &[&str], why: &str) -> Result<()> {
        if matches!(args.first(), Some(&("check" | "provision" | "update"))) {
            next_second();
        }
        self.say(format!(
            "$ classkeys --sandbox {}    # {why}",
            args.join(" ")
        ));
        let exit = self.run(args).with_context(|| {
            format!("demo step `classkeys --sandbox {}` failed", args.join(" "))
        })?;
        if exit != Exit::Ok {
            bail!(
                "demo step `classkeys --sandbox {}` did not finish cleanly",
                args.join(" ")
            );
        }
        self.blank();
        Ok(())
    }

    /// Parse as the command line would (so defaults are the real ones), then run the command
    /// with a context of its own.
    fn run(&self, args: &[&str]) -> Result<Exit> {
        let argv = ["classkeys", "--sandbox"].iter().chain(args);
        let cli = Cli::try_parse_from(argv).with_context(|| {
            format!("the demo's own command line `{}` is wrong", args.join(" "))
        })?;
        let _ = std::io::stdout().flush();
        let mut ctx = Ctx::new(self.global.clone())?;
        let exit = match cli.command {
            Command::InitDb(a) => commands::init_db::run(&mut ctx, a),
            Command::Check(a) => commands::check::run(&mut ctx, a),
            Command::Provision(a) => commands::provision::run(&mut ctx, a),
            Command::Update(a) => commands::update::run(&mut ctx, a),
            Command::Report(a) => commands::report::run(&mut ctx, a),
            Command::Sandbox(c @ SandboxCommand::Spend(_)) => commands::sandbox::run(&mut ctx, c),
            other => bail!("the demo does not run {other:?}"),
        };
        let _ = std::io::stdout().flush();
        exit
    }
}

/// Commands stamp their usage rows and snapshot names to the second. A real class spreads
/// them over hours; the demo waits for the next second so each step has its own moment
/// (and `report --since snapshot_….csv` has windows to tell apart).
fn next_second() {
    let now = chrono::Utc::now();
    let left = 1_000_000_000u32.saturating_sub(now.timestamp_subsec_nanos());
    std::thread::sleep(std::time::Duration::from_nanos(u64::from(left) + 1_000_000));
}

/// What the instructor does by hand: change one student's `target_limit` in limits.csv.
fn set_target_limit(path: &Path, email: &str, limit: &str) -> Result<()> {
    let table = read_table(path, "the limits file")?;
    let email_col = table.require("email", "the student's email")?;
    let limit_col = table.require("target_limit", "the limit you want")?;
    let mut found = false;
    write_atomic(path, PLAIN_MODE, |w: &mut dyn Write| {
        let mut out = CsvOut::new(w);
        out.row(&table.headers)?;
        for row in &table.rows {
            let mut cells = row.cells.clone();
            if cells[email_col].eq_ignore_ascii_case(email) {
                cells[limit_col] = limit.to_string();
                found = true;
            }
            out.row(&cells)?;
        }
        out.finish()?;
        Ok(())
    })?;
    if !found {
        bail!("{} has no row for {email}", path.display());
    }
    Ok(())
}

/// Files of the current folder whose names start with `prefix`, sorted.
fn files_named(prefix: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(".")
        .context("listing the demo folder")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    // `snapshot_…_0900.csv` before `snapshot_…_0900-2.csv`.
    names.sort_by(|a, b| a.trim_end_matches(".csv").cmp(b.trim_end_matches(".csv")));
    Ok(names)
}
