//! What the instructor reads (issue 15): exact lines where the output is the contract.

use crate::common::*;

#[test]
fn usage_errors_are_exit_2_in_the_one_error_format() {
    let class = Class::new(&roster(1));
    let out = bare(class.dir.path()).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("classkeys: error: unexpected argument '--bogus' found\n"),
        "{err}"
    );
    let out = bare(class.dir.path())
        .args(["--json", "completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "classkeys: error: `completions` prints a shell script, it has no --json form: leave out --json\n"
    );
    assert!(stdout(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_student_one_key_money_in_dollars_and_warnings_once() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(1));
    class.cmd(&fake).arg("init-db").assert().success();
    fake.state.lock().unwrap().credits = (1.0, 0.0);
    let out = class
        .cmd(&fake)
        .args(["provision", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(said.matches("exceed the account's").count(), 1, "{said}");
    assert!(
        !stdout(&out).contains("warning"),
        "warnings go to stderr: {}",
        stdout(&out)
    );
    class.cmd(&fake).arg("provision").assert().success();
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(
        stdout(&out).contains("1 student on the roster, 1 key (0 disabled), total usage $0.00"),
        "{}",
        stdout(&out)
    );
    let text = class.read("limits.csv").replace(",2.0,2.0,", ",5.0,2.0,");
    class.write("limits.csv", &text);
    let out = class.cmd(&fake).arg("update").output().unwrap();
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.contains("s0001@uni.edu"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(cells.windows(2).any(|w| w == ["$2.00", "$5.00"]), "{row}");
    // End of term: the class says its keys are gone instead of offering to provision.
    class
        .cmd(&fake)
        .args(["delete", "--all", "--yes"])
        .assert()
        .success();
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(
        stdout(&out).contains("every key of this class is deleted (1 key;"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("without a key"), "{}", stdout(&out));
    let out = bare(class.dir.path()).arg("export-keys").output().unwrap();
    assert!(
        stderr(&out).contains("every key of this class is deleted"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn files_that_mislead_are_named_with_what_to_do() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    // Editing actual_limit instead of target_limit is said, not silently overwritten.
    let text = class
        .read("limits.csv")
        .replacen(",2.0,2.0,", ",2.0,9.0,", 1);
    class.write("limits.csv", &text);
    let out = class.cmd(&fake).arg("update").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 2: s0001@uni.edu: actual_limit was edited ($9.00; the key's limit is $2.00), but only the target_* columns are applied"),
        "{}",
        stderr(&out)
    );
    // A roster saved with semicolons names the separator.
    class.write("roster.csv", "email;name\ns0001@uni.edu;Student 0001\n");
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("roster.csv: line 1: the columns are separated by semicolons, not commas"),
        "{}",
        stderr(&out)
    );
    // A roster that cannot be rewritten (read-only here; open in Excel, a synced share): the
    // class is shown and its snapshot written all the same, with a warning.
    class.write("roster.csv", &roster(2));
    fake.add_key("Stranger", None, false, 0.0);
    let snapshots = class.files("snapshot_").len();
    // The roster in a folder that cannot be written (a synced share, say).
    std::fs::create_dir(class.path("share")).unwrap();
    std::fs::write(class.path("share/roster.csv"), roster(2)).unwrap();
    std::fs::set_permissions(
        class.path("share"),
        std::os::unix::fs::PermissionsExt::from_mode(0o500),
    )
    .unwrap();
    let out = as_user(&class, &fake, &["check", "--roster", "share/roster.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not be added"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("2 students on the roster"),
        "{}",
        stdout(&out)
    );
    assert_eq!(class.files("snapshot_").len(), snapshots + 1);
    assert!(!class.read("share/roster.csv").contains("FIXME"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mistyped_email_gets_the_closest_roster_email() {
    let fake = Fake::start().await;
    let class = Class::new("email,name\nada.lovelace@uni.edu,Ada\nbob@uni.edu,Bob\n");
    class.cmd(&fake).arg("init-db").assert().success();
    let out = class
        .cmd(&fake)
        .args(["disable", "--email", "ada.lovelce@uni.edu", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "classkeys: error: --email ada.lovelce@uni.edu: not in roster.csv; did you mean ada.lovelace@uni.edu?\n"
    );
    assert!(fake.requests().await.is_empty());
}

#[test]
fn email_completes_from_the_roster() {
    let class = Class::new(
        "email,name\nkim.lee@uni.edu,Kim Lee\nkim.park@uni.edu,Kim Park\nada@uni.edu,Ada\nx.y@FIXME.edu,X Y\n",
    );
    let out = bare(class.dir.path())
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "3")
        .env("_CLAP_COMPLETE_COMP_TYPE", "9")
        .env("_CLAP_COMPLETE_SPACE", "true")
        .args(["--", "classkeys", "disable", "--email", "ki"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .split(['\n', '\x0b'])
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(got, vec!["kim.lee@uni.edu", "kim.park@uni.edu"]);
}

#[test]
fn every_help_reads_at_80_columns() {
    let class = Class::new(&roster(1));
    let commands = [
        "",
        "init-db",
        "check",
        "provision",
        "update",
        "refresh-limits-file",
        "export-keys",
        "report",
        "rotate",
        "delete",
        "disable",
        "enable",
        "adopt",
        "change-email",
        "drop-student",
        "set-limit",
        "log",
        "import-keys",
        "import-roster",
        "send-keys",
        "watch",
        "demo",
        "sandbox",
        "completions",
    ];
    for command in commands {
        let mut cmd = bare(class.dir.path());
        cmd.env("COLUMNS", "80");
        if !command.is_empty() {
            cmd.arg(command);
        }
        let out = cmd.arg("--help").output().unwrap();
        assert!(out.status.success(), "{command}: {}", stderr(&out));
        let text = stdout(&out);
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "`classkeys {command} --help` has a line of {} columns:\n{line}",
                line.chars().count()
            );
        }
        assert!(
            command.is_empty() || text.contains("Example"),
            "`{command} --help` shows an example"
        );
        // The help is the contract: any change to it shows in review.
        let name = if command.is_empty() {
            "classkeys"
        } else {
            command
        };
        insta::assert_snapshot!(format!("help_{name}"), text);
        if !["", "completions", "demo", "sandbox"].contains(&command) {
            assert!(text.contains("Global options:"), "{command}: {text}");
        }
    }
}

/// What an instructor reads when classkeys.toml, mail.txt or an option is wrong: one snapshot,
/// each case with its exit code. Nothing here reaches the network (no fake is running).
#[test]
fn errors_of_the_class_settings_read_as_documented() {
    let class = Class::new("email,name\nada@uni.edu,Ada Lovelace\n");
    let run = |args: &[&str]| {
        let out = bare(class.dir.path())
            .env("OPENROUTER_PROVISIONING_KEY", SENTINEL)
            .env("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
            .args(args)
            .output()
            .unwrap();
        format!(
            "$ classkeys {}\nexit {}\n{}",
            args.join(" "),
            out.status.code().unwrap_or(-1),
            stderr(&out)
        )
    };
    assert_ok(bare(class.dir.path()).arg("init-db").output().unwrap());
    let mut shown = Vec::new();
    for (toml, args) in [
        (
            "[guardrail]\nmodels = [\"a/b\"]\nmodles = [\"c/d\"]\n",
            &["rotate", "--email", "ada@uni.edu"][..],
        ),
        (
            "[guardrail]\ndaily_limit = 1\nweekly_limit = 2\n",
            &["provision"][..],
        ),
        ("[guardrail]\nredact = [\"emails\"]\n", &["check"][..]),
        (
            "[mail]\nfrom = \"prof@uni.edu\"\nsmtp_host = \"smtp.uni.edu\"\npassword = \"hunter22\"\n",
            &["send-keys"][..],
        ),
        (
            "[mail]\nfrom = \"prof@uni.edu\"\nsmtp_host = \"smtp.uni.edu\"\nsecurity = \"none\"\n",
            &["send-keys"][..],
        ),
        (
            "[mail]\nfrom = \"prof@uni.edu\"\nsmtp_host = \"smtp.uni.edu\"\nusername = \"prof\"\n",
            &["send-keys"][..],
        ),
    ] {
        class.write("classkeys.toml", toml);
        shown.push(run(args));
    }
    class.write(
        "classkeys.toml",
        "[mail]\nfrom = \"prof@uni.edu\"\nsmtp_host = \"127.0.0.1\"\nsecurity = \"none\"\n",
    );
    class.write("mail.txt", "Hello {{ name }}\n\nbody\n");
    shown.push(run(&["send-keys", "--dry-run"]));
    class.write("mail.txt", "Subject: x\n\nDear {{ nmae }},\n");
    shown.push(run(&["send-keys", "--dry-run"]));
    shown.push(run(&["send-keys", "--resend"]));
    shown.push(run(&["watch"]));
    shown.push(run(&["watch", "--every", "4"]));
    insta::assert_snapshot!(shown.join("\n"));
}

/// A file that cannot be written before any request is bad input (exit 2), and the error names
/// the user's folder, not a temp file of classkeys'.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_error_before_any_request_is_exit_2_and_names_the_users_folder() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(1));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    std::fs::create_dir(class.path("locked")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(class.path("locked"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = as_user(&class, &fake, &["report", "--html", "locked/report.html"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("creating a file in locked"), "{err}");
    assert!(
        !err.contains(".classkeys-") && !err.contains(".tmp"),
        "{err}"
    );
}

/// Dates, times and run-stamped file names out of a command's output, so that a snapshot holds
/// what does not change from run to run.
fn steady(text: &str) -> String {
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    // Runs in one second share one instant: how many checks a window holds varies.
    let mut s = text
        .replace(&today, "YYYYMMDD")
        .replace("(local), 1 check\n", "(local), N checks\n")
        .replace("(local), 2 checks\n", "(local), N checks\n");
    // 2026-12-02 01:37:44 -> YYYY-MM-DD hh:mm:ss ; YYYYMMDD_013744 -> YYYYMMDD_hhmmss
    let shape = |w: &[u8], pattern: &str| {
        w.len() == pattern.len()
            && w.iter().zip(pattern.bytes()).all(|(c, p)| match p {
                b'9' => c.is_ascii_digit(),
                _ => *c == p,
            })
    };
    for (pattern, shown) in [
        ("9999-99-99 99:99:99", "YYYY-MM-DD hh:mm:ss"),
        ("YYYYMMDD_999999-9", "YYYYMMDD_hhmmss"),
        ("YYYYMMDD_999999", "YYYYMMDD_hhmmss"),
        ("→ 99:99:99", "→ hh:mm:ss"),
    ] {
        let mut out = String::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if i + pattern.len() <= b.len() && shape(&b[i..i + pattern.len()], pattern) {
                out.push_str(shown);
                i += pattern.len();
            } else {
                let ch = s[i..].chars().next().unwrap();
                out.push(ch);
                i += ch.len_utf8();
            }
        }
        s = out;
    }
    s
}

/// The tables an instructor reads, at 80 columns: check, update, set-limit, report, log.
#[tokio::test(flavor = "multi_thread")]
async fn tables_read_as_documented() {
    let fake = Fake::start().await;
    let class = Class::new(
        "email,name\nada.lovelace@example.edu,Ada Lovelace\nalan.turing@example.edu,Alan Turing\ngrace.hopper@example.edu,Grace Hopper\n",
    );
    let run = |args: &[&str]| {
        let out = class
            .cmd(&fake)
            .env("COLUMNS", "80")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        format!("$ classkeys {}\n{}", args.join(" "), steady(&stdout(&out)))
    };
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    let mut shown = vec![run(&["provision", "--limit", "2"])];
    let ada = fake.hash_of(&format!(
        "{}_Ada Lovelace",
        chrono::Utc::now().format("%Y%m%d")
    ));
    fake.set(&ada, "usage", serde_json::json!(1.7));
    shown.push(run(&["check"]));
    shown.push(run(&[
        "set-limit",
        "--email",
        "ada.lovelace@example.edu",
        "--add",
        "1",
    ]));
    shown.push(run(&["report"]));
    shown.push(run(&["log", "--action", "limit_changed"]));
    insta::assert_snapshot!(shown.join("\n"));
}

/// `delete --all` at a terminal lists whom it would delete (the first 20 and how many more),
/// says a delete cannot be undone, and a "no" is exit 2 with nothing deleted.
#[tokio::test(flavor = "multi_thread")]
async fn delete_all_asks_listing_the_students_and_a_no_is_exit_2() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(25));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let mut tui = crate::watch::Tui::spawn(&class, &fake, &["delete", "--all"]);
    let screen = tui.wait_for("[y/N]");
    assert!(
        screen.contains("s0001@uni.edu") && screen.contains("s0020@uni.edu"),
        "{screen}"
    );
    assert!(!screen.contains("s0021@uni.edu"), "{screen}");
    assert!(screen.contains("and 5 more"), "{screen}");
    assert!(screen.contains("cannot be undone"), "{screen}");
    tui.press("n\r");
    let status = tui.child.wait().unwrap();
    assert_eq!(status.exit_code(), 2);
    assert_eq!(fake.keys().len(), 25, "nothing was deleted");
}

/// On an 80-column terminal a table wraps other columns at spaces, never an email or an amount
/// mid-word; a table that cannot fit at all is left unwrapped rather than cut into letters.
#[tokio::test(flavor = "multi_thread")]
async fn on_80_columns_emails_stay_whole() {
    let fake = Fake::start().await;
    let class = Class::new(
        "email,name\nmargaret.hamilton.apollo@example.edu,Margaret Hamilton\nfrances.elizabeth.allen@example.edu,Frances Allen\n",
    );
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    for args in [&["report"][..], &["check"][..]] {
        let mut tui = crate::watch::Tui::spawn_sized(&class, &fake, args, 80);
        assert!(tui.child.wait().unwrap().success());
        std::thread::sleep(std::time::Duration::from_millis(200));
        let screen = tui.text();
        for email in [
            "margaret.hamilton.apollo@example.edu",
            "frances.elizabeth.allen@example.edu",
        ] {
            assert!(screen.contains(email), "{args:?}: {email} cut:\n{screen}");
        }
        assert!(screen.contains("$0.00"), "money is never cut: {screen}");
    }
}

/// The SANDBOX banner once per command, not once per step of `demo`.
#[test]
fn the_sandbox_banner_once_in_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_ok(
        bare(dir.path())
            .args(["demo", "--dir", "d"])
            .output()
            .unwrap(),
    );
    let all = stdout(&out) + &stderr(&out);
    assert_eq!(
        all.matches("SANDBOX: using the built-in").count(),
        1,
        "{all}"
    );
    // The closing hint names the command as this user can run it (not on PATH: its full path).
    let hint = all
        .lines()
        .find(|l| l.starts_with("Try more in that folder"))
        .unwrap_or_else(|| panic!("no closing hint:\n{all}"));
    let me = hint
        .split("&& ")
        .nth(1)
        .and_then(|r| r.split(" --sandbox").next())
        .unwrap_or_else(|| panic!("{hint}"));
    assert!(
        std::path::Path::new(me).is_file(),
        "{me} is not runnable: {hint}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_narrow_table_that_fits_wraps_names_at_spaces() {
    let fake = Fake::start().await;
    let class = Class::new(
        "email,name\nada@example.edu,Ada Augusta King Lovelace\nalan@example.edu,Alan Mathison Turing\n",
    );
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let mut tui = crate::watch::Tui::spawn_sized(&class, &fake, &["report"], 72);
    assert!(tui.child.wait().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let screen = tui.text();
    let table: Vec<&str> = screen
        .lines()
        .take_while(|l| !l.contains("students ("))
        .collect();
    assert!(table.iter().all(|l| l.chars().count() <= 72), "{screen}");
    assert!(
        screen.contains("ada@example.edu") && screen.contains("$2.00"),
        "{screen}"
    );
    // Names wrap between words.
    for word in ["Augusta", "Lovelace", "Mathison", "Turing"] {
        assert!(screen.contains(word), "{word} cut:\n{screen}");
    }
}
