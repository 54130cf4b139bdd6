//! The built-in OpenRouter emulator behind `--sandbox`: a rehearsal account with no management
//! key, no money and no network beyond loopback.
//!
//! It is a real HTTP server on an ephemeral 127.0.0.1 port inside the process, so every command
//! runs the same client code path as against openrouter.ai (pagination, `include_disabled`,
//! 201 on create, error bodies). The account lives in the class folder's `sandbox.json`, loaded
//! at start and saved when it changed (at most every half second, and when the emulator stops),
//! so consecutive commands see the same account without rewriting the file on every request.

mod api;
mod guardrails;
mod server;
mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};

pub use api::Auth;
pub use state::{Account, DEFAULT_MODEL, SandboxKey, SpendOutcome};

use server::Shared;

/// The token `Ctx` sends to the in-process emulator.
pub const TOKEN: &str = "sandbox";

/// How an emulator serves.
#[derive(Debug, Clone)]
pub struct Options {
    pub port: u16,
    /// Every answer waits this long (benchmarks of many requests in flight).
    pub delay: Duration,
    pub workers: usize,
    pub auth: Auth,
}

impl Options {
    /// The in-process sandbox: the client sends at most 16 requests at once.
    pub fn in_process() -> Options {
        Options {
            port: 0,
            delay: Duration::ZERO,
            workers: 16,
            auth: Auth::Token(TOKEN.into()),
        }
    }

    /// `classkeys sandbox serve`: any bearer token, enough workers for slow answers in parallel.
    pub fn serve(port: u16, delay: Duration) -> Options {
        Options {
            port,
            delay,
            workers: 32,
            auth: Auth::Any,
        }
    }
}

/// A running emulator. Dropping it stops the server and saves the account (an error is
/// printed: a drop cannot return it).
pub struct Emulator {
    base_url: String,
    running: server::Running,
}

/// Emulators of this process, by state file, so `sandbox spend` changes a running one's
/// account instead of a file it would overwrite.
static LIVE: Mutex<Vec<(PathBuf, Weak<Shared>)>> = Mutex::new(Vec::new());

impl Emulator {
    /// Serve the account in `state` (created on the first change if missing).
    pub fn start(state: &Path) -> Result<Emulator> {
        Emulator::start_with(state, Options::in_process())
    }

    pub fn start_with(state: &Path, options: Options) -> Result<Emulator> {
        let path = absolute(state)?;
        let account = Account::load(&path)?;
        let running = server::start(path.clone(), account, options)
            .context("starting the sandbox (the built-in OpenRouter emulator)")?;
        let base_url = format!("http://{}/api/v1", running.addr);
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|(_, w)| w.strong_count() > 0);
        live.push((path, Arc::downgrade(&running.shared)));
        Ok(Emulator { base_url, running })
    }

    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn state_file(&self) -> &Path {
        &self.running.shared.path
    }
}

/// Change the sandbox account in `state`: through this process's running emulator if there is
/// one, else by reading the file, changing it and writing it back.
pub fn update_account<T>(
    state: &Path,
    change: impl FnOnce(&mut Account) -> Result<T>,
) -> Result<T> {
    let path = absolute(state)?;
    match live(&path) {
        Some(shared) => shared.update(change),
        None => {
            let mut account = Account::load(&path)?;
            let out = change(&mut account)?;
            account.save(&path)?;
            Ok(out)
        }
    }
}

/// Empty the sandbox account, even one whose file is unreadable. Returns how many keys it had
/// (`None`: the file could not be read).
pub fn reset(state: &Path) -> Result<Option<usize>> {
    let path = absolute(state)?;
    match live(&path) {
        Some(shared) => shared.update(|a| Ok(Some(std::mem::take(a).keys.len()))),
        None => {
            let before = Account::load(&path).ok().map(|a| a.keys.len());
            Account::default().save(&path)?;
            Ok(before)
        }
    }
}

fn live(path: &Path) -> Option<Arc<Shared>> {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.iter()
        .filter(|(p, _)| p == path)
        .find_map(|(_, w)| w.upgrade())
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path)
        .with_context(|| format!("locating the sandbox file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openrouter::{Client, ManagementKey, NewKey, Patch, Settings};
    use std::time::Instant;

    fn client(url: &str, key: &str) -> Client {
        let settings = Settings {
            timeout: Duration::from_secs(5),
            retry_window: Duration::from_secs(2),
            jobs: 16,
        };
        Client::new(url, ManagementKey::new(key.into()), settings).unwrap()
    }

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            limit: Some(2.0),
            limit_reset: None,
            expires_at: None,
        }
    }

    #[test]
    fn the_real_client_runs_against_it_and_the_account_persists() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sandbox.json");
        let emu = Emulator::start(&file).unwrap();
        let url = emu.base_url();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with("/api/v1"),
            "{url}"
        );
        let c = client(&url, TOKEN);
        let made: Vec<_> = (0..130)
            .map(|i| c.create_key(&new_key(&format!("k{i}"))).unwrap())
            .collect();
        c.update_key(
            &made[0].data.hash,
            &Patch {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        let all = c.list_keys().unwrap();
        assert_eq!(all.len(), 130, "both pages, the disabled key too");
        assert_eq!(all[0].name, "k129");
        c.delete_key(&made[1].data.hash).unwrap();
        c.delete_key(&made[1].data.hash).unwrap();
        let e = c.get_key(&made[1].data.hash).unwrap_err();
        assert_eq!(e.status(), Some(404));
        assert_eq!(c.credits().unwrap().total_credits, 100.0);
        let wrong = client(&url, "sk-or-v1-someone-else");
        assert!(wrong.list_keys().unwrap_err().is_auth());
        drop(emu);

        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let saved = Account::load(&file).unwrap();
        assert_eq!(saved.keys.len(), 129);
        assert_eq!(saved.find(&made[0].data.hash).unwrap().secret, made[0].key);

        let emu = Emulator::start(&file).unwrap();
        let again = client(&emu.base_url(), TOKEN).list_keys().unwrap();
        assert_eq!(again.len(), 129);
    }

    #[test]
    fn spends_go_through_a_running_emulator() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sandbox.json");
        let emu = Emulator::start(&file).unwrap();
        let c = client(&emu.base_url(), TOKEN);
        let k = c.create_key(&new_key("a")).unwrap();
        let out = update_account(&file, |a| {
            Ok(a.spend(&k.data.hash, 0.5, "openai/gpt-4o-mini", chrono::Utc::now()))
        })
        .unwrap()
        .unwrap();
        assert_eq!(out.added, 0.5);
        assert_eq!(c.get_key(&k.data.hash).unwrap().usage, 0.5);
        assert_eq!(reset(&file).unwrap(), Some(1));
        assert!(c.list_keys().unwrap().is_empty());
    }

    #[test]
    fn saves_while_running_not_only_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sandbox.json");
        let emu = Emulator::start(&file).unwrap();
        client(&emu.base_url(), TOKEN)
            .create_key(&new_key("a"))
            .unwrap();
        let start = Instant::now();
        while Account::load(&file).unwrap().keys.is_empty() {
            assert!(start.elapsed() < Duration::from_secs(3), "never saved");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sandbox.json");
        std::fs::write(&file, "[1,2").unwrap();
        let e = Emulator::start(&file).err().unwrap();
        let text = format!("{e:#}");
        assert!(
            text.contains("sandbox.json") && text.contains("classkeys sandbox reset"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "[1,2",
            "left as it was"
        );
    }

    #[test]
    fn answers_are_quick() {
        // 40 ms Nagle stalls per request would make this take seconds.
        let dir = tempfile::tempdir().unwrap();
        let emu = Emulator::start(&dir.path().join("sandbox.json")).unwrap();
        let c = client(&emu.base_url(), TOKEN);
        let made: Vec<_> = (0..5)
            .map(|i| c.create_key(&new_key(&format!("k{i}"))).unwrap())
            .collect();
        let start = Instant::now();
        for i in 0..100 {
            let h = &made[i % 5].data.hash;
            c.update_key(
                h,
                &Patch {
                    limit: Some(Some(i as f64)),
                    ..Default::default()
                },
            )
            .unwrap();
            // A page of five keys is bigger than tiny_http's 1 KiB write buffer.
            assert_eq!(c.list_keys().unwrap().len(), 5);
        }
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "200 requests took {took:?}");
    }

    #[test]
    fn bursts_of_new_connections_are_all_answered() {
        // tiny_http reads each connection on a thread of its pool; in a burst of new connections
        // it can queue one behind a thread held by an idle kept-alive connection, and the
        // request then hangs until the client's timeout.
        let dir = tempfile::tempdir().unwrap();
        let emu = Emulator::start(&dir.path().join("sandbox.json")).unwrap();
        let start = Instant::now();
        let mut clients = Vec::new();
        for round in 0..12 {
            let c = client(&emu.base_url(), TOKEN);
            c.list_keys().unwrap();
            std::thread::scope(|s| {
                for i in 0..16 {
                    let c = &c;
                    s.spawn(move || c.create_key(&new_key(&format!("r{round}k{i}"))).unwrap());
                }
            });
            // Kept, with whatever connections it holds open.
            clients.push(c);
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "12 bursts of 16 took {took:?}"
        );
        assert_eq!(clients[0].list_keys().unwrap().len(), 192);
    }

    #[test]
    fn slow_answers_are_served_in_parallel() {
        let dir = tempfile::tempdir().unwrap();
        let emu = Emulator::start_with(
            &dir.path().join("sandbox.json"),
            Options::serve(0, Duration::from_millis(200)),
        )
        .unwrap();
        let c = client(&emu.base_url(), "anything");
        let start = Instant::now();
        std::thread::scope(|s| {
            for i in 0..16 {
                let c = &c;
                s.spawn(move || c.create_key(&new_key(&format!("k{i}"))).unwrap());
            }
        });
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "16 slow creates took {took:?}"
        );
    }
}
