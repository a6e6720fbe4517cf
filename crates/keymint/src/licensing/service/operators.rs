//! Operators' seat changes: never budgeted, each in the license's history
//! with the operator as actor.

use super::*;

impl Licensing {
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
