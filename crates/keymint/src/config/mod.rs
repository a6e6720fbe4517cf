//! Configuration: compiled-in defaults, then `keymint.toml`, then
//! `KEYMINT_*` environment variables, then `*_FILE` secrets.
//!
//! Loading never stops at the first problem: [`Config::load`] returns every
//! problem it found (values of the wrong type, unknown keys, missing,
//! placeholder or short secrets, products mapped twice, ...), each starting
//! with its path (`endpoints[2].kind: ...`), so `keymint check-config` can
//! print them all, and `serve` refuses to start while any remain (README,
//! "Configuration").
//!
//! The schema is one file per section, each with its defaults beside it
//! (`server.rs`, `database.rs`, `email.rs`, `endpoints.rs`, `products.rs`,
//! `workers.rs`, `licensing.rs`); `env.rs` applies the environment, `read.rs` reads the
//! merged table naming every bad value, and `validate.rs` checks across
//! values. Values are parsed into their types here (`listen` is a socket
//! address, a product's `duration` a [`Validity`]), never again later.

mod checkout;
mod console;
mod database;
mod email;
mod endpoints;
mod env;
mod licensing;
mod portal;
mod products;
mod read;
mod secrets;
mod server;
mod validate;
mod workers;

pub use checkout::*;
pub use console::*;
pub use database::*;
pub use email::*;
pub use endpoints::*;
pub use env::ENV_PREFIX;
pub use licensing::*;
pub use portal::*;
pub use products::*;
pub use secrets::MIN_SECRET_BYTES;
pub use server::*;
pub use workers::*;

use env::{apply_env, resolve_secret_files};
use read::deserialize_config;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

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
    pub licensing: LicensingConfig,
    pub checkout: CheckoutConfig,
    pub console: ConsoleConfig,
    pub portal: PortalConfig,
    pub endpoints: Vec<EndpointConfig>,
    pub products: Vec<ProductConfig>,
    /// Directory the config file was loaded from (templates are looked up
    /// under `<config dir>/templates` unless `email.templates_dir` is set).
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
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
}

/// Endpoint names and product ids: URL- and log-safe.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;
