//! `[console]`: the operator console served at `/console` (docs/console.md).

use super::humantime_serde_compat;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ConsoleConfig {
    /// Serve the console at `/console`.
    pub enabled: bool,
    /// How long a signed-in browser session lasts.
    #[serde(with = "humantime_serde_compat")]
    pub session_ttl: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}
