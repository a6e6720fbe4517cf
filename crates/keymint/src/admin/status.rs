//! An operator's revoke, reinstate and resend of a license; status changes
//! go through the license state machine (`licensing::machine`).

use super::AdminError;
use crate::domain::LicenseStatus;
use crate::licensing::{self, By, Cause, Step};
use crate::store::licenses::{self, License};
use crate::store::{self, Store, outbox};
use crate::text;
use keymint_license::LicenseKey;

/// Revokes (`revoke = true`) or reinstates a license with a reason.
pub async fn set_status(
    store: &Store,
    key: &LicenseKey,
    revoke: bool,
    reason: &str,
    actor: &str,
) -> Result<License, AdminError> {
    let reason = text::clean_line(reason);
    if reason.is_empty() {
        return Err(AdminError::invalid(
            "reason_required",
            "a reason is required",
        ));
    }
    let mut tx = store.begin().await?;
    let license = licenses::by_key(&mut tx, key)
        .await?
        .ok_or(AdminError::NotFound)?;
    let cause = if revoke {
        Cause::OperatorRevoke
    } else {
        Cause::OperatorReinstate
    };
    let by = By {
        actor,
        delivery_id: None,
        now: store::now_ms(),
        reason: Some(&reason),
    };
    if let Step::NotAllowed(why) = licensing::transition(&mut tx, &license, cause, &by).await? {
        return Err(AdminError::conflict(why.code(), why.to_string()));
    }
    tx.commit().await?;
    let mut conn = store.conn().await?;
    licenses::by_key(&mut conn, key)
        .await?
        .ok_or(AdminError::NotFound)
}

/// Queues the license email again; returns the outbox row id. A revoked
/// license is not sent again unless `force`, and a forced resend says so
/// in the history.
pub async fn resend(
    store: &Store,
    key: &LicenseKey,
    force: bool,
    actor: &str,
) -> Result<String, AdminError> {
    let mut tx = store.begin().await?;
    let license = licenses::by_key(&mut tx, key)
        .await?
        .ok_or(AdminError::NotFound)?;
    let revoked = license.status == LicenseStatus::Revoked;
    if revoked && !force {
        return Err(AdminError::conflict(
            "license_revoked",
            format!(
                "license {} is revoked ({}); it is not emailed again unless forced",
                license.key,
                license
                    .status_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    let reason = revoked.then_some("forced: the license is revoked");
    let now = store::now_ms();
    let dedupe = format!(
        "{}:{}:{}",
        outbox::EmailKind::LicenseResend,
        license.id,
        ulid::Ulid::generate()
    );
    outbox::enqueue(
        &mut tx,
        &license.id,
        outbox::EmailKind::LicenseResend,
        &dedupe,
        &license.email,
        now,
    )
    .await?;
    licenses::record_event(
        &mut tx,
        &license.id,
        "resent",
        Some(license.status),
        license.status,
        reason,
        actor,
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(dedupe)
}
