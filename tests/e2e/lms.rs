//! Rosters from the LMS (issue 13): each format, as the LMSs write it, merged into roster.csv.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lms")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture missing: {} ({e})", path.display()))
}

fn import(class: &Class, file: &str, args: &[&str]) -> std::process::Output {
    class.write(file, "");
    std::fs::write(class.path(file), fixture(file)).unwrap();
    bare(class.dir.path())
        .args(["--json", "import-roster", file])
        .args(args)
        .output()
        .unwrap()
}

/// (email, name) as the roster should hold it.
type Student = (&'static str, &'static str);

#[test]
fn each_lms_format_imports_to_the_expected_roster() {
    let cases: &[(&str, &str, &[Student])] = &[
        (
            "canvas.csv",
            "canvas",
            &[
                ("ada@uni.edu", "Ada Lovelace"),
                ("aturing@uni.edu", "Alan Turing"),
            ],
        ),
        (
            "moodle.csv",
            "moodle",
            &[
                ("grace@uni.edu", "Grace Hopper"),
                ("edsger@uni.edu", "Edsger Dijkstra"),
            ],
        ),
        (
            "blackboard.csv",
            "blackboard",
            &[
                ("bliskov@uni.edu", "Barbara Liskov"),
                ("dknuth@uni.edu", "Donald Knuth"),
            ],
        ),
        (
            "brightspace.csv",
            "brightspace",
            &[
                ("katherine@uni.edu", "Katherine Johnson"),
                ("rperlman@uni.edu", "Radia Perlman"),
            ],
        ),
        (
            "github-classroom.csv",
            "github-classroom",
            &[
                ("sofia@uni.edu", "Sofía Ramírez"),
                ("jmccarthy@uni.edu", "jmccarthy"),
            ],
        ),
    ];
    for (file, format, want) in cases {
        let class = Class::new("");
        std::fs::remove_file(class.path("roster.csv")).unwrap();
        let out = import(
            &class,
            file,
            &["--from", format, "--email-domain", "uni.edu"],
        );
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let doc = json(&out);
        let added: Vec<(String, String)> = doc["added"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["email"].as_str().unwrap().into(),
                    p["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(e, n)| (e.to_string(), n.to_string()))
            .collect();
        assert_eq!(added, want, "{file}");
        let rows = csv_rows(&class.path("roster.csv"));
        assert_eq!(rows.len(), want.len(), "{file}: the roster has them");
        assert_eq!(rows[0]["email"], want[0].0);
    }
}

#[test]
fn merging_keeps_rows_reports_names_and_lists_the_missing() {
    let class = Class::new("email,name,section\nADA@uni.edu,Ada King,A\nbob@uni.edu,Bob,B\n");
    let before = class.read("roster.csv");
    let out = import(
        &class,
        "canvas.csv",
        &[
            "--from",
            "canvas",
            "--email-domain",
            "@uni.edu",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(class.read("roster.csv"), before, "a dry run writes nothing");
    let out = import(
        &class,
        "canvas.csv",
        &["--from", "canvas", "--email-domain", "uni.edu"],
    );
    let doc = json(&out);
    assert_eq!(
        doc["added"],
        json!([{"email": "aturing@uni.edu", "name": "Alan Turing"}])
    );
    assert_eq!(doc["changed"][0]["name_in_export"], "Ada Lovelace", "{doc}");
    assert_eq!(
        doc["missing"],
        json!([{"email": "bob@uni.edu", "name": "Bob"}])
    );
    let text = class.read("roster.csv");
    assert!(
        text.starts_with(&before),
        "existing rows and columns kept: {text}"
    );
    assert!(text.contains("aturing@uni.edu,Alan Turing,"), "{text}");
    // Again: nothing more to add.
    let doc: Value = json(&import(
        &class,
        "canvas.csv",
        &["--from", "canvas", "--email-domain", "uni.edu"],
    ));
    assert_eq!(doc["added"], json!([]));
}

#[test]
fn a_format_that_needs_a_domain_without_one_is_exit_2() {
    let class = Class::new("email,name\n");
    for (file, format) in [("blackboard.csv", "blackboard"), ("canvas.csv", "canvas")] {
        let out = import(&class, file, &["--from", format]);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", stderr(&out));
        assert!(stderr(&out).contains("--email-domain"), "{}", stderr(&out));
    }
    // The wrong format for the file says so.
    let out = import(&class, "moodle.csv", &["--from", "github-classroom"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a GitHub Classroom export"),
        "{}",
        stderr(&out)
    );
}
