//! Issue 6: rotate, delete, disable, enable, and the credits check before provisioning.

use crate::common::*;
use serde_json::json;

async fn provisioned(n: usize) -> (Fake, Class) {
    let fake = Fake::start().await;
    let class = Class::new(&roster(n));
    class.cmd(&fake).arg("init-db").assert().success();
    let out = class
        .cmd(&fake)
        .args(["provision", "--limit", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (fake, class)
}

fn hash_of(class: &Class, email: &str) -> String {
    class
        .db()
        .query_row(
            "SELECT key_hash FROM key WHERE email = ?1 AND deleted_at IS NULL",
            [email],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_makes_a_new_key_then_deletes_the_old_one() {
    let (fake, class) = provisioned(3).await;
    let old = hash_of(&class, "s0001@uni.edu");
    fake.set(&old, "limit_reset", json!("weekly"));
    fake.set(&old, "expires_at", json!("2030-01-01T00:00:00Z"));
    let out = class
        .cmd(&fake)
        .args(["rotate", "--email", "s0001@uni.edu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        fake.secret_of(&old).is_none(),
        "the old key is gone from the account"
    );
    let new = hash_of(&class, "s0001@uni.edu");
    assert_ne!(new, old);
    let post = fake
        .requests()
        .await
        .into_iter()
        .rfind(|r| r.0 == "POST")
        .unwrap()
        .2;
    let body: serde_json::Value = serde_json::from_str(&post).unwrap();
    let today = chrono::Utc::now().format("%Y%m%d");
    assert_eq!(body["name"], json!(format!("{today}_Student 0001")));
    assert_eq!(body["limit"], json!(3.0));
    assert_eq!(body["limit_reset"], json!("weekly"));
    assert_eq!(body["expires_at"], json!("2030-01-01T00:00:00Z"));
    // The old key stays in keys.db, marked deleted; the audit trail names both hashes.
    assert_eq!(
        class.count(&format!(
            "SELECT COUNT(*) FROM key WHERE key_hash='{old}' AND deleted_at IS NOT NULL"
        )),
        1
    );
    assert_eq!(
        class.count(&format!("SELECT COUNT(*) FROM changelog WHERE action='rotated' AND old_value='{old}' AND new_value='{new}'")),
        1
    );
    // export-keys hands out the new secret, not the old one.
    let rows = class.exported();
    let ada: Vec<_> = rows
        .iter()
        .filter(|r| r["email"] == "s0001@uni.edu")
        .collect();
    assert_eq!(ada.len(), 1);
    assert_eq!(ada[0]["api_key"].as_str(), fake.secret_of(&new).as_deref());
    assert_eq!(fake.keys().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_during_rotate_leaves_the_old_key_untouched() {
    let (fake, class) = provisioned(2).await;
    let old = hash_of(&class, "s0002@uni.edu");
    fake.fault("POST", Fault::Status(400));
    let out = class
        .cmd(&fake)
        .args(["rotate", "--email", "s0002@uni.edu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(fake.secret_of(&old).is_some());
    assert_eq!(fake.count("DELETE").await, 0);
    assert_eq!(hash_of(&class, "s0002@uni.edu"), old);
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action IN ('rotated','deleted')"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_all_takes_only_the_rosters_keys_after_confirmation() {
    let (fake, class) = provisioned(3).await;
    let mine = fake.add_key("Instructor laptop", None, false, 1.0);
    class.cmd(&fake).arg("check").assert().success();
    assert!(
        class
            .read("roster.csv")
            .contains("instructor.laptop@FIXME.edu")
    );

    // No terminal, no --yes: refused, nothing changed.
    let out = class.cmd(&fake).args(["delete", "--all"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = class
        .cmd(&fake)
        .args(["delete", "--all", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("would delete 3"), "{}", stdout(&out));
    assert_eq!(fake.count("DELETE").await, 0);

    let out = class
        .cmd(&fake)
        .args(["delete", "--all", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let left: Vec<String> = fake
        .keys()
        .iter()
        .map(|k| k["hash"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        left,
        vec![mine],
        "the instructor's key (a FIXME row) survives"
    );
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action='deleted'"),
        3
    );
    assert_eq!(
        class.count("SELECT COUNT(*) FROM key WHERE deleted_at IS NOT NULL"),
        3
    );
    // History stays.
    assert!(class.count("SELECT COUNT(*) FROM usage u JOIN key k ON k.key_hash = u.key_hash WHERE k.deleted_at IS NOT NULL") >= 3);
    assert_eq!(class.exported().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn disable_and_enable_by_email_and_all() {
    let (fake, class) = provisioned(3).await;
    let out = class
        .cmd(&fake)
        .args(["disable", "--email", "s0002@uni.edu", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let h2 = hash_of(&class, "s0002@uni.edu");
    let disabled: Vec<_> = fake
        .keys()
        .into_iter()
        .filter(|k| k["disabled"] == json!(true))
        .collect();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["hash"], json!(h2));
    assert_eq!(class.count("SELECT COUNT(*) FROM changelog WHERE action='disabled' AND old_value='false' AND new_value='true'"), 1);
    // limits.csv follows, so a later update does not undo it.
    let rows = csv_rows(&class.path("limits.csv"));
    let row = rows.iter().find(|r| r["email"] == "s0002@uni.edu").unwrap();
    assert_eq!(
        (
            row["target_disabled"].as_str(),
            row["actual_disabled"].as_str()
        ),
        ("true", "true")
    );
    class.cmd(&fake).arg("update").assert().success();
    assert_eq!(fake.count("PATCH").await, 1);

    let out = class
        .cmd(&fake)
        .args(["--json", "enable", "--all", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(
        report["keys"].as_array().unwrap().len(),
        1,
        "only the disabled key needs enabling"
    );
    assert!(fake.keys().iter().all(|k| k["disabled"] == json!(false)));
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action='enabled'"),
        1
    );
    // An email not on the roster is bad input: nothing is sent.
    let before = fake.requests().await.len();
    let out = class
        .cmd(&fake)
        .args(["disable", "--email", "nobody@uni.edu", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(fake.requests().await.len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_warns_when_limits_exceed_the_credits() {
    let fake = Fake::start().await;
    fake.state.lock().unwrap().credits = (10.0, 6.0);
    fake.add_key("20250101_Old Student", Some(2.0), false, 0.5);
    let class = Class::new(&roster(2));
    class.cmd(&fake).arg("init-db").assert().success();
    let out = class
        .cmd(&fake)
        .args(["--json", "provision", "--dry-run", "--limit", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(json(&out)["credits"]["shortfall"], json!(null));
    // 2 x $2 new + $1.50 still spendable on the old key > $4 left.
    let out = class
        .cmd(&fake)
        .args(["--json", "provision", "--limit", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exceed the account's remaining credits"),
        "{}",
        stderr(&out)
    );
    let report = json(&out);
    assert!(
        (report["credits"]["shortfall"].as_f64().unwrap() - 1.5).abs() < 1e-9,
        "{report}"
    );
    assert_eq!(report["credits"]["remaining_credits"], json!(4.0));
    assert!(report["warnings"].as_array().unwrap().len() == 1);

    // A management key that may not read credits gets a note, not an error.
    let class = Class::new("email,name\nnew@uni.edu,New Student\n");
    class.cmd(&fake).arg("init-db").assert().success();
    fake.state.lock().unwrap().credits_status = Some(403);
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("credits not checked"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotate_killed_after_its_create_is_finished_by_running_it_again() {
    let (fake, class) = provisioned(2).await;
    let out = class
        .cmd(&fake)
        .args(["rotate", "--email", "s0001@uni.edu"])
        .env("CLASSKEYS_FAULT", "create-saved:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        fake.keys().len(),
        3,
        "new key made, old one not yet deleted"
    );
    let out = class
        .cmd(&fake)
        .args(["rotate", "--email", "s0001@uni.edu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.keys().len(), 2, "one key per student again");
    let hash = hash_of(&class, "s0001@uni.edu");
    let rows = class.exported();
    let mine: Vec<_> = rows
        .iter()
        .filter(|r| r["email"] == "s0001@uni.edu")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        mine[0]["api_key"].as_str(),
        fake.secret_of(&hash).as_deref()
    );
}
