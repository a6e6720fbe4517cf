//! Signing keys: generated on first start into `<data_dir>/keys/` (mode
//! 0600), or given by `signing.secret_key`. The newest key signs; every
//! key that is not retired verifies. Public halves are registered in the
//! database so `GET /v1/keys` can publish them.

use crate::config::Config;
use crate::store::{self, Store, signing_keys};
use keymint_license::{KeySet, PublicKey, SigningKey};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The key that signs, and the set that verifies.
#[derive(Debug)]
pub struct Keyring {
    signer: SigningKey,
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
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
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
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(|source| KeyError::Io {
        path: path.clone(),
        source,
    })?;
    file.write_all(key.secret_paserk().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Io { path, source })?;
    Ok(key)
}

impl Keyring {
    /// Loads (or on first start generates) the signing key and registers
    /// the public halves of every local key.
    pub async fn load(config: &Config, store: &Store) -> Result<Self, KeyError> {
        let mut conn = store.writer().await?;
        let retired: Vec<String> = signing_keys::list(&mut conn)
            .await?
            .into_iter()
            .filter(|k| k.status == signing_keys::status::RETIRED)
            .map(|k| k.kid)
            .collect();
        let mut local = load_local_keys(&config.server.data_dir)?;
        let signer = if let Some(secret) = &config.signing.secret_key {
            SigningKey::from_paserk(secret.expose()).map_err(|_| KeyError::InvalidConfigured)?
        } else {
            local.retain(|k| !retired.iter().any(|r| r == k.kid()));
            match local.pop() {
                Some(k) => k,
                None => {
                    let key = generate_key_file(&config.server.data_dir)?;
                    tracing::info!(kid = key.kid(), "generated a new signing key");
                    key
                }
            }
        };
        let now = store::now_ms();
        for key in local.iter().chain(std::iter::once(&signer)) {
            signing_keys::register(&mut conn, key.kid(), &key.public_paserk(), now).await?;
        }
        Ok(Self { signer })
    }

    pub fn signer(&self) -> &SigningKey {
        &self.signer
    }

    pub fn public_key(&self) -> &PublicKey {
        self.signer.public_key()
    }
}

/// The verification set: every registered key that is not retired.
pub async fn verification_keys(store: &Store) -> Result<KeySet, sqlx::Error> {
    let mut conn = store.conn().await?;
    let mut set = KeySet::new();
    for row in signing_keys::list(&mut conn).await? {
        if row.status != signing_keys::status::RETIRED
            && let Ok(k) = PublicKey::from_paserk(&row.public_key)
        {
            set.insert(k);
        }
    }
    Ok(set)
}
