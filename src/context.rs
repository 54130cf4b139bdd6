//! Resolved once per run: global options, the management key (or the sandbox), the UI.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::cli::Global;
use crate::error::AuthError;
use crate::openrouter::{Client, ManagementKey, Settings};
use crate::sandbox::Emulator;
use crate::ui::Ui;

pub const KEY_VARS: [&str; 2] = ["OPENROUTER_PROVISIONING_KEY", "OPENROUTER_MANAGEMENT_KEY"];
/// The sandbox's account lives in this file of the class folder.
pub const SANDBOX_FILE: &str = "sandbox.json";

pub struct Ctx {
    pub global: Global,
    pub ui: Ui,
    emulator: Option<Emulator>,
    retry_window: Duration,
}

impl Ctx {
    pub fn new(global: Global) -> Result<Ctx> {
        // Environment values are checked before anything else happens.
        let retry_window = retry_window()?;
        let ui = Ui::new(global.json, global.sandbox);
        // Once per process: `demo` runs many commands in one.
        static BANNER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if global.sandbox && !BANNER.swap(true, std::sync::atomic::Ordering::SeqCst) {
            ui.note("classkeys: SANDBOX: using the built-in OpenRouter emulator (sandbox.json); no real keys, no money");
        }
        Ok(Ctx {
            global,
            ui,
            emulator: None,
            retry_window,
        })
    }

    /// The class folder (the current one): where snapshots, api_keys files and sandbox.json go.
    /// Empty, so that file names are shown as `snapshot_….csv`, not `./snapshot_….csv`.
    pub fn dir(&self) -> PathBuf {
        PathBuf::new()
    }

    pub fn sandbox_file(&self) -> PathBuf {
        self.dir().join(SANDBOX_FILE)
    }

    /// The API client. Call it only after every input has been read and checked.
    pub fn client(&mut self) -> Result<Client> {
        let settings = Settings {
            timeout: Duration::from_secs(self.global.timeout),
            retry_window: self.retry_window,
            jobs: self.global.jobs as usize,
        };
        if self.global.sandbox {
            if self.emulator.is_none() {
                self.emulator = Some(Emulator::start(&self.sandbox_file())?);
            }
            let url = self
                .emulator
                .as_ref()
                .map(Emulator::base_url)
                .unwrap_or_default();
            return Client::new(&url, ManagementKey::new("sandbox".into()), settings);
        }
        let key = KEY_VARS
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|k| !k.trim().is_empty()))
            .ok_or_else(|| {
                AuthError(
                    "OPENROUTER_PROVISIONING_KEY is not set: export OPENROUTER_PROVISIONING_KEY=<your management key> \
                     (or OPENROUTER_MANAGEMENT_KEY), or rehearse with --sandbox"
                        .into(),
                )
            })?;
        crate::ui::register_secret(&key);
        Client::new(
            self.global
                .base_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or(crate::openrouter::DEFAULT_BASE_URL),
            ManagementKey::new(key.trim().to_string()),
            settings,
        )
    }
}

/// How long one request may keep retrying (seconds; CLASSKEYS_RETRY_WINDOW, default 60).
fn retry_window() -> Result<Duration> {
    let Some(raw) = std::env::var_os("CLASSKEYS_RETRY_WINDOW") else {
        return Ok(Duration::from_secs(60));
    };
    let text = raw.to_string_lossy();
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=3600.0).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(crate::error::input(format!(
            "CLASSKEYS_RETRY_WINDOW={}: give a number of seconds from 0 to 3600 (default 60), or unset it",
            crate::files::excerpt(&text)
        ))),
    }
}
