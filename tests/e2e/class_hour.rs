//! During class (issue 14): one-line limit changes and the audit trail at hand.

use serde_json::{Value, json};

use crate::common::*;

fn ok_json(class: &Class, fake: &Fake, args: &[&str]) -> Value {
    let out = class.cmd(fake).arg("--json").args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    json(&out)
}

fn limit_of(fake: &Fake, student: &str) -> Value {
    fake.keys()
        .into_iter()
        .find(|k| k["name"].as_str().unwrap().ends_with(student))
        .unwrap()["limit"]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn set_limit_for_one_several_and_all_and_limits_csv_agrees() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(4));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();

    let doc = ok_json(
        &class,
        &fake,
        &["set-limit", "--email", "s0001@uni.edu", "5"],
    );
    assert_eq!(doc["changes"][0]["new"], json!(5.0), "{doc}");
    assert_eq!(limit_of(&fake, "Student 0001"), json!(5.0));
    let rows = csv_rows(&class.path("limits.csv"));
    let r = rows.iter().find(|r| r["email"] == "s0001@uni.edu").unwrap();
    assert_eq!(
        (r["target_limit"].as_str(), r["actual_limit"].as_str()),
        ("5.0", "5.0")
    );
    // A later update does not undo it.
    let patches = fake.count("PATCH").await;
    class.cmd(&fake).arg("update").assert().success();
    assert_eq!(fake.count("PATCH").await, patches);

    // Several, by a (negative) amount: never below $0.
    ok_json(
        &class,
        &fake,
        &[
            "set-limit",
            "--email",
            "s0002@uni.edu",
            "--email",
            "s0003@uni.edu",
            "--add",
            "-10",
        ],
    );
    assert_eq!(limit_of(&fake, "Student 0002"), json!(0.0));
    assert_eq!(limit_of(&fake, "Student 0003"), json!(0.0));
    assert_eq!(limit_of(&fake, "Student 0004"), json!(2.0));

    // --all asks first: without a terminal and --yes, nothing happens.
    let out = class
        .cmd(&fake)
        .args(["set-limit", "--all", "--add", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let dry = ok_json(
        &class,
        &fake,
        &["set-limit", "--all", "--add", "1", "--dry-run"],
    );
    assert_eq!(dry["changes"].as_array().unwrap().len(), 4, "{dry}");
    assert_eq!(
        limit_of(&fake, "Student 0004"),
        json!(2.0),
        "a dry run sends nothing"
    );
    // An unlimited key stays unlimited; a disabled one is changed too.
    class
        .cmd(&fake)
        .args(["set-limit", "--email", "s0004@uni.edu", "unlimited"])
        .assert()
        .success();
    class
        .cmd(&fake)
        .args(["disable", "--email", "s0003@uni.edu", "--yes"])
        .assert()
        .success();
    let doc = ok_json(
        &class,
        &fake,
        &["set-limit", "--all", "--add", "1", "--yes"],
    );
    assert_eq!(doc["unchanged"], 1, "{doc}");
    assert_eq!(limit_of(&fake, "Student 0001"), json!(6.0));
    assert_eq!(limit_of(&fake, "Student 0003"), json!(1.0));
    assert_eq!(limit_of(&fake, "Student 0004"), Value::Null);
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action = 'limit_changed'"),
        1 + 2 + 1 + 3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_shows_the_changelog_with_each_filter() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    class
        .cmd(&fake)
        .args(["set-limit", "--email", "s0001@uni.edu", "3"])
        .assert()
        .success();
    class
        .cmd(&fake)
        .args(["disable", "--email", "s0002@uni.edu", "--yes"])
        .assert()
        .success();

    let all = json(
        &bare(class.dir.path())
            .args(["--json", "log"])
            .output()
            .unwrap(),
    );
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    for field in ["at", "email", "key_name", "hash", "action", "old", "new"] {
        assert!(all[0].get(field).is_some(), "{field}: {}", all[0]);
    }
    assert_eq!(all[3]["action"], "disabled", "newest last");
    let of = |args: &[&str]| -> Vec<Value> {
        let out = bare(class.dir.path())
            .arg("--json")
            .arg("log")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        json(&out).as_array().unwrap().clone()
    };
    let ada = of(&["--email", "s0001@uni.edu"]);
    assert_eq!(ada.len(), 2);
    assert!(ada.iter().all(|r| r["email"] == "s0001@uni.edu"));
    let changed = of(&["--action", "limit_changed"]);
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0]["old"].as_str(), changed[0]["new"].as_str()),
        (Some("2.0"), Some("3.0"))
    );
    let last = all[3]["at"].as_str().unwrap();
    assert_eq!(of(&["--since", last]).len(), 1, "since is inclusive");
    assert_eq!(of(&["--until", last]).len(), 3, "until is exclusive");
    assert_eq!(
        of(&["--since", "2000-01-01", "--until", "2001-01-01"]).len(),
        0
    );
    let out = bare(class.dir.path())
        .args(["log", "--action", "exploded"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("limit_changed"), "{}", stderr(&out));
    let out = bare(class.dir.path()).arg("log").output().unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("$2.00 → $3.00") && text.contains("4 changes in the changelog"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_shows_used_share_remaining_and_who_is_at_the_limit() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(4));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    let hash = |n: &str| {
        fake.hash_of(&format!(
            "{}_Student {n}",
            chrono::Local::now().format("%Y%m%d")
        ))
    };
    fake.set(&hash("0001"), "usage", json!(0.85));
    fake.set(&hash("0002"), "usage", json!(2.0));
    fake.set(&hash("0003"), "usage", json!(1.7));
    class
        .cmd(&fake)
        .args(["set-limit", "--email", "s0004@uni.edu", "unlimited"])
        .assert()
        .success();
    let doc = ok_json(&class, &fake, &["check"]);
    let s = |email: &str| -> Value {
        doc["students"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["email"] == email)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            s("s0001@uni.edu")["used_percent"].clone(),
            s("s0001@uni.edu")["remaining"].clone()
        ),
        (json!(43), json!(1.15))
    );
    assert_eq!(s("s0002@uni.edu")["remaining"], json!(0.0));
    assert_eq!(s("s0004@uni.edu")["used_percent"], Value::Null);
    assert_eq!(s("s0004@uni.edu")["remaining"], Value::Null);
    assert_eq!(doc["at_limit"], 1);
    let out = class.cmd(&fake).arg("check").output().unwrap();
    let text = stdout(&out);
    let line = |email: &str| {
        text.lines()
            .find(|l| l.contains(email))
            .unwrap()
            .to_string()
    };
    assert!(
        line("s0001@uni.edu").contains("43%") && line("s0001@uni.edu").contains("$1.15"),
        "{text}"
    );
    assert!(line("s0002@uni.edu").contains("at limit"), "{text}");
    assert!(line("s0003@uni.edu").contains("80%+"), "{text}");
    assert!(line("s0004@uni.edu").contains("unlimited"), "{text}");
    assert!(text.contains("1 at the limit, 1 at 80% or more"), "{text}");
}
