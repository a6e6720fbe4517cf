//! `[database]`: which database, its pool and its timeouts.

use super::{Secret, humantime_serde_compat};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://user@host/db`; default
    /// `sqlite://<data_dir>/keymint.db`.
    pub url: Option<Secret>,
    /// Connections in the pool. Default: 10 on PostgreSQL; on SQLite, one
    /// reader per CPU core (plus the single writer), since more readers only
    /// add memory and thread contention.
    pub max_connections: Option<u32>,
    /// How long a request waits for a connection before answering 503.
    #[serde(with = "humantime_serde_compat")]
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits for the lock.
    #[serde(with = "humantime_serde_compat")]
    pub busy_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}
