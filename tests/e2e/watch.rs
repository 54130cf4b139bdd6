//! `watch` (issue 14) in a pseudo-terminal against the fake API: what it draws, refreshes,
//! `+`, `d` then `y`, a failed refresh, `q` leaving the terminal as it was.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use serde_json::{Value, json};

use crate::common::*;

/// A command in a pseudo-terminal, its screen read back as a terminal would show it.
pub struct Tui {
    pub child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Tui {
    fn start(class: &Class, fake: &Fake, args: &[&str]) -> Tui {
        let mut all = vec!["watch"];
        all.extend(args);
        Tui::spawn(class, fake, &all)
    }

    /// `classkeys ARGS` in a 30×120 pseudo-terminal.
    pub fn spawn(class: &Class, fake: &Fake, args: &[&str]) -> Tui {
        Tui::spawn_sized(class, fake, args, 120)
    }

    /// `classkeys ARGS` in a pseudo-terminal 30 rows high and `cols` wide.
    pub fn spawn_sized(class: &Class, fake: &Fake, args: &[&str], cols: u16) -> Tui {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 30,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(assert_cmd::cargo::cargo_bin("classkeys"));
        cmd.env_clear();
        cmd.cwd(class.dir.path());
        cmd.env("OPENROUTER_PROVISIONING_KEY", SENTINEL);
        cmd.env("OPENROUTER_BASE_URL", fake.url());
        cmd.env("CLASSKEYS_RETRY_WINDOW", "2");
        cmd.env("TERM", "xterm-256color");
        cmd.args(args);
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let writer = pty.master.take_writer().unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(30).unwrap(),
            std::num::NonZeroU16::new(cols).unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (screen.clone(), raw.clone());
        std::thread::spawn(move || {
            let _master = pty.master;
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().process(&buf[..n]);
                r.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Tui {
            child,
            writer,
            screen,
            raw,
        }
    }

    pub fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    pub fn wait_for(&self, what: &str) -> String {
        self.wait_until(what, |t| t.contains(what))
    }

    fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let t = self.text();
            if done(&t) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited for {what:?}; the screen:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }
}

fn key_of(fake: &Fake, student: &str) -> Value {
    fake.keys()
        .into_iter()
        .find(|k| k["name"].as_str().unwrap().ends_with(student))
        .unwrap()
}

fn eventually(what: &str, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_draws_refreshes_changes_survives_a_failure_and_restores_the_terminal() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(3));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let usage_rows = class.count("SELECT COUNT(*) FROM usage");
    fake.set(
        key_of(&fake, "Student 0003")["hash"].as_str().unwrap(),
        "usage",
        json!(0.5),
    );

    let mut tui = Tui::start(&class, &fake, &["--every", "5"]);
    let screen = tui.wait_for("Student 0002");
    assert!(screen.contains("classkeys watch"), "{screen}");
    assert!(screen.contains("credits left $1000.00"), "{screen}");
    assert!(screen.contains("3 students"), "{screen}");
    // Highest usage first, and selected.
    let first = screen
        .lines()
        .find(|l| l.contains("@uni.edu"))
        .unwrap()
        .to_string();
    assert!(first.starts_with("> s0003@uni.edu"), "{screen}");

    // New spend shows after a refresh.
    let two = key_of(&fake, "Student 0002")["hash"]
        .as_str()
        .unwrap()
        .to_string();
    fake.set(&two, "usage", json!(1.9));
    tui.press("r");
    let screen = tui.wait_until("s0002 first", |t| {
        t.lines().find(|l| l.contains("@uni.edu")).is_some_and(|l| {
            l.contains("s0002@uni.edu") && l.contains("$1.90") && l.contains("95%")
        })
    });
    assert!(screen.contains("$1.90"), "{screen}");

    // `+` raises the selected student's limit by the step, through the journal.
    tui.press("k");
    tui.press("+");
    eventually("the limit was raised", || {
        key_of(&fake, "Student 0002")["limit"] == json!(3.0)
    });
    tui.wait_for("$3.00");
    let csv = csv_rows(&class.path("limits.csv"));
    let row = csv.iter().find(|r| r["email"] == "s0002@uni.edu").unwrap();
    assert_eq!(row["target_limit"], "3.0", "limits.csv agrees");

    // `d` asks, `y` disables.
    tui.press("d");
    tui.wait_for("Disable s0002@uni.edu's key? y/n");
    tui.press("y");
    eventually("the key was disabled", || {
        key_of(&fake, "Student 0002")["disabled"] == json!(true)
    });
    tui.wait_for("(disabled)");
    assert_eq!(
        class.count("SELECT COUNT(*) FROM changelog WHERE action IN ('limit_changed', 'disabled')"),
        2
    );
    assert_eq!(
        class.count("SELECT COUNT(*) FROM intent WHERE state = 'open'"),
        0
    );

    // A refresh that fails is shown, and the next one works.
    fake.fault("GET", Fault::Status(400));
    tui.press("r");
    tui.wait_for("refresh failed");
    tui.press("r");
    tui.wait_until("the error gone", |t| {
        !t.contains("refresh failed") && t.contains("refreshed")
    });

    // At most one usage row per key a minute, whatever the refreshes and changes.
    assert_eq!(class.count("SELECT COUNT(*) FROM usage"), usage_rows + 3);

    tui.press("q");
    let status = tui.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let raw = String::from_utf8_lossy(&tui.raw.lock().unwrap()).to_string();
    assert!(
        raw.contains("\u{1b}[?1049h"),
        "entered the alternate screen"
    );
    let left = raw
        .rfind("\u{1b}[?1049l")
        .expect("left the alternate screen");
    assert!(
        raw[left..].contains("\u{1b}[?25h"),
        "cursor shown after leaving"
    );
    assert!(!raw.contains(SENTINEL));
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_quits_with_130_and_no_terminal_is_refused() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(1));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    let mut tui = Tui::start(&class, &fake, &[]);
    tui.wait_for("s0001@uni.edu");
    tui.wait_for("no key");
    tui.press("+");
    tui.wait_for("has no key");
    tui.press("\u{3}");
    let status = tui.child.wait().unwrap();
    assert_eq!(status.exit_code(), 130);

    let out = class.cmd(&fake).arg("watch").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("classkeys check"), "{}", stderr(&out));
    let out = class
        .cmd(&fake)
        .args(["watch", "--every", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_while_another_command_holds_the_lock_is_dropped_and_said() {
    let fake = Fake::start().await;
    let class = Class::new(&roster(1));
    assert_ok(class.cmd(&fake).arg("init-db").output().unwrap());
    assert_ok(class.cmd(&fake).arg("provision").output().unwrap());
    let mut tui = Tui::start(&class, &fake, &[]);
    tui.wait_for("s0001@uni.edu");
    // Another command holds the class lock (as `update` would, mid-run).
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(class.path("keys.db.lock"))
        .unwrap();
    lock.lock().unwrap();
    tui.press("+");
    let screen = tui.wait_for("another classkeys held keys.db");
    assert!(screen.contains("the change was dropped"), "{screen}");
    assert_eq!(key_of(&fake, "Student 0001")["limit"], json!(2.0));
    drop(lock);
    tui.press("+");
    eventually("the limit was raised once the lock was free", || {
        key_of(&fake, "Student 0001")["limit"] == json!(3.0)
    });
    tui.press("q");
    assert!(tui.child.wait().unwrap().success());
}
