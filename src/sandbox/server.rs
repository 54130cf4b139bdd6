//! The emulator's sockets and threads: tiny_http accepts, a fixed set of workers answers (so
//! requests sent together are answered together), and a saver thread writes the account when
//! it changed, at most every `SAVE_EVERY`.
//!
//! Each answer goes out in one write: tiny_http would write the headers and the body apart, and
//! Nagle's algorithm plus the client's delayed ACK then stall a request by ~40 ms.
//!
//! Each answer also closes its connection. tiny_http reads every connection on a thread of its
//! own pool for as long as the connection lives, and when connections arrive in a burst (the
//! client opens up to 16 at once) its pool can queue one behind a thread that is busy with an
//! idle keep-alive connection: that request then waits until the client times out (30 s),
//! which for a create means "maybe made" and a duplicate key. A connection per request costs
//! a loopback connect (tens of microseconds) and frees the pool thread as soon as it is answered.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Result, anyhow};
use chrono::Utc;

use super::Options;
use super::api::{self, Answer};
use super::state::Account;

const SAVE_EVERY: Duration = Duration::from_millis(500);
/// Request bodies are a few hundred bytes; anything this big is not a client of ours.
const MAX_BODY: u64 = 1 << 20;

pub struct Shared {
    pub path: PathBuf,
    account: Mutex<Account>,
    dirty: AtomicBool,
    stop: AtomicBool,
    /// One save at a time (the saver thread, a final save, `update`).
    saving: Mutex<()>,
    warned: AtomicBool,
    options: Options,
    /// sandbox.json's modification time as this process last read or wrote it: a newer one
    /// is another process's change (a `sandbox spend` beside a running `watch`), read back.
    seen: Mutex<Option<std::time::SystemTime>>,
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    saver: Option<JoinHandle<()>>,
}

pub fn start(path: PathBuf, account: Account, options: Options) -> Result<Running> {
    let server = tiny_http::Server::http(("127.0.0.1", options.port))
        .map_err(|e| anyhow!("cannot listen on 127.0.0.1:{}: {e}", options.port))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow!("the sandbox server has no IP address"))?;
    let server = Arc::new(server);
    let shared = Arc::new(Shared {
        account: Mutex::new(account),
        dirty: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        saving: Mutex::new(()),
        warned: AtomicBool::new(false),
        seen: Mutex::new(modified(&path)),
        path,
        options,
    });
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .map_err(|e| anyhow!("cannot start a sandbox thread: {e}"))
    };
    let mut running = Running {
        addr,
        shared: shared.clone(),
        server: server.clone(),
        workers: Vec::new(),
        saver: None,
    };
    for i in 0..shared.options.workers.max(1) {
        let (server, shared) = (server.clone(), shared.clone());
        // On failure `running` is dropped, which stops the workers already started.
        running.workers.push(spawn(
            format!("sandbox-{i}"),
            Box::new(move || {
                while let Ok(request) = server.recv() {
                    answer(request, &shared);
                }
            }),
        )?);
    }
    let saver_shared = shared.clone();
    running.saver = Some(spawn(
        "sandbox-save".into(),
        Box::new(move || {
            while !saver_shared.stop.load(Ordering::SeqCst) {
                std::thread::park_timeout(SAVE_EVERY);
                saver_shared.save_in_background();
            }
        }),
    )?);
    Ok(running)
}

impl Running {
    /// Stop answering, stop the saver, save what changed.
    pub fn stop(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Each worker leaves its loop on one unblock.
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(saver) = self.saver.take() {
            saver.thread().unpark();
            let _ = saver.join();
        }
        self.shared.save()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("classkeys: error: SANDBOX: {e:#}");
        }
    }
}

impl Shared {
    fn account(&self) -> MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change the account in place (e.g. a simulated spend) and save it now.
    pub fn update<T>(&self, change: impl FnOnce(&mut Account) -> Result<T>) -> Result<T> {
        let out = change(&mut self.account())?;
        self.dirty.store(true, Ordering::SeqCst);
        self.save()?;
        Ok(out)
    }

    /// Write the account if it changed since the last save.
    fn save(&self) -> Result<()> {
        let _one = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        // Encode under the lock (fast), write without it (requests keep being answered).
        let result = self
            .account()
            .to_json()
            .and_then(|json| Account::write(&self.path, &json));
        if result.is_err() {
            self.dirty.store(true, Ordering::SeqCst);
        } else {
            *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = modified(&self.path);
        }
        result
    }

    /// Read sandbox.json again if another process changed it since (and this one has nothing
    /// unsaved).
    fn reload_if_changed(&self) {
        let _one = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        if self.dirty.load(Ordering::SeqCst) {
            return;
        }
        let now = modified(&self.path);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if now.is_some() && now != *seen {
            if let Ok(account) = Account::load(&self.path) {
                *self.account() = account;
            }
            *seen = now;
        }
    }

    fn save_in_background(&self) {
        if let Err(e) = self.save()
            && !self.warned.swap(true, Ordering::SeqCst)
        {
            eprintln!("classkeys: warning: SANDBOX: {e:#} (trying again)");
        }
    }
}

fn answer(mut request: tiny_http::Request, shared: &Shared) {
    if !shared.options.delay.is_zero() {
        std::thread::sleep(shared.options.delay);
    }
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    };
    let auth = header("Authorization");
    let method = request.method().as_str().to_string();
    let target = request.url().to_string();
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body);
    let reply = if let Some(denied) = api::authorize(auth.as_deref(), &shared.options.auth) {
        denied
    } else if read.is_err() {
        Answer::error(400, "The request body could not be read")
    } else if body.len() as u64 > MAX_BODY {
        Answer::error(413, "Request body too large")
    } else {
        shared.reload_if_changed();
        let (reply, changed) =
            api::handle(&mut shared.account(), &method, &target, &body, Utc::now());
        if changed {
            shared.dirty.store(true, Ordering::SeqCst);
        }
        reply
    };
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len(),
    )
    .into_bytes();
    bytes.extend_from_slice(reply.body.as_bytes());
    let mut out = request.into_writer();
    // The client may have gone (timeout, Ctrl-C): nothing to do about it here.
    let _ = out.write_all(&bytes).and_then(|()| out.flush());
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Error",
    }
}
