//! One writer per class: an exclusive lock on `keys.db.lock` beside the database,
//! held for the whole command. A second classkeys waits for it, then stops with a
//! clear message if it does not come free.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error::BusyError;

pub struct ClassLock {
    _file: File,
}

const WAIT: Duration = Duration::from_secs(120);

impl ClassLock {
    pub fn acquire(db: &Path) -> Result<ClassLock> {
        let path = PathBuf::from(format!("{}.lock", db.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if !told {
                        eprintln!(
                            "classkeys: another classkeys is working on {}; waiting for it to finish…",
                            db.display()
                        );
                        told = true;
                    }
                    if start.elapsed() > WAIT {
                        return Err(BusyError(format!(
                            "another classkeys has been working on {} for over {} s; let it finish, then run this again",
                            db.display(),
                            WAIT.as_secs()
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
        let _ = writeln!(file, "{}", std::process::id());
        Ok(ClassLock { _file: file })
    }
}
