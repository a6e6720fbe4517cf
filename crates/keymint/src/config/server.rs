//! `[server]`: the listener, the data directory, logs, request limits and
//! their defaults.

use super::humantime_serde_compat;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address to listen on, parsed at load (port 0 picks a free port).
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Where the SQLite database and signing keys live.
    pub data_dir: PathBuf,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Default log filter (overridden by `KEYMINT_LOG` / `RUST_LOG`).
    pub log_level: String,
    /// Largest accepted webhook body, in bytes.
    pub max_body_bytes: usize,
    /// Time allowed for a whole request, including reading the body.
    #[serde(with = "humantime_serde_compat")]
    pub request_timeout: Duration,
    /// Time allowed for a client to send its request headers.
    #[serde(with = "humantime_serde_compat")]
    pub header_read_timeout: Duration,
    /// Record the last `X-Forwarded-For` address (the one a single reverse
    /// proxy in front appended) as the source IP, instead of the peer.
    pub trust_forwarded_for: bool,
    /// Most client connections open at once; beyond it new connections wait
    /// in the kernel's backlog until one closes, so file descriptors (which
    /// the database and key files need too) cannot be exhausted.
    pub max_connections: usize,
    /// Deliveries that fail authentication recorded per source IP and
    /// minute; beyond it they are answered the same but only counted in
    /// `/metrics` (`keymint_webhook_rejected_unrecorded_total`).
    pub rejected_per_minute: u32,
    /// Accept the documented placeholder secrets and webhook secrets shorter
    /// than [`super::MIN_SECRET_BYTES`]: for test configurations and trying keymint
    /// out with `keymint.example.toml`. Honoured only while `listen` is a
    /// loopback address, so an instance reachable from outside never runs
    /// with a guessable secret.
    pub allow_weak_secrets: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("keymint-data"),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            max_body_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            trust_forwarded_for: false,
            max_connections: 512,
            rejected_per_minute: 30,
            allow_weak_secrets: false,
        }
    }
}

/// `listen` as written (`"127.0.0.1:8080"`, `"[::1]:8080"`), refused at
/// load with the value when it is not an address.
fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!("{text:?} is not an address like 127.0.0.1:8080"))
    })
}
