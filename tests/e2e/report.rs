//! `report`: spend between two moments from keys.db's history, as the instructor runs it:
//! provision, check, students spend (on the fake), check again, then ask for windows given
//! as snapshot files and as date-times; the HTML page; bad windows; no management key needed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

/// A provisioned class of three and the snapshot of a `check`.
struct Taught {
    fake: Fake,
    class: Class,
}

impl Taught {
    async fn new(roster: &str) -> Taught {
        let fake = Fake::start().await;
        let class = Class::new(roster);
        class.cmd(&fake).arg("init-db").assert().success();
        let out = class
            .cmd(&fake)
            .args(["provision", "--limit", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        Taught { fake, class }
    }

    /// `check`, a second after the last run so its snapshot has a time of its own.
    fn check(&self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(1100));
        let out = self
            .class
            .cmd(&self.fake)
            .args(["check", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let snapshot = json(&out)["snapshot"].as_str().unwrap().to_string();
        self.class.dir.path().join(snapshot)
    }

    fn hash_of(&self, email: &str) -> String {
        self.class
            .db()
            .query_row(
                "SELECT key_hash FROM key WHERE email = ?1 AND deleted_at IS NULL",
                [email],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// `report --json` with these arguments; it must succeed.
    fn report(&self, args: &[&str]) -> Value {
        let out = self.report_out(args);
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out)
    }

    fn report_out(&self, args: &[&str]) -> std::process::Output {
        // No management key, no API: the report reads keys.db only.
        bare(self.class.dir.path())
            .arg("report")
            .arg("--json")
            .args(args)
            .output()
            .unwrap()
    }
}

fn student<'a>(report: &'a Value, email: &str) -> &'a Value {
    report["students"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["email"] == json!(email))
        .unwrap_or_else(|| panic!("{email} not in {report:#}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spend_between_two_checks_is_in_the_window_that_holds_it_and_no_other() {
    let t = Taught::new(&roster(3)).await;
    let first = t.check();
    let ada = t.hash_of("s0001@uni.edu");
    t.fake.set(&ada, "usage", json!(1.25));
    let second = t.check();
    t.fake.set(&ada, "usage", json!(1.75));
    let third = t.check();
    let requests = t.fake.requests().await.len();

    let r = t.report(&["--since", s(&first), "--until", s(&second)]);
    assert_eq!(student(&r, "s0001@uni.edu")["spent"], json!(1.25));
    assert_eq!(student(&r, "s0002@uni.edu")["spent"], json!(0.0));
    assert_eq!(student(&r, "s0001@uni.edu")["usage_now"], json!(1.75));
    assert_eq!(student(&r, "s0001@uni.edu")["limit"], json!(2.0));
    assert_eq!(student(&r, "s0001@uni.edu")["share"], json!(0.875));
    assert_eq!(student(&r, "s0001@uni.edu")["over_80"], json!(true));
    assert_eq!(student(&r, "s0002@uni.edu")["never_used"], json!(true));
    assert_eq!(r["totals"]["spent"], json!(1.25));
    assert_eq!(r["totals"]["students"], json!(3));
    assert_eq!(r["totals"]["over_80"], json!(1));
    assert_eq!(r["totals"]["never_used"], json!(2));
    assert!(r["window"]["since"].as_str().unwrap().ends_with('Z'));

    // A window that ends at the first check holds none of it; one after the second holds only
    // the later 0.50.
    let r = t.report(&["--until", s(&first)]);
    assert_eq!(student(&r, "s0001@uni.edu")["spent"], json!(0.0));
    let r = t.report(&["--since", s(&second), "--until", s(&third)]);
    assert_eq!(student(&r, "s0001@uni.edu")["spent"], json!(0.5));
    // The whole history.
    let r = t.report(&[]);
    assert_eq!(student(&r, "s0001@uni.edu")["spent"], json!(1.75));
    assert!(r["window"]["since"].is_null() && r["window"]["until"].is_null());

    // The same windows as RFC 3339 date-times: the check times keys.db holds.
    let times: Vec<String> = t
        .class
        .db()
        .prepare("SELECT DISTINCT checked_at FROM usage ORDER BY checked_at")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let n = times.len();
    assert!(n >= 4, "provision and three checks: {times:?}");
    let r = t.report(&["--since", &times[n - 3], "--until", &times[n - 2]]);
    assert_eq!(student(&r, "s0001@uni.edu")["spent"], json!(1.25));
    // Another offset, same instant.
    let second_at = chrono::DateTime::parse_from_rfc3339(&times[n - 2]).unwrap();
    let plus_one = second_at
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339();
    let r = t.report(&["--since", &plus_one]);
    assert_eq!(student(&r, "s0001@uni.edu")["spent"], json!(0.5));

    // A snapshot renamed by hand stands for its modification time (the third check's, here).
    let copy = t.class.path("class-end.csv");
    std::fs::rename(&third, &copy).unwrap();
    let out = t.report_out(&["--since", s(&second), "--until", s(&copy)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("modification time"),
        "{}",
        stderr(&out)
    );
    assert_eq!(student(&json(&out), "s0001@uni.edu")["spent"], json!(0.5));

    assert_eq!(
        t.fake.requests().await.len(),
        requests,
        "report sends no request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn human_table_and_the_html_page() {
    let t = Taught::new(
        "email,name\nada@uni.edu,Ada Lovelace\nbo@uni.edu,\"Bo <b>&amp; \"\"Co\"\"\"\n",
    )
    .await;
    let first = t.check();
    t.fake.set(&t.hash_of("ada@uni.edu"), "usage", json!(2.0));
    let second = t.check();

    let out = bare(t.class.dir.path())
        .args(["report", "--since", s(&first), "--until", s(&second)])
        .args(["--html", "report.html"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "Email",
        "Usage now",
        "Used %",
        "Flags",
        "Ada Lovelace",
        "$2.00",
        "100%",
        "at limit",
        "never used",
        "window: ",
        "(local)",
        "spent $2.00 in the window",
        "html: wrote report.html",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    let page = t.class.read("report.html");
    assert_eq!(mode(&t.class.path("report.html")), 0o644);
    assert!(page.contains("<svg"), "an inline chart");
    assert_eq!(page.matches("<svg").count(), 2);
    let lower = page.to_lowercase();
    for banned in ["<script", "http://", "https://", "src=", "href="] {
        assert!(!lower.contains(banned), "the page has {banned}");
    }
    assert!(page.contains("Ada Lovelace"));
    assert!(
        page.contains("Bo &lt;b&gt;&amp;amp; &quot;Co&quot;"),
        "names are escaped"
    );
    assert!(!page.contains("<b>&amp;"));

    // `--json --html`: the document names the page; the note goes to stderr.
    let out = t.report_out(&["--html", "again.html"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["html"], json!("again.html"));
    assert!(stderr(&out).contains("again.html"));
    assert!(t.class.path("again.html").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_student_counts_both_keys_and_the_old_one_is_marked() {
    let t = Taught::new(&roster(2)).await;
    let first = t.check();
    let old = t.hash_of("s0001@uni.edu");
    t.fake.set(&old, "usage", json!(1.5));
    std::thread::sleep(Duration::from_millis(1100));
    let out = t
        .class
        .cmd(&t.fake)
        .args(["rotate", "--email", "s0001@uni.edu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let new = t.hash_of("s0001@uni.edu");
    assert_ne!(old, new);
    t.fake.set(&new, "usage", json!(0.25));
    t.check();

    let r = t.report(&["--since", s(&first)]);
    let ada = student(&r, "s0001@uni.edu");
    assert_eq!(ada["spent"], json!(1.75), "{ada:#}");
    assert_eq!(ada["usage_now"], json!(1.75));
    // The new key got what was left ($0.50); the student's budget is still $2.00.
    assert_eq!(ada["limit"], json!(2.0), "the student's budget");
    assert_eq!(ada["share"], json!(0.875), "usage now / budget");
    assert_eq!(ada["deleted_keys"], json!(1));
    assert_eq!(ada["keys"].as_array().unwrap().len(), 2);
    assert_eq!(r["totals"]["keys"], json!(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_windows_exit_2_and_say_what_is_accepted() {
    let t = Taught::new(&roster(1)).await;
    let first = t.check();
    let second = t.check();
    for args in [
        vec!["--since", "yesterday"],
        vec!["--until", "snapshot_20990101_000000.csv"],
        vec!["--since", "2026-13-27"],
        vec!["--since", "."],
    ] {
        let out = t.report_out(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(args[1]), "{args:?}: {err}");
        assert!(
            err.contains("RFC 3339") && err.contains("snapshot"),
            "{err}"
        );
        assert!(stdout(&out).is_empty());
    }
    // A plain date is the start of that local day.
    let out = t.report_out(&["--since", "2026-11-27"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = t.report_out(&["--since", s(&second), "--until", s(&first)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("after --until"), "{}", stderr(&out));
    // A missing keys.db is bad input too.
    let out = bare(t.class.dir.path())
        .args(["report", "--db", "other.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Not a test: writes the class behind the README's report (docs/report-table.txt, docs/report.png)
/// into `$CLASSKEYS_README_CLASS`. Twelve students, provisioned at 08:30 local time on
/// 2026-11-27, checked at 09:00, 10:30, 12:00 and 13:00; Grace's key is rotated at 10:30.
/// Real runs stamp the present, so this writes keys.db and the snapshots through the library.
#[test]
#[ignore = "generates the README's example class; run it by hand"]
fn readme_class() {
    use chrono::{Local, TimeZone, Utc};
    use classkeys::files::output::write_snapshot;
    use classkeys::openrouter::Key;
    use classkeys::store::{Change, Store};

    let Some(dir) = std::env::var_os("CLASSKEYS_README_CLASS").map(PathBuf::from) else {
        panic!("set CLASSKEYS_README_CLASS to an empty folder");
    };
    std::fs::create_dir_all(&dir).unwrap();
    let at = |h: u32, m: u32| {
        Local
            .with_ymd_and_hms(2026, 11, 27, h, m, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    };
    let times = [at(8, 30), at(9, 0), at(10, 30), at(12, 0), at(13, 0)];
    // email, name, limit, usage at each time (None: the key does not exist then).
    type Row = (&'static str, &'static str, Option<f64>, [Option<f64>; 5]);
    let z = Some(0.0);
    let class: Vec<Row> = vec![
        (
            "ada@uni.edu",
            "Ada Lovelace",
            Some(2.0),
            [z, Some(0.05), Some(0.62), Some(1.48), Some(1.52)],
        ),
        (
            "alan@uni.edu",
            "Alan Turing",
            Some(2.0),
            [z, z, Some(0.41), Some(0.97), Some(0.97)],
        ),
        (
            "barbara@uni.edu",
            "Barbara Liskov",
            Some(2.0),
            [z, Some(0.12), Some(0.88), Some(1.71), Some(1.71)],
        ),
        (
            "claude@uni.edu",
            "Claude Shannon",
            Some(2.0),
            [z, z, Some(1.10), Some(2.0), Some(2.0)],
        ),
        (
            "donald@uni.edu",
            "Donald Knuth",
            Some(5.0),
            [z, z, Some(1.35), Some(3.10), Some(3.60)],
        ),
        (
            "edsger@uni.edu",
            "Edsger Dijkstra",
            Some(2.0),
            [z, z, z, z, z],
        ),
        (
            "frances@uni.edu",
            "Frances Allen",
            Some(2.0),
            [z, Some(0.02), Some(0.35), Some(0.80), Some(0.85)],
        ),
        (
            "grace@uni.edu",
            "Grace Hopper",
            Some(2.0),
            [z, Some(0.10), Some(0.70), None, None],
        ),
        (
            "grace@uni.edu",
            "Grace Hopper",
            Some(2.0),
            [None, None, z, Some(0.55), Some(0.60)],
        ),
        (
            "john@uni.edu",
            "John McCarthy (TA)",
            None,
            [z, Some(0.30), Some(1.20), Some(2.40), Some(2.40)],
        ),
        (
            "katherine@uni.edu",
            "Katherine Johnson",
            Some(2.0),
            [z, z, Some(0.21), Some(0.47), Some(0.47)],
        ),
        (
            "sofia@uni.edu",
            "Sofía Ramírez",
            Some(2.0),
            [z, z, Some(0.05), Some(0.09), Some(0.09)],
        ),
        (
            "radia@uni.edu",
            "Radia Perlman",
            Some(2.0),
            [z, z, Some(0.66), Some(1.62), Some(1.70)],
        ),
    ];
    let mut roster = String::from("email,name\n");
    for (email, name, ..) in class.iter().filter(|r| r.3[0].is_some()) {
        roster.push_str(&format!("{email},{name}\n"));
    }
    std::fs::write(dir.join("roster.csv"), roster).unwrap();

    let db = dir.join("keys.db");
    Store::init(&db).unwrap();
    let mut store = Store::open(&db).unwrap();
    let key = |i: usize, usage: f64| {
        let (_, name, limit, usages) = &class[i];
        let born = times[usages.iter().position(Option::is_some).unwrap()];
        Key {
            hash: format!("{:064x}", 0xc1a55 + i),
            name: format!("20261127_{name}"),
            label: format!("sk-or-v1-{i:03}...{i:04}"),
            limit: *limit,
            limit_remaining: limit.map(|l| (l - usage).max(0.0)),
            usage,
            created_at: Some(born.to_rfc3339()),
            disabled: false,
            limit_reset: None,
            include_byok_in_limit: false,
            updated_at: None,
            expires_at: None,
        }
    };
    let students: Vec<(&str, &str)> = class.iter().map(|r| (r.0, r.1)).collect();
    for (n, t) in times.iter().enumerate() {
        let keys: Vec<(Key, &str)> = class
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.3[n].map(|u| (key(i, u), r.0)))
            .collect();
        let refs: Vec<classkeys::store::Seen> = keys
            .iter()
            .map(|(k, e)| classkeys::store::Seen {
                key: k,
                email: e,
                owner: classkeys::domain::Owner::Class,
            })
            .collect();
        store.record_state(*t, &students, &refs).unwrap();
        let rows: Vec<(&str, &str, &Key)> = keys
            .iter()
            .map(|(k, e)| (*e, class.iter().find(|r| r.0 == *e).unwrap().1, k))
            .collect();
        write_snapshot(&dir, *t, rows).unwrap();
        if n == 2 {
            let old = key(7, 0.70);
            let change = Change {
                hash: old.hash.clone(),
                email: "grace@uni.edu".into(),
                action: "deleted",
                old: Some(old.name.clone()),
                new: None,
            };
            store.record_changes(&[], None, &[change]).unwrap();
        }
    }
}
