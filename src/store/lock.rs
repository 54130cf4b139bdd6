//! One writer per class: an exclusive lock on `keys.db.lock` beside the database file itself
//! (its real path, so the same keys.db reached through a symlinked folder has one lock), held
//! for the whole command. A second classkeys waits for it, then stops with a clear message
//! naming the process that holds it.
//!
//! The lock file is opened without following a symlink and must be a small file of its own
//! (one link): a planted symlink or hard link to keys.db (or any other file) is refused, never
//! truncated. It holds nothing but who holds the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error::{BusyError, input};

pub struct ClassLock {
    _file: File,
}

/// How long a command waits for the lock (milliseconds), and whether it says so: `watch` waits
/// a few seconds, silently (its screen says it).
static WAIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(120_000);
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Wait at most this long for the lock from now on, without a word if `quiet`.
pub fn set_patience(wait: Duration, quiet: bool) {
    use std::sync::atomic::Ordering;
    WAIT_MS.store(wait.as_millis() as u64, Ordering::SeqCst);
    QUIET.store(quiet, Ordering::SeqCst);
}
/// What a lock file classkeys wrote can hold: one line.
const MAX_LOCK_FILE: u64 = 4096;

/// `keys.db.lock` beside the real keys.db.
pub fn lock_path(db: &Path) -> PathBuf {
    let real = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf());
    let mut name = real.clone().into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

impl ClassLock {
    pub fn acquire(db: &Path) -> Result<ClassLock> {
        let path = lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    input(format!(
                        "{} is a symbolic link, not classkeys' lock file; nothing was changed. \
                         Remove it (`rm {}`) and run the command again",
                        path.display(),
                        path.display()
                    ))
                } else {
                    anyhow::Error::new(e).context(format!(
                        "opening the lock file {}: check that the folder is writable",
                        path.display()
                    ))
                }
            })?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        if !meta.is_file() || meta.nlink() != 1 || meta.len() > MAX_LOCK_FILE {
            return Err(input(format!(
                "{} is not classkeys' lock file (a link to another file, or a file of {} bytes); \
                 it was left untouched and nothing was changed. Move it away and run the command again",
                path.display(),
                meta.len()
            )));
        }
        let start = Instant::now();
        let wait = Duration::from_millis(WAIT_MS.load(std::sync::atomic::Ordering::SeqCst));
        let mut told = QUIET.load(std::sync::atomic::Ordering::SeqCst);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    // A moment first, so that the holder has written who it is.
                    if !told && start.elapsed() > Duration::from_millis(300) {
                        eprintln!(
                            "classkeys: another classkeys ({}) is working on {}; waiting for it to finish…",
                            holder(&path),
                            db.display()
                        );
                        told = true;
                    }
                    if start.elapsed() > wait {
                        return Err(BusyError(format!(
                            "another classkeys ({}) has been working on {} for over {} s; let it finish, then run this again",
                            holder(&path),
                            db.display(),
                            wait.as_secs()
                        ))
                        .into());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let command: Vec<String> = std::env::args().skip(1).take(4).collect();
        let _ = writeln!(
            file,
            "pid {} since {}: classkeys {}",
            std::process::id(),
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S"),
            crate::files::excerpt(&command.join(" "))
        );
        Ok(ClassLock { _file: file })
    }
}

/// Who holds the lock, as the holder wrote it.
fn holder(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        let _ = f.take(MAX_LOCK_FILE).read_to_string(&mut text);
    }
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "process unknown".into()
    } else {
        line.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    }
}
