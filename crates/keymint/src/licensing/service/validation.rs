//! Validation: one read, the pure verdict, a signed receipt
//! (docs/licensing-api.md, "Validate").

use super::*;

impl Licensing {
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
}
