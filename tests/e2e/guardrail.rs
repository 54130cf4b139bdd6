//! The class guardrail (issue 12): classkeys.toml's `[guardrail]` made, changed, assigned,
//! moved, unassigned and deleted through the journal; check's column.

use serde_json::{Value, json};

use crate::common::*;

const FULL: &str = r#"# the class's settings
[guardrail]
models = ["openai/gpt-4o-mini", "google/gemini-2.5-flash"]
providers = ["openai", "google-vertex"]
daily_limit = 1.00
zero_data_retention = true
training = false
redact = ["email", "phone", "person-name"]
"#;

fn ok_json(class: &Class, fake: &Fake, args: &[&str]) -> Value {
    let out = class.cmd(fake).arg("--json").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    json(&out)
}

/// Requests that change the account (anything but GET, and the analytics query).
async fn changes(fake: &Fake) -> Vec<(String, String, String)> {
    fake.requests()
        .await
        .into_iter()
        .filter(|(m, p, _)| m != "GET" && !p.contains("/analytics/"))
        .collect()
}

fn changelog(class: &Class, action: &str) -> i64 {
    class.count(&format!(
        "SELECT COUNT(*) FROM changelog WHERE action = '{action}'"
    ))
}

fn hashes(fake: &Fake) -> Vec<String> {
    fake.keys()
        .iter()
        .map(|k| k["hash"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_makes_the_guardrail_assigns_it_and_a_second_update_sends_nothing() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(3));
    class.write("classkeys.toml", FULL);
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    let out = assert_ok(
        class
            .cmd(&fake)
            .args(["provision", "--limit", "2"])
            .output()
            .unwrap(),
    );
    let text = stdout(&out);
    assert!(text.contains("assigned to the 3 new key(s)"), "{text}");

    let g = fake.guardrails();
    assert_eq!(g.len(), 1, "{g:?}");
    let g = &g[0];
    assert!(
        g["name"].as_str().unwrap().starts_with("classkeys class "),
        "{g}"
    );
    assert_eq!(g["limit_usd"], json!(1.0));
    assert_eq!(g["reset_interval"], json!("daily"));
    for f in [
        "enforce_zdr_anthropic",
        "enforce_zdr_google",
        "enforce_zdr_openai",
        "enforce_zdr_other",
        "enforce_zdr_xai",
    ] {
        assert_eq!(g[f], json!(true), "{f}");
    }
    for f in [
        "enable_free_model_training",
        "enable_paid_model_training",
        "enable_free_model_publication",
    ] {
        assert_eq!(g[f], json!(false), "{f}");
    }
    assert_eq!(g["allowed_providers"], json!(["openai", "google-vertex"]));
    let id = g["id"].as_str().unwrap().to_string();
    for h in hashes(&fake) {
        assert_eq!(fake.guardrail_of(&h).as_deref(), Some(id.as_str()));
    }
    // The create carried no guardrail id; the assignment is its own call, after the creates.
    let reqs = changes(&fake).await;
    let order: Vec<&str> = reqs.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(order[0], "/api/v1/guardrails", "{order:?}");
    assert_eq!(
        order.last().unwrap(),
        &format!("/api/v1/guardrails/{id}/assignments/keys"),
        "{order:?}"
    );
    assert_eq!(
        class.count("SELECT COUNT(*) FROM class_meta WHERE name = 'guardrail_id'"),
        1
    );
    assert_eq!(changelog(&class, "guardrail_created"), 1);
    assert_eq!(changelog(&class, "guardrail_assigned"), 3);

    // The account answers canonical slugs (openai/gpt-4o-mini-2024-07-18): still no change.
    let before = changes(&fake).await.len();
    assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    assert_eq!(
        changes(&fake).await.len(),
        before,
        "{:?}",
        changes(&fake).await
    );

    // check shows who holds it, as the account reports it.
    let doc = ok_json(&class, &fake, &["check"]);
    for s in doc["students"].as_array().unwrap() {
        assert_eq!(s["guardrail"], json!(true), "{s}");
    }
    let out = assert_ok(class.cmd(&fake).arg("check").output().unwrap());
    assert!(stdout(&out).contains("Guardrail"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_file_is_one_patch_shown_field_by_field_in_a_dry_run_first() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.write("classkeys.toml", FULL);
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    class.write(
        "classkeys.toml",
        &FULL
            .replace("daily_limit = 1.00", "weekly_limit = 3")
            .replace(", \"google/gemini-2.5-flash\"", ""),
    );
    let before = changes(&fake).await.len();
    let out = assert_ok(
        class
            .cmd(&fake)
            .args(["update", "--dry-run"])
            .output()
            .unwrap(),
    );
    let text = stdout(&out);
    assert!(text.contains("would change"), "{text}");
    assert!(
        text.contains(
            "models: openai/gpt-4o-mini-2024-07-18, google/gemini-2.5-flash → openai/gpt-4o-mini"
        ),
        "{text}"
    );
    assert!(
        text.contains("weekly_limit: $1.00 daily → $3.00 weekly"),
        "{text}"
    );
    assert_eq!(
        changes(&fake).await.len(),
        before,
        "a dry run sends nothing"
    );
    let doc = ok_json(&class, &fake, &["update", "--dry-run"]);
    assert_eq!(doc["guardrail"]["action"], json!("changed"), "{doc}");
    assert_eq!(doc["guardrail"]["changes"].as_array().unwrap().len(), 2);

    assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    let reqs = changes(&fake).await;
    let patches: Vec<&(String, String, String)> =
        reqs[before..].iter().filter(|r| r.0 == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{reqs:?}");
    let body: Value = serde_json::from_str(&patches[0].2).unwrap();
    assert_eq!(body["limit_usd"], json!(3.0));
    assert_eq!(body["reset_interval"], json!("weekly"));
    assert_eq!(body["allowed_models"], json!(["openai/gpt-4o-mini"]));
    assert!(body.get("allowed_providers").is_none(), "{body}");
    assert_eq!(fake.guardrails()[0]["limit_usd"], json!(3.0));
    assert_eq!(changelog(&class, "guardrail_changed"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_lack_it_or_hold_another_get_it_and_the_output_names_the_other() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(3));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    // Keys made before the file existed; one holds the instructor's own guardrail.
    let staff = fake.add_guardrail("Staff only");
    let one = fake.hash_of(&format!(
        "{}_Student 0001",
        chrono::Utc::now().format("%Y%m%d")
    ));
    fake.assign(&one, &staff);
    let mine = fake.add_key("my own key", None, false, 0.0);
    fake.assign(&mine, &staff);
    class.write("classkeys.toml", "[guardrail]\nmonthly_limit = 5\n");
    let out = assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    let err = stderr(&out);
    assert!(
        err.contains("Student 0001") && err.contains("\"Staff only\"") && err.contains("moved"),
        "{err}"
    );
    let id = fake.guardrails()[1]["id"].as_str().unwrap().to_string();
    for h in hashes(&fake).iter().filter(|h| **h != mine) {
        assert_eq!(fake.guardrail_of(h).as_deref(), Some(id.as_str()));
    }
    // Not the class's: left alone.
    assert_eq!(fake.guardrail_of(&mine).as_deref(), Some(staff.as_str()));
    let moved: String = class
        .db()
        .query_row(
            "SELECT old_value FROM changelog WHERE action = 'guardrail_assigned' AND key_hash = ?1",
            [&one],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(moved, "Staff only");
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_the_table_unassigns_the_class_and_deletes_only_its_own_guardrail() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.write("classkeys.toml", FULL);
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let staff = fake.add_guardrail("Staff only");
    class.write("classkeys.toml", "# no guardrail any more\n");
    let out = assert_ok(
        class
            .cmd(&fake)
            .args(["update", "--dry-run"])
            .output()
            .unwrap(),
    );
    assert!(stdout(&out).contains("would delete it"), "{}", stdout(&out));
    assert_eq!(fake.guardrails().len(), 2);
    assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    let left = fake.guardrails();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], json!(staff));
    for h in hashes(&fake) {
        assert_eq!(fake.guardrail_of(&h), None);
    }
    assert_eq!(changelog(&class, "guardrail_unassigned"), 2);
    assert_eq!(changelog(&class, "guardrail_deleted"), 1);
    assert_eq!(
        class.count("SELECT COUNT(*) FROM class_meta WHERE name LIKE 'guardrail%'"),
        0
    );
    // Nothing more to do, and nothing sent for it.
    let sent = fake.requests().await.len();
    std::fs::remove_file(class.path("classkeys.toml")).unwrap();
    assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    let reqs = fake.requests().await;
    let last: Vec<&str> = reqs[sent..].iter().map(|(_, p, _)| p.as_str()).collect();
    assert!(
        !last.iter().any(|p| p.contains("guardrails")),
        "no guardrail request without a guardrail: {last:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assignment_that_fails_during_provision_is_finished_by_the_next_run() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(3));
    class.write("classkeys.toml", FULL);
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    fake.fault("POST /assignments/keys", Fault::Status(500));
    fake.fault("POST /assignments/keys", Fault::Status(500));
    fake.fault("POST /assignments/keys", Fault::Status(500));
    fake.fault("POST /assignments/keys", Fault::Status(400));
    let out = class.cmd(&fake).arg("provision").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run `classkeys update` or `classkeys provision` again"),
        "{}",
        stderr(&out)
    );
    // The keys and their secrets are kept; the keys lack the guardrail.
    assert_eq!(class.exported().len(), 3);
    for h in hashes(&fake) {
        assert_eq!(fake.guardrail_of(&h), None);
    }
    let doc = ok_json(&class, &fake, &["check"]);
    assert_eq!(doc["students"][0]["guardrail"], json!(false));
    // The next provision creates nothing and assigns the guardrail.
    let out = assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    assert!(
        stdout(&out).contains("assigned to 3 key(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fake.keys().len(), 3);
    let id = fake.guardrails()[0]["id"].as_str().unwrap().to_string();
    for h in hashes(&fake) {
        assert_eq!(fake.guardrail_of(&h).as_deref(), Some(id.as_str()));
    }
    assert_eq!(
        class.count("SELECT COUNT(*) FROM intent WHERE state = 'open'"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assignment_killed_before_its_answer_is_recorded_from_the_account() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.write("classkeys.toml", FULL);
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    // The guardrail is made, the keys, then their assignment lands and the process dies
    // before recording it.
    let out = class
        .cmd(&fake)
        .env("CLASSKEYS_FAULT", "guardrail-answered:2")
        .arg("provision")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        class.count(
            "SELECT COUNT(*) FROM intent WHERE state = 'open' AND action = 'guardrail_assign'"
        ),
        1
    );
    let out = assert_ok(class.cmd(&fake).arg("check").output().unwrap());
    assert!(
        stderr(&out).contains("recorded 1 guardrail change(s) an interrupted run had sent"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        class.count("SELECT COUNT(*) FROM intent WHERE state = 'open'"),
        0
    );
    assert_eq!(changelog(&class, "guardrail_assigned"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guardrail_create_whose_answer_was_lost_is_found_by_name_not_made_twice() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.write("classkeys.toml", FULL);
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    fake.fault("POST /guardrails", Fault::DoThenStatus(502));
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    assert_eq!(fake.guardrails().len(), 1);
    assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    assert_eq!(fake.guardrails().len(), 1);
    let id = fake.guardrails()[0]["id"].as_str().unwrap().to_string();
    for h in hashes(&fake) {
        assert_eq!(fake.guardrail_of(&h).as_deref(), Some(id.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_classkeys_toml_is_refused_with_its_line_and_nothing_is_sent() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let sent = fake.requests().await.len();
    for (text, line, says) in [
        (
            "[guardrail]\nmodels = [\"a/b\"]\nmodles = [\"c/d\"]\n",
            3,
            "modles",
        ),
        (
            "[guardrail]\ndaily_limit = 1\nweekly_limit = 2\n",
            3,
            "one budget",
        ),
        ("[guardrail]\ntraining = \"no\"\n", 2, "bool"),
        (
            "[guardrail]\nredact = [\"email\", \"names\"]\n",
            2,
            "person-name",
        ),
        ("[guardrail]\ndaily_limit = -1\n", 2, "0 or more"),
        ("[guardrail\n", 1, ""),
    ] {
        class.write("classkeys.toml", text);
        for cmd in [
            "update",
            "provision",
            "check",
            "rotate --email s0001@uni.edu",
        ] {
            let out = class.cmd(&fake).args(cmd.split(' ')).output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd} {text:?}: {}",
                stderr(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains(&format!("classkeys.toml: line {line}:")) && err.contains(says),
                "{cmd} {text:?}: {err}"
            );
        }
    }
    assert_eq!(fake.requests().await.len(), sent, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_in_a_workspace_makes_and_lists_its_guardrail_there() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.write("classkeys.toml", FULL);
    assert_ok(
        class
            .cmd(&fake)
            .args(["init-db", "--workspace", "cs101"])
            .output()
            .unwrap(),
    );
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let g = fake.guardrails();
    assert_eq!(g[0]["workspace_id"], json!(WORKSPACE_ID));
    // The guardrail's create and every key's carry the workspace.
    let reqs = fake.requests().await;
    let posts: Vec<&(String, String, String)> = reqs
        .iter()
        .filter(|(m, p, _)| m == "POST" && (p == "/api/v1/keys" || p == "/api/v1/guardrails"))
        .collect();
    for (_, _, body) in posts {
        assert!(body.contains(WORKSPACE_ID), "{body}");
    }
    std::fs::remove_file(class.path("classkeys.toml")).unwrap();
    fake.state.lock().unwrap().guardrails[0]["name"] = json!("renamed in the dashboard");
    // Found by id, it is still the class's, and deleted.
    assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    assert!(fake.guardrails().is_empty());
    let listings: Vec<String> = fake
        .requests()
        .await
        .into_iter()
        .filter(|(m, p, _)| m == "GET" && p.starts_with("/api/v1/guardrails?"))
        .map(|(_, p, _)| p)
        .collect();
    for l in listings {
        assert!(l.contains(&format!("workspace_id={WORKSPACE_ID}")), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_the_account_wide_assignment_listing_still_converges() {
    let fake = Fake::start().await;
    fake.state.lock().unwrap().no_global_assignments = true;
    let class = Class::new(&roster(3));
    class.write("classkeys.toml", FULL);
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let id = fake.guardrails()[0]["id"].as_str().unwrap().to_string();
    for h in hashes(&fake) {
        assert_eq!(fake.guardrail_of(&h).as_deref(), Some(id.as_str()));
    }
    let before = changes(&fake).await.len();
    assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    assert_eq!(changes(&fake).await.len(), before, "nothing more to send");
    let doc = ok_json(&class, &fake, &["check"]);
    assert_eq!(doc["students"][2]["guardrail"], json!(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guardrail_change_killed_before_its_answer_is_recorded_from_the_account() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    class.write("classkeys.toml", FULL);
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    class.write(
        "classkeys.toml",
        &FULL.replace("daily_limit = 1.00", "daily_limit = 4"),
    );
    // The PATCH lands, and the process dies before recording it.
    let out = class
        .cmd(&fake)
        .env("CLASSKEYS_FAULT", "guardrail-answered:1")
        .arg("update")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(fake.guardrails()[0]["limit_usd"], json!(4.0));
    assert_eq!(changelog(&class, "guardrail_changed"), 0);
    let out = assert_ok(class.cmd(&fake).arg("check").output().unwrap());
    assert!(
        stderr(&out).contains("recorded 1 guardrail change(s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(changelog(&class, "guardrail_changed"), 1);
    assert_eq!(
        class.count("SELECT COUNT(*) FROM intent WHERE state = 'open'"),
        0
    );
    // And nothing more to send.
    let before = changes(&fake).await.len();
    assert_ok(class.cmd(&fake).arg("update").output().unwrap());
    assert_eq!(changes(&fake).await.len(), before);
}
