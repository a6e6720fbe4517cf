//! The licensing service behind the public API, the admin API and the
//! CLI: validate, activate, deactivate, list, and the operator's seat
//! changes (docs/licensing-api.md). Seats are counted under the license's
//! write lock in the same transaction that inserts the machine, so the
//! limit holds however many requests race, on any replica
//! (docs/architecture.md, "Seats"). This file holds the service, its
//! types and what its parts share; `validation.rs`, `seats.rs` (activate,
//! deactivate, list) and `operators.rs` hold the operations.

use super::verdict::{self, Ask, Code, Facts, SubscriptionFacts, Verdict};
use crate::config::Config;
use crate::domain::{Fingerprint, LicenseId, LicenseStatus, MachineId, Millis, Nonce};
use crate::signing::{KeyError, Keyring};
use crate::store::machines::{self, Lookup, Machine};
use crate::store::{Conn, Store, licenses};
use crate::views::Corrupt;
use crate::views::licensing::{LicenseFacts, MachineOut, entitlements_of};
use keymint_license::{LicenseKey, MachineFileClaims, ReceiptClaims, SigningKey};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod operators;
mod seats;
mod validation;

pub use seats::Budget;

/// A machine is recorded as seen at most this often by validations.
pub const SEEN_EVERY: Duration = Duration::from_secs(60);
/// The deactivation budget's window.
const BUDGET_WINDOW_MS: i64 = 30 * 86_400_000;
/// How long the active signing key is trusted without asking the store.
const SIGNER_CACHE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LicensingError {
    /// No license has the key (or it is not a key at all).
    #[error("no license has this key")]
    NotFound,
    /// The license does not stand (refunded, suspended, expired, ...).
    #[error("{}", .0.detail())]
    Refused(Code),
    #[error(
        "the license is active on {active} machine(s) and its limit is {max}; deactivate one first"
    )]
    TooManyMachines { max: i64, active: i64 },
    /// The fingerprint (or machine id) is not activated on the license.
    #[error("this machine is not activated on the license")]
    NotActivated,
    #[error(
        "this license has used its {limit} deactivations for 30 days; try again later or ask the seller"
    )]
    DeactivationLimit { limit: u32, retry_after_secs: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    #[error("signing: {0}")]
    Signing(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl LicensingError {
    /// A refusal decided before anything was written (an activation's
    /// answer, not its failure).
    fn wrote_nothing(&self) -> bool {
        matches!(
            self,
            Self::NotFound
                | Self::Refused(_)
                | Self::TooManyMachines { .. }
                | Self::NotActivated
                | Self::Corrupt(_)
        )
    }
}

impl crate::store::group::WorkError for LicensingError {
    fn failure(&self) -> crate::store::group::Failure {
        match self {
            Self::Database(e) => crate::store::group::classify(e),
            _ => crate::store::group::Failure::Own,
        }
    }
}

impl From<KeyError> for LicensingError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Database(e) => Self::Database(e),
            other => Self::Signing(other.to_string()),
        }
    }
}

impl From<keymint_license::TokenError> for LicensingError {
    fn from(e: keymint_license::TokenError) -> Self {
        Self::Signing(e.to_string())
    }
}

/// A machine's descriptive fields, already checked
/// ([`crate::domain::machine_text`]).
#[derive(Debug, Clone, Default)]
pub struct MachineMeta {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub hostname: Option<String>,
    pub app_version: Option<String>,
}

/// A validation request, parsed.
#[derive(Debug, Clone, Default)]
pub struct Validate {
    /// The key as sent (parsed here: a malformed key is `NOT_FOUND`).
    pub key: String,
    pub fingerprint: Option<Fingerprint>,
    pub product: Option<String>,
    pub entitlements: Vec<String>,
    pub nonce: Option<Nonce>,
}

/// A validation's answer, before it is shaped for HTTP.
#[derive(Debug, Clone)]
pub struct Validation {
    pub verdict: Verdict,
    pub license: Option<LicenseFacts>,
    pub machine: Option<MachineOut>,
    pub receipt: String,
}

/// What an activation did.
#[derive(Debug, Clone)]
pub struct Activation {
    pub created: bool,
    pub machine: Machine,
    pub machine_file: String,
    pub license: LicenseFacts,
}

/// The active signing key and when the store was last asked.
type CachedSigner = (Instant, Arc<SigningKey>);

/// The licensing service; cheap to clone.
#[derive(Clone)]
pub struct Licensing {
    store: Store,
    keyring: Arc<Keyring>,
    issuer: String,
    grace_ms: i64,
    receipt_ttl: Duration,
    machine_file_ttl: Duration,
    deactivations_per_30d: u32,
    signer: Arc<Mutex<Option<CachedSigner>>>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Licensing {
    pub fn new(store: Store, keyring: Arc<Keyring>, config: &Config) -> Self {
        Self {
            store,
            keyring,
            issuer: config.signing.issuer.clone(),
            grace_ms: ms(config.subscriptions.grace),
            receipt_ttl: config.licensing.receipt_ttl,
            machine_file_ttl: config.licensing.machine_file_ttl,
            deactivations_per_30d: config.licensing.deactivations_per_30d,
            signer: Arc::default(),
        }
    }

    /// The active signing key, asked of the store at most every few
    /// seconds: a validation is a read, and one more query per answer
    /// would be most of its cost. Asked on `conn`, when one is held: a
    /// transaction waiting on a second pooled connection while others
    /// wait on its lock would starve the pool.
    async fn signer(&self, conn: Option<&mut Conn>) -> Result<Arc<SigningKey>, LicensingError> {
        if let Some((at, key)) = &*self.signer.lock().expect("signer cache lock")
            && at.elapsed() < SIGNER_CACHE
        {
            return Ok(key.clone());
        }
        let key = match conn {
            Some(conn) => self.keyring.signer(conn).await?,
            None => self.keyring.signer(&mut *self.store.conn().await?).await?,
        };
        *self.signer.lock().expect("signer cache lock") = Some((Instant::now(), key.clone()));
        Ok(key)
    }

    fn facts<'a>(&self, found: &'a Lookup, entitlements: &'a [String]) -> Facts<'a> {
        Facts {
            status: found.license.status,
            revoked_by: found.revoked_by.as_deref(),
            expires_at: found.license.expires_at,
            product: &found.license.product,
            entitlements,
            subscription: found.subscription_status.map(|status| SubscriptionFacts {
                status,
                trial_end: found.trial_end,
                current_period_end: found.current_period_end,
                cancel_at_period_end: found.cancel_at_period_end.unwrap_or(0) != 0,
            }),
        }
    }

    /// A write transaction holding the lock of the license with `key`
    /// (docs/architecture.md, "Seats"), and the license as locked.
    async fn locked(
        &self,
        key: &LicenseKey,
    ) -> Result<(crate::store::Tx, licenses::License), LicensingError> {
        let mut tx = self.store.begin().await?;
        let license = licenses::by_key_for_update(&mut tx, key)
            .await?
            .ok_or(LicensingError::NotFound)?;
        Ok((tx, license))
    }

    /// Deletes `machine` and records who did it, in `tx`; then commits.
    async fn remove(
        &self,
        mut tx: crate::store::Tx,
        license: &licenses::License,
        machine: &Machine,
        actor: &str,
        now: Millis,
    ) -> Result<(), LicensingError> {
        machines::delete(&mut tx, &machine.id).await?;
        record(
            &mut tx,
            license,
            machines::DEACTIVATED,
            &describe(machine),
            actor,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A machine in the history: its id and name, never its fingerprint.
fn describe(m: &Machine) -> String {
    match &m.name {
        Some(name) => format!("{} ({name})", m.id),
        None => m.id.to_string(),
    }
}

/// A seat change in the license's history; the status stays.
async fn record(
    conn: &mut Conn,
    license: &licenses::License,
    action: &str,
    reason: &str,
    actor: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    let status: LicenseStatus = license.status;
    licenses::record_event(
        conn,
        &license.id,
        action,
        Some(status),
        status,
        Some(reason),
        actor,
        None,
        now.as_i64(),
    )
    .await
}

fn time_secs(ms: Millis) -> Result<time::OffsetDateTime, LicensingError> {
    ms.to_time_secs()
        .map_err(|e| LicensingError::Signing(e.to_string()))
}
