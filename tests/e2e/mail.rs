//! `send-keys` (issue 13) against a real SMTP server on loopback: Python's aiosmtpd, run from
//! tests/smtp/server.py (`.ci/run` installs it). Without it these tests fail, never pass.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

const PASSWORD: &str = "s3cret-smtp-password";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// A running SMTP server and the messages it accepted.
struct Smtp {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtp {
    fn start(args: &[&str]) -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let python = std::env::var("CLASSKEYS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(fixture("tests/smtp/server.py"))
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} for the SMTP server: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the test SMTP server did not start (is aiosmtpd installed? `python3 -m pip install aiosmtpd`): {line:?}"
                )
            });
        Smtp {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// STARTTLS with the test certificate, and AUTH.
    fn secure() -> Smtp {
        let (cert, key) = certs();
        Smtp::start(&[
            "--mode",
            "starttls",
            "--tls",
            &cert,
            &key,
            "--auth",
            &format!("prof:{PASSWORD}"),
        ])
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The messages to one address.
    fn to(&self, email: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|m| m["rcpt_tos"].as_array().unwrap().contains(&json!(email)))
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn certs() -> (String, String) {
    (
        fixture("tests/fixtures/smtp/server.pem")
            .display()
            .to_string(),
        fixture("tests/fixtures/smtp/server.key")
            .display()
            .to_string(),
    )
}

fn mail_table(smtp: &Smtp, security: &str, extra: &str) -> String {
    format!(
        "[mail]\nfrom = \"Prof. Hopper <prof@uni.edu>\"\nsmtp_host = \"localhost\"\nsmtp_port = {}\nsecurity = \"{security}\"\n{extra}",
        smtp.port
    )
}

/// A provisioned class whose classkeys.toml points at `smtp`.
async fn class_with(fake: &Fake, smtp: &Smtp, n: usize, security: &str, extra: &str) -> Class {
    let class = Class::new(&roster(n));
    class.write("classkeys.toml", &mail_table(smtp, security, extra));
    assert_ok(class.cmd(fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(fake).arg("provision").output().unwrap());
    class
}

fn send(class: &Class, fake: &Fake, args: &[&str]) -> std::process::Output {
    class
        .cmd(fake)
        .env("SSL_CERT_FILE", fixture("tests/fixtures/smtp/ca.pem"))
        .env("CLASSKEYS_SMTP_PASSWORD", PASSWORD)
        .arg("send-keys")
        .args(args)
        .output()
        .unwrap()
}

fn secrets(class: &Class) -> Vec<(String, String)> {
    class
        .exported()
        .iter()
        .map(|r| {
            (
                r["email"].as_str().unwrap().to_string(),
                r["api_key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every student got exactly `times` mails, to them alone, with their own key and no other.
fn each_has_their_own(smtp: &Smtp, class: &Class, times: usize) {
    let all = secrets(class);
    for (email, secret) in &all {
        let mails = smtp.to(email);
        assert_eq!(mails.len(), times, "{email}: {mails:?}");
        for m in mails {
            assert_eq!(
                m["rcpt_tos"],
                json!([email]),
                "the envelope holds the student alone"
            );
            let data = m["data"].as_str().unwrap();
            let to: Vec<&str> = data.lines().filter(|l| l.starts_with("To:")).collect();
            assert_eq!(to.len(), 1, "{data}");
            assert!(
                to[0].ends_with(&format!("<{email}>")) && !to[0].contains(','),
                "{data}"
            );
            assert!(
                data.contains(secret.as_str()),
                "{email} did not get their key:\n{data}"
            );
            for (other, s) in &all {
                if other != email {
                    assert!(!data.contains(s.as_str()), "{email} got {other}'s key");
                }
            }
            assert!(!data.contains(SENTINEL) && !data.contains(PASSWORD));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_of_60_gets_one_mail_each_over_starttls_and_a_rerun_sends_none() {
    let fake = Fake::start().await;
    let smtp = Smtp::secure();
    let class = class_with(&fake, &smtp, 60, "starttls", "username = \"prof\"\n").await;
    let out = assert_ok(send(&class, &fake, &["--json"]));
    let doc = json(&out);
    assert_eq!(doc["sent"].as_array().unwrap().len(), 60, "{doc}");
    assert_eq!(doc["failed"], json!([]));
    each_has_their_own(&smtp, &class, 1);
    let sessions: std::collections::HashSet<String> = smtp
        .received()
        .iter()
        .map(|m| m["session"].to_string())
        .collect();
    assert_eq!(sessions.len(), 1, "one SMTP connection for the batch");
    let first = &smtp.received()[0];
    assert_eq!(first["tls"], json!(true));
    assert_eq!(first["auth"], json!(true));
    let data = first["data"].as_str().unwrap();
    assert!(data.contains("Subject: Your OpenRouter API key"), "{data}");
    assert!(
        data.contains("curl -s https://openrouter.ai/api/v1/key"),
        "{data}"
    );
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action = 'key_sent'"),
        60
    );
    // The changelog holds no secret.
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE new_value LIKE '%sk-or-%'"),
        0
    );
    let text = stdout(&out) + &stderr(&out);
    assert!(!text.contains(PASSWORD) && !text.contains(SENTINEL));

    let out = assert_ok(send(&class, &fake, &["--json"]));
    let doc = json(&out);
    assert_eq!(doc["sent"], json!([]));
    assert_eq!(doc["skipped"].as_array().unwrap().len(), 60);
    assert_eq!(smtp.received().len(), 60, "a re-run sends nothing");

    // --resend needs --email; with it, that student gets one more.
    let out = send(&class, &fake, &["--resend"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_ok(send(
        &class,
        &fake,
        &["--email", "s0007@uni.edu", "--resend"],
    ));
    assert_eq!(smtp.to("s0007@uni.edu").len(), 2);
    assert_eq!(smtp.received().len(), 61);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_writes_the_outbox_and_sends_nothing() {
    let fake = Fake::start().await;
    let smtp = Smtp::secure();
    let class = class_with(&fake, &smtp, 3, "starttls", "username = \"prof\"\n").await;
    class.write(
        "mail.txt",
        "Subject: Your key for CS 101, {{ name }}\n\nDear {{ name }},\n\n{{ key }}\nLimit {{ limit }}; models: {{ models | join(\", \") }}.\n",
    );
    let out = assert_ok(
        class
            .cmd(&fake)
            .args(["--json", "send-keys", "--dry-run"])
            .output()
            .unwrap(),
    );
    let doc = json(&out);
    assert_eq!(doc["dry_run"], json!(true));
    assert_eq!(doc["sent"].as_array().unwrap().len(), 3);
    assert!(smtp.received().is_empty());
    assert_eq!(mode(&class.path("outbox")), 0o700);
    for (email, secret) in secrets(&class) {
        let file = class.path(&format!("outbox/{email}.eml"));
        assert_eq!(mode(&file), 0o600);
        let eml = std::fs::read_to_string(&file).unwrap();
        assert!(
            eml.contains(&secret) && eml.contains("Subject: Your key for CS 101, Student"),
            "{eml}"
        );
        assert!(eml.contains("Limit $2.00; models: ."), "{eml}");
    }
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action = 'key_sent'"),
        0
    );
    // A template error names the line and sends nothing.
    class.write("mail.txt", "Subject: x\n\nDear {{ nmae }},\n");
    let out = send(&class, &fake, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mail.txt: line 3"),
        "{}",
        stderr(&out)
    );
    assert!(smtp.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_is_retried_a_5xx_recipient_fails_alone_and_the_rest_go_on() {
    let fake = Fake::start().await;
    let (cert, key) = certs();
    let smtp = Smtp::start(&[
        "--mode",
        "starttls",
        "--tls",
        &cert,
        &key,
        "--tempfail",
        "s0002@uni.edu",
        "--reject",
        "s0003@uni.edu",
    ]);
    let class = class_with(&fake, &smtp, 5, "starttls", "").await;
    let out = send(&class, &fake, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["sent"].as_array().unwrap().len(), 4, "{doc}");
    assert_eq!(doc["failed"].as_array().unwrap().len(), 1);
    assert_eq!(doc["failed"][0]["email"], json!("s0003@uni.edu"));
    assert!(
        doc["failed"][0]["error"].as_str().unwrap().contains("550"),
        "{doc}"
    );
    assert_eq!(
        smtp.to("s0002@uni.edu").len(),
        1,
        "retried once, delivered once"
    );
    assert!(smtp.to("s0003@uni.edu").is_empty());
    // The next run tries only the one that failed.
    let out = send(&class, &fake, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["sent"], json!([]));
    assert_eq!(doc["failed"].as_array().unwrap().len(), 1);
    assert_eq!(smtp.received().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_in_the_middle_a_rerun_mails_only_what_is_missing() {
    let fake = Fake::start().await;
    let smtp = Smtp::start(&["--delay", "0.05"]);
    let class = class_with(&fake, &smtp, 40, "none", "").await;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("classkeys"))
        .env_clear()
        .current_dir(class.dir.path())
        .env("OPENROUTER_PROVISIONING_KEY", SENTINEL)
        .env("OPENROUTER_BASE_URL", fake.url())
        .arg("send-keys")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while smtp.received().len() < 10 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let before = smtp.received().len();
    assert!((10..40).contains(&before), "{before} mails before the kill");
    assert_ok(send(&class, &fake, &[]));
    let mut twice = 0;
    for (email, _) in secrets(&class) {
        match smtp.to(&email).len() {
            1 => {}
            2 => twice += 1,
            n => panic!("{email} got {n} mails"),
        }
    }
    assert!(twice <= 1, "{twice} students got two mails");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_student_gets_only_the_new_key() {
    let fake = Fake::start().await;
    let smtp = Smtp::start(&[]);
    let class = class_with(&fake, &smtp, 3, "none", "bcc = \"ta@uni.edu\"\n").await;
    assert_ok(send(&class, &fake, &[]));
    let old = secrets(&class)
        .into_iter()
        .find(|(e, _)| e == "s0002@uni.edu")
        .unwrap()
        .1;
    assert_ok(
        class
            .cmd(&fake)
            .args(["rotate", "--email", "s0002@uni.edu"])
            .output()
            .unwrap(),
    );
    let new = secrets(&class)
        .into_iter()
        .find(|(e, _)| e == "s0002@uni.edu")
        .unwrap()
        .1;
    assert_ne!(old, new);
    let out = assert_ok(send(&class, &fake, &["--json"]));
    let doc = json(&out);
    assert_eq!(doc["sent"].as_array().unwrap().len(), 1, "{doc}");
    let mails = smtp.to("s0002@uni.edu");
    assert_eq!(mails.len(), 2);
    let last = mails[1]["data"].as_str().unwrap();
    assert!(last.contains(&new) && !last.contains(&old), "{last}");
    // The bcc is in the envelope, not in the headers.
    assert_eq!(mails[1]["rcpt_tos"], json!(["s0002@uni.edu", "ta@uni.edu"]));
    assert!(!last.to_lowercase().contains("ta@uni.edu"), "{last}");
    // A disabled student gets nothing.
    assert_ok(
        class
            .cmd(&fake)
            .args(["disable", "--email", "s0003@uni.edu", "--yes"])
            .output()
            .unwrap(),
    );
    let out = assert_ok(send(
        &class,
        &fake,
        &["--json", "--email", "s0003@uni.edu", "--resend"],
    ));
    assert_eq!(
        json(&out)["skipped"][0]["reason"],
        json!("the key is disabled")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_settings_and_an_untrusted_server_send_nothing() {
    let fake = Fake::start().await;
    let smtp = Smtp::secure();
    let class = class_with(&fake, &smtp, 2, "starttls", "username = \"prof\"\n").await;
    // A username without the variable: exit 2.
    let out = class.cmd(&fake).arg("send-keys").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("CLASSKEYS_SMTP_PASSWORD"));
    // A certificate nobody trusts: exit 1, nothing sent.
    let out = class
        .cmd(&fake)
        .env("CLASSKEYS_SMTP_PASSWORD", PASSWORD)
        .arg("send-keys")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no mail was sent"),
        "{}",
        stderr(&out)
    );
    // A wrong password: the server's refusal, exit 1.
    let out = class
        .cmd(&fake)
        .env("SSL_CERT_FILE", fixture("tests/fixtures/smtp/ca.pem"))
        .env("CLASSKEYS_SMTP_PASSWORD", "wrong-password")
        .arg("send-keys")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("535"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("wrong-password"));
    assert!(smtp.received().is_empty());
    // A password in the file, or plain text to another host: exit 2 with the line.
    class.write(
        "classkeys.toml",
        &(mail_table(&smtp, "starttls", "") + "password = \"hunter22\"\n"),
    );
    let out = send(&class, &fake, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("classkeys.toml: line 6"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("hunter22"));
    class.write(
        "classkeys.toml",
        "[mail]\nfrom = \"prof@uni.edu\"\nsmtp_host = \"smtp.uni.edu\"\nsecurity = \"none\"\n",
    );
    let out = send(&class, &fake, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("classkeys.toml: line 4"),
        "{}",
        stderr(&out)
    );
    assert!(smtp.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_works_too() {
    let fake = Fake::start().await;
    let (cert, key) = certs();
    let smtp = Smtp::start(&["--mode", "tls", "--tls", &cert, &key]);
    let class = class_with(&fake, &smtp, 2, "tls", "").await;
    // The server speaks TLS only; its certificate is verified: untrusted, nothing goes.
    let out = class.cmd(&fake).arg("send-keys").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(smtp.received().is_empty());
    assert_ok(send(&class, &fake, &[]));
    each_has_their_own(&smtp, &class, 1);
}
