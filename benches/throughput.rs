//! Throughput benchmark: `cargo bench`. Prints numbers; asserts nothing.
//!
//! Runs the optimised `classkeys` binary, as an instructor would, against the built-in OpenRouter
//! emulator served in another process (`classkeys sandbox serve --delay-ms 100`), which answers every
//! request after a fixed delay. Each figure is compared with the one-request-at-a-time time
//! (requests x delay), what the Python tool would need before its extra sleeps.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_classkeys");
const DELAY_MS: u64 = 100;

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(state: &Path, delay_ms: u64) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "sandbox",
                "serve",
                "--port",
                "0",
                "--delay-ms",
                &delay_ms.to_string(),
                "--state",
            ])
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start classkeys sandbox serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server URL");
        Server {
            child,
            url: line.trim().to_string(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM so it saves its state.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// Run classkeys in `dir` with `--json`; returns (seconds, peak resident memory in MB, its JSON).
// The child is reaped by wait4, which also gives its own peak memory.
#[allow(clippy::zombie_processes)]
fn classkeys(dir: &Path, url: &str, args: &[&str]) -> (f64, f64, serde_json::Value) {
    let out_path = dir.join("bench-stdout.json");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let start = Instant::now();
    let child = Command::new(BIN)
        .current_dir(dir)
        .env("OPENROUTER_PROVISIONING_KEY", "sk-or-v1-bench")
        .env("OPENROUTER_BASE_URL", url)
        .env_remove("CLASSKEYS_SANDBOX")
        .arg("--json")
        .args(args)
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run classkeys");
    let pid = child.id() as i32;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::wait4(pid, &mut status, 0, &mut usage);
    }
    let secs = start.elapsed().as_secs_f64();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        panic!("classkeys {args:?} failed: {err}");
    }
    let json = std::fs::read(&out_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    (secs, usage.ru_maxrss as f64 / 1024.0, json)
}

/// The emulator saves its account every half second: give it time before it is stopped.
fn settle(server: Server) {
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(server);
}

/// A figure only counts if the run did the work.
fn expect(what: &str, got: usize, want: usize) {
    assert_eq!(
        got, want,
        "{what}: the run did {got} of {want}; the figure would mean nothing"
    );
}

fn class(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut roster = String::from("email,name\n");
    for i in 1..=n {
        roster.push_str(&format!("s{i:05}@uni.edu,Student {i:05}\n"));
    }
    std::fs::write(dir.path().join("roster.csv"), roster).expect("roster");
    let state = dir.path().join("account.json");
    Command::new(BIN)
        .current_dir(dir.path())
        .arg("init-db")
        .stdout(Stdio::null())
        .status()
        .expect("init-db");
    (dir, state)
}

/// GET /keys requests to list `keys` keys: pages until an empty one (a last page of 100 is
/// followed by an empty one; a shorter one too).
fn pages(keys: usize) -> usize {
    keys.div_ceil(100) + 1
}

fn row(what: &str, secs: f64, requests: usize, target: &str) {
    let serial = requests as f64 * DELAY_MS as f64 / 1000.0;
    println!(
        "{what:<34} {secs:>7.2} s   {requests:>5} requests   one at a time {serial:>6.1} s   ratio {:.3}   {target}",
        secs / serial
    );
}

fn provision(n: usize) {
    let (dir, state) = class(n);
    let server = Server::start(&state, DELAY_MS);
    let (secs, _, json) = classkeys(dir.path(), &server.url, &["provision"]);
    expect(
        "provision",
        json["created"].as_array().map_or(0, Vec::len),
        n,
    );
    // list (1 page) + credits + one create per student
    row(
        &format!("provision {n} students"),
        secs,
        pages(0) + 1 + n,
        "target ratio <= 0.15",
    );
}

fn update(n: usize) {
    let (dir, state) = class(n);
    let fast = Server::start(&state, 0);
    classkeys(dir.path(), &fast.url, &["provision"]);
    settle(fast);
    let limits = std::fs::read_to_string(dir.path().join("limits.csv")).expect("limits.csv");
    let edited: Vec<String> = limits
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                l.replacen(",2.0,2.0,", ",5.0,2.0,", 1)
            }
        })
        .collect();
    std::fs::write(dir.path().join("limits.csv"), edited.join("\n") + "\n").expect("limits.csv");
    let server = Server::start(&state, DELAY_MS);
    let (secs, _, json) = classkeys(dir.path(), &server.url, &["update"]);
    expect("update", json["changes"].as_array().map_or(0, Vec::len), n);
    // The listing, one look at the credits (the limits go up), one PATCH per key.
    row(
        &format!("update {n} limits"),
        secs,
        pages(n) + 1 + n,
        "target ratio <= 0.25",
    );
}

fn check(n: usize, delay_ms: u64) {
    let (dir, state) = class(n);
    let fast = Server::start(&state, 0);
    classkeys(dir.path(), &fast.url, &["--jobs", "16", "provision"]);
    settle(fast);
    let server = Server::start(&state, delay_ms);
    let (secs, mb, json) = classkeys(dir.path(), &server.url, &["check"]);
    expect("check", json["students"].as_array().map_or(0, Vec::len), n);
    if delay_ms > 0 {
        let page_time = pages(n) as f64 * delay_ms as f64 / 1000.0;
        row(
            &format!("check {n} keys"),
            secs,
            pages(n),
            &format!("target <= pages + 1 s = {:.1} s", page_time + 1.0),
        );
    } else {
        println!(
            "{:<34} {secs:>7.2} s   peak memory {mb:.0} MB   target < 3 s, < 100 MB",
            format!("check {n} students, no delay")
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "classkeys throughput, server delay {DELAY_MS} ms per request, default --jobs 8 ({} cores)",
        num_cpus()
    );
    provision(400);
    provision(1000);
    update(200);
    check(1000, DELAY_MS);
    check(10_000, 0);
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
