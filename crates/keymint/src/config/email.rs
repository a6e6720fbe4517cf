//! `[email]`, `[email.postmark]` and `[email.smtp]`: the sender, retries
//! and the provider that delivers license emails.

use super::{Secret, humantime_serde_compat};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmailProvider {
    Log,
    Postmark,
    Smtp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EmailConfig {
    pub provider: EmailProvider,
    /// Sender address.
    pub from: String,
    /// Sender display name.
    pub from_name: Option<String>,
    /// Optional Reply-To address.
    pub reply_to: Option<String>,
    /// Directory with template overrides (`license.subject`, `license.txt`,
    /// `license.html`); default `<config dir>/templates`.
    pub templates_dir: Option<PathBuf>,
    /// Attempts before an email is marked `dead`.
    pub max_attempts: u32,
    /// First retry delay; doubles on each attempt, with full jitter.
    #[serde(with = "humantime_serde_compat")]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde_compat")]
    pub retry_max: Duration,
    /// How often the outbox worker looks for due emails when idle.
    #[serde(with = "humantime_serde_compat")]
    pub poll_interval: Duration,
    /// How long a claimed email is leased to one worker.
    #[serde(with = "humantime_serde_compat")]
    pub lease: Duration,
    pub postmark: PostmarkConfig,
    pub smtp: SmtpConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PostmarkConfig {
    /// Server API token (`X-Postmark-Server-Token`).
    pub server_token: Option<Secret>,
    /// API base URL.
    pub api_url: String,
    /// Message stream.
    pub message_stream: String,
    /// Per-request timeout.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Implicit TLS (usually port 465).
    Tls,
    /// STARTTLS upgrade (usually port 587).
    Starttls,
    /// No encryption (a local relay only).
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SmtpConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: SmtpTls,
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            provider: EmailProvider::Log,
            from: "licenses@example.com".into(),
            from_name: None,
            reply_to: None,
            templates_dir: None,
            max_attempts: 8,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(6 * 3600),
            poll_interval: Duration::from_secs(2),
            lease: Duration::from_secs(60),
            postmark: PostmarkConfig::default(),
            smtp: SmtpConfig::default(),
        }
    }
}

impl Default for PostmarkConfig {
    fn default() -> Self {
        Self {
            server_token: None,
            api_url: "https://api.postmarkapp.com".into(),
            message_stream: "outbound".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            username: None,
            password: None,
            tls: SmtpTls::Starttls,
            timeout: Duration::from_secs(15),
        }
    }
}
