//! Signing keys: generated on `serve`'s first start into
//! `<data_dir>/keys/` (mode 0600), by `keymint keys generate`, or given by
//! `signing.secret_key`. Public halves are registered in the database so
//! `GET /v1/keys` can publish them; every key that is not retired
//! verifies.
//!
//! Which key signs is recorded in the database (`signing_keys.signing`),
//! not held in memory: every mint reads it in its own transaction, and a
//! key file that appeared after start is loaded on first use. So a running
//! server and the CLI always sign with the same key, and a rotation takes
//! effect without a restart (docs/architecture.md, "State machines").

use crate::config::Config;
use crate::domain::SigningKeyStatus;
use crate::store::{self, Conn, Store, signing_keys};
use keymint_license::{KeySet, PublicKey, SigningKey};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The private keys this process can sign with, by kid.
#[derive(Debug)]
pub struct Keyring {
    data_dir: PathBuf,
    loaded: RwLock<HashMap<String, Arc<SigningKey>>>,
    /// The key that was active when the keyring was loaded (for the log).
    at_start: Option<Arc<SigningKey>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key file {path} is not a PASERK k4.secret key")]
    Invalid { path: PathBuf },
    #[error("signing.secret_key is not a PASERK k4.secret key")]
    InvalidConfigured,
    /// A registered public key that does not parse: every token it signed
    /// would stop verifying without a word, so it is refused instead.
    #[error(
        "the stored public key of signing key {kid} is not a PASERK k4.public key (table signing_keys)"
    )]
    StoredInvalid { kid: String },
    #[error("signing.secret_key is the retired key {kid}; configure another key")]
    ConfiguredRetired { kid: String },
    #[error(
        "no signing key is active: start `keymint serve` once, or run `keymint keys generate --activate`"
    )]
    NoActiveKey,
    #[error(
        "the active signing key {kid} is neither in {} nor signing.secret_key; activate a key this instance has (`keymint keys activate KID`)",
        dir.display()
    )]
    Missing { kid: String, dir: PathBuf },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Where key files live.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// Reads every key file in the data directory, oldest first.
pub fn load_local_keys(data_dir: &Path) -> Result<Vec<SigningKey>, KeyError> {
    let dir = keys_dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(KeyError::Io { path: dir, source }),
    };
    let mut paths = Vec::new();
    for entry in entries {
        // An entry that cannot be read may be a key: never skip it.
        let path = entry
            .map_err(|source| KeyError::Io {
                path: dir.clone(),
                source,
            })?
            .path();
        if path.extension().is_some_and(|x| x == "key") {
            paths.push(path);
        }
    }
    // File names start with the creation time, so name order is age order.
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
            SigningKey::from_paserk(&text).map_err(|_| KeyError::Invalid { path })
        })
        .collect()
}

/// Generates a key and writes it with mode 0600; returns it.
pub fn generate_key_file(data_dir: &Path) -> Result<SigningKey, KeyError> {
    let dir = keys_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|source| KeyError::Io {
        path: dir.clone(),
        source,
    })?;
    let key = SigningKey::generate();
    let path = dir.join(format!(
        "{:013}-{}.key",
        store::now_ms(),
        &ulid::Ulid::generate().to_string()[16..]
    ));
    let mut file = store::private_file_options()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
    file.write_all(key.secret_paserk().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Io { path, source })?;
    Ok(key)
}

impl Keyring {
    /// Loads the local and configured keys and registers their public
    /// halves. When the database records no active key yet, the
    /// configured key, else the newest local key that is not retired,
    /// becomes active; only `serve` (`first_start`) generates a key when
    /// there is none. A configured `signing.secret_key` is always the
    /// active key.
    pub async fn load(config: &Config, store: &Store, first_start: bool) -> Result<Self, KeyError> {
        let data_dir = config.server.data_dir.clone();
        let configured = match &config.signing.secret_key {
            Some(secret) => Some(
                SigningKey::from_paserk(secret.expose())
                    .map_err(|_| KeyError::InvalidConfigured)?,
            ),
            None => None,
        };
        // One transaction, holding the choice lock before the key
        // directory is read, so replicas starting together (sharing the
        // directory) choose one key and generate at most one.
        let mut tx = store.begin().await?;
        signing_keys::lock_choice(&mut tx, store.backend()).await?;
        let mut local = load_local_keys(&data_dir)?;
        let now = store::now_ms();
        for key in local.iter().chain(configured.iter()) {
            signing_keys::register(&mut tx, key.kid(), &key.public_paserk(), now).await?;
        }
        let rows = signing_keys::list(&mut tx).await?;
        for row in &rows {
            public_key(row)?;
        }
        let retired = |kid: &str| {
            rows.iter()
                .any(|r| r.kid == kid && r.status == SigningKeyStatus::Retired)
        };
        let mut active = rows.iter().find(|r| r.signing != 0).map(|r| r.kid.clone());
        if let Some(key) = &configured {
            if retired(key.kid()) {
                return Err(KeyError::ConfiguredRetired {
                    kid: key.kid().to_string(),
                });
            }
            if active.as_deref() != Some(key.kid()) {
                signing_keys::activate(&mut tx, key.kid()).await?;
                tracing::info!(
                    kid = key.kid(),
                    "signing.secret_key is now the active signing key"
                );
                active = Some(key.kid().to_string());
            }
        } else if active.is_none() {
            // A first start, or a database from before the active key was
            // recorded: the newest local key signs, as it always did.
            let newest = local.iter().rev().find(|k| !retired(k.kid()));
            let kid = match newest {
                Some(k) => Some(k.kid().to_string()),
                None if first_start => {
                    let key = generate_key_file(&data_dir)?;
                    signing_keys::register(&mut tx, key.kid(), &key.public_paserk(), now).await?;
                    tracing::info!(kid = key.kid(), "generated a new signing key");
                    let kid = key.kid().to_string();
                    local.push(key);
                    Some(kid)
                }
                None => None,
            };
            if let Some(kid) = &kid {
                signing_keys::activate(&mut tx, kid).await?;
            }
            active = kid;
        }
        tx.commit().await?;
        let loaded: HashMap<String, Arc<SigningKey>> = local
            .into_iter()
            .chain(configured)
            .map(|k| (k.kid().to_string(), Arc::new(k)))
            .collect();
        let mut keyring = Self {
            data_dir,
            loaded: RwLock::new(loaded),
            at_start: None,
        };
        // The key another replica sharing the key directory just made.
        keyring.at_start = match active.as_deref() {
            Some(kid) => match keyring.key(kid) {
                Ok(key) => Some(key),
                // The CLI may run where the signing key file is not (it
                // signs nothing, or says so when asked to); the server
                // must be able to sign from its first request.
                Err(KeyError::Missing { .. }) if !first_start => None,
                Err(e) => return Err(e),
            },
            None if first_start => return Err(KeyError::NoActiveKey),
            None => None,
        };
        Ok(keyring)
    }

    /// The active signing key, read from the database in the caller's
    /// transaction, so every process signs with the key the store names.
    pub async fn signer(&self, conn: &mut Conn) -> Result<Arc<SigningKey>, KeyError> {
        let kid = signing_keys::active_kid(conn)
            .await?
            .ok_or(KeyError::NoActiveKey)?;
        self.key(&kid)
    }

    /// A key by kid; a key file written since the last look (by
    /// `keymint keys generate`) is loaded now.
    pub fn key(&self, kid: &str) -> Result<Arc<SigningKey>, KeyError> {
        if let Some(k) = self.loaded.read().expect("keyring lock").get(kid) {
            return Ok(k.clone());
        }
        let fresh = load_local_keys(&self.data_dir)?;
        let mut loaded = self.loaded.write().expect("keyring lock");
        for k in fresh {
            loaded
                .entry(k.kid().to_string())
                .or_insert_with(|| Arc::new(k));
        }
        loaded.get(kid).cloned().ok_or_else(|| KeyError::Missing {
            kid: kid.to_string(),
            dir: keys_dir(&self.data_dir),
        })
    }

    /// The key that was active at load time, if any (for the start-up log).
    pub fn at_start(&self) -> Option<&SigningKey> {
        self.at_start.as_deref()
    }
}

/// A registered key's public half; one that does not parse is an error
/// naming the key, never left out of what verifies or is published.
pub fn public_key(row: &signing_keys::SigningKeyRow) -> Result<PublicKey, KeyError> {
    PublicKey::from_paserk(&row.public_key).map_err(|_| KeyError::StoredInvalid {
        kid: row.kid.clone(),
    })
}

/// The verification set: every registered key that is not retired.
pub async fn verification_keys(store: &Store) -> Result<KeySet, KeyError> {
    let mut conn = store.conn().await?;
    let mut set = KeySet::new();
    for row in signing_keys::list(&mut conn).await? {
        if row.status != SigningKeyStatus::Retired {
            set.insert(public_key(&row)?);
        }
    }
    Ok(set)
}

/// What `check-config` reports about signing keys without touching the
/// database: a configured key that does not parse, and a key file in the
/// data directory that cannot be read or parsed (each would stop `serve`).
pub fn check_keys(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(secret) = &config.signing.secret_key
        && SigningKey::from_paserk(secret.expose()).is_err()
    {
        problems.push("signing.secret_key: is not a PASERK k4.secret key".into());
    }
    if let Err(e) = load_local_keys(&config.server.data_dir) {
        problems.push(format!("signing keys: {e}"));
    }
    problems
}
