//! The built-in OpenRouter emulator behind `--sandbox` (to be written).

use std::path::Path;

use anyhow::Result;

pub struct Emulator {
    base_url: String,
}

impl Emulator {
    pub fn start(_state: &Path) -> Result<Emulator> {
        anyhow::bail!("the sandbox is not built yet")
    }
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }
}
