//! Spend per model (issue 12): `report --by-model` from OpenRouter's analytics.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn by_model_figures_are_the_accounts_and_same_name_students_stay_apart() {
    let fake = Fake::start().await;
    let class = Class::new(
        "email,name\nada@uni.edu,Ada Lovelace\nkim1@uni.edu,Kim Lee\nkim2@uni.edu,Kim Lee\nbob@uni.edu,Bob Stone\n",
    );
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let hash = |email: &str| -> String {
        class
            .db()
            .query_row("SELECT key_hash FROM key WHERE email = ?1", [email], |r| {
                r.get(0)
            })
            .unwrap()
    };
    fake.spend(&hash("ada@uni.edu"), "openai/gpt-4o-mini", 0.25, 10);
    fake.spend(&hash("ada@uni.edu"), "google/gemini-2.5-flash", 0.5, 2);
    fake.spend(&hash("kim1@uni.edu"), "openai/gpt-4o-mini", 1.0, 4);
    fake.spend(&hash("kim2@uni.edu"), "openai/gpt-4o-mini", 2.0, 8);
    // Somebody else's key on the account: never in the class's figures.
    let other = fake.add_key("my own key", None, false, 0.0);
    fake.spend(&other, "openai/gpt-4o", 9.0, 9);

    let out = assert_ok(
        class
            .cmd(&fake)
            .args(["--json", "report", "--by-model"])
            .output()
            .unwrap(),
    );
    let doc = json(&out);
    let rows: Vec<(String, String, f64, u64)> = doc["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["email"].as_str().unwrap().to_string(),
                r["model"].as_str().unwrap().to_string(),
                r["spent"].as_f64().unwrap(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "ada@uni.edu".into(),
                "google/gemini-2.5-flash".into(),
                0.5,
                2
            ),
            ("ada@uni.edu".into(), "openai/gpt-4o-mini".into(), 0.25, 10),
            ("kim1@uni.edu".into(), "openai/gpt-4o-mini".into(), 1.0, 4),
            ("kim2@uni.edu".into(), "openai/gpt-4o-mini".into(), 2.0, 8),
        ]
    );
    assert_eq!(doc["by_model"][0]["name"], json!("Ada Lovelace"));
    assert_eq!(doc["models"][0]["model"], json!("openai/gpt-4o-mini"));
    assert_eq!(doc["models"][0]["spent"], json!(3.25));
    assert!(doc["figures_until"].is_string(), "{doc}");

    // One query for the keys of unique names, one for each key that shares its name.
    let queries: Vec<Value> = fake
        .requests()
        .await
        .into_iter()
        .filter(|(m, p, _)| m == "POST" && p == "/api/v1/analytics/query")
        .map(|(_, _, b)| serde_json::from_str(&b).unwrap())
        .collect();
    assert_eq!(queries.len(), 3, "{queries:?}");
    assert_eq!(queries[0]["filters"][0]["operator"], json!("in"));
    let unique = queries[0]["filters"][0]["value"].as_array().unwrap();
    assert_eq!(unique.len(), 2);
    assert!(!unique.contains(&json!(other)));
    for q in &queries[1..] {
        assert_eq!(q["filters"][0]["operator"], json!("eq"));
    }
    for q in &queries {
        assert_eq!(q["metrics"], json!(["total_usage", "request_count"]));
        assert_eq!(q["dimensions"], json!(["api_key_id", "model"]));
        assert!(q["time_range"]["start"].is_string() && q["time_range"]["end"].is_string());
    }

    // The tables, and the chart in the page.
    let out = assert_ok(
        class
            .cmd(&fake)
            .args(["report", "--by-model", "--html", "r.html"])
            .output()
            .unwrap(),
    );
    let text = stdout(&out);
    assert!(text.contains("Class totals per model"), "{text}");
    assert!(text.contains("figures up to"), "{text}");
    let page = class.read("r.html");
    assert!(page.contains("Spend per model, per student"), "{page}");
    assert!(page.contains("google/gemini-2.5-flash"));

    // Without the management key: exit 3, and said so.
    let out = bare(class.dir.path())
        .env("OPENROUTER_BASE_URL", fake.url())
        .args(["report", "--by-model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // The rest of the report still needs no key.
    assert_ok(bare(class.dir.path()).arg("report").output().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_is_sent_as_asked() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(2));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    assert_ok(
        class
            .cmd(&fake)
            .args([
                "report",
                "--by-model",
                "--since",
                "2026-11-01T09:00:00Z",
                "--until",
                "2026-11-01T12:00:00Z",
            ])
            .output()
            .unwrap(),
    );
    let reqs = fake.requests().await;
    let q: Value = reqs
        .iter()
        .find(|(_, p, _)| p == "/api/v1/analytics/query")
        .map(|(_, _, b)| serde_json::from_str(b).unwrap())
        .unwrap();
    assert_eq!(
        q["time_range"],
        json!({"start": "2026-11-01T09:00:00Z", "end": "2026-11-01T12:00:00Z"})
    );
}
