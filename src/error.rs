//! Exit codes and the few error kinds a caller decides on.
//!
//! Everything else is an `anyhow::Error` with context; `exit_code` walks the
//! chain to find the kind that decides the exit code.

use crate::openrouter::ApiError;

/// The documented exit codes (README "Exit codes", `classkeys --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Ok = 0,
    /// Something failed (API error, network, a key that could not be changed); what was done is recorded.
    Failed = 1,
    /// Bad usage or bad input (a file, an option); nothing was changed and no request was sent.
    Input = 2,
    /// The management key is missing, invalid or not a management key.
    Auth = 3,
    /// Another classkeys is working on the same keys.db.
    Busy = 4,
    /// Stopped by Ctrl-C (`watch`).
    Interrupted = 130,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// Bad input or usage: the message says what to fix. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Another process holds the class lock. Exit code 4.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BusyError(pub String);

/// The management key is missing. Exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Shorthand for returning an input error.
pub fn input(msg: impl Into<String>) -> anyhow::Error {
    InputError(msg.into()).into()
}

/// Output cut short by a closed pipe (`classkeys --json check | head`): nothing to report.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                == Some(BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(
                |e| matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == BrokenPipe),
            )
    })
}

pub fn exit_code(err: &anyhow::Error) -> Exit {
    if is_broken_pipe(err) {
        return Exit::Ok;
    }
    for cause in err.chain() {
        if cause.downcast_ref::<InputError>().is_some() {
            return Exit::Input;
        }
        if cause.downcast_ref::<BusyError>().is_some() {
            return Exit::Busy;
        }
        if cause.downcast_ref::<AuthError>().is_some() {
            return Exit::Auth;
        }
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return if api.is_auth() {
                Exit::Auth
            } else {
                Exit::Failed
            };
        }
    }
    // A file that could not be read or written before anything was sent changed nothing on the
    // account: fix it and run again, as for any bad input.
    if !crate::openrouter::any_request_sent()
        && err
            .chain()
            .any(|c| c.downcast_ref::<std::io::Error>().is_some())
    {
        return Exit::Input;
    }
    Exit::Failed
}

/// Print the error and its context chain, outermost first.
pub fn report(err: &anyhow::Error) {
    if is_broken_pipe(err) {
        return;
    }
    // Whatever a server or a file said: no secret, no escape sequence reaches the terminal.
    let shown = |e: &dyn std::fmt::Display| crate::ui::shown(&e.to_string());
    let mut chain = err.chain();
    if let Some(first) = chain.next() {
        eprintln!("classkeys: error: {}", shown(&first));
    }
    for cause in chain {
        eprintln!("  caused by: {}", shown(&cause));
    }
    if let Some(hint) = hint(err) {
        eprintln!("  hint: {hint}");
    }
}

fn hint(err: &anyhow::Error) -> Option<&'static str> {
    for cause in err.chain() {
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return match api.status() {
                Some(401) => Some(
                    "OpenRouter rejected the management key: check OPENROUTER_PROVISIONING_KEY (it may be mistyped, revoked or expired)",
                ),
                Some(403) => Some(
                    "this key is not a management key: create one under openrouter.ai/settings/management-keys and put it in OPENROUTER_PROVISIONING_KEY",
                ),
                Some(429) => Some(
                    "OpenRouter is rate limiting this account: wait a minute and run the same command again",
                ),
                _ => None,
            };
        }
    }
    None
}
