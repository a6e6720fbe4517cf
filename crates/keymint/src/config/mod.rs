//! Configuration: compiled-in defaults, then `keymint.toml`, then
//! `KEYMINT_*` environment variables, then `*_FILE` secrets.
//!
//! Loading never stops at the first problem: [`Config::load`] returns every
//! problem it found (values of the wrong type, unknown keys, missing,
//! placeholder or short secrets, products mapped twice, ...), each starting
//! with its path (`endpoints[2].kind: ...`), so `keymint check-config` can
//! print them all, and `serve` refuses to start while any remain (README,
//! "Configuration").

mod env;
mod read;
mod secrets;

use env::*;
use read::*;
pub use secrets::MIN_SECRET_BYTES;
use secrets::*;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "KEYMINT_";
/// Environment variables that are not config keys.
const ENV_RESERVED: &[&str] = &["KEYMINT_CONFIG", "KEYMINT_LOG"];
/// Prefix of variables used by keymint's own test suite, not config keys.
const ENV_TEST_PREFIX: &str = "KEYMINT_TEST_";
/// Keys whose value may be read from a file named by `<key>_file` in the
/// TOML, or `KEYMINT_..._FILE` in the environment.
const SECRET_KEYS: &[&str] = &[
    "secrets",
    "server_token",
    "password",
    "url",
    "secret_key",
    "api_key",
];

/// A secret string: shown as `***` by `Debug` and `Display`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub email: EmailConfig,
    pub signing: SigningConfig,
    pub workers: WorkersConfig,
    pub subscriptions: SubscriptionsConfig,
    pub retention: RetentionConfig,
    pub reconciler: ReconcilerConfig,
    pub endpoints: Vec<EndpointConfig>,
    pub products: Vec<ProductConfig>,
    /// Directory the config file was loaded from (templates are looked up
    /// under `<config dir>/templates` unless `email.templates_dir` is set).
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
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
    /// Trust `X-Forwarded-For` for the recorded source IP (behind a proxy).
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
    /// than [`MIN_SECRET_BYTES`]: for test configurations and trying keymint
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SigningConfig {
    /// The `iss` claim of every token.
    pub issuer: String,
    /// A PASERK `k4.secret...` key to sign with instead of the key files in
    /// the data directory (give every replica the same one).
    pub secret_key: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkersConfig {
    /// Run background workers (outbox sender) in `serve`.
    pub enabled: bool,
}

/// Provider kinds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    Gumroad,
    Stripe,
    Standard,
    Polar,
    Lemonsqueezy,
    Paddle,
    Hyperswitch,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gumroad => "gumroad",
            Self::Stripe => "stripe",
            Self::Standard => "standard",
            Self::Polar => "polar",
            Self::Lemonsqueezy => "lemonsqueezy",
            Self::Paddle => "paddle",
            Self::Hyperswitch => "hyperswitch",
        }
    }
}

// Unknown keys in an endpoint or a product are reported by the loader with
// their path (`endpoints[1].secret`), like everywhere else in the file.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointConfig {
    /// Served at `POST /webhooks/{name}`.
    pub name: String,
    pub kind: EndpointKind,
    /// Accepted secrets; several allow rotation without downtime.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Replay window for providers that sign a timestamp (stripe, standard,
    /// polar, paddle): deliveries further than this from now, in either
    /// direction, are rejected.
    #[serde(default = "default_tolerance", with = "humantime_serde_compat")]
    pub tolerance: Duration,
    /// Polar only: the secret is a legacy one, used as raw UTF-8 bytes
    /// instead of base64-decoded.
    #[serde(default)]
    pub legacy_secret: bool,
    /// The provider's API key (Stripe: a restricted key with read access to
    /// Checkout Sessions, used to fetch line items).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// The provider's API base URL (default: the provider's public API).
    #[serde(default)]
    pub api_url: Option<String>,
}

impl EndpointConfig {
    /// An endpoint with defaults, for tests and tools.
    pub fn for_test(name: &str, kind: EndpointKind, secrets: &[&str]) -> Self {
        Self {
            name: name.into(),
            kind,
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance: default_tolerance(),
            legacy_secret: false,
            api_key: None,
            api_url: None,
        }
    }
}

fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SubscriptionsConfig {
    /// Access continues this long after a paid period ends (late renewal
    /// webhooks, payment retries); subscription tokens expire at the period
    /// end plus this.
    #[serde(with = "humantime_serde_compat")]
    pub grace: Duration,
    /// Email a fresh token to the buyer when a subscription renews.
    pub renewal_email: bool,
    /// How often the sweeper expires subscriptions whose paid period (plus
    /// grace) has ended.
    #[serde(with = "humantime_serde_compat")]
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReconcilerConfig {
    /// How often `keymint serve` runs it (with workers enabled).
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Operator refunds still pending this long are checked against the
    /// provider's API.
    #[serde(with = "humantime_serde_compat")]
    pub pending_age: Duration,
    /// Operator refunds without a provider id this long (the process died
    /// between writing the row and calling the provider) are failed and
    /// the license restored.
    #[serde(with = "humantime_serde_compat")]
    pub orphan_age: Duration,
    /// Rows looked at per tick.
    pub batch: i64,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            pending_age: Duration::from_secs(900),
            orphan_age: Duration::from_secs(120),
            batch: 50,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Processed, duplicate and ignored deliveries older than this are
    /// deleted.
    #[serde(with = "humantime_serde_compat")]
    pub deliveries: Duration,
    /// Failed deliveries (kept longer: an operator may still replay them).
    #[serde(with = "humantime_serde_compat")]
    pub failed_deliveries: Duration,
    /// Deliveries that failed authentication (forensics only: they hold at
    /// most a prefix of the body and are never replayed).
    #[serde(with = "humantime_serde_compat")]
    pub rejected_deliveries: Duration,
    /// Dead emails (an operator has had this long to resend them).
    #[serde(with = "humantime_serde_compat")]
    pub dead_emails: Duration,
    /// Rows deleted per transaction.
    pub batch: i64,
    /// Pause between batches, so ingest is never held up.
    #[serde(with = "humantime_serde_compat")]
    pub pause: Duration,
    /// How often `keymint serve` runs it (with workers enabled).
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            deliveries: Duration::from_secs(90 * DAY),
            failed_deliveries: Duration::from_secs(365 * DAY),
            rejected_deliveries: Duration::from_secs(30 * DAY),
            dead_emails: Duration::from_secs(90 * DAY),
            batch: 1000,
            pause: Duration::from_millis(100),
            interval: Duration::from_secs(3600),
        }
    }
}

impl RetentionConfig {
    /// The cut-offs at `now` (Unix ms).
    pub fn cutoffs(&self, now: i64) -> crate::store::retention::Cutoffs {
        let before = |d: Duration| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
        crate::store::retention::Cutoffs {
            deliveries: before(self.deliveries),
            failed_deliveries: before(self.failed_deliveries),
            rejected_deliveries: before(self.rejected_deliveries),
            dead_emails: before(self.dead_emails),
        }
    }
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3 * 86_400),
            renewal_email: true,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductConfig {
    pub id: String,
    pub name: String,
    pub tier: String,
    pub key_prefix: String,
    /// `perpetual` or a duration such as `365d`.
    #[serde(default = "default_duration")]
    pub duration: String,
    /// Absent: unlimited machines.
    #[serde(default)]
    pub max_machines: Option<u32>,
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// Put the buyer's email in the token's claims.
    #[serde(default)]
    pub include_email: bool,
    /// Revoke on a partial refund too (default: only a full refund revokes).
    #[serde(default)]
    pub revoke_on_partial_refund: bool,
    /// Sold as a subscription: its license comes from subscription events
    /// only, and a plain order of it (such as Lemon Squeezy's
    /// `order_created` for a subscription's first payment) mints nothing.
    #[serde(default)]
    pub subscription: bool,
    /// Endpoint name -> that provider's product ids.
    #[serde(default)]
    pub map: BTreeMap<String, Vec<String>>,
}

fn default_duration() -> String {
    "perpetual".into()
}

impl ProductConfig {
    /// `None` for perpetual.
    pub fn validity(&self) -> Result<Option<Duration>, String> {
        parse_validity(&self.duration)
    }
}

/// Parses `perpetual` or a humantime duration (`365d`, `12h`).
pub fn parse_validity(text: &str) -> Result<Option<Duration>, String> {
    if text.eq_ignore_ascii_case("perpetual") {
        return Ok(None);
    }
    match humantime::parse_duration(text) {
        Ok(d) if d.as_secs() > 0 => Ok(Some(d)),
        Ok(_) => Err(format!("duration {text:?} must be longer than a second")),
        Err(e) => Err(format!(
            "duration {text:?} is neither \"perpetual\" nor a duration like \"365d\": {e}"
        )),
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
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

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            issuer: "keymint".into(),
            secret_key: None,
        }
    }
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Durations written as `"30s"`, `"5m"`, `"250ms"`.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration like \"30s\", \"5m\" or \"250ms\": {e}"
            ))
        })
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug)]
pub struct ConfigProblems(pub Vec<String>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

impl Config {
    /// Loads from `path` (if any) and the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigProblems> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// Loads from `path` (if any) and the given environment.
    pub fn load_with_env(
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigProblems> {
        let (config, problems) = Self::load_all(path, env)?;
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigProblems(problems))
        }
    }

    /// As [`Config::load_with_env`], but a configuration with problems is
    /// returned too (defaults where a value could not be read), so
    /// `check-config` can go on and check the database as well. Only a file
    /// that cannot be read or parsed at all is an error here.
    pub fn load_all(
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<(Self, Vec<String>), ConfigProblems> {
        let mut problems = Vec::new();
        let mut root = toml::Table::new();
        if let Some(path) = path {
            match std::fs::read_to_string(path) {
                Ok(text) => match text.parse::<toml::Table>() {
                    Ok(t) => root = t,
                    Err(e) => return Err(ConfigProblems(vec![format!("{}: {e}", path.display())])),
                },
                Err(e) => {
                    return Err(ConfigProblems(vec![format!(
                        "cannot read {}: {e}",
                        path.display()
                    )]));
                }
            }
        }
        apply_env(&mut root, env, &mut problems);
        resolve_secret_files(&mut root, "", &mut problems);
        for var in ["KEYMINT_LOG", "RUST_LOG"] {
            // The first one set replaces server.log_level (telemetry::init).
            if let Some((_, filter)) = env.iter().find(|(k, v)| k == var && !v.trim().is_empty()) {
                if let Err(e) = crate::telemetry::parse_filter(filter) {
                    problems.push(format!("{var}: {e}"));
                }
                break;
            }
        }

        let (mut config, layout) = deserialize_config(root, &mut problems);
        config.config_dir = path.and_then(|p| p.parent()).map(Path::to_path_buf);
        config.validate(&layout, &mut problems);
        Ok((config, problems))
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> Secret {
        self.database.url.clone().unwrap_or_else(|| {
            Secret::new(format!(
                "sqlite://{}",
                self.server.data_dir.join("keymint.db").display()
            ))
        })
    }

    /// Directory of template overrides, if one is configured or present.
    pub fn templates_dir(&self) -> Option<PathBuf> {
        self.email
            .templates_dir
            .clone()
            .or_else(|| self.config_dir.as_ref().map(|d| d.join("templates")))
    }

    pub fn endpoint(&self, name: &str) -> Option<&EndpointConfig> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    pub fn product(&self, id: &str) -> Option<&ProductConfig> {
        self.products.iter().find(|p| p.id == id)
    }

    fn validate(&self, layout: &Layout, problems: &mut Vec<String>) {
        if let Err(e) = crate::telemetry::parse_filter(&self.server.log_level) {
            problems.push(format!("server.log_level: {e}"));
        }
        let listen = self.server.listen.parse::<SocketAddr>();
        if listen.is_err() {
            problems.push(format!(
                "server.listen: {:?} is not an address like 127.0.0.1:8080",
                self.server.listen
            ));
        }
        if self.server.max_connections == 0 {
            problems.push("server.max_connections: must be positive".into());
        }
        if self.server.max_body_bytes == 0 {
            problems.push("server.max_body_bytes: must be positive".into());
        }
        // A zero period would make a timeout fire at once or a worker spin.
        for (path, d) in [
            ("server.request_timeout", self.server.request_timeout),
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("email.poll_interval", self.email.poll_interval),
            (
                "subscriptions.sweep_interval",
                self.subscriptions.sweep_interval,
            ),
            ("reconciler.interval", self.reconciler.interval),
            ("retention.interval", self.retention.interval),
        ] {
            if d.is_zero() {
                problems.push(format!("{path}: must be longer than zero"));
            }
        }
        for (path, n) in [
            ("reconciler.batch", self.reconciler.batch),
            ("retention.batch", self.retention.batch),
        ] {
            if n < 1 {
                problems.push(format!("{path}: must be at least 1, not {n}"));
            }
        }
        let weak_allowed =
            self.server.allow_weak_secrets && listen.as_ref().is_ok_and(|a| a.ip().is_loopback());
        if self.server.allow_weak_secrets && !weak_allowed && listen.is_ok() {
            problems.push(format!(
                "server.allow_weak_secrets: only allowed while server.listen is a loopback address (127.0.0.1 or [::1]), not {:?}",
                self.server.listen
            ));
        }
        let url = self.database_url();
        // `split` always yields a first part.
        let scheme = url.expose().split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            problems.push(format!(
                "database.url: scheme {scheme:?} is not supported (use sqlite:// or postgres://)"
            ));
        }
        if self.database.max_connections == Some(0) {
            problems.push("database.max_connections: must be at least 1".into());
        }
        if !self.email.from.contains('@') {
            problems.push(format!(
                "email.from: {:?} is not an email address",
                self.email.from
            ));
        }
        if self.email.max_attempts == 0 {
            problems.push("email.max_attempts: must be at least 1".into());
        }
        match self.email.provider {
            EmailProvider::Log => {}
            EmailProvider::Postmark => {
                if self
                    .email
                    .postmark
                    .server_token
                    .as_ref()
                    .is_none_or(|t| t.expose().trim().is_empty())
                {
                    problems.push(
                        "email.postmark.server_token: not set, but email.provider is \"postmark\""
                            .into(),
                    );
                }
            }
            EmailProvider::Smtp => {
                if self.email.smtp.host.as_deref().is_none_or(str::is_empty) {
                    problems
                        .push("email.smtp.host: not set, but email.provider is \"smtp\"".into());
                }
                if self.email.smtp.username.is_some() != self.email.smtp.password.is_some() {
                    problems.push(
                        "email.smtp.password: email.smtp.username and email.smtp.password must be set together".into(),
                    );
                }
            }
        }
        if !weak_allowed {
            let others = [
                (
                    "email.postmark.server_token",
                    &self.email.postmark.server_token,
                ),
                ("email.smtp.password", &self.email.smtp.password),
                ("signing.secret_key", &self.signing.secret_key),
            ];
            for (path, secret) in others {
                if let Some(s) = secret
                    && is_placeholder(s.expose())
                {
                    problems.push(placeholder_problem(path, s));
                }
            }
        }

        if self.retention.batch < 1 {
            problems.push("retention.batch: must be at least 1".into());
        }
        if self.retention.failed_deliveries < self.retention.deliveries {
            problems.push(
                "retention.failed_deliveries: must be at least retention.deliveries (failed deliveries are kept longer)"
                    .into(),
            );
        }

        let mut names = HashMap::new();
        for (ep, &i) in self.endpoints.iter().zip(&layout.endpoints) {
            let at = format!("endpoints[{i}]");
            if !valid_name(&ep.name) {
                problems.push(format!(
                    "{at}.name: {:?} must be 1-64 lowercase letters, digits, '-' or '_'",
                    ep.name
                ));
            }
            if let Some(first) = names.insert(ep.name.as_str(), i) {
                problems.push(format!(
                    "{at}.name: endpoint {:?} is defined twice (also endpoints[{first}])",
                    ep.name
                ));
            }
            if ep.secrets.iter().all(|s| s.expose().trim().is_empty()) {
                problems.push(format!(
                    "{at}.secrets: endpoint {:?} has no secret: set secrets = [\"...\"] or KEYMINT_ENDPOINTS__{}__SECRETS_FILE",
                    ep.name,
                    ep.name.to_uppercase().replace('-', "_")
                ));
            }
            if ep.legacy_secret && ep.kind != EndpointKind::Polar {
                problems.push(format!(
                    "{at}.legacy_secret: applies to kind \"polar\" only (endpoint {:?} is {:?})",
                    ep.name,
                    ep.kind.as_str()
                ));
            }
            for (j, s) in ep.secrets.iter().enumerate() {
                let at = format!("{at}.secrets[{j}]");
                let base64_key = match ep.kind {
                    EndpointKind::Standard => true,
                    // Polar's own `polar_whs_...` secrets are used as text,
                    // as Polar's SDKs do; only `whsec_` ones are base64.
                    EndpointKind::Polar => !ep.legacy_secret && s.expose().starts_with("whsec_"),
                    _ => false,
                };
                if base64_key
                    && let Err(e) = crate::adapters::signatures::check_standard_secret(s.expose())
                {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
                if weak_allowed || s.expose().trim().is_empty() {
                    continue;
                }
                if is_placeholder(s.expose()) {
                    problems.push(placeholder_problem(&at, s));
                } else if let Some(problem) = short_secret(s.expose(), base64_key) {
                    problems.push(format!("{at}: {problem}"));
                }
            }
            if ep.kind == EndpointKind::Gumroad && ep.tolerance != default_tolerance() {
                problems.push(format!(
                    "{at}.tolerance: gumroad sends no timestamp, so tolerance does not apply"
                ));
            }
            if ep.tolerance.is_zero() {
                problems.push(format!("{at}.tolerance: must be at least one second"));
            }
            if let Some(url) = &ep.api_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(format!(
                    "{at}.api_url: {url:?} must start with http:// or https://"
                ));
            }
            if !weak_allowed
                && let Some(key) = &ep.api_key
                && is_placeholder(key.expose())
            {
                problems.push(placeholder_problem(&format!("{at}.api_key"), key));
            }
        }

        let mut product_ids = HashMap::new();
        let mut mapped: HashMap<(&str, &str), &str> = HashMap::new();
        for (p, &i) in self.products.iter().zip(&layout.products) {
            let at = format!("products[{i}]");
            if !valid_name(&p.id) {
                problems.push(format!(
                    "{at}.id: {:?} must be 1-64 lowercase letters, digits, '-' or '_'",
                    p.id
                ));
            }
            if let Some(first) = product_ids.insert(p.id.as_str(), i) {
                problems.push(format!(
                    "{at}.id: product {:?} is defined twice (also products[{first}])",
                    p.id
                ));
            }
            for (field, value) in [("tier", &p.tier), ("key_prefix", &p.key_prefix)] {
                if !keymint_license_segment(value) {
                    problems.push(format!(
                        "{at}.{field}: {value:?} must be 1-16 letters or digits"
                    ));
                }
            }
            if let Err(e) = p.validity() {
                problems.push(format!("{at}.duration: {e}"));
            }
            if p.max_machines == Some(0) {
                problems.push(format!(
                    "{at}.max_machines: must be at least 1 (omit it for unlimited)"
                ));
            }
            for (endpoint, ids) in &p.map {
                if self.endpoint(endpoint).is_none()
                    && !layout.unreadable_endpoints.contains(endpoint)
                {
                    problems.push(format!(
                        "{at}.map.{endpoint}: endpoint {endpoint:?} is not defined"
                    ));
                }
                for id in ids {
                    if let Some(other) =
                        mapped.insert((endpoint.as_str(), id.as_str()), p.id.as_str())
                    {
                        problems.push(format!(
                            "{at}.map.{endpoint}: {endpoint} product id {id:?} is mapped twice (products {other:?} and {:?})",
                            p.id
                        ));
                    }
                }
            }
        }
    }
}

fn keymint_license_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Endpoint names and product ids: URL- and log-safe.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigProblems> {
        let dir = std::env::temp_dir().join(format!("keymint-cfg-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keymint.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::load_with_env(Some(&path), &env)
    }

    const GOOD: &str = r#"
[[endpoints]]
name = "gumroad"
kind = "gumroad"
secrets = ["s1-0123456789abcdef"]
[[products]]
id = "datatools-core"
name = "DataTools Core"
tier = "core"
key_prefix = "DT1"
duration = "365d"
max_machines = 3
entitlements = ["export"]
[products.map]
gumroad = ["datatools-core"]
"#;

    #[test]
    fn no_file_gives_defaults() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(
            c.database_url().expose(),
            "sqlite://keymint-data/keymint.db"
        );
    }

    #[test]
    fn good_config_loads() {
        let c = load(GOOD, &[]).unwrap();
        assert_eq!(
            c.products[0].validity().unwrap(),
            Some(Duration::from_secs(365 * 86400))
        );
        assert_eq!(c.endpoints[0].secrets[0].expose(), "s1-0123456789abcdef");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = format!(
            "{GOOD}\n[[endpoints]]\nname = \"nosecret\"\nkind = \"gumroad\"\n[[products]]\nid = \"other\"\nname = \"O\"\ntier = \"x\"\nkey_prefix = \"O\"\nbogus = 1\n[products.map]\ngumroad = [\"datatools-core\"]\n"
        );
        let problems = load(&text.replace("[server]", ""), &[]).unwrap_err().0;
        let all = problems.join("\n");
        assert!(all.contains("bogus"), "{all}");
        let problems = load(&text.replace("bogus = 1\n", ""), &[]).unwrap_err().0;
        let all = problems.join("\n");
        assert!(all.contains("\"nosecret\" has no secret"), "{all}");
        assert!(all.contains("mapped twice"), "{all}");
    }

    #[test]
    fn unknown_top_level_keys_are_all_reported() {
        let problems = load(
            "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n[emial]\nx = 1\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn env_overrides_and_file_secrets() {
        let dir = std::env::temp_dir().join(format!("keymint-sec-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret_file = dir.join("gumroad");
        std::fs::write(
            &secret_file,
            "rotated-new-0123456789\nrotated-old-0123456789\n",
        )
        .unwrap();
        let c = load(
            GOOD,
            &[
                ("KEYMINT_SERVER__LISTEN", "0.0.0.0:9000"),
                ("KEYMINT_EMAIL__MAX_ATTEMPTS", "3"),
                (
                    "KEYMINT_ENDPOINTS__GUMROAD__SECRETS_FILE",
                    secret_file.to_str().unwrap(),
                ),
                ("KEYMINT_CONFIG", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000");
        assert_eq!(c.email.max_attempts, 3);
        let secrets: Vec<&str> = c.endpoints[0].secrets.iter().map(Secret::expose).collect();
        assert_eq!(
            secrets,
            ["rotated-new-0123456789", "rotated-old-0123456789"]
        );
    }

    #[test]
    fn secrets_are_hidden_from_debug() {
        let c = load(GOOD, &[]).unwrap();
        assert!(!format!("{c:?}").contains("s1-0123456789abcdef"));
    }

    #[test]
    fn unknown_database_scheme_is_refused() {
        let problems = load("[database]\nurl = \"mysql://x\"\n", &[])
            .unwrap_err()
            .0;
        assert!(problems[0].contains("not supported"), "{problems:?}");
    }
}
