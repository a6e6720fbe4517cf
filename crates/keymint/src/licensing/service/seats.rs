//! A buyer's program takes and frees seats: activation under the
//! license's lock with a signed machine file, budgeted deactivation, the
//! list (docs/architecture.md, "Seats").

use super::*;
use crate::store::Backend;

impl Licensing {
    /// Activates `fingerprint` on the license with `key`, idempotently:
    /// an active fingerprint answers its machine again (`created` false).
    /// `ttl` overrides the machine file's lifetime (the CLI's offline
    /// checkout); `actor` names who asked.
    ///
    /// On SQLite it runs as a piece of the next group commit
    /// (docs/architecture.md, "Seats"), so concurrent activations share an
    /// fsync; on PostgreSQL in a transaction of its own. Either way the 201
    /// comes once the machine is durably stored.
    pub async fn activate(
        &self,
        key: &LicenseKey,
        fingerprint: &Fingerprint,
        meta: MachineMeta,
        nonce: Option<&Nonce>,
        ttl: Option<Duration>,
        actor: &str,
    ) -> Result<Activation, LicensingError> {
        let ask = Ask {
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            meta,
            nonce: nonce.cloned(),
            ttl,
            actor: actor.to_string(),
            now: Millis::now(),
        };
        if self.store.backend() == Backend::Postgres {
            // Side by side on the pool: PostgreSQL shares one WAL flush
            // among concurrent commits itself, while a lane would hold
            // each license's lock until its whole batch commits.
            let mut tx = self.store.begin().await?;
            let activation = self.activate_in(&mut tx, &ask).await?;
            tx.commit().await?;
            return Ok(activation);
        }
        let work = Arc::new((self.clone(), ask));
        self.store
            .write(move |conn| {
                let work = work.clone();
                Box::pin(async move {
                    let (this, ask) = &*work;
                    match this.activate_in(conn, ask).await {
                        Ok(activation) => Ok(Ok(activation)),
                        // A refusal is an answer: it wrote nothing, so it
                        // need not undo the rest of its batch.
                        Err(e) if e.wrote_nothing() => Ok(Err(e)),
                        Err(e) => Err(e),
                    }
                })
            })
            .await?
    }

    /// One run of an activation, in the caller's transaction.
    async fn activate_in(&self, conn: &mut Conn, ask: &Ask) -> Result<Activation, LicensingError> {
        let Ask {
            key,
            fingerprint,
            meta,
            nonce,
            ttl,
            actor,
            now,
        } = ask;
        let (meta, nonce, ttl, now) = (meta.clone(), nonce.as_ref(), *ttl, *now);
        let hash = fingerprint.hash_for(key);
        let locked = licenses::by_key_for_update(conn, key)
            .await?
            .ok_or(LicensingError::NotFound)?;
        // Everything else about it, read under the lock just taken.
        let found = machines::lookup(conn, key.as_str(), Some(&hash))
            .await?
            .ok_or(LicensingError::NotFound)?;
        debug_assert_eq!(found.license.id, locked.id);
        let entitlements = entitlements_of(&found.license)?;
        verdict::standing(&self.facts(&found, &entitlements), now, self.grace_ms)
            .map_err(LicensingError::Refused)?;
        let (machine, created) = match found.machine_id {
            Some(id) => {
                let mut machine = machines::by_id(conn, &found.license.id, &id)
                    .await?
                    .ok_or(LicensingError::NotActivated)?;
                machine.name = meta.name.or(machine.name);
                machine.platform = meta.platform.or(machine.platform);
                machine.hostname = meta.hostname.or(machine.hostname);
                machine.app_version = meta.app_version.or(machine.app_version);
                machine.last_seen_at = now;
                machines::refresh(conn, &machine).await?;
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
                if !machines::insert(conn, &machine).await? {
                    // Unreachable while the lock is held; the unique key
                    // is the last word all the same.
                    return Err(LicensingError::Database(sqlx::Error::RowNotFound));
                }
                record(
                    conn,
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
        let signer = self.signer(Some(conn)).await?;
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

    /// Deactivates `fingerprint` through the public API, within the key's
    /// deactivation budget.
    pub async fn deactivate(
        &self,
        key: &LicenseKey,
        fingerprint: &Fingerprint,
    ) -> Result<(), LicensingError> {
        self.deactivate_budgeted(key, Which::Fingerprint(fingerprint), machines::PUBLIC_ACTOR)
            .await
    }

    /// Deactivates a machine by id for the buyer portal, within the same
    /// budget as the public API (docs/portal.md).
    pub async fn buyer_deactivate(
        &self,
        key: &LicenseKey,
        id: &MachineId,
    ) -> Result<(), LicensingError> {
        self.deactivate_budgeted(key, Which::Id(id), machines::PORTAL_ACTOR)
            .await
    }

    /// How much of its deactivation budget a license has used in the last
    /// 30 days, read on the caller's connection.
    pub async fn budget(
        &self,
        conn: &mut Conn,
        license_id: &LicenseId,
    ) -> Result<Budget, LicensingError> {
        let since = Millis(Millis::now().0 - BUDGET_WINDOW_MS);
        let (used, _) = machines::buyer_deactivations_since(conn, license_id, since).await?;
        Ok(Budget {
            limit: self.deactivations_per_30d,
            used: u32::try_from(used).unwrap_or(u32::MAX),
        })
    }

    async fn deactivate_budgeted(
        &self,
        key: &LicenseKey,
        which: Which<'_>,
        actor: &str,
    ) -> Result<(), LicensingError> {
        let now = Millis::now();
        let (mut tx, license) = self.locked(key).await?;
        let machine = match which {
            Which::Fingerprint(fp) => {
                machines::find(&mut tx, &license.id, &fp.hash_for(key)).await?
            }
            Which::Id(id) => machines::by_id(&mut tx, &license.id, id).await?,
        }
        .ok_or(LicensingError::NotActivated)?;
        let since = Millis(now.0 - BUDGET_WINDOW_MS);
        let (used, oldest) =
            machines::buyer_deactivations_since(&mut tx, &license.id, since).await?;
        if used >= i64::from(self.deactivations_per_30d) {
            let frees_at = oldest.map_or(now.0 + BUDGET_WINDOW_MS, |o| o.0 + BUDGET_WINDOW_MS);
            let wait_ms = (frees_at - now.0).max(1000);
            return Err(LicensingError::DeactivationLimit {
                limit: self.deactivations_per_30d,
                retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1),
            });
        }
        self.remove(tx, &license, &machine, actor, now).await
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
}

/// What an activation asks for (a group commit may run it more than once).
struct Ask {
    key: LicenseKey,
    fingerprint: Fingerprint,
    meta: MachineMeta,
    nonce: Option<Nonce>,
    ttl: Option<Duration>,
    actor: String,
    now: Millis,
}

/// Which machine a budgeted deactivation names.
enum Which<'a> {
    Fingerprint(&'a Fingerprint),
    Id(&'a MachineId),
}

/// A license's deactivation budget: `used` of `limit` in the last 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub used: u32,
}

impl Budget {
    pub fn remaining(self) -> u32 {
        self.limit.saturating_sub(self.used)
    }
}
