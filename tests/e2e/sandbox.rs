//! The sandbox: a whole class run by separate processes against the built-in emulator, with no
//! management key and nothing but loopback; `sandbox spend|reset|serve`; `demo`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// The binary in `dir`, clean environment, `--sandbox`.
fn sb(dir: &Path) -> assert_cmd::Command {
    let mut cmd = bare(dir);
    cmd.arg("--sandbox");
    cmd
}

fn ok(mut cmd: assert_cmd::Command) -> Output {
    assert_ok(cmd.output().unwrap())
}

fn account(class: &Class) -> Value {
    serde_json::from_str(&class.read("sandbox.json")).unwrap()
}

/// The sandbox's key of a student, found through the hash keys.db recorded.
fn sandbox_key(class: &Class, email: &str) -> Value {
    let hash: String = class
        .db()
        .query_row(
            "SELECT key_hash FROM key WHERE email = ?1 AND deleted_at IS NULL",
            [email],
            |r| r.get(0),
        )
        .unwrap();
    account(class)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["hash"] == hash.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no sandbox key {hash} for {email}"))
}

fn set_target_limit(class: &Class, email: &str, limit: &str) {
    let path = class.path("limits.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = headers.iter().position(|h| h == "target_limit").unwrap();
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&headers).unwrap();
    for rec in reader.records() {
        let mut cells: Vec<String> = rec.unwrap().iter().map(String::from).collect();
        if cells[0] == email {
            cells[col] = limit.into();
        }
        writer.write_record(&cells).unwrap();
    }
    std::fs::write(&path, writer.into_inner().unwrap()).unwrap();
}

fn student<'a>(report: &'a Value, email: &str) -> &'a Value {
    report["students"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["email"] == email)
        .unwrap_or_else(|| panic!("{email} not in {report}"))
}

#[test]
fn a_whole_class_of_160_in_separate_processes() {
    let class = Class::new(&roster(160));
    let dir = class.dir.path();

    let out = ok({
        let mut c = sb(dir);
        c.arg("init-db");
        c
    });
    assert!(stderr(&out).contains("SANDBOX"), "{}", stderr(&out));
    let out = ok({
        let mut c = sb(dir);
        c.arg("check");
        c
    });
    assert!(stdout(&out).contains("[sandbox]"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("160 without a key"),
        "{}",
        stdout(&out)
    );

    // Provision: 160 keys across two pages of the emulator, secrets in keys.db and the file.
    let out = ok({
        let mut c = sb(dir);
        c.args(["provision", "--limit", "2"]);
        c
    });
    assert!(
        stdout(&out).contains("[sandbox] created 160 key(s)"),
        "{}",
        stdout(&out)
    );
    let acc = account(&class);
    let keys = acc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 160);
    assert_eq!(mode(&class.path("sandbox.json")), 0o600);
    let files = class.files("api_keys_");
    assert_eq!(files.len(), 1);
    assert_eq!(csv_rows(&files[0]).len(), 160);
    let in_sandbox: HashSet<String> = keys
        .iter()
        .map(|k| k["secret"].as_str().unwrap().to_string())
        .collect();
    ok({
        let mut c = sb(dir);
        c.args(["export-keys", "--output", "export.csv"]);
        c
    });
    let exported: HashSet<String> = csv_rows(&class.path("export.csv"))
        .into_iter()
        .map(|r| r["api_key"].clone())
        .collect();
    assert_eq!(
        exported, in_sandbox,
        "the secrets handed out are the sandbox's"
    );
    let from_file: HashSet<String> = csv_rows(&files[0])
        .into_iter()
        .map(|r| r["api_key"].clone())
        .collect();
    assert_eq!(from_file, in_sandbox);

    // A re-run sees every key (both pages) and creates nothing.
    let out = ok({
        let mut c = sb(dir);
        c.args(["provision", "--limit", "2"]);
        c
    });
    assert!(
        stdout(&out).contains("created 0 key(s); 160 student(s) already had one"),
        "{}",
        stdout(&out)
    );
    assert_eq!(account(&class)["keys"].as_array().unwrap().len(), 160);

    // Students spend; one past her limit, which stops her as a real key would.
    let out = ok({
        let mut c = sb(dir);
        c.args([
            "sandbox",
            "spend",
            "--email",
            "s0001@uni.edu",
            "--amount",
            "0.5",
        ]);
        c
    });
    assert!(stdout(&out).contains("[sandbox]"), "{}", stdout(&out));
    let out = ok({
        let mut c = sb(dir);
        c.args([
            "--json",
            "sandbox",
            "spend",
            "--email",
            "s0004@uni.edu",
            "--amount",
            "5",
        ]);
        c
    });
    let spent = json(&out);
    assert_eq!(spent["sandbox"], true);
    assert_eq!(
        (spent["requested"].as_f64(), spent["added"].as_f64()),
        (Some(5.0), Some(2.0))
    );
    assert!(
        spent["stopped"].as_str().unwrap().contains("limit"),
        "{spent}"
    );

    // check sees the usage, records it, writes it in the snapshot.
    let out = ok({
        let mut c = sb(dir);
        c.args(["check", "--json"]);
        c
    });
    let report = json(&out);
    assert_eq!(report["sandbox"], true);
    assert_eq!(report["students"].as_array().unwrap().len(), 160);
    assert_eq!(student(&report, "s0001@uni.edu")["usage"], 0.5);
    assert_eq!(student(&report, "s0004@uni.edu")["usage"], 2.0);
    assert_eq!(report["total_usage"], 2.5);
    let snapshot = report["snapshot"].as_str().unwrap();
    let rows = csv_rows(&dir.join(snapshot));
    let s1: HashMap<_, _> = rows
        .into_iter()
        .find(|r| r["email"] == "s0001@uni.edu")
        .unwrap();
    assert_eq!(s1["usage"], "0.5");
    assert_eq!(
        class.count(
            "SELECT COUNT(*) FROM usage u JOIN key k ON k.key_hash = u.key_hash \
             WHERE k.email = 's0001@uni.edu' AND u.usage = 0.5"
        ),
        1
    );

    // limits.csv edit + update changes the sandbox key's limit.
    set_target_limit(&class, "s0002@uni.edu", "7.5");
    let out = ok({
        let mut c = sb(dir);
        c.arg("update");
        c
    });
    assert!(
        stdout(&out).contains("[sandbox] updated 1 key(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(sandbox_key(&class, "s0002@uni.edu")["limit"], 7.5);
    assert_eq!(sandbox_key(&class, "s0003@uni.edu")["limit"], 2.0);

    // disable / enable with --yes; a disabled key is still seen (include_disabled, every page).
    ok({
        let mut c = sb(dir);
        c.args(["disable", "--email", "s0003@uni.edu", "--yes"]);
        c
    });
    assert_eq!(sandbox_key(&class, "s0003@uni.edu")["disabled"], true);
    let report = json(&ok({
        let mut c = sb(dir);
        c.args(["--json", "check"]);
        c
    }));
    assert_eq!(report["students"].as_array().unwrap().len(), 160);
    assert_eq!(student(&report, "s0003@uni.edu")["disabled"], true);
    assert!(report["without_key"].as_array().unwrap().is_empty());
    let out = ok({
        let mut c = sb(dir);
        c.args([
            "--json",
            "sandbox",
            "spend",
            "--email",
            "s0003@uni.edu",
            "--amount",
            "1",
        ]);
        c
    });
    assert_eq!(json(&out)["added"], 0.0, "a disabled key cannot spend");
    ok({
        let mut c = sb(dir);
        c.args(["enable", "--email", "s0003@uni.edu", "--yes"]);
        c
    });
    assert_eq!(sandbox_key(&class, "s0003@uni.edu")["disabled"], false);

    // reset empties the account; provision then makes new keys.
    let out = ok({
        let mut c = sb(dir);
        c.args(["sandbox", "reset"]);
        c
    });
    assert!(stdout(&out).contains("[sandbox]"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("160 key(s) removed"),
        "{}",
        stdout(&out)
    );
    assert!(account(&class)["keys"].as_array().unwrap().is_empty());
    assert_eq!(mode(&class.path("sandbox.json")), 0o600);
    let out = ok({
        let mut c = sb(dir);
        c.args(["provision", "--limit", "1"]);
        c
    });
    assert!(
        stdout(&out).contains("created 160 key(s)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_environment_variable_is_the_same_as_the_flag() {
    let class = Class::new(
        "email,name,limit\nada@uni.edu,Ada Lovelace,3\nk1@uni.edu,Kim Lee,\nk2@uni.edu,Kim Lee,\n",
    );
    let env = || {
        let mut c = bare(class.dir.path());
        c.env("CLASSKEYS_SANDBOX", "1");
        c
    };
    ok({
        let mut c = env();
        c.arg("init-db");
        c
    });
    let out = ok({
        let mut c = env();
        c.args(["--json", "provision"]);
        c
    });
    let made = json(&out);
    assert_eq!(made["sandbox"], true);
    assert_eq!(made["created"].as_array().unwrap().len(), 3);
    // Both Kim Lees have a key of the same name; each spends on their own.
    ok({
        let mut c = env();
        c.args([
            "sandbox",
            "spend",
            "--email",
            "k2@uni.edu",
            "--amount",
            "0.25",
        ]);
        c
    });
    ok({
        let mut c = env();
        c.args([
            "sandbox",
            "spend",
            "--email",
            "ada@uni.edu",
            "--amount",
            "0.1",
        ]);
        c
    });
    ok({
        let mut c = env();
        c.args([
            "sandbox",
            "spend",
            "--email",
            "ada@uni.edu",
            "--amount",
            "0.2",
        ]);
        c
    });
    let report = json(&ok({
        let mut c = env();
        c.args(["check", "--json"]);
        c
    }));
    assert_eq!(report["sandbox"], true);
    assert_eq!(student(&report, "k1@uni.edu")["usage"], 0.0);
    assert_eq!(student(&report, "k2@uni.edu")["usage"], 0.25);
    assert_eq!(student(&report, "ada@uni.edu")["usage"], 0.3);
    assert_eq!(student(&report, "ada@uni.edu")["limit"], 3.0);
    // CLASSKEYS_SANDBOX=0 is not the sandbox: this rehearsal's keys.db refuses a real run.
    let out = bare(class.dir.path())
        .env("CLASSKEYS_SANDBOX", "0")
        .env("OPENROUTER_PROVISIONING_KEY", SENTINEL)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to the sandbox"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn spend_and_reset_need_no_flag_and_good_input() {
    let class = Class::new("email,name\nada@uni.edu,Ada Lovelace\n");
    let dir = class.dir.path();
    // The subcommand names the sandbox: no --sandbox needed, and no management key.
    let out = bare(dir).args(["sandbox", "reset"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("SANDBOX"), "{}", stderr(&out));
    ok({
        let mut c = sb(dir);
        c.arg("init-db");
        c
    });
    // No key yet.
    let out = bare(dir)
        .args([
            "sandbox",
            "spend",
            "--email",
            "ada@uni.edu",
            "--amount",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("provision"), "{}", stderr(&out));
    ok({
        let mut c = sb(dir);
        c.arg("provision");
        c
    });
    for amount in [
        "--amount=-1",
        "--amount=NaN",
        "--amount=inf",
        "--amount=lots",
    ] {
        let out = sb(dir)
            .args(["sandbox", "spend", "--email", "ada@uni.edu", amount])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{amount}: {}", stderr(&out));
    }
    let out = sb(dir)
        .args([
            "sandbox",
            "spend",
            "--email",
            "nobody@uni.edu",
            "--amount",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nobody@uni.edu"), "{}", stderr(&out));
    assert_eq!(
        sandbox_key(&class, "ada@uni.edu")["spends"],
        serde_json::json!([])
    );
}

#[test]
fn a_corrupt_sandbox_file_says_how_to_recover() {
    let class = Class::new("email,name\nada@uni.edu,Ada Lovelace\n");
    let dir = class.dir.path();
    ok({
        let mut c = sb(dir);
        c.arg("init-db");
        c
    });
    class.write("sandbox.json", "{\"keys\": [");
    let out = sb(dir).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("sandbox.json") && err.contains("classkeys sandbox reset"),
        "{err}"
    );
    let out = ok({
        let mut c = sb(dir);
        c.args(["sandbox", "reset"]);
        c
    });
    assert!(stdout(&out).contains("unreadable"), "{}", stdout(&out));
    ok({
        let mut c = sb(dir);
        c.arg("check");
        c
    });
}

#[test]
fn demo_rehearses_a_class_in_a_new_folder() {
    let parent = tempfile::tempdir().unwrap();
    let out = ok({
        let mut c = bare(parent.path());
        c.args(["demo", "--dir", "rehearsal"]);
        c
    });
    let text = stdout(&out);
    for step in [
        "$ classkeys --sandbox init-db",
        "$ classkeys --sandbox check",
        "$ classkeys --sandbox provision --limit 2",
        "$ classkeys --sandbox sandbox spend --email",
        "$ classkeys --sandbox update",
        "$ classkeys --sandbox report --by-model --html report.html",
        "$ cat > classkeys.toml",
        "Class totals per model",
        "does not allow anthropic/claude-opus-4.5",
        "SANDBOX",
    ] {
        assert!(text.contains(step), "missing {step:?} in:\n{text}");
    }
    let dir = parent.path().join("rehearsal");
    for file in [
        "roster.csv",
        "keys.db",
        "limits.csv",
        "sandbox.json",
        "classkeys.toml",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("snapshot_")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("api_keys_")),
        "{names:?}"
    );
    let roster = csv_rows(&dir.join("roster.csv"));
    assert!((6..=10).contains(&roster.len()));
    let acc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sandbox.json")).unwrap()).unwrap();
    assert_eq!(acc["keys"].as_array().unwrap().len(), roster.len());
    // Every key holds the class guardrail the file asked for.
    let guardrails = acc["guardrails"].as_array().unwrap();
    assert_eq!(guardrails.len(), 1, "{acc}");
    let id = &guardrails[0]["id"];
    assert!(
        acc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["guardrail"] == *id),
        "{acc}"
    );
    // The limits edit reached the account: one key now has $5 besides the roster's own $5.
    let fives = acc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["limit"] == 5.0)
        .count();
    assert_eq!(fives, 2, "{acc}");
    assert!(
        acc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| !k["spends"].as_array().unwrap().is_empty())
    );

    // A folder with something in it is refused, and left alone.
    let out = bare(parent.path())
        .args(["demo", "--dir", "rehearsal"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), names.len());
}

/// `sandbox serve` with its URL on the first line; killed on drop.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(dir: &Path, args: &[&str]) -> Served {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("classkeys"))
            .env_clear()
            .current_dir(dir)
            .args(["sandbox", "serve"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Served {
            child,
            url: line.trim().to_string(),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_answers_another_process_with_any_key_and_saves() {
    let class = Class::new(&roster(40));
    let state = class.path("bench.json");
    let served = Served::start(
        class.dir.path(),
        &["--delay-ms", "100", "--state", state.to_str().unwrap()],
    );
    assert!(
        served.url.starts_with("http://127.0.0.1:") && served.url.ends_with("/api/v1"),
        "{:?}",
        served.url
    );
    let cmd = || {
        let mut c = bare(class.dir.path());
        c.env("OPENROUTER_PROVISIONING_KEY", "sk-or-v1-whatever")
            .env("OPENROUTER_BASE_URL", &served.url);
        c
    };
    ok({
        let mut c = cmd();
        c.arg("init-db");
        c
    });
    let start = Instant::now();
    ok({
        let mut c = cmd();
        c.args(["--jobs", "16", "provision"]);
        c
    });
    // 40 creates of 100 ms each, 16 at a time, plus a few listings: far less than 40 × 100 ms.
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(3000),
        "provision took {took:?}"
    );
    let start = Instant::now();
    loop {
        let saved = std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map_or(0, |v| v["keys"].as_array().map_or(0, Vec::len));
        if saved == 40 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not saved: {saved}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(mode(&state), 0o600);
    assert!(!class.path("sandbox.json").exists());
}

/// Issue 12 in the sandbox, one process per command: a workspace, pseudonymous names, the
/// class guardrail enforced on spend, spend per model from the emulated analytics.
#[test]
fn guardrails_models_pseudonyms_and_a_workspace_across_separate_runs() {
    let class = Class::new(
        "email,name\nada@uni.edu,Ada Lovelace\nkim1@uni.edu,Kim Lee\nkim2@uni.edu,Kim Lee\n",
    );
    class.write(
        "classkeys.toml",
        "[guardrail]\nmodels = [\"openai/gpt-4o-mini\"]\nweekly_limit = 1.50\ntraining = false\n",
    );
    ok({
        let mut c = sb(class.dir.path());
        c.args([
            "init-db",
            "--key-names",
            "pseudonymous",
            "--workspace",
            "cs101",
        ]);
        c
    });
    ok({
        let mut c = sb(class.dir.path());
        c.args(["provision", "--limit", "2"]);
        c
    });
    let acc = account(&class);
    let guardrails = acc["guardrails"].as_array().unwrap();
    assert_eq!(guardrails.len(), 1, "{acc}");
    let ws = guardrails[0]["workspace_id"].as_str().unwrap().to_string();
    assert_eq!(
        guardrails[0]["enable_paid_model_training"],
        Value::Bool(false)
    );
    for k in acc["keys"].as_array().unwrap() {
        assert_eq!(k["workspace_id"], Value::String(ws.clone()), "{k}");
        assert_eq!(k["guardrail"], guardrails[0]["id"], "{k}");
        let name = k["name"].as_str().unwrap();
        assert!(!name.contains("Kim") && !name.contains("Ada"), "{name}");
    }
    // The guardrail refuses a model it does not allow, and caps spend at its budget.
    let spend = |email: &str, amount: &str, model: &str| -> Value {
        let out = ok({
            let mut c = sb(class.dir.path());
            c.args([
                "--json", "sandbox", "spend", "--email", email, "--amount", amount, "--model",
                model,
            ]);
            c
        });
        json(&out)
    };
    let refused = spend("ada@uni.edu", "0.50", "anthropic/claude-opus-4.5");
    assert_eq!(refused["added"], 0.0, "{refused}");
    assert!(
        refused["stopped"]
            .as_str()
            .unwrap()
            .contains("does not allow")
    );
    assert_eq!(
        spend("ada@uni.edu", "0.25", "openai/gpt-4o-mini")["added"],
        0.25
    );
    let capped = spend("kim2@uni.edu", "1.75", "openai/gpt-4o-mini-2024-07-18");
    assert_eq!(capped["added"], 1.5, "{capped}");
    assert_eq!(
        spend("kim1@uni.edu", "0.10", "openai/gpt-4o-mini")["added"],
        0.1
    );

    let out = ok({
        let mut c = sb(class.dir.path());
        c.args(["--json", "report", "--by-model"]);
        c
    });
    let doc = json(&out);
    let rows: Vec<(String, f64)> = doc["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["email"].as_str().unwrap().to_string(),
                r["spent"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("ada@uni.edu".to_string(), 0.25),
            ("kim1@uni.edu".to_string(), 0.1),
            ("kim2@uni.edu".to_string(), 1.5)
        ],
        "{doc}"
    );
    let out = ok({
        let mut c = sb(class.dir.path());
        c.args(["--json", "check"]);
        c
    });
    let doc = json(&out);
    for s in doc["students"].as_array().unwrap() {
        assert_eq!(s["guardrail"], Value::Bool(true), "{s}");
    }
    // Without the table, the guardrail goes, and the keys are free of it.
    std::fs::remove_file(class.path("classkeys.toml")).unwrap();
    ok({
        let mut c = sb(class.dir.path());
        c.arg("update");
        c
    });
    let acc = account(&class);
    assert!(acc["guardrails"].as_array().unwrap().is_empty(), "{acc}");
    assert!(
        acc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["guardrail"].is_null())
    );
}
