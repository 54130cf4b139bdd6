//! Coming from manage_keys.py (issue 7): a class folder the Python tool wrote (its keys.db,
//! roster.csv, limits.csv, api_keys_*.csv) and the account it ran against, from
//! tests/fixtures/python-original-keys-db (a copy of what the Python tool wrote).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use crate::common::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/python-original-keys-db"
);
const API_KEYS: &str = "api_keys_20261127_100834.csv";
/// The words of the one message that says keys.db was upgraded.
const UPGRADED: &str = "from manage_keys.py";

/// A fixture file's path; a missing one fails the test with the path it looked for.
fn fixture(name: &str) -> PathBuf {
    let path = Path::new(FIXTURE).join(name);
    assert!(
        path.is_file(),
        "fixture missing: {} (the repository's tests/fixtures must hold it)",
        path.display()
    );
    path
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = fixture(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Copy a read-only fixture file into the class folder with the mode given.
fn copy_in(class: &Class, name: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let bytes = fixture_bytes(name);
    let to = class.path(name);
    std::fs::write(&to, bytes).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The Python tool's class folder, as it left it (keys.db readable by all, as Python made it).
fn python_class() -> Class {
    let class = Class::new("");
    copy_in(&class, "roster.csv", 0o644);
    copy_in(&class, "limits.csv", 0o644);
    copy_in(&class, "keys.db", 0o644);
    copy_in(&class, API_KEYS, 0o600);
    class
}

fn state() -> Vec<Value> {
    let text = String::from_utf8(fixture_bytes("openrouter-state.json"))
        .expect("the fixture state is UTF-8");
    serde_json::from_str(&text).unwrap()
}

/// The account manage_keys.py ran against, every key with its secret.
async fn python_account() -> Fake {
    let fake = Fake::start().await;
    fake.load_state(&state());
    fake
}

fn secret_of_name(key_name: &str) -> String {
    state()
        .into_iter()
        .find(|k| k["name"] == key_name)
        .unwrap_or_else(|| panic!("no key {key_name} in the fixture"))["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

fn read_only(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// Rows of student, key, usage, changelog.
fn counts(path: &Path) -> [i64; 4] {
    let conn = read_only(path);
    let mut out = [0; 4];
    for (i, t) in ["student", "key", "usage", "changelog"].iter().enumerate() {
        out[i] = conn
            .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .unwrap();
    }
    out
}

fn user_version(path: &Path) -> i64 {
    read_only(path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// The schema version a new classkeys database gets.
fn latest() -> i64 {
    let dir = tempfile::tempdir().unwrap();
    bare(dir.path())
        .args(["init-db", "--db", "new.db"])
        .assert()
        .success();
    user_version(&dir.path().join("new.db"))
}

fn strings(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// What the Python tool recorded, timestamps aside: every row of its four tables.
fn python_facts(path: &Path) -> Vec<String> {
    let conn = read_only(path);
    let mut out = strings(
        &conn,
        "SELECT 'student|' || email || '|' || COALESCE(name, '') FROM student",
    );
    out.extend(strings(
        &conn,
        "SELECT 'key|' || key_hash || '|' || COALESCE(email, '') || '|' || COALESCE(key_name, '') || '|' || \
         COALESCE(credit_limit, 'null') FROM key",
    ));
    out.extend(strings(
        &conn,
        "SELECT 'usage|' || id || '|' || COALESCE(key_hash, '') || '|' || COALESCE(usage, 'null') FROM usage",
    ));
    out.extend(strings(
        &conn,
        "SELECT 'changelog|' || id || '|' || COALESCE(key_hash, '') || '|' || COALESCE(action, '') || '|' || \
         COALESCE(old_value, '') || '|' || COALESCE(new_value, '') FROM changelog",
    ));
    out.sort();
    out
}

fn output(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

fn upgrade_messages(out: &std::process::Output) -> usize {
    output(out).matches(UPGRADED).count()
}

fn limits_row<'a>(
    rows: &'a [std::collections::HashMap<String, String>],
    email: &str,
) -> &'a std::collections::HashMap<String, String> {
    rows.iter()
        .find(|r| r["email"] == email)
        .unwrap_or_else(|| panic!("no row for {email} in {rows:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_that_opens_the_python_db_upgrades_it_once() {
    let latest = latest();
    assert!(latest >= 3, "schema {latest}");
    let original = fixture_bytes("keys.db");
    let facts = python_facts(&fixture("keys.db"));
    let masked: Vec<(String, String)> = {
        let conn = read_only(&fixture("keys.db"));
        let mut stmt = conn.prepare("SELECT key_hash, api_key FROM key").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(masked.len(), 5);
    assert!(masked.iter().all(|(_, label)| label.contains("...")));

    // (arguments, needs the account, usage rows the command itself adds, changelog rows it adds).
    // The FIXME row's key is not the class's: the four students' keys get usage rows.
    let commands: Vec<(Vec<&str>, bool, i64, i64)> = vec![
        (vec!["check"], true, 4, 0),
        (vec!["provision"], true, 4, 0),
        (vec!["provision", "--dry-run"], true, 0, 0),
        (vec!["update"], true, 4, 0),
        (vec!["refresh-limits-file"], true, 4, 0),
        (
            vec!["disable", "--email", "ada@uni.edu", "--dry-run"],
            true,
            0,
            0,
        ),
        (vec!["import-keys", API_KEYS], true, 4, 4),
        (vec!["export-keys"], false, 0, 0),
        (vec!["init-db"], false, 0, 0),
    ];
    for (args, online, usage_added, changes_added) in commands {
        let what = args.join(" ");
        let fake = python_account().await;
        let class = python_class();
        let db = class.path("keys.db");
        let before = counts(&db);
        assert_eq!(before, [5, 5, 19, 6], "the fixture");
        let cmd = |class: &Class| {
            if online {
                class.cmd(&fake)
            } else {
                bare(class.dir.path())
            }
        };

        let out = cmd(&class).args(&args).output().unwrap();
        assert!(out.status.success(), "{what}: {}", output(&out));
        assert_eq!(
            upgrade_messages(&out),
            1,
            "{what}: says it upgraded, once:\n{}",
            output(&out)
        );
        let said = output(&out);
        assert!(
            said.contains("kept all 5 students, 5 keys, 19 usage rows and 6 changelog rows")
                && said.contains("the original is saved as keys.db.bak-")
                && said.contains("5 of its 5 keys have only a masked label")
                && said.contains("import-keys api_keys_*.csv"),
            "{what}: what it did:\n{said}"
        );
        let after = counts(&db);
        assert_eq!(
            after,
            [
                before[0],
                before[1],
                before[2] + usage_added,
                before[3] + changes_added
            ],
            "{what}: rows before {before:?}, after {after:?}"
        );
        assert_eq!(user_version(&db), latest, "{what}");
        assert_eq!(mode(&db), 0o600, "{what}: keys.db is owner-only now");

        // Every fact the Python tool recorded is still there.
        let now = python_facts(&db);
        for fact in &facts {
            assert!(now.contains(fact), "{what}: lost {fact}\nnow: {now:#?}");
        }

        // The backup: one, owner-only, byte for byte the Python tool's file.
        let backups = class.files("keys.db.bak-");
        assert_eq!(backups.len(), 1, "{what}: {backups:?}");
        let name = backups[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let stamp = name.strip_prefix("keys.db.bak-").unwrap();
        assert!(
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S").is_ok(),
            "{what}: backup name {name}"
        );
        assert_eq!(mode(&backups[0]), 0o600, "{what}");
        assert!(
            std::fs::read(&backups[0]).unwrap() == original,
            "{what}: the backup is the original"
        );

        // Masked labels are labels; api_key holds nothing but real secrets.
        let conn = read_only(&db);
        for (hash, label) in &masked {
            let (now_label, secret): (Option<String>, Option<String>) = conn
                .query_row(
                    "SELECT label, api_key FROM key WHERE key_hash = ?1",
                    [hash],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(now_label.as_deref(), Some(label.as_str()), "{what}");
            if let Some(s) = &secret {
                assert!(
                    s.starts_with("sk-or-v1-") && s.len() == 73 && !s.contains("..."),
                    "{what}: api_key {s}"
                );
            }
            assert_eq!(
                secret.is_some(),
                args[0] == "import-keys" && !label.ends_with("2161"),
                "{what}: secret of {hash}"
            );
        }
        drop(conn);

        // A second command says nothing about it and makes no second copy.
        let again = if args[0] == "import-keys" {
            vec!["check"]
        } else {
            args.clone()
        };
        let out = cmd(&class).args(&again).output().unwrap();
        assert!(out.status.success(), "{what} again: {}", output(&out));
        assert_eq!(upgrade_messages(&out), 0, "{what} again: {}", output(&out));
        assert_eq!(class.files("keys.db.bak-").len(), 1, "{what} again");
        assert_eq!(user_version(&db), latest);
        if what == "init-db" {
            assert!(stdout(&out).contains("nothing to do"), "{}", output(&out));
        }
        assert_eq!(fake.count("POST").await, 0, "{what}: no key was created");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_local_times_become_utc() {
    for (tz, hours) in [("UTC", 0), ("EST5", 5), ("CET-1", -1)] {
        let class = python_class();
        let out = bare(class.dir.path())
            .env("TZ", tz)
            .arg("export-keys")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output(&out));
        let conn = read_only(&class.path("keys.db"));
        let get = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        let local = |naive: &str| {
            (chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f").unwrap()
                + chrono::Duration::hours(hours))
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        // Naive times were the Python machine's local time.
        assert_eq!(
            get("SELECT checked_at FROM usage WHERE id = 1"),
            local("2026-11-27T10:08:29.520710"),
            "TZ={tz}"
        );
        assert_eq!(
            get("SELECT changed_at FROM changelog WHERE id = 5"),
            local("2026-11-27T10:08:34.901002"),
            "TZ={tz}"
        );
        assert_eq!(
            get("SELECT created_at FROM student WHERE email = 'barbara.liskov@FIXME.edu'"),
            local("2026-11-27T10:08:29.520710"),
            "TZ={tz}"
        );
        // Times with an offset (the API's) keep their instant whatever the zone.
        assert_eq!(
            get("SELECT created_at FROM key WHERE key_name = '20261127_Ada Lovelace'"),
            "2026-11-27T10:08:29.973204Z",
            "TZ={tz}"
        );
        // Every time is UTC RFC 3339, and the usage history keeps its order.
        for (table, col) in [
            ("usage", "checked_at"),
            ("changelog", "changed_at"),
            ("student", "created_at"),
            ("key", "created_at"),
        ] {
            for t in strings(&conn, &format!("SELECT {col} FROM {table}")) {
                let parsed = chrono::DateTime::parse_from_rfc3339(&t)
                    .unwrap_or_else(|e| panic!("{table}.{col} {t}: {e}"));
                assert!(t.ends_with('Z'), "{table}.{col} {t}");
                assert!(parsed.timestamp() > 1_700_000_000, "{table}.{col} {t}");
                assert!(parsed < chrono::Utc::now() + chrono::Duration::days(3650));
            }
        }
        let ids = strings(
            &conn,
            "SELECT CAST(id AS TEXT) FROM usage ORDER BY checked_at, id",
        );
        let want: Vec<String> = (1..=19).map(|i| i.to_string()).collect();
        assert_eq!(ids, want, "TZ={tz}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_against_the_python_account_creates_nothing() {
    let fake = python_account().await;
    let class = python_class();
    let out = class
        .cmd(&fake)
        .args(["provision", "--dry-run", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output(&out));
    let plan = json(&out);
    assert_eq!(plan["planned"], serde_json::json!([]), "{plan}");

    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        stdout(&out)
            .contains("created 0 key(s); 4 student(s) already had one; 0 FIXME row(s) skipped"),
        "{}",
        output(&out)
    );
    assert_eq!(fake.count("POST").await, 0);
    assert_eq!(fake.count("PATCH").await, 0);
    assert_eq!(fake.count("DELETE").await, 0);
    assert_eq!(fake.keys().len(), 5);
    assert_eq!(
        class.files("api_keys_"),
        vec![class.path(API_KEYS)],
        "no new secrets file"
    );
    // Grace's key is disabled on the account (keys.db said enabled): still hers, still disabled.
    let grace = fake.keys_named("20261127_Grace Hopper");
    assert_eq!(grace[0]["disabled"], serde_json::json!(true));
    assert_eq!(
        class.count("SELECT COUNT(*) FROM key WHERE email = 'grace@uni.edu' AND disabled = 1"),
        1
    );
    // The roster is as the Python tool wrote it.
    assert_eq!(
        std::fs::read(class.path("roster.csv")).unwrap(),
        fixture_bytes("roster.csv")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_fixme_email_keeps_its_python_key() {
    // The instructor does what manage_keys.py told them: fix the FIXME email in roster.csv.
    let fake = python_account().await;
    let class = python_class();
    let roster = class
        .read("roster.csv")
        .replace("barbara.liskov@FIXME.edu", "barbara@uni.edu");
    class.write("roster.csv", &roster);
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", output(&out));
    assert_eq!(fake.count("POST").await, 0, "{}", output(&out));
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        !class.read("roster.csv").contains("FIXME"),
        "{}",
        class.read("roster.csv")
    );
    assert_eq!(
        class.count(
            "SELECT COUNT(*) FROM key WHERE key_name = '20261120_Barbara Liskov' AND email = 'barbara@uni.edu'"
        ),
        1
    );
    class.cmd(&fake).arg("provision").assert().success();
    assert_eq!(fake.count("POST").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_on_the_python_folder_adds_usage_and_no_fixme_rows() {
    let fake = python_account().await;
    let class = python_class();
    let out = class.cmd(&fake).args(["check", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", output(&out));
    let report = json(&out);
    assert_eq!(report["added_to_roster"], serde_json::json!([]), "{report}");
    assert_eq!(report["without_key"], serde_json::json!([]), "{report}");
    // Four students; the Python tool's FIXME row is listed apart, not counted.
    assert_eq!(report["students"].as_array().unwrap().len(), 4);
    assert_eq!(report["fixme"][0]["email"], "barbara.liskov@FIXME.edu");
    assert_eq!(report["fixme"][0]["usage"], 0.25);
    assert_eq!(
        std::fs::read(class.path("roster.csv")).unwrap(),
        fixture_bytes("roster.csv"),
        "no new FIXME rows"
    );
    assert_eq!(class.count("SELECT COUNT(*) FROM usage"), 23);
    assert_eq!(
        class.count("SELECT COUNT(*) FROM usage WHERE id > 19 AND credit_limit IS NOT NULL"),
        4
    );
    let snap = class.files("snapshot_");
    assert_eq!(snap.len(), 1);
    let rows = csv_rows(&snap[0]);
    assert!(
        rows.iter()
            .all(|r| r["email"] != "barbara.liskov@FIXME.edu")
    );
    let ada = limits_row(&rows, "ada@uni.edu");
    assert_eq!(ada["usage"], "0.75");

    // A key nobody knows is added to the Python roster the way its lines end (CRLF).
    fake.add_key("20261127_Donald Knuth", Some(2.0), false, 0.0);
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(out.status.success(), "{}", output(&out));
    let mut want = fixture_bytes("roster.csv");
    want.extend_from_slice(b"donald.knuth@FIXME.edu,Donald Knuth\r\n");
    assert_eq!(
        String::from_utf8(std::fs::read(class.path("roster.csv")).unwrap()).unwrap(),
        String::from_utf8(want).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_reads_the_python_limits_file_as_it_is() {
    let fake = python_account().await;
    let class = python_class();
    let out = class.cmd(&fake).arg("update").output().unwrap();
    assert!(out.status.success(), "{}", output(&out));
    assert_eq!(fake.count("PATCH").await, 0, "{}", output(&out));
    assert!(
        stdout(&out).contains("updated 0 key(s); 3 already as targeted; 1 skipped"),
        "{}",
        output(&out)
    );
    // limits.csv: one row per roster student with a key; the Python targets kept, Grace added
    // with targets equal to her key (disabled), so no later `update` enables her by surprise.
    let rows = csv_rows(&class.path("limits.csv"));
    let emails: Vec<&str> = rows.iter().map(|r| r["email"].as_str()).collect();
    assert_eq!(
        emails,
        // The FIXME row's key is not the class's: it leaves limits.csv, never changed by `update`.
        vec![
            "ada@uni.edu",
            "alan@uni.edu",
            "edsger@uni.edu",
            "grace@uni.edu"
        ]
    );
    let alan = limits_row(&rows, "alan@uni.edu");
    assert_eq!(
        (alan["target_limit"].as_str(), alan["actual_limit"].as_str()),
        ("5.0", "5.0")
    );
    let grace = limits_row(&rows, "grace@uni.edu");
    assert_eq!(
        (
            grace["target_limit"].as_str(),
            grace["target_disabled"].as_str(),
            grace["actual_disabled"].as_str(),
            grace["hash"].as_str()
        ),
        (
            "2.0",
            "true",
            "true",
            "faae992501e1e7638c6173efed453e6ed639d5c6645f1f8b8b0ac4a240c1cbed"
        )
    );
    class.cmd(&fake).arg("update").assert().success();
    assert_eq!(fake.count("PATCH").await, 0);

    // An edit to the Python file (CRLF, no limit_reset columns) is applied.
    let class = python_class();
    let fake = python_account().await;
    let text = class.read("limits.csv").replace(
        "ada@uni.edu,Ada Lovelace,2.0,2.0",
        "ada@uni.edu,Ada Lovelace,4.0,2.0",
    );
    assert!(text.contains("4.0,2.0,false,false,20261127_Ada Lovelace,5a2eb2dc"));
    assert!(text.contains("\r\n"), "the Python file as it is");
    class.write("limits.csv", &text);
    let out = class.cmd(&fake).arg("update").output().unwrap();
    assert!(out.status.success(), "{}", output(&out));
    let patches: Vec<(String, String)> = fake
        .requests()
        .await
        .into_iter()
        .filter(|r| r.0 == "PATCH")
        .map(|r| (r.1, r.2))
        .collect();
    assert_eq!(
        patches,
        vec![(
            "/api/v1/keys/5a2eb2dc1d35f147a227c072a7b7abc20abbe991d019d355b51ad81b522d05c8"
                .to_string(),
            r#"{"limit":4.0}"#.to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_limits_file_keeps_python_targets_and_adds_grace() {
    let fake = python_account().await;
    let class = python_class();
    let text = class.read("limits.csv").replace(
        "alan@uni.edu,Alan Turing,5.0,5.0",
        "alan@uni.edu,Alan Turing,7.0,5.0",
    );
    class.write("limits.csv", &text);
    let out = class
        .cmd(&fake)
        .args(["refresh-limits-file", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output(&out));
    let report = json(&out);
    assert_eq!(report["rows"], 4, "{report}");
    assert_eq!(
        report["target_differs"],
        serde_json::json!(["alan@uni.edu"]),
        "{report}"
    );
    assert_eq!(fake.count("PATCH").await, 0);
    let rows = csv_rows(&class.path("limits.csv"));
    assert_eq!(rows.len(), 4);
    let alan = limits_row(&rows, "alan@uni.edu");
    assert_eq!(
        (alan["target_limit"].as_str(), alan["actual_limit"].as_str()),
        ("7.0", "5.0")
    );
    assert!(
        rows.iter()
            .all(|r| r["email"] != "barbara.liskov@FIXME.edu")
    );
    let grace = limits_row(&rows, "grace@uni.edu");
    assert_eq!(
        (
            grace["target_disabled"].as_str(),
            grace["actual_disabled"].as_str()
        ),
        ("true", "true")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_keys_then_export_keys_gives_the_real_secrets() {
    let fake = python_account().await;
    let class = python_class();
    let out = class
        .cmd(&fake)
        .args(["import-keys", API_KEYS])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        stdout(&out).contains("imported 4 secret(s); 0 already stored; 0 row(s) not matched"),
        "{}",
        output(&out)
    );
    assert!(!output(&out).contains("sk-or-v1-2f40"), "no secret shown");
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action = 'secret_imported'"),
        4
    );

    // export-keys needs no management key.
    let out = bare(class.dir.path())
        .args(["export-keys", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output(&out));
    let rows = json(&out);
    let mut got: Vec<(String, String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["email"].as_str().unwrap().to_string(),
                r["key_name"].as_str().unwrap().to_string(),
                r["api_key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String, String)> = [
        ("ada@uni.edu", "20261127_Ada Lovelace"),
        ("alan@uni.edu", "20261127_Alan Turing"),
        ("edsger@uni.edu", "20261127_Edsger Dijkstra"),
        ("grace@uni.edu", "20261127_Grace Hopper"),
    ]
    .iter()
    .map(|(e, n)| (e.to_string(), n.to_string(), secret_of_name(n)))
    .collect();
    assert_eq!(got, want);
    let grace = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["email"] == "grace@uni.edu")
        .unwrap();
    assert_eq!(grace["disabled"], serde_json::json!(true));

    // Importing again changes nothing.
    let out = class
        .cmd(&fake)
        .args(["import-keys", API_KEYS])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        stdout(&out).contains("imported 0 secret(s); 4 already stored"),
        "{}",
        output(&out)
    );
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action = 'secret_imported'"),
        4
    );
    assert_eq!(fake.count("POST").await, 0);

    // classkeys' own export is an import file too.
    bare(class.dir.path())
        .args(["export-keys", "--output", "exported.csv"])
        .assert()
        .success();
    let other = python_class();
    std::fs::copy(class.path("exported.csv"), other.path("exported.csv")).unwrap();
    let out = other
        .cmd(&fake)
        .args(["import-keys", "exported.csv"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        stdout(&out).contains("imported 4 secret(s); 0 already stored; 0 row(s) not matched"),
        "{}",
        output(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_keys_refuses_files_without_secrets_and_reports_unmatched_rows() {
    let fake = python_account().await;
    let class = python_class();
    // limits.csv has no api_key column: refused before anything is touched.
    let out = class
        .cmd(&fake)
        .args(["import-keys", API_KEYS, "limits.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output(&out));
    assert!(
        stderr(&out).contains("limits.csv") && stderr(&out).contains("api_key"),
        "{}",
        output(&out)
    );
    assert!(std::fs::read(class.path("keys.db")).unwrap() == fixture_bytes("keys.db"));
    assert!(class.files("keys.db.bak-").is_empty());
    assert!(fake.requests().await.is_empty());

    // A masked label is not a secret.
    class.write(
        "masked.csv",
        "email,name,api_key,key_name\nada@uni.edu,Ada Lovelace,sk-or-v1-2f4...0fdc,20261127_Ada Lovelace\n",
    );
    let out = class
        .cmd(&fake)
        .args(["import-keys", "masked.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output(&out));
    assert!(stderr(&out).contains("line 2"), "{}", output(&out));
    assert!(class.files("keys.db.bak-").is_empty());

    // Rows that match no key of the account are reported, the others imported.
    let ada = secret_of_name("20261127_Ada Lovelace");
    let alan = secret_of_name("20261127_Alan Turing");
    class.write(
        "mixed.csv",
        &format!(
            "email,name,api_key,key_name\r\n\
             ada@uni.edu,Ada Lovelace,{ada},20261127_Ada Lovelace\r\n\
             old@uni.edu,Old Student,sk-or-v1-{zeros},20260901_Old Student\r\n\
             alan@uni.edu,Alan Turing,{wrong},20261127_Alan Turing\r\n\
             edsger@uni.edu,Edsger Dijkstra,{alan},20261127_Alan Turing\r\n",
            zeros = "0".repeat(64),
            wrong = alan.replace("sk-or-v1-14d", "sk-or-v1-99d"),
        ),
    );
    let out = class
        .cmd(&fake)
        .args(["import-keys", "mixed.csv", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output(&out));
    let report = json(&out);
    assert_eq!(report["imported"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["imported"][0]["email"], "ada@uni.edu");
    let unmatched = report["unmatched"].as_array().unwrap();
    let lines: Vec<i64> = unmatched
        .iter()
        .map(|u| u["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4, 5], "{report}");
    assert_eq!(unmatched[0]["email"], "old@uni.edu");
    assert!(
        unmatched[0]["reason"].as_str().unwrap().contains("no key"),
        "{report}"
    );
    assert!(!output(&out).contains(&ada), "no secret shown");
    // Human output names the rows too.
    let out = class
        .cmd(&fake)
        .args(["import-keys", "mixed.csv"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        stderr(&out).contains("mixed.csv: line 3: old@uni.edu"),
        "{}",
        output(&out)
    );
    assert_eq!(
        class.count("SELECT COUNT(*) FROM key WHERE api_key IS NOT NULL"),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_databases_are_refused_untouched() {
    let fake = python_account().await;
    let newer = {
        let class = Class::new("email,name\n");
        bare(class.dir.path()).arg("init-db").assert().success();
        let conn = Connection::open(class.path("keys.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        std::fs::read(class.path("keys.db")).unwrap()
    };
    let other_app = {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("x.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('hi');",
        )
        .unwrap();
        drop(conn);
        std::fs::read(dir.path().join("x.db")).unwrap()
    };
    let python_plus = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        std::fs::write(&path, fixture_bytes("keys.db")).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE grades (email TEXT, grade TEXT);")
            .unwrap();
        drop(conn);
        std::fs::read(&path).unwrap()
    };
    let classkeys_version_other_tables = {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("x.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        std::fs::read(dir.path().join("x.db")).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("another program's SQLite database", other_app, "neither"),
        ("a newer classkeys database", newer, "newer"),
        (
            "text",
            b"email,name\nada@uni.edu,Ada Lovelace\n".to_vec(),
            "not a SQLite database",
        ),
        (
            "a manage_keys.py database with another table",
            python_plus,
            "neither",
        ),
        (
            "another program's database with a user_version",
            classkeys_version_other_tables,
            "neither",
        ),
    ];
    for (what, bytes, says) in cases {
        for args in [
            vec!["check"],
            vec!["provision"],
            vec!["export-keys"],
            vec!["init-db"],
            vec!["import-keys", API_KEYS],
        ] {
            let class = python_class();
            std::fs::write(class.path("keys.db"), &bytes).unwrap();
            let out = class.cmd(&fake).args(&args).output().unwrap();
            let cmd = args.join(" ");
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what}, {cmd}: {}",
                output(&out)
            );
            assert!(
                stderr(&out).contains(says) && stderr(&out).contains("untouched"),
                "{what}, {cmd}: {}",
                output(&out)
            );
            assert!(
                std::fs::read(class.path("keys.db")).unwrap() == bytes,
                "{what}, {cmd}: the file changed"
            );
            assert!(class.files("keys.db.bak-").is_empty(), "{what}, {cmd}");
            assert!(
                class.files("keys.db").len() == 1,
                "{what}, {cmd}: nothing beside it: {:?}",
                class.files("keys.db")
            );
        }
    }
    assert!(fake.requests().await.is_empty(), "nothing was sent");
}
