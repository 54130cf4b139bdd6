//! Issue 5 (inputs and outputs): bad input gets a clear error and changes nothing; exit codes;
//! `--json` for every command; per-student limits and `--expires`; limit resets in limits.csv;
//! completions; help; no colour where none is wanted.
//!
//! A bad input is run against a fresh fake that must receive no request at all, and the class
//! folder (keys.db, roster, limits, every other file) must be byte for byte as it was.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use crate::common::*;
use serde_json::{Value, json};

const ROSTER: &str = "email,name\nada@uni.edu,Ada Lovelace\nbob@uni.edu,Bob Jones\n";

const LIMITS_HEADER: &str = "email,name,target_limit,actual_limit,target_disabled,actual_disabled,key_name,hash,target_limit_reset,actual_limit_reset";

/// Commands that read roster.csv (update, rotate and the toggles read limits.csv too).
const ROSTER_READERS: &[&[&str]] = &[
    &["check"],
    &["provision"],
    &["provision", "--dry-run"],
    &["update"],
    &["update", "--dry-run"],
    &["refresh-limits-file"],
    &["rotate", "--email", "ada@uni.edu"],
    &["disable", "--email", "ada@uni.edu", "--yes"],
    &["enable", "--all", "--yes"],
    &["delete", "--all", "--dry-run"],
];

/// Commands that read limits.csv.
const LIMITS_READERS: &[&[&str]] = &[
    &["provision"],
    &["provision", "--dry-run"],
    &["update"],
    &["update", "--dry-run"],
    &["refresh-limits-file"],
    &["rotate", "--email", "ada@uni.edu"],
    &["disable", "--all", "--yes"],
    &["delete", "--email", "bob@uni.edu", "--yes"],
    &["enable", "--all", "--dry-run"],
];

/// Where the error must point.
#[derive(Clone, Copy, Debug)]
enum At {
    Line(u64),
    /// A line, whichever it is (binary garbage).
    SomeLine,
    /// The file only (it cannot be read at all).
    File,
}

/// Every entry of the folder and its bytes (None for a folder).
/// Every file of the folder and its bytes, but the lock file: it holds only who last held the
/// lock (the lock comes first, before any input is read).
fn folder(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name() != "keys.db.lock"))
        .map(|e| {
            let e = e.unwrap();
            let path = e.path();
            let bytes = path.is_file().then(|| std::fs::read(&path).unwrap());
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// No panic, no backtrace, no escape sequence (these runs never have a terminal).
fn assert_clean(out: &Output, what: &str) {
    for (stream, text) in [("stdout", stdout(out)), ("stderr", stderr(out))] {
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace", "\x1b["] {
            assert!(
                !text.contains(bad),
                "{what}: {stream} contains {bad:?}:\n{text}"
            );
        }
    }
}

fn assert_bad_input(out: &Output, what: &str, file: &str, at: At, words: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{what}: exit code\n{err}");
    assert_clean(out, what);
    assert!(
        out.stdout.is_empty(),
        "{what}: bad input prints nothing on stdout:\n{}",
        stdout(out)
    );
    assert!(
        err.starts_with("classkeys: error: "),
        "{what}: one error line first:\n{err}"
    );
    assert!(
        err.len() < 2000,
        "{what}: a short message, not {} bytes",
        err.len()
    );
    assert!(err.contains(file), "{what}: names {file}:\n{err}");
    match at {
        At::Line(n) => assert!(
            err.contains(&format!("line {n}:")),
            "{what}: names line {n}:\n{err}"
        ),
        At::SomeLine => assert!(err.contains("line "), "{what}: names a line:\n{err}"),
        At::File => {}
    }
    for w in words {
        assert!(
            err.to_lowercase().contains(&w.to_lowercase()),
            "{what}: says {w:?}:\n{err}"
        );
    }
}

/// Run every command of `runs` (plain and with --json) against a fake that must see nothing,
/// and check that the folder is exactly as it was.
async fn assert_rejected(
    class: &Class,
    case: &str,
    runs: &[&[&str]],
    file: &str,
    at: At,
    words: &[&str],
) {
    let quiet = Fake::start().await;
    let before = folder(class.dir.path());
    for args in runs {
        for json in [false, true] {
            let mut cmd = class.cmd(&quiet);
            if json {
                cmd.arg("--json");
            }
            let out = cmd.args(*args).output().unwrap();
            let what = format!("{file}, {case}: classkeys {}", args.join(" "));
            assert_bad_input(&out, &what, file, at, words);
        }
    }
    assert!(
        quiet.requests().await.is_empty(),
        "{file}, {case}: requests were sent: {:?}",
        quiet.requests().await
    );
    assert_eq!(
        folder(class.dir.path()),
        before,
        "{file}, {case}: the folder changed"
    );
    drop(quiet);
}

/// A class whose two students have keys: keys.db, limits.csv, api_keys and snapshot files.
async fn provisioned() -> Class {
    let fake = Fake::start().await;
    let class = Class::new(ROSTER);
    class.cmd(&fake).arg("init-db").assert().success();
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(class.path("limits.csv").exists());
    drop(fake);
    class
}

/// Put `bytes` at `name`, or a folder when `None`.
fn put(class: &Class, name: &str, bytes: Option<&[u8]>) {
    let path = class.path(name);
    if path.is_dir() {
        std::fs::remove_dir(&path).unwrap();
    } else if path.exists() {
        std::fs::remove_file(&path).unwrap();
    }
    match bytes {
        Some(b) => std::fs::write(&path, b).unwrap(),
        None => std::fs::create_dir(&path).unwrap(),
    }
}

/// The nasty inputs every CSV reader must turn into a clean exit-2 error.
fn nasty(header: &str) -> Vec<(&'static str, Vec<u8>, At)> {
    let mut garbage = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x >> 24) as u8);
    }
    let long_line = format!("{header}\n{}\n", "a".repeat(1 << 20));
    let long_cell = format!("{header}\nada@uni.edu,{}\n", "A".repeat(1 << 20));
    let open_quote = format!("{header}\nada@uni.edu,\"Ada Lovelace\nbob@uni.edu,Bob Jones\n");
    let open_quote_first = format!("{header}\n\"ada@uni.edu,Ada Lovelace\nbob@uni.edu,Bob Jones\n");
    vec![
        ("empty file", Vec::new(), At::Line(1)),
        ("only a BOM", b"\xEF\xBB\xBF".to_vec(), At::Line(1)),
        ("blank lines", b"\n\r\n  \n".to_vec(), At::Line(1)),
        ("binary garbage", garbage, At::SomeLine),
        ("NUL bytes", b"\0\0\0,\0\n\0".to_vec(), At::Line(1)),
        ("a 1 MB line", long_line.into_bytes(), At::Line(2)),
        ("a 1 MB cell", long_cell.into_bytes(), At::Line(2)),
        ("a quote left open", open_quote.into_bytes(), At::Line(2)),
        (
            "a quote left open at the start",
            open_quote_first.into_bytes(),
            At::Line(2),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_roster_exits_2_names_file_and_line_and_sends_nothing() {
    let class = provisioned().await;
    let good = class.read("roster.csv");
    let cases: Vec<(&str, &[u8], At, &[&str])> = vec![
        (
            "missing column",
            b"mail,name\nada@uni.edu,Ada Lovelace\n",
            At::Line(1),
            &["missing column", "email"],
        ),
        (
            "missing name column",
            b"email\nada@uni.edu\n",
            At::Line(1),
            &["missing column", "name"],
        ),
        (
            "empty email",
            b"email,name\nada@uni.edu,Ada Lovelace\n,Bob Jones\n",
            At::Line(3),
            &["email is empty"],
        ),
        (
            "blank email",
            b"email,name\nada@uni.edu,Ada Lovelace\n   ,Bob Jones\n",
            At::Line(3),
            &["email is empty"],
        ),
        (
            "malformed email",
            b"email,name\nada@uni.edu,Ada Lovelace\nbob-at-uni.edu,Bob Jones\n",
            At::Line(3),
            &["bob-at-uni.edu", "not an email"],
        ),
        (
            "email with a space",
            b"email,name\nada@uni.edu,Ada Lovelace\nbob jones@uni.edu,Bob Jones\n",
            At::Line(3),
            &["not an email"],
        ),
        (
            "duplicate email",
            b"email,name\nada@uni.edu,Ada Lovelace\nbob@uni.edu,Bob\nADA@uni.edu,Ada Again\n",
            At::Line(4),
            &["duplicate", "line 2"],
        ),
        (
            "empty name",
            b"email,name\nada@uni.edu,Ada Lovelace\nbob@uni.edu,\n",
            At::Line(3),
            &["name", "empty"],
        ),
        (
            "negative limit",
            b"email,name,limit\nada@uni.edu,Ada Lovelace,2\nbob@uni.edu,Bob Jones,-1\n",
            At::Line(3),
            &["-1", "non-negative"],
        ),
        (
            "non-numeric limit",
            b"email,name,limit\nada@uni.edu,Ada Lovelace,2\nbob@uni.edu,Bob Jones,lots\n",
            At::Line(3),
            &["lots", "number"],
        ),
        (
            "infinite limit",
            b"email,name,limit\nada@uni.edu,Ada Lovelace,2\nbob@uni.edu,Bob Jones,1e999\n",
            At::Line(3),
            &["non-negative"],
        ),
        (
            "unknown limit_reset",
            b"email,name,limit_reset\nada@uni.edu,Ada Lovelace,weekly\nbob@uni.edu,Bob Jones,hourly\n",
            At::Line(3),
            &["hourly", "daily, weekly, monthly"],
        ),
        (
            "a comma in an unquoted name",
            b"email,name\nada@uni.edu,Lovelace, Ada\n",
            At::Line(2),
            &["double quotes"],
        ),
        (
            "not UTF-8 (Latin-1)",
            b"email,name\nada@uni.edu,Ada Lovelace\nbob@uni.edu,Bob Ren\xe9\n",
            At::Line(3),
            &["not UTF-8", "CSV UTF-8"],
        ),
        (
            "not UTF-8, with a BOM and CRLF",
            b"\xEF\xBB\xBFemail,name\r\nada@uni.edu,Ada Lovelace\r\n\r\nbob@uni.edu,Bob Ren\xe9\r\n",
            At::Line(4),
            &["not UTF-8"],
        ),
        (
            "error after a BOM and CRLF",
            b"\xEF\xBB\xBFemail,name\r\nada@uni.edu,Ada Lovelace\r\nbob@uni\r\n",
            At::Line(3),
            &["not an email"],
        ),
        (
            "header only",
            b"email,name\n",
            At::Line(2),
            &["no students"],
        ),
    ];
    for (what, bytes, at, words) in cases {
        put(&class, "roster.csv", Some(bytes));
        assert_rejected(&class, what, ROSTER_READERS, "roster.csv", at, words).await;
    }
    for (what, bytes, at) in nasty("email,name") {
        put(&class, "roster.csv", Some(&bytes));
        assert_rejected(&class, what, ROSTER_READERS, "roster.csv", at, &[]).await;
    }
    // Unreadable: a folder where the file should be, and no file at all.
    put(&class, "roster.csv", None);
    assert_rejected(
        &class,
        "a folder",
        ROSTER_READERS,
        "roster.csv",
        At::File,
        &["folder"],
    )
    .await;
    std::fs::remove_dir(class.path("roster.csv")).unwrap();
    assert_rejected(
        &class,
        "no such file",
        ROSTER_READERS,
        "roster.csv",
        At::File,
        &["no such file"],
    )
    .await;
    // --roster names another file: the message names that one.
    put(&class, "roster.csv", Some(good.as_bytes()));
    let quiet = Fake::start().await;
    let out = class
        .cmd(&quiet)
        .args(["check", "--roster", "class-b.csv"])
        .output()
        .unwrap();
    assert_bad_input(&out, "--roster", "class-b.csv", At::File, &["no such file"]);
    assert!(quiet.requests().await.is_empty());
    drop(quiet);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_limits_exits_2_names_file_and_line_and_sends_nothing() {
    let class = provisioned().await;
    let row = |email: &str, limit: &str, disabled: &str, reset: &str| {
        format!("{email},Someone,{limit},2.0,{disabled},false,k,h,{reset},none\n")
    };
    let file = |rows: &[String]| format!("{LIMITS_HEADER}\n{}", rows.concat());
    let ada = row("ada@uni.edu", "2.0", "false", "none");
    let cases: Vec<(&str, String, At, &[&str])> = vec![
        (
            "missing target_limit",
            "email,name,actual_limit\nada@uni.edu,Ada,2.0\n".into(),
            At::Line(1),
            &["missing column", "target_limit"],
        ),
        (
            "missing email",
            "name,target_limit\nAda,2.0\n".into(),
            At::Line(1),
            &["missing column", "email"],
        ),
        (
            "empty email",
            file(&[ada.clone(), row("", "2.0", "false", "none")]),
            At::Line(3),
            &["email is empty"],
        ),
        (
            "malformed email",
            file(&[ada.clone(), row("bob.uni.edu", "2.0", "false", "none")]),
            At::Line(3),
            &["bob.uni.edu", "not an email"],
        ),
        (
            "duplicate email",
            file(&[ada.clone(), row("Ada@Uni.edu", "3.0", "false", "none")]),
            At::Line(3),
            &["duplicate", "line 2"],
        ),
        (
            "negative target_limit",
            file(&[ada.clone(), row("bob@uni.edu", "-2", "false", "none")]),
            At::Line(3),
            &["target_limit", "non-negative"],
        ),
        (
            "non-numeric target_limit",
            file(&[ada.clone(), row("bob@uni.edu", "two", "false", "none")]),
            At::Line(3),
            &["target_limit", "two"],
        ),
        (
            "unknown target_limit_reset",
            file(&[
                ada.clone(),
                row("bob@uni.edu", "2.0", "false", "fortnightly"),
            ]),
            At::Line(3),
            &["target_limit_reset", "fortnightly"],
        ),
        (
            "target_disabled not a yes/no",
            file(&[ada.clone(), row("bob@uni.edu", "2.0", "maybe", "none")]),
            At::Line(3),
            &["target_disabled", "maybe"],
        ),
        (
            "not UTF-8",
            format!("{LIMITS_HEADER}\n{ada}"),
            At::Line(3),
            &["not UTF-8"],
        ),
    ];
    for (what, text, at, words) in cases {
        let mut bytes = text.into_bytes();
        if what == "not UTF-8" {
            bytes.extend_from_slice(b"bob@uni.edu,Bob Ren\xe9,2.0,2.0,false,false,k,h,none,none\n");
        }
        put(&class, "limits.csv", Some(&bytes));
        assert_rejected(&class, what, LIMITS_READERS, "limits.csv", at, words).await;
    }
    let header = "email,target_limit";
    for (what, bytes, at) in nasty(header) {
        put(&class, "limits.csv", Some(&bytes));
        assert_rejected(&class, what, LIMITS_READERS, "limits.csv", at, &[]).await;
    }
    put(&class, "limits.csv", None);
    assert_rejected(
        &class,
        "a folder",
        LIMITS_READERS,
        "limits.csv",
        At::File,
        &["folder"],
    )
    .await;
    // update needs the file; the others write it.
    std::fs::remove_dir(class.path("limits.csv")).unwrap();
    assert_rejected(
        &class,
        "no limits.csv",
        &[&["update"], &["update", "--dry-run"]],
        "limits.csv",
        At::File,
        &["not found", "refresh-limits-file"],
    )
    .await;
    // update with a limits file that has no rows: nothing it could apply.
    put(
        &class,
        "limits.csv",
        Some(format!("{LIMITS_HEADER}\n").as_bytes()),
    );
    assert_rejected(
        &class,
        "a limits.csv without rows",
        &[&["update"], &["update", "--dry-run"]],
        "limits.csv",
        At::File,
        &["no rows", "refresh-limits-file"],
    )
    .await;
    // update: a row whose student is not on the roster.
    put(
        &class,
        "limits.csv",
        Some(file(&[ada.clone(), row("carol@uni.edu", "2.0", "false", "none")]).as_bytes()),
    );
    assert_rejected(
        &class,
        "a student not on the roster",
        &[&["update"], &["update", "--dry-run"]],
        "limits.csv",
        At::Line(3),
        &["carol@uni.edu", "not in roster.csv"],
    )
    .await;
}

const KEYS_HEADER: &str = "email,name,api_key,key_name";

fn secret(n: u64) -> String {
    format!("sk-or-v1-{n:064x}")
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_import_files_exit_2_name_file_and_line_and_send_nothing() {
    let class = provisioned().await;
    let ada = format!(
        "ada@uni.edu,Ada Lovelace,{},20250101_Ada Lovelace\n",
        secret(1)
    );
    let bob =
        |email: &str, key: &str, key_name: &str| format!("{email},Bob Jones,{key},{key_name}\n");
    let ok_bob = bob("bob@uni.edu", &secret(2), "20250101_Bob Jones");
    let cases: Vec<(&str, String, At, &[&str])> = vec![
        (
            "no api_key column",
            "email,name,key_name\nada@uni.edu,Ada,20250101_Ada\n".to_string(),
            At::Line(1),
            &["api_key"],
        ),
        (
            "no email column",
            format!("name,api_key,key_name\nAda,{},20250101_Ada\n", secret(1)),
            At::Line(1),
            &["missing column", "email"],
        ),
        (
            "no key_name column",
            format!("email,name,api_key\nada@uni.edu,Ada,{}\n", secret(1)),
            At::Line(1),
            &["missing column", "key_name"],
        ),
        (
            "empty email",
            format!(
                "{KEYS_HEADER}\n{ada}{}",
                bob("", &secret(2), "20250101_Bob Jones")
            ),
            At::Line(3),
            &["email is empty"],
        ),
        (
            "malformed email",
            format!(
                "{KEYS_HEADER}\n{ada}{}",
                bob("bob@", &secret(2), "20250101_Bob Jones")
            ),
            At::Line(3),
            &["not an email"],
        ),
        (
            "duplicate email",
            format!(
                "{KEYS_HEADER}\n{ada}{}",
                bob("ADA@uni.edu", &secret(2), "20250101_Bob Jones")
            ),
            At::Line(3),
            &["duplicate", "line 2"],
        ),
        (
            "empty key_name",
            format!("{KEYS_HEADER}\n{ada}{}", bob("bob@uni.edu", &secret(2), "")),
            At::Line(3),
            &["key_name", "empty"],
        ),
        (
            "a masked label instead of a secret",
            format!(
                "{KEYS_HEADER}\n{ada}{}",
                bob("bob@uni.edu", "sk-or-v1-0e6...1c96", "20250101_Bob Jones")
            ),
            At::Line(3),
            &["masked"],
        ),
        (
            "no secret",
            format!(
                "{KEYS_HEADER}\n{ada}{}",
                bob("bob@uni.edu", "", "20250101_Bob Jones")
            ),
            At::Line(3),
            &["api_key"],
        ),
        (
            "header only",
            format!("{KEYS_HEADER}\n"),
            At::Line(2),
            &["no keys"],
        ),
    ];
    for (what, text, at, words) in cases {
        put(&class, "keys.csv", Some(text.as_bytes()));
        assert_rejected(
            &class,
            what,
            &[&["import-keys", "keys.csv"]],
            "keys.csv",
            at,
            words,
        )
        .await;
    }
    let mut latin1 = format!("{KEYS_HEADER}\n{ada}").into_bytes();
    latin1.extend_from_slice(format!("bob@uni.edu,Bob Ren\u{e9},{},x\n", secret(2)).as_bytes());
    let latin1: Vec<u8> = String::from_utf8(latin1)
        .unwrap()
        .chars()
        .map(|c| c as u32 as u8)
        .collect();
    put(&class, "keys.csv", Some(&latin1));
    assert_rejected(
        &class,
        "not UTF-8",
        &[&["import-keys", "keys.csv"]],
        "keys.csv",
        At::Line(3),
        &["not UTF-8"],
    )
    .await;
    for (what, bytes, at) in nasty(KEYS_HEADER) {
        put(&class, "keys.csv", Some(&bytes));
        assert_rejected(
            &class,
            what,
            &[&["import-keys", "keys.csv"]],
            "keys.csv",
            at,
            &[],
        )
        .await;
    }
    put(&class, "keys.csv", None);
    assert_rejected(
        &class,
        "a folder",
        &[&["import-keys", "keys.csv"]],
        "keys.csv",
        At::File,
        &["folder"],
    )
    .await;
    std::fs::remove_dir(class.path("keys.csv")).unwrap();
    assert_rejected(
        &class,
        "no such file",
        &[&["import-keys", "keys.csv"]],
        "keys.csv",
        At::File,
        &["no such file"],
    )
    .await;
    // A good first file and a bad second one: nothing is imported from either.
    put(
        &class,
        "good.csv",
        Some(format!("{KEYS_HEADER}\n{ada}{ok_bob}").as_bytes()),
    );
    put(
        &class,
        "bad.csv",
        Some(format!("{KEYS_HEADER}\n{ada}{}", bob("bob", &secret(2), "x")).as_bytes()),
    );
    assert_rejected(
        &class,
        "a bad second file",
        &[&["import-keys", "good.csv", "bad.csv"]],
        "bad.csv",
        At::Line(3),
        &["not an email"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bom_spaces_and_crlf_are_accepted_everywhere() {
    let fake = Fake::start().await;
    let class = Class::new("");
    put(
        &class,
        "roster.csv",
        Some(b"\xEF\xBB\xBF Email , Name , Limit , Limit_Reset \r\n ada@uni.edu , Ada Lovelace , $5 , Weekly \r\n\r\nbob@uni.edu,Bob Jones,,\r\n"),
    );
    class.cmd(&fake).arg("init-db").assert().success();
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clean(&out, "provision");
    let date = chrono::Local::now().format("%Y%m%d").to_string();
    let posts = post_bodies(&fake).await;
    let ada = &posts[&format!("{date}_Ada Lovelace")];
    assert_eq!(
        (&ada["limit"], &ada["limit_reset"]),
        (&json!(5.0), &json!("weekly"))
    );
    assert_eq!(posts[&format!("{date}_Bob Jones")]["limit"], json!(2.0));

    // limits.csv saved by a spreadsheet: BOM, CRLF, spaces around cells.
    let text = class
        .read("limits.csv")
        .replace('\n', "\r\n")
        .replace(',', " , ");
    let text = text.replacen(
        "ada@uni.edu , Ada Lovelace , 5.0",
        "ada@uni.edu , Ada Lovelace , 7.5",
        1,
    );
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(text.as_bytes());
    put(&class, "limits.csv", Some(&bytes));
    let out = class.cmd(&fake).arg("update").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let patches: Vec<String> = bodies(&fake, "PATCH").await;
    assert_eq!(patches, vec![r#"{"limit":7.5}"#.to_string()]);

    // An api_keys file the same way: the secret is imported.
    let export = bare(class.dir.path())
        .args(["export-keys", "--format", "json"])
        .output()
        .unwrap();
    let rows = json(&export);
    let ada = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["email"] == "ada@uni.edu")
        .unwrap()
        .clone();
    let fresh = Class::new(&class.read("roster.csv"));
    fresh.cmd(&fake).arg("init-db").assert().success();
    let file = format!(
        "\u{feff} email , name , api_key , key_name \r\n {} , {} , {} , {} \r\n",
        ada["email"].as_str().unwrap(),
        ada["name"].as_str().unwrap(),
        ada["api_key"].as_str().unwrap(),
        ada["key_name"].as_str().unwrap()
    );
    fresh.write("keys.csv", &file);
    let out = fresh
        .cmd(&fake)
        .args(["--json", "import-keys", "keys.csv"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out)["imported"].as_array().unwrap().len(),
        1,
        "{}",
        stdout(&out)
    );
    drop(fake);
}

/// POST /keys bodies by key name.
async fn post_bodies(fake: &Fake) -> BTreeMap<String, Value> {
    bodies(fake, "POST")
        .await
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_str(b).unwrap();
            (v["name"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// The bodies of every `method` request the fake received, in order.
async fn bodies(fake: &Fake, method: &str) -> Vec<String> {
    fake.requests()
        .await
        .into_iter()
        .filter(|r| r.0 == method)
        .map(|r| r.2)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes() {
    let fake = Fake::start().await;
    let class = Class::new(ROSTER);

    // --help documents them.
    let out = bare(class.dir.path()).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for line in [
        "Exit codes:",
        "0  done",
        "1  failed",
        "2  bad usage or bad input",
        "3  the management key is missing",
        "4  another classkeys",
    ] {
        assert!(help.contains(line), "--help lacks {line:?}:\n{help}");
    }

    // 2: bad usage, before anything else.
    for args in [
        &["check", "--frobnicate"][..],
        &["--jobs", "99", "check"],
        &["--jobs", "0", "check"],
        &["--timeout", "0", "check"],
        &["--timeout", "soon", "check"],
        &[],
        &["frobnicate"],
        &["export-keys", "--format", "xml"],
        &["delete"],
        &["delete", "--all", "--email", "ada@uni.edu"],
        &["rotate"],
        &["import-keys"],
        &["provision", "--limit", "lots"],
        &["provision", "--limit=-1"],
        &["completions", "tcsh"],
    ] {
        let out = class.cmd(&fake).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_clean(&out, &format!("{args:?}"));
        assert!(out.stdout.is_empty(), "{args:?}: {}", stdout(&out));
    }
    // 2: a keys.db that is not there.
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("init-db"), "{}", stderr(&out));
    // 2: --email of someone not on the roster, before anything is read from the account.
    class.cmd(&fake).arg("init-db").assert().success();
    for args in [
        &["rotate", "--email", "eve@uni.edu"][..],
        &["disable", "--email", "eve@uni.edu", "--yes"],
        &["enable", "--email", "eve@uni.edu", "--yes"],
        &[
            "delete",
            "--email",
            "ada@uni.edu",
            "--email",
            "eve@uni.edu",
            "--yes",
        ],
    ] {
        let out = class.cmd(&fake).args(args).output().unwrap();
        let cmd = args[0];
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        assert!(stderr(&out).contains("eve@uni.edu"), "{}", stderr(&out));
    }
    // 2: a change that needs a confirmation nobody can give (no terminal, no --yes).
    for cmd in ["disable", "enable", "delete"] {
        let out = class.cmd(&fake).args([cmd, "--all"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    }
    // 2: a base URL that would send the key in clear text.
    let out = class
        .cmd(&fake)
        .env("OPENROUTER_BASE_URL", "http://openrouter.example/api/v1")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        fake.requests().await.is_empty(),
        "bad usage sends nothing: {:?}",
        fake.requests().await
    );

    // 0.
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // 3: no management key; the message names the variable. Nothing is sent.
    let sent = fake.requests().await.len();
    for key in [None, Some(""), Some("   ")] {
        for args in [
            &["check"][..],
            &["provision"],
            &["--json", "disable", "--all", "--yes"],
        ] {
            let mut cmd = bare(class.dir.path());
            cmd.env("OPENROUTER_BASE_URL", fake.url());
            if let Some(k) = key {
                cmd.env("OPENROUTER_PROVISIONING_KEY", k);
            }
            let out = cmd.args(args).output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(3),
                "{key:?} {args:?}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("OPENROUTER_PROVISIONING_KEY"),
                "{}",
                stderr(&out)
            );
            assert_clean(&out, "no key");
        }
    }
    assert_eq!(fake.requests().await.len(), sent);
    // 3: a rejected key (401) and a key that is not a management key (403), in plain words.
    let out = class
        .cmd(&fake)
        .env("OPENROUTER_PROVISIONING_KEY", "sk-or-v1-not-the-right-one")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("rejected"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("sk-or-v1-"), "{}", stderr(&out));
    fake.fault("GET", Fault::Status(403));
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a management key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fake.count("POST").await, 0);

    // 1: a 500 that does not go away within the retry window.
    for _ in 0..200 {
        fake.fault("GET", Fault::Status(500));
    }
    let out = class
        .cmd(&fake)
        .env("CLASSKEYS_RETRY_WINDOW", "0.5")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("500"), "{}", stderr(&out));
    assert_clean(&out, "500");
    fake.state.lock().unwrap().faults.clear();
    // 1: a 400 on a change.
    class.cmd(&fake).arg("provision").assert().success();
    class.write(
        "limits.csv",
        &class.read("limits.csv").replacen(
            "ada@uni.edu,Ada Lovelace,2.0",
            "ada@uni.edu,Ada Lovelace,9",
            1,
        ),
    );
    fake.fault("PATCH", Fault::Status(400));
    let out = class
        .cmd(&fake)
        .args(["--json", "update"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Injected failure"),
        "{}",
        stderr(&out)
    );
    let doc = json(&out);
    assert_eq!(doc["failed"].as_array().unwrap().len(), 1, "{doc}");
    drop(fake);
}

/// Run a command with --json: it succeeds, stdout is exactly one JSON document, and (unless
/// it is export-keys) no secret appears anywhere.
fn run_json(class: &Class, fake: &Fake, args: &[&str]) -> Value {
    let out = class.cmd(fake).args(args).output().unwrap();
    let what = args.join(" ");
    assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
    assert_clean(&out, &what);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON document ({e}):\n{}",
            stdout(&out)
        )
    });
    assert!(doc.is_object() || doc.is_array(), "{what}: {doc}");
    assert!(!stdout(&out).contains(SENTINEL) && !stderr(&out).contains(SENTINEL));
    if !args.contains(&"export-keys") || args.contains(&"--output") {
        assert!(
            !stdout(&out).contains("sk-or-v1-") && !stderr(&out).contains("sk-or-v1-"),
            "{what}: a secret in the output:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
    }
    doc
}

#[tokio::test(flavor = "multi_thread")]
async fn json_for_every_command() {
    let fake = Fake::start().await;
    fake.add_key("20240101_Someone Else", Some(1.0), false, 0.5);
    let class = Class::new(
        "email,name\nada@uni.edu,Ada Lovelace\nbob@uni.edu,Bob Jones\ncy@uni.edu,Cy Young\n",
    );

    let doc = run_json(&class, &fake, &["--json", "init-db"]);
    assert!(doc["schema"].is_number(), "{doc}");
    run_json(&class, &fake, &["init-db", "--json"]);

    let doc = run_json(
        &class,
        &fake,
        &[
            "--json",
            "provision",
            "--dry-run",
            "--expires",
            "2031-01-01",
        ],
    );
    assert_eq!(doc["dry_run"], json!(true));
    assert_eq!(doc["planned"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(
        doc["planned"][0]["expires_at"],
        json!("2031-01-01T23:59:59Z")
    );
    assert_eq!(fake.count("POST").await, 0);

    let doc = run_json(&class, &fake, &["provision", "--json"]);
    let created = doc["created"].as_array().unwrap();
    assert_eq!(created.len(), 3, "{doc}");
    for s in created {
        for field in [
            "email", "name", "key_name", "hash", "usage", "limit", "disabled",
        ] {
            assert!(s.get(field).is_some(), "created lacks {field}: {s}");
        }
    }

    let doc = run_json(&class, &fake, &["--json", "check"]);
    let students = doc["students"].as_array().unwrap();
    assert_eq!(
        students.len(),
        3,
        "three students; the FIXME row apart: {doc}"
    );
    assert_eq!(doc["fixme"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["not_class_keys"], json!(1), "{doc}");
    let ada = students
        .iter()
        .find(|s| s["email"] == "ada@uni.edu")
        .unwrap();
    for field in [
        "email", "name", "key_name", "hash", "usage", "limit", "disabled",
    ] {
        assert!(ada.get(field).is_some(), "students lack {field}: {ada}");
    }
    assert_eq!(doc["added_to_roster"].as_array().unwrap().len(), 1, "{doc}");

    class.write(
        "limits.csv",
        &class.read("limits.csv").replacen(
            "ada@uni.edu,Ada Lovelace,2.0",
            "ada@uni.edu,Ada Lovelace,4",
            1,
        ),
    );
    let doc = run_json(&class, &fake, &["--json", "update", "--dry-run"]);
    assert_eq!(doc["changes"][0]["new"], json!("4.0"), "{doc}");
    assert_eq!(fake.count("PATCH").await, 0);
    let doc = run_json(&class, &fake, &["--json", "update"]);
    assert_eq!(doc["changes"][0]["applied"], json!(true), "{doc}");
    assert_eq!(fake.count("PATCH").await, 1);

    let doc = run_json(&class, &fake, &["--json", "refresh-limits-file"]);
    assert!(doc["rows"].is_number(), "{doc}");

    let doc = run_json(&class, &fake, &["--json", "export-keys"]);
    assert_eq!(doc.as_array().unwrap().len(), 3, "{doc}");
    assert!(doc[0]["api_key"].as_str().unwrap().starts_with("sk-or-v1-"));
    let doc = run_json(
        &class,
        &fake,
        &["--json", "export-keys", "--output", "out.json"],
    );
    assert!(doc.is_object(), "{doc}");
    assert!(class.read("out.json").contains("sk-or-v1-"));

    let doc = run_json(
        &class,
        &fake,
        &["--json", "rotate", "--email", "ada@uni.edu", "--dry-run"],
    );
    assert_eq!(doc["rotated"].as_array().unwrap().len(), 1, "{doc}");
    // The same student twice is one rotation: one new key, the old one gone.
    let posts = fake.count("POST").await;
    let doc = run_json(
        &class,
        &fake,
        &[
            "--json",
            "rotate",
            "--email",
            "ada@uni.edu",
            "--email",
            "ADA@uni.edu",
        ],
    );
    assert_eq!(doc["rotated"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["rotated"][0]["old_deleted"], json!(true), "{doc}");
    assert_eq!(fake.count("POST").await, posts + 1);
    let date = chrono::Local::now().format("%Y%m%d").to_string();
    assert_eq!(fake.keys_named(&format!("{date}_Ada Lovelace")).len(), 1);

    for (args, n) in [
        (&["disable", "--email", "bob@uni.edu", "--dry-run"][..], 1),
        (&["disable", "--email", "bob@uni.edu", "--yes"], 1),
        (&["enable", "--all", "--dry-run"], 1),
        (&["enable", "--all", "--yes"], 1),
        (&["delete", "--email", "cy@uni.edu", "--dry-run"], 1),
        (&["delete", "--email", "cy@uni.edu", "--yes"], 1),
        (&["delete", "--email", "cy@uni.edu", "--yes"], 0),
    ] {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let doc = run_json(&class, &fake, &all);
        assert_eq!(doc["keys"].as_array().unwrap().len(), n, "{args:?}: {doc}");
    }

    let first = class.files("api_keys_")[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let doc = run_json(&class, &fake, &["--json", "import-keys", &first]);
    assert!(doc["unmatched"].is_array(), "{doc}");
    drop(fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn roster_limits_and_resets_go_into_the_new_keys() {
    let fake = Fake::start().await;
    let class = Class::new(
        "email,name,limit,limit_reset\n\
         a@uni.edu,Ann,5,weekly\n\
         b@uni.edu,Ben,,monthly\n\
         c@uni.edu,Cy,unlimited,\n\
         d@uni.edu,Di,0,daily\n\
         e@uni.edu,Ed,$1.25,none\n\
         f@uni.edu,Fay,-0,\n",
    );
    class.cmd(&fake).arg("init-db").assert().success();
    let out = class
        .cmd(&fake)
        .args(["provision", "--limit", "3", "--expires", "2030-01-31"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let date = chrono::Local::now().format("%Y%m%d").to_string();
    let posts = post_bodies(&fake).await;
    let body = |n: &str| posts[&format!("{date}_{n}")].clone();
    assert_eq!(
        body("Ann"),
        json!({"name": format!("{date}_Ann"), "limit": 5.0, "limit_reset": "weekly", "expires_at": "2030-01-31T23:59:59Z"})
    );
    assert_eq!(
        (
            body("Ben")["limit"].clone(),
            body("Ben")["limit_reset"].clone()
        ),
        (json!(3.0), json!("monthly"))
    );
    let cy = body("Cy");
    assert!(
        cy.get("limit").is_some_and(Value::is_null),
        "unlimited is null: {cy}"
    );
    assert!(cy.get("limit_reset").is_none_or(Value::is_null), "{cy}");
    assert_eq!(body("Di")["limit"], json!(0.0), "zero is a real limit");
    assert_eq!(body("Di")["limit_reset"], json!("daily"));
    assert_eq!(body("Ed")["limit"], json!(1.25));
    assert!(body("Ed").get("limit_reset").is_none_or(Value::is_null));
    let fay = bodies(&fake, "POST")
        .await
        .into_iter()
        .find(|b| b.contains("_Fay"))
        .unwrap();
    assert!(fay.contains(r#""limit":0.0"#), "-0 is sent as 0: {fay}");
    for n in ["Ann", "Ben", "Cy", "Di", "Ed"] {
        assert_eq!(body(n)["expires_at"], json!("2030-01-31T23:59:59Z"));
    }
    // limits.csv shows the resets.
    let rows = csv_rows(&class.path("limits.csv"));
    let ann = rows.iter().find(|r| r["email"] == "a@uni.edu").unwrap();
    assert_eq!(
        (
            ann["target_limit_reset"].as_str(),
            ann["actual_limit_reset"].as_str()
        ),
        ("weekly", "weekly")
    );
    drop(fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn expires_is_sent_as_utc_and_bad_dates_send_nothing() {
    let fake = Fake::start().await;
    let class = Class::new("email,name\na@uni.edu,Ann\n");
    class.cmd(&fake).arg("init-db").assert().success();
    for bad in [
        "2020-01-01",
        "2020-01-01T00:00:00Z",
        "next tuesday",
        "2030-02-30",
        "31/01/2030",
        "",
    ] {
        let out = class
            .cmd(&fake)
            .args(["provision", "--expires", bad])
            .output()
            .unwrap();
        assert_bad_input(&out, bad, "--expires", At::File, &[]);
    }
    assert!(
        fake.requests().await.is_empty(),
        "{:?}",
        fake.requests().await
    );
    let out = class
        .cmd(&fake)
        .args(["provision", "--expires", "2030-06-01T12:00:00+02:00"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let posts: Vec<Value> = post_bodies(&fake).await.into_values().collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["expires_at"], json!("2030-06-01T10:00:00Z"));
    drop(fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_applies_target_limit_reset_and_refresh_shows_the_actual_one() {
    let fake = Fake::start().await;
    let class = Class::new(
        "email,name,limit_reset\na@uni.edu,Ann,\nb@uni.edu,Ben,monthly\nc@uni.edu,Cy,daily\n",
    );
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    let text = class.read("limits.csv");
    let edited: String = text
        .lines()
        .map(|l| {
            let mut cells: Vec<String> = l.split(',').map(String::from).collect();
            match cells[0].as_str() {
                "a@uni.edu" => cells[8] = "Weekly".into(),
                "b@uni.edu" => cells[8] = "none".into(),
                _ => {}
            }
            cells.join(",") + "\n"
        })
        .collect();
    class.write("limits.csv", &edited);
    let out = class
        .cmd(&fake)
        .args(["--json", "update", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out)["changes"].as_array().unwrap().len(),
        2,
        "{}",
        stdout(&out)
    );
    assert_eq!(fake.count("PATCH").await, 0);
    let out = class.cmd(&fake).arg("update").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut patches: Vec<String> = bodies(&fake, "PATCH").await;
    patches.sort();
    assert_eq!(
        patches,
        vec![r#"{"limit_reset":"weekly"}"#, r#"{"limit_reset":null}"#]
    );
    let rows = csv_rows(&class.path("limits.csv"));
    let get = |e: &str| rows.iter().find(|r| r["email"] == e).unwrap().clone();
    assert_eq!(
        (
            get("a@uni.edu")["target_limit_reset"].as_str(),
            get("a@uni.edu")["actual_limit_reset"].as_str()
        ),
        ("weekly", "weekly")
    );
    assert_eq!(
        (
            get("b@uni.edu")["target_limit_reset"].as_str(),
            get("b@uni.edu")["actual_limit_reset"].as_str()
        ),
        ("none", "none")
    );
    assert_eq!(get("c@uni.edu")["actual_limit_reset"], "daily");
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action='limit_reset_changed'"),
        2
    );

    // Someone changes a reset on the website: refresh-limits-file shows it, keeps the target.
    let hash = get("c@uni.edu")["hash"].clone();
    fake.set(&hash, "limit_reset", json!("monthly"));
    class
        .cmd(&fake)
        .arg("refresh-limits-file")
        .assert()
        .success();
    let rows = csv_rows(&class.path("limits.csv"));
    let cy = rows.iter().find(|r| r["email"] == "c@uni.edu").unwrap();
    assert_eq!(
        (
            cy["target_limit_reset"].as_str(),
            cy["actual_limit_reset"].as_str()
        ),
        ("daily", "monthly")
    );

    // A limits.csv in the Python tool's 8 columns works and gains the reset columns.
    let python: String = class
        .read("limits.csv")
        .lines()
        .map(|l| l.split(',').take(8).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    class.write("limits.csv", &python);
    let out = class.cmd(&fake).arg("update").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fake.count("PATCH").await,
        2,
        "no reset column, no reset change"
    );
    let rows = csv_rows(&class.path("limits.csv"));
    assert!(
        rows[0].contains_key("target_limit_reset") && rows[0].contains_key("actual_limit_reset")
    );
    drop(fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_for_every_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = bare(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.len() > 500 && script.contains("provision"),
            "{shell}: {script}"
        );
        assert!(script.contains("refresh-limits-file"), "{shell}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn help_for_every_command_and_option() {
    use clap::CommandFactory;
    let dir = tempfile::tempdir().unwrap();
    let root = classkeys::cli::Cli::command();
    let mut paths: Vec<Vec<String>> = Vec::new();
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        for arg in cmd.get_arguments() {
            if matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                !help.trim().is_empty(),
                "classkeys {}: option {} has no help line",
                path.join(" "),
                arg.get_id()
            );
        }
        for sub in cmd.get_subcommands() {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            assert!(
                sub.get_about().is_some(),
                "classkeys {}: no about",
                p.join(" ")
            );
            out.push(p.clone());
            walk(sub, p, out);
        }
    }
    walk(&root, Vec::new(), &mut paths);
    assert!(paths.len() >= 15, "{paths:?}");
    for path in paths {
        let mut args = path.clone();
        args.push("--help".into());
        let out = bare(dir.path()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("Example"),
            "classkeys {}: no example:\n{}",
            args.join(" "),
            stdout(&out)
        );
        assert_clean(&out, &args.join(" "));
    }
}

/// The command's output through a pseudo-terminal (util-linux `script`), or None without one.
fn through_a_terminal(dir: &Path, fake: &Fake, env: &[(&str, &str)], args: &str) -> Option<String> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let bin = assert_cmd::cargo::cargo_bin("classkeys");
    let mut cmd = std::process::Command::new(script);
    cmd.env_clear()
        .current_dir(dir)
        .env("PATH", "/usr/bin:/bin")
        .env("TERM", "xterm-256color")
        .env("TZ", "UTC")
        .env("OPENROUTER_PROVISIONING_KEY", SENTINEL)
        .env("OPENROUTER_BASE_URL", fake.url())
        .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_colour_with_no_color_and_no_escapes_off_a_terminal() {
    let fake = Fake::start().await;
    let class = Class::new(ROSTER);
    class.cmd(&fake).arg("init-db").assert().success();
    // Off a terminal: no escape sequence in either stream, warnings included.
    let out = class
        .cmd(&fake)
        .args(["provision", "--dry-run", "--limit", "unlimited"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning:"), "{}", stderr(&out));
    assert_clean(&out, "off a terminal");
    let out = class
        .cmd(&fake)
        .args(["--jobs", "99", "check"])
        .output()
        .unwrap();
    assert_clean(&out, "clap error off a terminal");

    // On a terminal the warning is coloured, unless NO_COLOR is set.
    let args = "provision --dry-run --limit unlimited";
    let Some(coloured) = through_a_terminal(class.dir.path(), &fake, &[], args) else {
        eprintln!("no `script` here: the terminal half of this test did not run");
        return;
    };
    assert!(
        coloured.contains("\x1b["),
        "a terminal gets colour:\n{coloured}"
    );
    let plain = through_a_terminal(class.dir.path(), &fake, &[("NO_COLOR", "1")], args).unwrap();
    assert!(plain.contains("warning:"), "{plain}");
    assert!(!plain.contains("\x1b["), "NO_COLOR: {plain:?}");
    let plain = through_a_terminal(
        class.dir.path(),
        &fake,
        &[("NO_COLOR", "1")],
        "--jobs 99 check",
    )
    .unwrap();
    assert!(plain.contains("--jobs"), "{plain}");
    assert!(!plain.contains("\x1b["), "NO_COLOR, clap: {plain:?}");
    drop(fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_is_no_panic() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(30));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    for args in [
        &["check"][..],
        &["--json", "check"],
        &["export-keys"],
        &["provision", "--dry-run"],
    ] {
        let bin = assert_cmd::cargo::cargo_bin("classkeys");
        let mut child = std::process::Command::new(bin)
            .env_clear()
            .current_dir(class.dir.path())
            .env("OPENROUTER_PROVISIONING_KEY", SENTINEL)
            .env("OPENROUTER_BASE_URL", fake.url())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_clean(&out, &format!("{args:?} with stdout closed"));
        assert_ne!(out.status.code(), Some(101), "{args:?}: {}", stderr(&out));
    }
    drop(fake);
}
