//! The main workflow: init-db, check, provision, update, refresh-limits-file, export-keys.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn provision_250_students_across_three_pages_then_rerun_creates_nothing() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(250));
    class.cmd(&fake).arg("init-db").assert().success();
    let out = class
        .cmd(&fake)
        .args(["provision", "--limit", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.keys().len(), 250);
    assert_eq!(fake.count("POST").await, 250);
    // The account is listed once, up front: what the creates answered is not fetched again.
    assert_eq!(
        fake.count("GET").await,
        2,
        "one page of an empty account, and the credits"
    );
    assert_eq!(fake.count("PATCH").await + fake.count("DELETE").await, 0);
    // Every key has its secret in keys.db and in the api_keys file.
    assert_eq!(
        class.count("SELECT COUNT(*) FROM key WHERE api_key LIKE 'sk-or-v1-%'"),
        250
    );
    let files = class.files("api_keys_");
    assert_eq!(files.len(), 1);
    assert_eq!(csv_rows(&files[0]).len(), 250);
    assert_eq!(mode(&files[0]), 0o600);
    assert_eq!(mode(&class.path("keys.db")), 0o600);

    // The re-run reads every page (offset 0, 100, 200) and creates nothing.
    let out = class
        .cmd(&fake)
        .args(["provision", "--limit", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.keys().len(), 250);
    let lists: Vec<String> = fake
        .requests()
        .await
        .into_iter()
        .filter(|r| r.0 == "GET" && r.1.starts_with("/api/v1/keys?"))
        .map(|r| r.1)
        .collect();
    for offset in ["0", "100", "200"] {
        assert!(
            lists
                .iter()
                .any(|q| q.contains(&format!("offset={offset}"))
                    && q.contains("include_disabled=true")),
            "{lists:?}"
        );
    }
    assert_eq!(
        class.files("api_keys_").len(),
        1,
        "a run that creates nothing writes no secrets file"
    );

    let limits = csv_rows(&class.path("limits.csv"));
    assert_eq!(limits.len(), 250);
    assert_eq!(limits[0]["target_limit"], "3.0");
    assert_eq!(limits[0]["actual_limit"], "3.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_keys_and_same_names_get_no_second_key() {
    let fake = Fake::start().await;
    let class = Class::new("email,name\nada@uni.edu,Ada Lovelace\n");
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    let ada = fake.keys()[0]["hash"].as_str().unwrap().to_string();
    fake.set(&ada, "disabled", serde_json::json!(true));
    class.write(
        "roster.csv",
        "email,name\nada@uni.edu,Ada Lovelace\nk1@uni.edu,Kim Lee\nk2@uni.edu,Kim Lee\n",
    );
    class.cmd(&fake).arg("provision").assert().success();
    // Ada's disabled key counts; both Kim Lees get exactly one key each.
    assert_eq!(fake.keys().len(), 3);
    let kims: Vec<String> = class
        .db()
        .prepare("SELECT email FROM key WHERE key_name LIKE '%Kim Lee' ORDER BY email")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(kims, vec!["k1@uni.edu", "k2@uni.edu"]);
    class.cmd(&fake).arg("provision").assert().success();
    assert_eq!(fake.keys().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_adds_unknown_keys_as_fixme_rows_and_records_usage() {
    let fake = Fake::start().await;
    let class = Class::new("email,name\nada@uni.edu,Ada Lovelace\n");
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    let h = fake.keys()[0]["hash"].as_str().unwrap().to_string();
    fake.set(&h, "usage", serde_json::json!(0.75));
    fake.add_key("20250101_Barbara Liskov", Some(3.0), false, 0.25);
    for f in class.files("snapshot_") {
        std::fs::remove_file(f).unwrap();
    }
    let before = class.count("SELECT COUNT(*) FROM usage");
    let out = class.cmd(&fake).arg("check").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        class
            .read("roster.csv")
            .contains("barbara.liskov@FIXME.edu,Barbara Liskov")
    );
    // Usage is the class's history: the FIXME key (not the class's) gets no usage row.
    assert_eq!(class.count("SELECT COUNT(*) FROM usage"), before + 1);
    let snap = class.files("snapshot_");
    assert_eq!(snap.len(), 1);
    let rows = csv_rows(&snap[0]);
    let ada = rows.iter().find(|r| r["email"] == "ada@uni.edu").unwrap();
    assert_eq!(
        (
            ada["hash"].as_str(),
            ada["usage"].as_str(),
            ada["limit"].as_str()
        ),
        (h.as_str(), "0.75", "2.0")
    );
    // The FIXME row is not provisioned.
    class.cmd(&fake).arg("provision").assert().success();
    assert_eq!(fake.keys().len(), 2);
    // Two checks in one second never overwrite each other's snapshot.
    class.cmd(&fake).arg("check").assert().success();
    class.cmd(&fake).arg("check").assert().success();
    assert!(class.files("snapshot_").len() >= 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_sends_unlimited_as_null_and_zero_as_zero() {
    let fake = Fake::start().await;
    let class = Class::new("email,name\na@uni.edu,Ann\nb@uni.edu,Ben\nc@uni.edu,Cy\n");
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    let text = class.read("limits.csv");
    let text = text
        .replacen("a@uni.edu,Ann,2.0", "a@uni.edu,Ann,unlimited", 1)
        .replacen("b@uni.edu,Ben,2.0", "b@uni.edu,Ben,0", 1)
        .replacen("c@uni.edu,Cy,2.0,2.0,false", "c@uni.edu,Cy,2.0,2.0,true", 1);
    class.write("limits.csv", &text);
    let out = class
        .cmd(&fake)
        .args(["update", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.count("PATCH").await, 0);
    let gets = fake.count("GET").await;
    let out = class.cmd(&fake).arg("update").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // One listing up front (a page of keys, then the empty page that ends it) and, since a limit
    // is raised to unlimited, one look at the credits; limits.csv and the snapshot come from the
    // PATCH answers.
    assert_eq!(fake.count("GET").await, gets + 3);
    let credits = fake
        .requests()
        .await
        .iter()
        .filter(|r| r.0 == "GET" && r.1 == "/api/v1/credits")
        .count();
    assert_eq!(
        credits, 3,
        "provision, the dry run and the update each checked the credits"
    );
    let patches: Vec<String> = fake
        .requests()
        .await
        .into_iter()
        .filter(|r| r.0 == "PATCH")
        .map(|r| r.2)
        .collect();
    assert_eq!(patches.len(), 3, "one PATCH per key");
    assert!(
        patches.contains(&r#"{"limit":null}"#.to_string()),
        "{patches:?}"
    );
    assert!(
        patches.contains(&r#"{"limit":0.0}"#.to_string()),
        "{patches:?}"
    );
    assert!(
        patches.contains(&r#"{"disabled":true}"#.to_string()),
        "{patches:?}"
    );
    let by_name = |n: &str| {
        fake.keys_named(&format!("{}_{n}", chrono::Utc::now().format("%Y%m%d")))[0].clone()
    };
    assert_eq!(by_name("Ann")["limit"], json!(null));
    assert_eq!(by_name("Ben")["limit"], json!(0.0));
    assert_eq!(by_name("Cy")["disabled"], json!(true));
    // Audit rows with old and new values.
    assert_eq!(class.count("SELECT COUNT(*) FROM changelog WHERE action='limit_changed' AND old_value='2.0' AND new_value='unlimited'"), 1);
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action='disabled'"),
        1
    );
    // limits.csv keeps the targets and now shows matching actuals.
    let rows = csv_rows(&class.path("limits.csv"));
    let ann = rows.iter().find(|r| r["email"] == "a@uni.edu").unwrap();
    assert_eq!(
        (ann["target_limit"].as_str(), ann["actual_limit"].as_str()),
        ("unlimited", "unlimited")
    );
    // Nothing left to do.
    class.cmd(&fake).arg("update").assert().success();
    assert_eq!(fake.count("PATCH").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_error_message_is_shown_and_exit_is_nonzero() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(3));
    class.cmd(&fake).arg("init-db").assert().success();
    fake.fault("POST", Fault::Status(400));
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Injected failure"),
        "{}",
        stderr(&out)
    );
    let out = class
        .cmd(&fake)
        .env("OPENROUTER_PROVISIONING_KEY", "wrong")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("rejected the management key"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_keys_gives_real_secrets_without_a_management_key() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    class.cmd(&fake).arg("provision").assert().success();
    let rows = class.exported();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let hash = fake
            .keys()
            .into_iter()
            .find(|k| k["name"] == r["key_name"])
            .unwrap()["hash"]
            .clone();
        assert_eq!(
            Some(r["api_key"].as_str().unwrap().to_string()),
            fake.secret_of(hash.as_str().unwrap())
        );
    }
    bare(class.dir.path())
        .args(["export-keys", "--output", "out.csv"])
        .assert()
        .success();
    assert_eq!(mode(&class.path("out.csv")), 0o600);
    assert_eq!(csv_rows(&class.path("out.csv"))[0]["api_key"].len(), 73);
}
