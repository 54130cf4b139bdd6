//! A hostile account and a hostile folder (issue 11): nothing they do makes classkeys lose a
//! secret, leak one, hang, or send a request it should not.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::common::*;

fn assert_no_secret_or_escape(out: &std::process::Output, what: &str) {
    for (stream, text) in [("stdout", stdout(out)), ("stderr", stderr(out))] {
        assert!(
            !text.contains(SENTINEL),
            "{what}: {stream} shows the management key:\n{text}"
        );
        assert!(
            !text.contains("SENTINEL"),
            "{what}: {stream} shows part of the key:\n{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "{what}: {stream} has a raw escape:\n{text}"
        );
        assert!(!text.contains("panicked"), "{what}: {stream}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_body_that_echoes_the_management_key_is_redacted_everywhere() {
    for status in [400u16, 401, 404, 500] {
        let fake = Fake::start().await;
        let class = Class::new(&roster(1));
        class.cmd(&fake).arg("init-db").assert().success();
        for json in [false, true] {
            // 500 is retried: every try echoes it.
            for _ in 0..40 {
                fake.fault("GET", Fault::Echo(status));
            }
            let mut cmd = class.cmd(&fake);
            cmd.env("CLASSKEYS_RETRY_WINDOW", "1");
            if json {
                cmd.arg("--json");
            }
            let out = cmd.arg("check").output().unwrap();
            assert!(!out.status.success());
            assert_no_secret_or_escape(&out, &format!("{status} json={json}"));
            assert!(stderr(&out).contains("(redacted)"), "{}", stderr(&out));
            fake.state.lock().unwrap().faults.clear();
        }
        for f in class.files("") {
            if f.is_file() {
                let bytes = std::fs::read(&f).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(SENTINEL),
                    "{} holds the key",
                    f.display()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_lock_link_is_refused_and_keys_db_survives() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    let db = std::fs::read(class.path("keys.db")).unwrap();
    std::fs::remove_file(class.path("keys.db.lock")).unwrap();
    let other = class.path("precious.txt");
    std::fs::write(&other, "the instructor's notes\n").unwrap();
    for target in ["keys.db", "precious.txt"] {
        std::os::unix::fs::symlink(class.path(target), class.path("keys.db.lock")).unwrap();
        let out = class.cmd(&fake).arg("check").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("keys.db.lock"), "{}", stderr(&out));
        std::fs::remove_file(class.path("keys.db.lock")).unwrap();
        // A hard link is no lock file either.
        std::fs::hard_link(class.path(target), class.path("keys.db.lock")).unwrap();
        let out = class.cmd(&fake).arg("check").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        std::fs::remove_file(class.path("keys.db.lock")).unwrap();
    }
    // SQLite's side files: a planted link there is refused too.
    for side in ["keys.db-wal", "keys.db-shm", "keys.db-journal"] {
        let had = class.path(side).exists();
        if had {
            std::fs::rename(class.path(side), class.path("moved")).unwrap();
        }
        std::os::unix::fs::symlink(&other, class.path(side)).unwrap();
        let out = class.cmd(&fake).arg("check").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{side}: {}", stderr(&out));
        assert!(stderr(&out).contains(side), "{}", stderr(&out));
        std::fs::remove_file(class.path(side)).unwrap();
        if had {
            std::fs::rename(class.path("moved"), class.path(side)).unwrap();
        }
    }
    assert_eq!(
        std::fs::read(class.path("keys.db")).unwrap(),
        db,
        "keys.db untouched"
    );
    assert_eq!(class.read("precious.txt"), "the instructor's notes\n");
    assert_eq!(class.exported().len(), 2, "every secret still there");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_or_truncated_keys_db_is_refused_not_taken_as_a_new_class() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.write("keys.db", "");
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keys.db is empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fake.count("POST").await, 0);
    assert_eq!(std::fs::read(class.path("keys.db")).unwrap(), b"");
    // Damaged: named, left alone.
    class.write("keys.db", "SQLite format 3\0garbage garbage garbage");
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("keys.db"), "{}", stderr(&out));
    // An explicit init-db on an empty file makes a class.
    class.write("keys.db", "");
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    assert_eq!(fake.keys().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_clock_an_hour_off_never_turns_a_lost_create_into_a_students_key() {
    for skew in [-3600i64, 3600] {
        let fake = Fake::start().await;
        fake.state.lock().unwrap().skew_secs = skew;
        let class = Class::new(&roster(3));
        class.cmd(&fake).arg("init-db").assert().success();
        let out = class
            .cmd(&fake)
            .env("CLASSKEYS_FAULT", "create-answered:2")
            .args(["--jobs", "1", "provision"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        class.cmd(&fake).arg("provision").assert().success();
        let keys = fake.keys();
        assert_eq!(
            keys.len(),
            3,
            "skew {skew}: one key each, the lost one deleted"
        );
        let exported = class.exported();
        assert_eq!(exported.len(), 3, "skew {skew}");
        for row in exported {
            let hash = fake.hash_of(row["key_name"].as_str().unwrap());
            assert_eq!(row["api_key"].as_str(), fake.secret_of(&hash).as_deref());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn import_keys_never_replaces_a_stored_secret() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(1));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    let row = class.exported()[0].clone();
    let real = row["api_key"].as_str().unwrap().to_string();
    // Same first 12 and last 4 characters: fits the masked label, but is not the secret.
    let forged = format!(
        "{}{}{}",
        &real[..12],
        "f".repeat(real.len() - 16),
        &real[real.len() - 4..]
    );
    class.write(
        "forged.csv",
        &format!(
            "email,name,api_key,key_name\n{},{},{forged},{}\n",
            row["email"].as_str().unwrap(),
            row["name"].as_str().unwrap(),
            row["key_name"].as_str().unwrap()
        ),
    );
    let out = class
        .cmd(&fake)
        .args(["import-keys", "forged.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was replaced"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(&forged), "the secret is not printed");
    assert_eq!(class.exported()[0]["api_key"], json!(real));
}

#[tokio::test(flavor = "multi_thread")]
async fn file_modes_are_kept_or_narrowed_never_widened() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    // A keys.db restored from a copy at 0644.
    std::fs::set_permissions(
        class.path("keys.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(
        class.path("roster.csv"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("owner-only"), "{}", stderr(&out));
    assert_eq!(mode(&class.path("keys.db")), 0o600);
    std::fs::set_permissions(
        class.path("limits.csv"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fake.add_key("Stranger", None, false, 0.0);
    class.cmd(&fake).arg("check").assert().success();
    class
        .cmd(&fake)
        .arg("refresh-limits-file")
        .assert()
        .success();
    assert!(
        class.read("roster.csv").contains("FIXME"),
        "the roster was rewritten"
    );
    assert_eq!(mode(&class.path("roster.csv")), 0o600);
    assert_eq!(mode(&class.path("limits.csv")), 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_keys_db_or_folder_is_found_before_anything_is_sent() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(10));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    let text = class.read("limits.csv").replace(",2.0,2.0,", ",3.0,2.0,");
    class.write("limits.csv", &text);
    let db = class.path("keys.db");
    // Fold the journal in, so that the file alone is the database.
    class
        .db()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();
    let out = as_user(&class, &fake, &["update"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
    assert_eq!(fake.count("PATCH").await, 0, "nothing sent");
    // The folder read-only, keys.db writable.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(class.dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let out = as_user(&class, &fake, &["update"]);
    std::fs::set_permissions(class.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not writable"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("not a SQLite database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fake.count("PATCH").await, 0, "nothing sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn hashes_that_are_not_plain_tokens_are_never_put_in_a_path() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    for hash in ["../credits", "x?y=1", "a\\b", "..%2Fcredits"] {
        fake.add_raw(json!({"hash": hash, "name": "20250101_Student 0001", "label": "", "disabled": false, "limit": 1.0, "usage": 0.0}));
    }
    // A key keys.db holds with such a hash (an earlier hostile answer).
    class
        .db()
        .execute(
            "INSERT INTO key (key_hash, email, key_name, owner) VALUES ('../credits', 's0001@uni.edu', 'x', 'class')",
            [],
        )
        .unwrap();
    let before = fake.requests().await.len();
    let out = class
        .cmd(&fake)
        .args(["delete", "--all", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a plain token"),
        "{}",
        stderr(&out)
    );
    // Only the listing and the two deletes of the class's own keys (provision read /credits).
    for (method, path, _) in fake.requests().await.into_iter().skip(before) {
        assert!(
            path.starts_with("/api/v1/keys") && !path.contains("credits") && !path.contains(".."),
            "{method} {path}"
        );
    }
    assert_eq!(
        fake.keys().len(),
        4,
        "the class's two keys deleted, the odd ones left alone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_or_oversized_listing_is_a_clear_error_and_records_nothing() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    fake.state.lock().unwrap().endless = true;
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("1000 pages"), "{}", stderr(&out));
    assert_eq!(class.count("SELECT COUNT(*) FROM usage"), 0);
    {
        let mut st = fake.state.lock().unwrap();
        st.endless = false;
        st.huge_listing = Some(17 * 1024 * 1024);
    }
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("larger than 16 MB"),
        "{}",
        stderr(&out)
    );
    assert_eq!(class.count("SELECT COUNT(*) FROM usage"), 0);
    assert!(class.files("snapshot_").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_odd_keys_are_left_alone_and_the_class_works() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    fake.add_raw(json!({"hash": "f".repeat(64), "name": 42, "limit": "lots", "usage": "x"}));
    fake.add_raw(json!({"hash": "e".repeat(64), "name": "Evil\x1b]0;owned\x07\n\rfine\x1b[2J", "label": "", "disabled": false, "limit": -5.0, "limit_reset": "hourly", "usage": 0.0}));
    fake.add_raw(json!({"hash": "d".repeat(64), "name": "", "label": "", "disabled": false, "limit": null, "usage": 0.0}));
    fake.add_raw(json!({"hash": "c".repeat(64), "name": "n".repeat(1500), "label": "", "disabled": false, "limit": null, "usage": 0.0}));
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_secret_or_escape(&out, "check");
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    // The roster with its new FIXME rows reads back, and every later command works.
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for args in [&["refresh-limits-file"][..], &["update"], &["provision"]] {
        let out = class.cmd(&fake).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_no_secret_or_escape(&out, &format!("{args:?}"));
    }
    let doc = json(&class.cmd(&fake).args(["--json", "check"]).output().unwrap());
    let names: Vec<&str> = doc["fixme"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_name"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.contains("\x1b]0;owned")),
        "JSON stays exact: {names:?}"
    );
    assert_eq!(doc["students"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_that_is_not_quite_json_costs_only_its_odd_keys() {
    let fake = Fake::start().await;
    let class = Class::new("email,name\nada@uni.edu,Ada Lovelace\n");
    class.cmd(&fake).arg("init-db").assert().success();
    let h = |c: char| c.to_string().repeat(64);
    fake.state.lock().unwrap().raw_first_page = Some(format!(
        r#"{{"data": [
            {{"hash": "{}", "name": "NaN usage", "disabled": false, "limit": 1.0, "usage": NaN}},
            {{"hash": "{}", "name": "Lone \ud800 surrogate", "disabled": false, "limit": null, "usage": 0.5}},
            {{"hash": "{}", "name": "20261201_Someone", "disabled": false, "limit": 2.0, "usage": 0.25}}
        ]}}"#,
        h('a'),
        h('b'),
        h('c')
    ));
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read"),
        "the NaN key is reported: {}",
        stderr(&out)
    );
    let roster = class.read("roster.csv");
    assert!(roster.contains("lone.surrogate@FIXME.edu"), "{roster}");
    assert!(roster.contains("someone@FIXME.edu"), "{roster}");
    // The roster it wrote reads back.
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn odd_environment_values_are_exit_2_naming_the_variable() {
    let class = Class::new(&roster(1));
    for value in ["nan", "-1", "inf", "lots", "1e9"] {
        let out = bare(class.dir.path())
            .env("CLASSKEYS_RETRY_WINDOW", value)
            .env("OPENROUTER_PROVISIONING_KEY", SENTINEL)
            .args(["--sandbox", "check"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{value}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("CLASSKEYS_RETRY_WINDOW"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_write_past_the_file_size_limit_is_an_error_not_a_silent_death() {
    let class = Class::new(&roster(300));
    let dir = class.dir.path();
    bare(dir).args(["--sandbox", "init-db"]).assert().success();
    let out = std::process::Command::new("bash")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CLASSKEYS_SANDBOX", "1")
        .arg("-c")
        .arg(format!(
            "ulimit -f 8; exec {} provision",
            assert_cmd::cargo::cargo_bin("classkeys").display()
        ))
        .output()
        .unwrap();
    let code = out.status.code();
    assert!(code.is_some(), "killed by a signal: {:?}", out.status);
    assert_ne!(code, Some(0));
    assert!(
        stderr(&out).contains("classkeys: error:"),
        "{}",
        stderr(&out)
    );
}
