//! The class ledger (issue 10): a class owns its keys by hash, shares an account with other
//! classes and the instructor's own keys, journals every change, and after a crash anywhere
//! its keys.db, changelog and the account agree again.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

fn run(class: &Class, fake: &Fake, args: &[&str]) -> std::process::Output {
    assert_ok(class.cmd(fake).args(args).output().unwrap())
}

fn run_json(class: &Class, fake: &Fake, args: &[&str]) -> Value {
    let out = run(class, fake, &[&["--json"], args].concat());
    json(&out)
}

/// keys.db, its journal and the account tell one story: every live key of the class is on the
/// account as recorded, every key marked deleted is gone, no change is left open, and
/// export-keys hands out only secrets of keys that exist.
fn assert_agrees(class: &Class, fake: &Fake) {
    assert_agrees_but(class, fake, 0);
}

/// The same, with `creates` creates still open: sent (or about to be) when a run died, they
/// may yet land, and stay open until found or old enough that none can.
fn assert_agrees_but(class: &Class, fake: &Fake, creates: i64) {
    let on_account: Vec<Value> = fake.keys();
    let account: HashSet<String> = on_account
        .iter()
        .map(|k| k["hash"].as_str().unwrap().to_string())
        .collect();
    let db = class.db();
    let rows: Vec<(String, bool, bool, String)> = db
        .prepare("SELECT key_hash, deleted_at IS NOT NULL, COALESCE(disabled, 0), owner FROM key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for (hash, deleted, disabled, owner) in &rows {
        if owner != "class" {
            continue;
        }
        if *deleted {
            assert!(
                !account.contains(hash),
                "{hash} is marked deleted but is on the account"
            );
        } else {
            let key = on_account
                .iter()
                .find(|k| k["hash"] == json!(hash))
                .unwrap_or_else(|| panic!("{hash} is live in keys.db but gone from the account"));
            assert_eq!(
                key["disabled"],
                json!(disabled),
                "{hash}: disabled as recorded"
            );
        }
    }
    let open =
        class.count("SELECT COUNT(*) FROM intent WHERE state = 'open' AND action != 'create'");
    assert_eq!(open, 0, "no change is left open in the journal");
    let open = class.count("SELECT COUNT(*) FROM intent WHERE state = 'open'");
    assert_eq!(open, creates, "open creates");
    let secrets: HashSet<String> = account.iter().filter_map(|h| fake.secret_of(h)).collect();
    for row in class.exported() {
        assert!(
            secrets.contains(row["api_key"].as_str().unwrap_or_default()),
            "export-keys hands out a secret of a key that is gone: {row}"
        );
    }
}

fn changelog(class: &Class, action: &str) -> i64 {
    class.count(&format!(
        "SELECT COUNT(*) FROM changelog WHERE action = '{action}'"
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_classes_on_one_account_each_see_and_change_only_their_own_keys() {
    let fake = Fake::start().await;
    // The instructor's own key and last term's keys are on the account too.
    let own = fake.add_key("Instructor laptop", None, false, 3.0);
    let last_term = fake.add_key("20250901_Alex Kim", Some(2.0), false, 1.9);
    for tagged in [false, true] {
        let a = Class::new("email,name\nalex.a@uni.edu,Alex Kim\nada@uni.edu,Ada Lovelace\n");
        let b = Class::new("email,name\nalex.b@uni.edu,Alex Kim\nbo@uni.edu,Bo Chen\n");
        if tagged {
            run(&a, &fake, &["init-db", "--class", "SEC-A"]);
            run(&b, &fake, &["init-db", "--class", "SEC-B"]);
        } else {
            run(&a, &fake, &["init-db"]);
            run(&b, &fake, &["init-db"]);
        }
        let before = fake.keys().len();
        run(&b, &fake, &["provision"]);
        // Class A sees B's Alex Kim (same name, same day) and does not take it.
        let doc = run_json(&a, &fake, &["provision"]);
        assert_eq!(doc["created"].as_array().unwrap().len(), 2, "{doc}");
        assert_eq!(doc["already_had_key"], 0, "{doc}");
        assert_eq!(fake.keys().len(), before + 4);
        let mine = |class: &Class| -> HashSet<String> {
            class
                .exported()
                .iter()
                .map(|r| r["key_name"].as_str().unwrap().to_string())
                .collect()
        };
        if tagged {
            assert!(
                mine(&a).iter().all(|n| n.starts_with("SEC-A_")),
                "{:?}",
                mine(&a)
            );
            assert!(mine(&b).iter().all(|n| n.starts_with("SEC-B_")));
        }
        let check = run_json(&a, &fake, &["check"]);
        let students = check["students"].as_array().unwrap();
        assert_eq!(students.len(), 2, "only A's keys are A's students: {check}");
        assert_eq!(
            check["total_usage"], 0.0,
            "B's, last term's and the instructor's usage are not A's"
        );
        let expected_not_ours = fake.keys().len() - 2;
        assert_eq!(check["not_class_keys"], json!(expected_not_ours), "{check}");
        let roster = a.read("roster.csv");
        if tagged {
            // A tagged class lists no FIXME rows for keys that are not `SEC-A_…`.
            assert_eq!(roster.lines().count(), 3, "{roster}");
        } else {
            // The seed's behaviour: unknown keys become FIXME rows, never students.
            assert!(roster.contains("@FIXME.edu"), "{roster}");
        }
        // The report counts A's students only.
        let report = json(&assert_ok(
            bare(a.dir.path())
                .args(["--json", "report"])
                .output()
                .unwrap(),
        ));
        let rendered = report.to_string();
        assert!(
            !rendered.contains("alex.b@uni.edu") && !rendered.contains("Bo Chen"),
            "{rendered}"
        );
        assert!(!rendered.contains("FIXME"), "{rendered}");

        // A deletes all of its keys: B's, last term's and the instructor's stay.
        run(&a, &fake, &["delete", "--all", "--yes"]);
        let left: HashSet<String> = fake
            .keys()
            .iter()
            .map(|k| k["hash"].as_str().unwrap().to_string())
            .collect();
        assert!(left.contains(&own) && left.contains(&last_term));
        assert_eq!(fake.keys().len(), before + 2);
        assert_agrees(&b, &fake);
        assert_eq!(b.exported().len(), 2, "B's two keys are untouched");
        run(&b, &fake, &["delete", "--all", "--yes"]);
        assert_eq!(fake.keys().len(), before);
        assert_agrees(&a, &fake);
        assert_agrees(&b, &fake);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dismissed_fixme_row_does_not_come_back_and_a_corrected_one_adopts() {
    let fake = Fake::start().await;
    fake.add_key("My own key", None, false, 0.0);
    let barbara = fake.add_key("20250101_Barbara Liskov", Some(3.0), false, 0.5);
    let class = Class::new("email,name\nada@uni.edu,Ada Lovelace\n");
    run(&class, &fake, &["init-db"]);
    run(&class, &fake, &["check"]);
    let roster = class.read("roster.csv");
    assert!(roster.contains("my.own.key@FIXME.edu") && roster.contains("barbara.liskov@FIXME.edu"));
    // The instructor deletes one row and corrects the other.
    class.write(
        "roster.csv",
        "email,name\nada@uni.edu,Ada Lovelace\nbarbara@uni.edu,Barbara Liskov\n",
    );
    let doc = run_json(&class, &fake, &["check"]);
    assert_eq!(doc["added_to_roster"], json!([]), "{doc}");
    assert!(!class.read("roster.csv").contains("FIXME"));
    let barb = doc["students"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["email"] == "barbara@uni.edu")
        .cloned()
        .expect("the corrected row adopts its key");
    assert_eq!(barb["hash"], json!(barbara));
    assert_eq!(changelog(&class, "dismissed"), 1);
    assert_eq!(changelog(&class, "adopted"), 1);
    // Again and again: nothing comes back, and provision makes only Ada's key.
    run(&class, &fake, &["check"]);
    assert!(!class.read("roster.csv").contains("FIXME"));
    let doc = run_json(&class, &fake, &["provision"]);
    assert_eq!(doc["created"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["created"][0]["email"], "ada@uni.edu");
}

#[tokio::test(flavor = "multi_thread")]
async fn adopt_by_name_recovers_a_lost_keys_db() {
    let fake = Fake::start().await;
    let class = Class::new(
        "email,name\nada@uni.edu,Ada Lovelace\nk1@uni.edu,Kim Lee\nk2@uni.edu,Kim Lee\nbo@uni.edu,Bo Chen\n",
    );
    run(&class, &fake, &["init-db"]);
    run(&class, &fake, &["provision"]);
    fake.add_key("Instructor laptop", None, false, 0.0);
    // keys.db is lost.
    std::fs::remove_file(class.path("keys.db")).unwrap();
    for f in ["keys.db-wal", "keys.db-shm"] {
        let _ = std::fs::remove_file(class.path(f));
    }
    run(&class, &fake, &["init-db"]);
    let dry = run_json(&class, &fake, &["adopt", "--by-name", "--dry-run"]);
    assert_eq!(dry["adopted"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(
        class.count("SELECT COUNT(*) FROM key"),
        0,
        "a dry run adopts nothing"
    );
    let doc = run_json(&class, &fake, &["adopt", "--by-name"]);
    let adopted: HashSet<&str> = doc["adopted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        adopted,
        HashSet::from(["ada@uni.edu", "bo@uni.edu"]),
        "{doc}"
    );
    // Two Kim Lees and the instructor's key: left alone, listed with why.
    assert_eq!(doc["left_alone"].as_array().unwrap().len(), 3, "{doc}");
    let posts = fake.count("POST").await;
    let doc = run_json(&class, &fake, &["provision", "--dry-run"]);
    let planned: Vec<&str> = doc["planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["email"].as_str().unwrap())
        .collect();
    assert_eq!(planned, vec!["k1@uni.edu", "k2@uni.edu"], "{doc}");
    assert_eq!(fake.count("POST").await, posts);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_each_change_is_settled_by_the_next_run() {
    // update, disable, delete --all and rotate, each killed after the account answered and
    // before keys.db learned it.
    let cases: &[(&[&str], &str, &str)] = &[
        (&["update"], "limit_changed", "change-answered:3"),
        (
            &["disable", "--all", "--yes"],
            "disabled",
            "change-answered:3",
        ),
        (
            &["delete", "--all", "--yes"],
            "deleted",
            "change-answered:3",
        ),
        (
            &["rotate", "--email", "s0002@uni.edu"],
            "rotated",
            "create-answered:1",
        ),
        (
            &["rotate", "--email", "s0002@uni.edu"],
            "rotated",
            "change-answered:1",
        ),
    ];
    for (args, action, fault) in cases {
        let fake = Fake::start().await;
        let class = Class::new(&roster(6));
        run(&class, &fake, &["init-db"]);
        run(&class, &fake, &["provision"]);
        if args[0] == "update" {
            let text = class.read("limits.csv").replace(",2.0,2.0,", ",5.0,2.0,");
            class.write("limits.csv", &text);
        }
        let out = class
            .cmd(&fake)
            .env("CLASSKEYS_FAULT", fault)
            .args(*args)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{args:?} was to die: {}",
            stderr(&out)
        );
        assert!(
            class.count("SELECT COUNT(*) FROM intent WHERE state = 'open'") > 0,
            "{args:?}: the change in flight is journaled"
        );
        // The next command of any kind settles it; running the same one again finishes the job.
        run(&class, &fake, &["check"]);
        run(&class, &fake, args);
        assert_agrees(&class, &fake);
        let keys = fake.keys();
        match args[0] {
            "update" => {
                assert!(keys.iter().all(|k| k["limit"] == json!(5.0)));
                assert_eq!(
                    changelog(&class, action),
                    6,
                    "one row per change, none twice"
                );
            }
            "disable" => {
                assert!(keys.iter().all(|k| k["disabled"] == json!(true)));
                assert_eq!(changelog(&class, action), 6);
            }
            "delete" => {
                assert!(keys.is_empty());
                assert_eq!(changelog(&class, action), 6);
                assert!(class.exported().is_empty(), "no secret of a deleted key");
            }
            _ => {
                assert_eq!(keys.len(), 6, "one key per student after the rotation");
                let exported = class.exported();
                assert_eq!(exported.len(), 6);
                for row in exported {
                    let hash = fake.hash_of(row["key_name"].as_str().unwrap());
                    assert_eq!(row["api_key"].as_str(), fake.secret_of(&hash).as_deref());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_kill_during_update_and_delete_leaves_nothing_unsettled() {
    for args in [&["update"][..], &["delete", "--all", "--yes"][..]] {
        let fake = Fake::start().await;
        let class = Class::new(&roster(30));
        run(&class, &fake, &["init-db"]);
        run(&class, &fake, &["provision"]);
        let text = class.read("limits.csv").replace(",2.0,2.0,", ",4.0,2.0,");
        class.write("limits.csv", &text);
        fake.state.lock().unwrap().delay = Some(Duration::from_millis(80));
        let mut child = class.spawn(&fake, &[&["--jobs", "4"], args].concat());
        std::thread::sleep(Duration::from_millis(700));
        child.kill().unwrap();
        let _ = child.wait();
        fake.state.lock().unwrap().delay = None;
        run(&class, &fake, args);
        assert_agrees(&class, &fake);
        if args[0] == "update" {
            assert!(fake.keys().iter().all(|k| k["limit"] == json!(4.0)));
            assert_eq!(changelog(&class, "limit_changed"), 30);
        } else {
            assert!(fake.keys().is_empty());
            assert_eq!(changelog(&class, "deleted"), 30);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_that_lands_after_the_rerun_is_cleaned_up_later() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(3));
    run(&class, &fake, &["init-db"]);
    // The process dies with its second create travelling.
    let out = class
        .cmd(&fake)
        .env("CLASSKEYS_FAULT", "create-answered:2")
        .args(["--jobs", "1", "provision"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(fake.keys().len(), 2);
    // The second key is on the account without its secret saved (the first one's may or may
    // not have been committed before the process died: the worker does not wait for it).
    let secrets: HashSet<String> = class
        .exported()
        .iter()
        .map(|r| r["api_key"].as_str().unwrap().to_string())
        .collect();
    let travelling: Vec<String> = fake
        .keys()
        .iter()
        .map(|k| k["hash"].as_str().unwrap().to_string())
        .filter(|h| !secrets.contains(&fake.secret_of(h).unwrap()))
        .collect();
    assert!(!travelling.is_empty() && travelling.len() + secrets.len() == 2);
    // They have not landed yet when the next run lists the account.
    let late: Vec<FakeKey> = travelling.iter().map(|h| fake.take(h).unwrap()).collect();
    run(&class, &fake, &["provision"]);
    assert_eq!(fake.keys().len(), 3);
    assert_eq!(class.exported().len(), 3);
    // The creates that never answered stay open, and so does the one that was journaled but
    // never sent (nothing can tell it from one still travelling).
    assert_eq!(
        class.count("SELECT COUNT(*) FROM intent WHERE state = 'open'"),
        travelling.len() as i64 + 1
    );
    // Then they land: the next run deletes them (nobody has their secret).
    for key in late {
        fake.put(key);
    }
    assert_eq!(fake.keys().len(), 3 + travelling.len());
    run(&class, &fake, &["check"]);
    assert_eq!(fake.keys().len(), 3);
    for h in &travelling {
        assert!(fake.secret_of(h).is_none(), "{h} was deleted");
    }
    assert_eq!(changelog(&class, "discarded"), travelling.len() as i64);
    assert_agrees_but(&class, &fake, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_deleted_in_the_dashboard_is_noticed_and_never_exported() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(3));
    run(&class, &fake, &["init-db"]);
    run(&class, &fake, &["provision"]);
    let gone = fake.hash_of(&format!(
        "{}_Student 0002",
        chrono::Local::now().format("%Y%m%d")
    ));
    fake.take(&gone).unwrap();
    let doc = run_json(&class, &fake, &["check"]);
    assert_eq!(doc["deleted_outside"].as_array().unwrap().len(), 1, "{doc}");
    let looked_up = fake
        .requests()
        .await
        .iter()
        .filter(|r| r.0 == "GET" && r.1.ends_with(&gone))
        .count();
    assert_eq!(looked_up, 1, "looked up by hash once");
    assert_eq!(changelog(&class, "deleted_outside"), 1);
    assert_eq!(class.exported().len(), 2);
    // The student has no key now: provision gives them one.
    let doc = run_json(&class, &fake, &["provision"]);
    assert_eq!(doc["created"][0]["email"], "s0002@uni.edu", "{doc}");
    assert_agrees(&class, &fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn short_pages_and_a_delete_during_the_listing_make_no_duplicate() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(230));
    run(&class, &fake, &["init-db"]);
    run(&class, &fake, &["provision"]);
    assert_eq!(fake.keys().len(), 230);
    // OpenRouter pages by 50; another class deletes 40 of its keys during our listing.
    let other: Vec<String> = (0..60)
        .map(|i| fake.add_key(&format!("OTHER_20250101_Person {i}"), Some(1.0), false, 0.0))
        .collect();
    {
        let mut st = fake.state.lock().unwrap();
        st.page_size = 50;
        st.deleted_after_first_page = other[..40].to_vec();
    }
    let posts = fake.count("POST").await;
    let doc = run_json(&class, &fake, &["provision"]);
    assert_eq!(doc["created"], json!([]), "{doc}");
    assert_eq!(fake.count("POST").await, posts);
    assert_eq!(doc["already_had_key"], 230);
    assert_eq!(fake.keys().len(), 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_update_does_not_undo_a_disable() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(4));
    run(&class, &fake, &["init-db"]);
    run(&class, &fake, &["provision"]);
    fake.state.lock().unwrap().delay = Some(Duration::from_millis(400));
    let disable = class.spawn(&fake, &["disable", "--email", "s0003@uni.edu", "--yes"]);
    std::thread::sleep(Duration::from_millis(150));
    let update = class.spawn(&fake, &["update"]);
    let (d, u) = (
        disable.wait_with_output().unwrap(),
        update.wait_with_output().unwrap(),
    );
    assert!(d.status.success(), "{}", stderr(&d));
    assert!(u.status.success(), "{}", stderr(&u));
    let key = fake
        .keys()
        .into_iter()
        .find(|k| k["name"].as_str().unwrap().ends_with("Student 0003"))
        .unwrap();
    assert_eq!(
        key["disabled"],
        json!(true),
        "update ran after disable and kept it"
    );
    let rows = csv_rows(&class.path("limits.csv"));
    let row = rows.iter().find(|r| r["email"] == "s0003@uni.edu").unwrap();
    assert_eq!(row["target_disabled"], "true");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limits_file_edited_during_a_run_keeps_the_edit() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(3));
    run(&class, &fake, &["init-db"]);
    run(&class, &fake, &["provision"]);
    let text = class
        .read("limits.csv")
        .replacen(",2.0,2.0,", ",3.0,2.0,", 1);
    class.write("limits.csv", &text);
    fake.state.lock().unwrap().delay = Some(Duration::from_millis(500));
    let update = class.spawn(&fake, &["update"]);
    std::thread::sleep(Duration::from_millis(300));
    // While update runs, the instructor gives the third student $9.
    let edited = class.read("limits.csv");
    let lines: Vec<String> = edited
        .lines()
        .map(|l| {
            if l.starts_with("s0003@uni.edu") {
                l.replacen(",2.0,2.0,", ",9.0,2.0,", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    class.write("limits.csv", &(lines.join("\n") + "\n"));
    let out = update.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = csv_rows(&class.path("limits.csv"));
    let third = rows.iter().find(|r| r["email"] == "s0003@uni.edu").unwrap();
    assert_eq!(
        third["target_limit"], "9.0",
        "the edit made during the run is kept"
    );
    let first = rows.iter().find(|r| r["email"] == "s0001@uni.edu").unwrap();
    assert_eq!(first["actual_limit"], "3.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_paths_to_one_keys_db_share_one_lock() {
    let fake = Fake::start().await;
    let a = Class::new(&roster(40));
    run(&a, &fake, &["init-db"]);
    // A second folder whose keys.db is a symlink to the first one's.
    let b = Class::new(&roster(40));
    std::os::unix::fs::symlink(a.path("keys.db"), b.path("keys.db")).unwrap();
    fake.state.lock().unwrap().delay = Some(Duration::from_millis(20));
    let (x, y) = (
        a.spawn(&fake, &["--jobs", "2", "provision"]),
        b.spawn(&fake, &["--jobs", "2", "provision"]),
    );
    let (x, y) = (x.wait_with_output().unwrap(), y.wait_with_output().unwrap());
    assert!(x.status.success(), "{}", stderr(&x));
    assert!(y.status.success(), "{}", stderr(&y));
    assert_eq!(fake.keys().len(), 40, "one key per student, not two");
    assert!(
        !b.path("keys.db.lock").exists(),
        "the lock is beside the real keys.db"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_and_real_classes_never_mix() {
    let fake = Fake::start().await;
    let real = Class::new(&roster(2));
    run(&real, &fake, &["init-db"]);
    run(&real, &fake, &["provision"]);
    let posts = fake.count("POST").await;
    let before = std::fs::read(real.path("keys.db")).unwrap();
    for args in [
        &["provision"][..],
        &["check"],
        &["update"],
        &[
            "sandbox",
            "spend",
            "--email",
            "s0001@uni.edu",
            "--amount",
            "1",
        ],
    ] {
        let out = real
            .cmd(&fake)
            .env("CLASSKEYS_SANDBOX", "1")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("unset CLASSKEYS_SANDBOX"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(fake.count("POST").await, posts);
    assert!(
        !real.path("sandbox.json").exists(),
        "no sandbox made in a real class"
    );
    assert_eq!(std::fs::read(real.path("keys.db")).unwrap(), before);
    // And the other way round.
    let rehearsal = Class::new(&roster(2));
    assert_ok(
        bare(rehearsal.dir.path())
            .args(["--sandbox", "init-db"])
            .output()
            .unwrap(),
    );
    assert_ok(
        bare(rehearsal.dir.path())
            .args(["--sandbox", "provision"])
            .output()
            .unwrap(),
    );
    let out = rehearsal.cmd(&fake).arg("provision").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--sandbox"), "{}", stderr(&out));
    assert_eq!(fake.count("POST").await, posts);
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_keeps_a_disabled_students_state() {
    let fake = Fake::start().await;
    let class = Class::new("email,name\nada@uni.edu,Ada Lovelace\nbo@uni.edu,Bo Chen\n");
    run(&class, &fake, &["init-db"]);
    run(&class, &fake, &["provision", "--limit", "5"]);
    let date = chrono::Local::now().format("%Y%m%d").to_string();
    let ada = fake.hash_of(&format!("{date}_Ada Lovelace"));
    fake.set(&ada, "usage", json!(1.25));
    run(
        &class,
        &fake,
        &["disable", "--email", "ada@uni.edu", "--yes"],
    );
    run(&class, &fake, &["rotate", "--email", "ada@uni.edu"]);
    let keys = fake.keys_named(&format!("{date}_Ada Lovelace"));
    assert_eq!(keys.len(), 1);
    let new = &keys[0];
    assert_ne!(new["hash"], json!(ada));
    assert_eq!(
        new["disabled"],
        json!(true),
        "a rotation does not re-enable"
    );
    assert_eq!(new["limit"], json!(3.75), "what she had left, not a refill");
    // --fresh-limit gives the full limit (of the key being rotated).
    run(
        &class,
        &fake,
        &["rotate", "--email", "bo@uni.edu", "--fresh-limit"],
    );
    let bo = &fake.keys_named(&format!("{date}_Bo Chen"))[0];
    assert_eq!(bo["limit"], json!(5.0));
    assert_eq!(bo["disabled"], json!(false));
    assert_agrees(&class, &fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn change_email_and_drop_student_keep_the_history() {
    let fake = Fake::start().await;
    let class = Class::new(
        "email,name,section\nada@uni.edu,Ada Lovelace,A\nbob@uni.edu,Bob Jones,B\ncy@uni.edu,Cy Young,A\n",
    );
    run(&class, &fake, &["init-db"]);
    run(&class, &fake, &["provision"]);
    let keys = fake.keys().len();
    let doc = run_json(
        &class,
        &fake,
        &[
            "change-email",
            "--email",
            "ada@uni.edu",
            "--to",
            "ada.lovelace@uni.edu",
        ],
    );
    assert_eq!(doc["keys_moved"], 1, "{doc}");
    let roster = class.read("roster.csv");
    assert!(
        roster.contains("ada.lovelace@uni.edu,Ada Lovelace,A") && !roster.contains("ada@uni.edu"),
        "{roster}"
    );
    assert!(class.read("limits.csv").contains("ada.lovelace@uni.edu"));
    assert_eq!(changelog(&class, "email_changed"), 1);
    let doc = run_json(&class, &fake, &["provision"]);
    assert_eq!(doc["created"], json!([]), "the key moved with her: {doc}");
    assert_eq!(fake.keys().len(), keys);

    // bob leaves the class.
    let doc = run_json(
        &class,
        &fake,
        &["drop-student", "--email", "bob@uni.edu", "--yes"],
    );
    assert_eq!(doc["keys"], 1, "{doc}");
    assert!(!class.read("roster.csv").contains("bob@uni.edu"));
    assert!(!class.read("limits.csv").contains("bob@uni.edu"));
    let bob = fake.keys_named(&format!(
        "{}_Bob Jones",
        chrono::Local::now().format("%Y%m%d")
    ));
    assert_eq!(bob[0]["disabled"], json!(true));
    run(&class, &fake, &["check"]);
    assert!(
        !class.read("roster.csv").contains("bob"),
        "a dropped student is never added back"
    );
    assert_eq!(changelog(&class, "dropped"), 1);
    assert!(class.count("SELECT COUNT(*) FROM usage WHERE key_hash IN (SELECT key_hash FROM key WHERE email = 'bob@uni.edu')") > 0, "history kept");
    // cy leaves with her key deleted.
    run(
        &class,
        &fake,
        &["drop-student", "--email", "cy@uni.edu", "--delete", "--yes"],
    );
    assert_eq!(fake.keys().len(), keys - 1);
    assert_agrees(&class, &fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hand_edited_email_makes_no_second_key() {
    let fake = Fake::start().await;
    let class = Class::new("email,name\nada@uni.ed,Ada Lovelace\nbo@uni.edu,Bo Chen\n");
    run(&class, &fake, &["init-db"]);
    run(&class, &fake, &["provision"]);
    // The typo is fixed by hand in roster.csv.
    class.write(
        "roster.csv",
        "email,name\nada@uni.edu,Ada Lovelace\nbo@uni.edu,Bo Chen\n",
    );
    let out = run(&class, &fake, &["check"]);
    assert!(
        stdout(&out).contains("classkeys change-email --email ada@uni.ed --to ada@uni.edu"),
        "{}",
        stdout(&out)
    );
    assert!(
        !class.read("roster.csv").contains("ada@uni.ed,"),
        "the old email is not re-added"
    );
    let out = run(&class, &fake, &["provision"]);
    assert_eq!(fake.keys().len(), 2, "no second key");
    assert!(stderr(&out).contains("change-email"), "{}", stderr(&out));
    run(
        &class,
        &fake,
        &[
            "change-email",
            "--email",
            "ada@uni.ed",
            "--to",
            "ada@uni.edu",
        ],
    );
    let doc = run_json(&class, &fake, &["check"]);
    assert_eq!(doc["students"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(doc["renamed"], json!([]));
    assert_eq!(fake.keys().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn pseudonymous_names_send_no_name_or_email_and_everything_still_matches() {
    let fake = Fake::start().await;
    let class = Class::new(
        "email,name\nada@uni.edu,Ada Lovelace\nkim1@uni.edu,Kim Lee\nkim2@uni.edu,Kim Lee\n",
    );
    run(
        &class,
        &fake,
        &["init-db", "--class", "CS1", "--key-names", "pseudonymous"],
    );
    run(&class, &fake, &["provision"]);
    run(&class, &fake, &["rotate", "--email", "kim2@uni.edu"]);
    run(
        &class,
        &fake,
        &[
            "change-email",
            "--email",
            "ada@uni.edu",
            "--to",
            "ada.l@uni.edu",
        ],
    );
    run(
        &class,
        &fake,
        &["disable", "--email", "ada.l@uni.edu", "--yes"],
    );
    for (method, path, body) in fake.requests().await {
        for word in ["Ada", "Lovelace", "Kim", "Lee", "uni.edu", "ada", "kim"] {
            assert!(
                !body.contains(word) && !path.contains(word),
                "{method} {path} carries {word}: {body}"
            );
        }
    }
    let date = chrono::Local::now().format("%Y%m%d").to_string();
    for key in fake.keys() {
        let name = key["name"].as_str().unwrap();
        let hex = name
            .strip_prefix(&format!("CS1_{date}_"))
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(hex.len(), 10, "{name}");
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
    let names: HashSet<String> = fake
        .keys()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 3, "two students of one name get two names");
    // Matching, reports and exports work as before, through keys.db.
    let doc = run_json(&class, &fake, &["check"]);
    assert_eq!(doc["students"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(class.exported().len(), 3);
    assert_agrees(&class, &fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_in_a_workspace_names_it_on_every_listing_and_create() {
    let fake = Fake::start().await;
    // A key in the default workspace with a student's name: not visible, not touched.
    fake.add_key("20260101_Ada Lovelace", Some(2.0), false, 0.0);
    let class = Class::new("email,name\nada@uni.edu,Ada Lovelace\nbo@uni.edu,Bo Chen\n");
    run(&class, &fake, &["init-db", "--workspace", "cs101"]);
    assert_eq!(
        class
            .db()
            .query_row(
                "SELECT value FROM class_meta WHERE name = 'workspace'",
                [],
                |r| r.get::<_, String>(0)
            )
            .unwrap(),
        WORKSPACE_ID,
        "the slug is resolved and the id kept"
    );
    run(&class, &fake, &["provision"]);
    run(&class, &fake, &["check"]);
    for (method, path, body) in fake.requests().await {
        if method == "GET" && path.starts_with("/api/v1/keys?") {
            assert!(
                path.contains(&format!("workspace_id={WORKSPACE_ID}")),
                "{path}"
            );
        }
        if method == "POST" {
            assert!(body.contains(WORKSPACE_ID), "{body}");
        }
    }
    let in_ws = fake
        .keys()
        .iter()
        .filter(|k| k["workspace_id"] == json!(WORKSPACE_ID))
        .count();
    assert_eq!(in_ws, 2);
    let doc = run_json(&class, &fake, &["check"]);
    assert_eq!(
        doc["not_class_keys"], 0,
        "the default workspace is not listed: {doc}"
    );
    let out = class
        .cmd(&fake)
        .args(["init-db", "--workspace", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// Keys gone from the account (deleted in the dashboard) are looked up together, each marked
/// once; a lookup that fails for another reason stops the run without marking that key.
#[tokio::test(flavor = "multi_thread")]
async fn many_keys_deleted_outside_are_each_looked_up_and_marked() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(30));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let hashes: Vec<String> = fake
        .keys()
        .iter()
        .map(|k| k["hash"].as_str().unwrap().to_string())
        .collect();
    for h in &hashes[..25] {
        fake.take(h).unwrap();
    }
    // One lookup answers 400: the run stops; what was marked is truly gone, the key asked
    // about is not marked.
    fake.fault(&format!("GET {}", hashes[0]), Fault::Status(400));
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(class.count("SELECT COUNT(*) FROM changelog WHERE action = 'deleted_outside'") < 25);
    assert_eq!(
        class.count(&format!(
            "SELECT COUNT(*) FROM changelog WHERE action = 'deleted_outside' AND key_hash = '{}'",
            hashes[0]
        )),
        0
    );
    let before = class.count("SELECT COUNT(*) FROM changelog WHERE action = 'deleted_outside'");
    let out = assert_ok(class.cmd(&fake).arg("check").output().unwrap());
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action = 'deleted_outside'"),
        25
    );
    assert_eq!(
        stderr(&out).matches("deleted outside classkeys").count() as i64,
        25 - before,
        "each key is said once"
    );
    let lookups = fake
        .requests()
        .await
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.starts_with("/api/v1/keys/"))
        .count();
    assert!(lookups >= 25, "{lookups}");
}

/// A rotate of a disabled student killed after the new key was saved but before it was
/// disabled: the next run disables it (a create cannot say "disabled"; the journal remembers).
#[tokio::test(flavor = "multi_thread")]
async fn a_rotate_killed_before_disabling_the_new_key_is_finished_by_the_next_run() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    assert_ok(
        class
            .cmd(&fake)
            .args(["disable", "--email", "s0001@uni.edu", "--yes"])
            .output()
            .unwrap(),
    );
    let out = class
        .cmd(&fake)
        .env("CLASSKEYS_FAULT", "create-saved:1")
        .args(["rotate", "--email", "s0001@uni.edu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let name = format!("{}_Student 0001", chrono::Utc::now().format("%Y%m%d"));
    let keys = fake.keys_named(&name);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k["disabled"] == serde_json::json!(false)),
        "the new key is still enabled after the kill"
    );
    let out = assert_ok(class.cmd(&fake).arg("check").output().unwrap());
    assert!(
        stderr(&out).contains("disabled 1 re-issued key(s)"),
        "{}",
        stderr(&out)
    );
    for k in fake.keys_named(&name) {
        assert_eq!(k["disabled"], serde_json::json!(true), "{k}");
    }
    // Done once: enabling the key later is not undone by the next run.
    assert_ok(
        class
            .cmd(&fake)
            .args(["enable", "--email", "s0001@uni.edu", "--yes"])
            .output()
            .unwrap(),
    );
    assert_ok(class.cmd(&fake).arg("check").output().unwrap());
    assert!(
        fake.keys_named(&name)
            .iter()
            .any(|k| k["disabled"] == serde_json::json!(false))
    );
}
