//! The licensing service behind the public API, the admin API and the
//! CLI: validate, activate, deactivate, list, and the operator's seat
//! changes (docs/licensing-api.md). Seats are counted under the license's
//! write lock in the same transaction that inserts the machine, so the
//! limit holds however many requests race, on any replica
//! (docs/architecture.md, "Seats").

use super::verdict::{self, Ask, Code, Facts, SubscriptionFacts, Verdict};
use crate::config::Config;
use crate::domain::{Fingerprint, LicenseStatus, MachineId, Millis, Nonce};
use crate::signing::{KeyError, Keyring};
use crate::store::machines::{self, Lookup, Machine};
use crate::store::{Conn, Store, licenses};
use crate::views::Corrupt;
use crate::views::licensing::{LicenseFacts, MachineOut, entitlements_of};
use keymint_license::{LicenseKey, MachineFileClaims, ReceiptClaims, SigningKey};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    /// Answers a validation: a read of one statement, a write only when a
    /// known machine was last seen over [`SEEN_EVERY`] ago, and a signed
    /// receipt echoing the nonce.
    pub async fn validate(&self, req: &Validate) -> Result<Validation, LicensingError> {
        let now = Millis::now();
        let key = req.key.parse::<LicenseKey>().ok();
        // A malformed key is looked up too (it finds nothing), so it costs
        // what an unknown one costs and answers the same; control
        // characters are replaced first (PostgreSQL refuses a NUL).
        let unparsed: String;
        let lookup_key = match &key {
            Some(k) => k.as_str(),
            None => {
                unparsed = req
                    .key
                    .trim()
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect();
                &unparsed
            }
        };
        let hash = match (&key, &req.fingerprint) {
            (Some(k), Some(fp)) => Some(fp.hash_for(k)),
            _ => None,
        };
        let found = {
            let mut conn = self.store.conn().await?;
            machines::lookup(&mut conn, lookup_key, hash.as_deref()).await?
        };
        let (verdict, license, machine) = match &found {
            None => (
                Verdict {
                    code: Code::NotFound,
                    missing: Vec::new(),
                    warnings: Vec::new(),
                    access_until: None,
                },
                None,
                None,
            ),
            Some(found) => {
                let entitlements = entitlements_of(&found.license)?;
                let ask = Ask {
                    product: req.product.as_deref(),
                    entitlements: &req.entitlements,
                    machine_active: req.fingerprint.as_ref().map(|_| found.machine_id.is_some()),
                };
                let verdict =
                    verdict::decide(&self.facts(found, &entitlements), &ask, now, self.grace_ms);
                let machine = match &found.machine_id {
                    Some(id) => Some(self.seen(found, id, now).await?),
                    None => None,
                };
                let license =
                    LicenseFacts::new(&found.license, entitlements, found.machines_active);
                (verdict, Some(license), machine)
            }
        };
        let receipt = self.receipt(req, key.as_ref(), &verdict, now).await?;
        Ok(Validation {
            verdict,
            license,
            machine,
            receipt,
        })
    }

    /// The machine a validation named, recorded as seen now when it was
    /// last seen over [`SEEN_EVERY`] ago (the only write a validation
    /// makes).
    async fn seen(
        &self,
        found: &Lookup,
        id: &MachineId,
        now: Millis,
    ) -> Result<MachineOut, LicensingError> {
        let seen_after = Millis(now.0 - ms(SEEN_EVERY));
        let mut last = found.machine_last_seen_at.unwrap_or(now);
        if last <= seen_after {
            let mut conn = self.store.writer().await?;
            machines::touch(&mut conn, id, now, seen_after).await?;
            last = now;
        }
        // Set whenever the join found the machine.
        let activated_at = found
            .machine_activated_at
            .ok_or(LicensingError::NotActivated)?;
        Ok(MachineOut {
            id: id.clone(),
            name: found.machine_name.clone(),
            platform: found.machine_platform.clone(),
            hostname: found.machine_hostname.clone(),
            app_version: found.machine_app_version.clone(),
            activated_at: crate::store::format_ms(activated_at),
            last_seen_at: crate::store::format_ms(last),
        })
    }

    async fn receipt(
        &self,
        req: &Validate,
        key: Option<&LicenseKey>,
        verdict: &Verdict,
        now: Millis,
    ) -> Result<String, LicensingError> {
        let iat = time_secs(now)?;
        let mut exp = Millis(now.0.saturating_add(ms(self.receipt_ttl)));
        // A valid answer is not relied on past the access it reports.
        if verdict.code == Code::Valid
            && let Some(until) = verdict.access_until
        {
            exp = exp.min(until);
        }
        let claims = ReceiptClaims {
            typ: keymint_license::RECEIPT.into(),
            iss: self.issuer.clone(),
            valid: verdict.code == Code::Valid,
            code: verdict.code.as_str().into(),
            key: key.map_or_else(|| req.key.trim().to_string(), LicenseKey::to_string),
            fingerprint: req.fingerprint.as_ref().map(|f| f.expose().to_string()),
            nonce: req.nonce.as_ref().map(|n| n.as_str().to_string()),
            // As the body shows it, to the millisecond.
            access_until: verdict
                .access_until
                .map(|t| t.to_time())
                .transpose()
                .map_err(|e| LicensingError::Signing(e.to_string()))?,
            warnings: verdict
                .warnings
                .iter()
                .map(|w| w.as_str().to_string())
                .collect(),
            missing_entitlements: verdict.missing.clone(),
            iat,
            exp: time_secs(exp)?,
        };
        Ok(self.signer(None).await?.sign_receipt(&claims)?)
    }

    /// Activates `fingerprint` on the license with `key`, idempotently:
    /// an active fingerprint answers its machine again (`created` false).
    /// `ttl` overrides the machine file's lifetime (the CLI's offline
    /// checkout); `actor` names who asked.
    pub async fn activate(
        &self,
        key: &LicenseKey,
        fingerprint: &Fingerprint,
        meta: MachineMeta,
        nonce: Option<&Nonce>,
        ttl: Option<Duration>,
        actor: &str,
    ) -> Result<Activation, LicensingError> {
        let now = Millis::now();
        let hash = fingerprint.hash_for(key);
        let (mut tx, locked) = self.locked(key).await?;
        // Everything else about it, read under the lock just taken.
        let found = machines::lookup(&mut tx, key.as_str(), Some(&hash))
            .await?
            .ok_or(LicensingError::NotFound)?;
        debug_assert_eq!(found.license.id, locked.id);
        let entitlements = entitlements_of(&found.license)?;
        verdict::standing(&self.facts(&found, &entitlements), now, self.grace_ms)
            .map_err(LicensingError::Refused)?;
        let (machine, created) = match found.machine_id {
            Some(id) => {
                let mut machine = machines::by_id(&mut tx, &found.license.id, &id)
                    .await?
                    .ok_or(LicensingError::NotActivated)?;
                machine.name = meta.name.or(machine.name);
                machine.platform = meta.platform.or(machine.platform);
                machine.hostname = meta.hostname.or(machine.hostname);
                machine.app_version = meta.app_version.or(machine.app_version);
                machine.last_seen_at = now;
                machines::refresh(&mut tx, &machine).await?;
                (machine, false)
            }
            None => {
                if let Some(max) = found.license.max_machines
                    && found.machines_active >= max
                {
                    return Err(LicensingError::TooManyMachines {
                        max,
                        active: found.machines_active,
                    });
                }
                let machine = Machine {
                    id: MachineId::generate(),
                    license_id: found.license.id.clone(),
                    fingerprint_hash: hash,
                    name: meta.name,
                    platform: meta.platform,
                    hostname: meta.hostname,
                    app_version: meta.app_version,
                    activated_at: now,
                    last_seen_at: now,
                    activated_by: actor.to_string(),
                };
                if !machines::insert(&mut tx, &machine).await? {
                    // Unreachable while the lock is held; the unique key
                    // is the last word all the same.
                    return Err(LicensingError::Database(sqlx::Error::RowNotFound));
                }
                record(
                    &mut tx,
                    &found.license,
                    machines::ACTIVATED,
                    &describe(&machine),
                    actor,
                    now,
                )
                .await?;
                (machine, true)
            }
        };
        let signer = self.signer(Some(&mut tx)).await?;
        let machine_file = self.machine_file(
            &signer,
            &found.license,
            &entitlements,
            &machine,
            fingerprint,
            nonce,
            ttl,
            now,
        )?;
        let active = found.machines_active + i64::from(created);
        tx.commit().await?;
        Ok(Activation {
            created,
            license: LicenseFacts::new(&found.license, entitlements, active),
            machine,
            machine_file,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn machine_file(
        &self,
        signer: &SigningKey,
        license: &licenses::License,
        entitlements: &[String],
        machine: &Machine,
        fingerprint: &Fingerprint,
        nonce: Option<&Nonce>,
        ttl: Option<Duration>,
        now: Millis,
    ) -> Result<String, LicensingError> {
        let ttl = ttl.unwrap_or(self.machine_file_ttl);
        let mut exp = Millis(now.0.saturating_add(ms(ttl)));
        if let Some(license_exp) = license.expires_at {
            exp = exp.min(license_exp);
        }
        let iat = time_secs(now)?;
        let claims = MachineFileClaims {
            typ: keymint_license::MACHINE_FILE.into(),
            iss: self.issuer.clone(),
            license: license.id.to_string(),
            machine: machine.id.to_string(),
            key: license.key.to_string(),
            fingerprint: fingerprint.expose().to_string(),
            product: license.product.clone(),
            tier: license.tier.clone(),
            entitlements: entitlements.to_vec(),
            nonce: nonce.map(|n| n.as_str().to_string()),
            iat,
            nbf: iat,
            exp: time_secs(exp)?,
        };
        Ok(signer.sign_machine_file(&claims)?)
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

    /// Deactivates `fingerprint` through the public API, within the key's
    /// deactivation budget.
    pub async fn deactivate(
        &self,
        key: &LicenseKey,
        fingerprint: &Fingerprint,
    ) -> Result<(), LicensingError> {
        let now = Millis::now();
        let (mut tx, license) = self.locked(key).await?;
        let machine = machines::find(&mut tx, &license.id, &fingerprint.hash_for(key))
            .await?
            .ok_or(LicensingError::NotActivated)?;
        let since = Millis(now.0 - BUDGET_WINDOW_MS);
        let (used, oldest) =
            machines::public_deactivations_since(&mut tx, &license.id, since).await?;
        if used >= i64::from(self.deactivations_per_30d) {
            let frees_at = oldest.map_or(now.0 + BUDGET_WINDOW_MS, |o| o.0 + BUDGET_WINDOW_MS);
            let wait_ms = (frees_at - now.0).max(1000);
            return Err(LicensingError::DeactivationLimit {
                limit: self.deactivations_per_30d,
                retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1),
            });
        }
        self.remove(tx, &license, &machine, machines::PUBLIC_ACTOR, now)
            .await
    }

    /// A license's machines, with its seat limit.
    pub async fn machines(
        &self,
        key: &LicenseKey,
    ) -> Result<(licenses::License, Vec<Machine>), LicensingError> {
        let mut conn = self.store.conn().await?;
        let license = licenses::by_key(&mut conn, key)
            .await?
            .ok_or(LicensingError::NotFound)?;
        let list = machines::list(&mut conn, &license.id).await?;
        Ok((license, list))
    }

    /// An operator deactivates one machine by id: never budgeted.
    pub async fn operator_deactivate(
        &self,
        key: &LicenseKey,
        id: &MachineId,
        actor: &str,
    ) -> Result<(), LicensingError> {
        let now = Millis::now();
        let (mut tx, license) = self.locked(key).await?;
        let machine = machines::by_id(&mut tx, &license.id, id)
            .await?
            .ok_or(LicensingError::NotActivated)?;
        self.remove(tx, &license, &machine, actor, now).await
    }

    /// An operator deactivates every machine of a license ("I reinstalled
    /// my computer"); returns how many there were.
    pub async fn reset(&self, key: &LicenseKey, actor: &str) -> Result<u64, LicensingError> {
        let now = Millis::now();
        let (mut tx, license) = self.locked(key).await?;
        let n = machines::delete_all(&mut tx, &license.id).await?;
        record(
            &mut tx,
            &license,
            "machines_reset",
            &format!("{n} machine(s) deactivated"),
            actor,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// An operator sets one license's seat limit (`None`: unlimited). The
    /// token is signed again so what it says stays true.
    pub async fn set_max_machines(
        &self,
        key: &LicenseKey,
        max: Option<u32>,
        include_email: bool,
        actor: &str,
    ) -> Result<licenses::License, LicensingError> {
        if max == Some(0) {
            return Err(LicensingError::Invalid(
                "max_machines must be at least 1, or null for unlimited".into(),
            ));
        }
        let now = Millis::now();
        let (mut tx, mut license) = self.locked(key).await?;
        let before = license.max_machines;
        license.max_machines = max.map(i64::from);
        let signer = self.keyring.signer(&mut tx).await?;
        let token = crate::fulfilment::reissue(
            &license,
            include_email,
            license.expires_at.map(Millis::as_i64),
            &signer,
            &self.issuer,
            now.as_i64(),
        )
        .map_err(|e| LicensingError::Signing(e.to_string()))?;
        machines::set_max_machines(&mut tx, &license.id, license.max_machines, now).await?;
        licenses::set_token(
            &mut tx,
            &license.id,
            &token,
            signer.kid(),
            license.expires_at.map(Millis::as_i64),
            now.as_i64(),
        )
        .await?;
        let text = |m: Option<i64>| m.map_or_else(|| "unlimited".to_string(), |m| m.to_string());
        record(
            &mut tx,
            &license,
            "max_machines_set",
            &format!("{} -> {}", text(before), text(license.max_machines)),
            actor,
            now,
        )
        .await?;
        tx.commit().await?;
        let mut conn = self.store.conn().await?;
        licenses::by_key(&mut conn, key)
            .await?
            .ok_or(LicensingError::NotFound)
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
