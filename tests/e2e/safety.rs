//! Issue 3: never lose a secret, never leak one, never make a duplicate key.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;
use serde_json::json;

/// Every roster student has exactly one key on the account, enabled, and export-keys returns
/// the secret the account made for it.
fn assert_one_key_each_with_secret(class: &Class, fake: &Fake, students: usize) {
    let keys = fake.keys();
    assert_eq!(
        keys.len(),
        students,
        "one key per student: {:?}",
        keys.iter().map(|k| &k["name"]).collect::<Vec<_>>()
    );
    let names: HashSet<&str> = keys.iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), students, "no duplicate names");
    assert!(keys.iter().all(|k| k["disabled"] == json!(false)));
    let exported = class.exported();
    assert_eq!(exported.len(), students, "{exported:?}");
    for key in &keys {
        let row = exported
            .iter()
            .find(|r| r["key_name"] == key["name"])
            .expect("exported");
        assert_eq!(
            row["api_key"].as_str(),
            fake.secret_of(key["hash"].as_str().unwrap()).as_deref()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_whose_connection_drops_after_the_key_exists_is_settled_in_the_same_run() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(5));
    class.cmd(&fake).arg("init-db").assert().success();
    fake.fault("POST", Fault::DoThenHang(Duration::from_secs(6)));
    let out = class
        .cmd(&fake)
        .args(["--timeout", "2", "provision"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The key made by the dropped create was found, deleted and made again.
    assert_eq!(fake.count("POST").await, 6);
    assert_eq!(fake.count("DELETE").await, 1);
    assert_one_key_each_with_secret(&class, &fake, 5);
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action='discarded'"),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_502_on_a_create_that_made_the_key_is_settled() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(4));
    class.cmd(&fake).arg("init-db").assert().success();
    fake.fault("POST", Fault::DoThenStatus(502));
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.count("DELETE").await, 1);
    assert_one_key_each_with_secret(&class, &fake, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_server_errors_are_absorbed() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(6));
    class.cmd(&fake).arg("init-db").assert().success();
    fake.fault("GET", Fault::RateLimit(1));
    fake.fault("GET", Fault::Status(500));
    fake.fault("POST", Fault::RateLimit(1));
    fake.fault("POST", Fault::RateLimit(1));
    let started = std::time::Instant::now();
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Retry-After was honoured (a lower bound, not a timing benchmark).
    assert!(started.elapsed() >= Duration::from_secs(1));
    // A 429 on a create means "not made": it is retried without any DELETE.
    assert_eq!(fake.count("POST").await, 8);
    assert_eq!(fake.count("DELETE").await, 0);
    assert_one_key_each_with_secret(&class, &fake, 6);

    fake.fault("PATCH", Fault::Status(503));
    fake.fault("PATCH", Fault::Status(500));
    let text = class
        .read("limits.csv")
        .replacen(",2.0,2.0,", ",4.0,2.0,", 1);
    class.write("limits.csv", &text);
    let out = class.cmd(&fake).arg("update").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.count("PATCH").await, 3);
    assert_eq!(
        fake.keys()
            .iter()
            .filter(|k| k["limit"] == json!(4.0))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_error_stops_at_once_and_keeps_what_was_made() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(10));
    class.cmd(&fake).arg("init-db").assert().success();
    for _ in 0..3 {
        fake.fault("POST", Fault::Pass);
    }
    fake.fault("POST", Fault::Status(400));
    let out = class
        .cmd(&fake)
        .args(["--jobs", "1", "provision"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Injected failure"),
        "{}",
        stderr(&out)
    );
    // With one request in flight, nothing starts after the error.
    assert_eq!(fake.count("POST").await, 4);
    assert_eq!(fake.keys().len(), 3);
    // What was made is recorded: secrets in keys.db and the api_keys file, audit rows.
    assert_eq!(
        class.count("SELECT COUNT(*) FROM key WHERE api_key IS NOT NULL"),
        3
    );
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action='created'"),
        3
    );
    let files = class.files("api_keys_");
    assert_eq!(files.len(), 1);
    assert_eq!(csv_rows(&files[0]).len(), 3);
    // The next run makes the rest.
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_one_key_each_with_secret(&class, &fake, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_creates_and_a_rerun_leaves_one_key_each_with_its_secret() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(12));
    class.cmd(&fake).arg("init-db").assert().success();
    // Dies right after the 3rd secret is committed.
    let out = class
        .cmd(&fake)
        .args(["--jobs", "1", "provision"])
        .env("CLASSKEYS_FAULT", "create-saved:3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Three keys saved; requests already under way at that instant may have made more.
    let made = fake.keys().len();
    assert!(made >= 3, "{made}");
    assert_eq!(
        class.count("SELECT COUNT(*) FROM key WHERE api_key IS NOT NULL"),
        3
    );
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_one_key_each_with_secret(&class, &fake, 12);
    // A key whose secret was never saved is deleted, never handed out.
    assert_eq!(fake.count("DELETE").await, made - 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_answer_but_before_saving_is_settled_by_the_next_run() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(8));
    class.cmd(&fake).arg("init-db").assert().success();
    // Dies when the 2nd create's answer has arrived but its secret is not yet on disk.
    let out = class
        .cmd(&fake)
        .args(["--jobs", "1", "provision"])
        .env("CLASSKEYS_FAULT", "create-answered:2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(fake.keys().len(), 2);
    // The first secret may or may not have been committed before the process died.
    let saved = class.count("SELECT COUNT(*) FROM key WHERE api_key IS NOT NULL") as usize;
    assert!(saved <= 1);
    // check does not claim the key whose secret was lost, nor add it to the roster.
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!class.read("roster.csv").contains("FIXME"));
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fake.count("DELETE").await,
        2 - saved,
        "keys whose secret was lost are deleted"
    );
    assert_one_key_each_with_secret(&class, &fake, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_runs_make_no_duplicate() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(20));
    class.cmd(&fake).arg("init-db").assert().success();
    fake.state.lock().unwrap().delay = Some(Duration::from_millis(30));
    let spawn = || class.spawn(&fake, &["--jobs", "2", "provision"]);
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let waited = stderr(&a) + &stderr(&b);
    assert!(
        waited.contains("another classkeys (pid ") && waited.contains("is working on"),
        "{waited}"
    );
    assert_one_key_each_with_secret(&class, &fake, 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_files_are_owner_only_and_the_management_key_appears_nowhere() {
    let fake = Fake::start().await;
    fake.add_key("20250101_Someone Else", Some(1.0), false, 0.0);
    let class = Class::new(&roster(3));
    let mut outputs = String::new();
    let mut run = |args: &[&str]| {
        let out = class.cmd(&fake).args(args).output().unwrap();
        outputs.push_str(&stdout(&out));
        outputs.push_str(&stderr(&out));
        out
    };
    run(&["init-db"]);
    run(&["check"]);
    run(&["provision"]);
    run(&["--json", "check"]);
    run(&["update"]);
    run(&["refresh-limits-file"]);
    run(&["export-keys", "--output", "export.csv"]);
    run(&["export-keys", "--format", "json", "--output", "export.json"]);
    run(&["--base-url", "http://example.com/api/v1", "check"]);
    fake.fault("GET", Fault::Status(401));
    run(&["check"]);
    run(&["provision", "--dry-run"]);
    assert!(
        !outputs.contains(SENTINEL) && !outputs.contains("SENTINEL"),
        "{outputs}"
    );
    for entry in std::fs::read_dir(class.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("SENTINEL"),
            "{} holds the management key",
            path.display()
        );
    }
    assert_eq!(mode(&class.path("keys.db")), 0o600);
    assert_eq!(mode(&class.files("api_keys_")[0]), 0o600);
    assert_eq!(mode(&class.path("export.csv")), 0o600);
    assert_eq!(mode(&class.path("export.json")), 0o600);
    for wal in ["keys.db-wal", "keys.db-shm"] {
        if class.path(wal).exists() {
            assert_eq!(mode(&class.path(wal)) & 0o077, 0, "{wal}");
        }
    }
    // No temp file is left behind.
    assert!(class.files(".classkeys-").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_to_a_remote_host_is_refused_before_any_request() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    let out = class
        .cmd(&fake)
        .args(["--base-url", "http://example.com/api/v1", "provision"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("https"), "{}", stderr(&out));
    // A proxy in the environment is not used for loopback.
    let out = class
        .cmd(&fake)
        .env("HTTP_PROXY", "http://10.255.255.1:9")
        .env("ALL_PROXY", "http://10.255.255.1:9")
        .arg("check")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.requests().await.iter().all(|r| r.0 == "GET"));
}

#[tokio::test(flavor = "multi_thread")]
async fn spreadsheet_formulas_are_neutralised_and_read_back() {
    let fake = Fake::start().await;
    let evil = r#"=HYPERLINK("http://evil.example","click")"#;
    let class = Class::new(&format!(
        "email,name\nada@uni.edu,\"{}\"\nbob@uni.edu,-Bob\n",
        evil.replace('"', "\"\"")
    ));
    class.cmd(&fake).arg("init-db").assert().success();
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        class.path("limits.csv"),
        class.files("api_keys_")[0].clone(),
        class.files("snapshot_")[0].clone(),
    ] {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            for cell in line.split(',') {
                let cell = cell.trim_start_matches('"');
                assert!(
                    !cell.starts_with('=') && !cell.starts_with('-') && !cell.starts_with('@'),
                    "{}: {line}",
                    file.display()
                );
            }
        }
        assert!(
            text.contains("'=HYPERLINK") && text.contains("'-Bob"),
            "{}: {text}",
            file.display()
        );
    }
    // The key itself carries the real name, and reading the files back gives it too.
    assert_eq!(
        fake.keys()
            .iter()
            .filter(|k| k["name"].as_str().unwrap().ends_with(evil))
            .count(),
        1
    );
    let out = class.cmd(&fake).arg("update").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.count("PATCH").await, 0);
    assert!(class.exported().iter().any(|r| r["name"] == json!(evil)));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_any_instant_then_the_same_command_leaves_one_key_each() {
    // SIGKILL mid-run at a few different instants; each time the re-run repairs everything.
    for kill_after_ms in [60u64, 150, 300] {
        let fake = Fake::start().await;
        let class = Class::new(&roster(40));
        class.cmd(&fake).arg("init-db").assert().success();
        fake.state.lock().unwrap().delay = Some(Duration::from_millis(15));
        let mut child = class.spawn(&fake, &["--jobs", "4", "provision"]);
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        fake.state.lock().unwrap().delay = None;
        let out = class.cmd(&fake).arg("provision").output().unwrap();
        assert!(
            out.status.success(),
            "killed after {kill_after_ms} ms: {}",
            stderr(&out)
        );
        assert_one_key_each_with_secret(&class, &fake, 40);
    }
}
