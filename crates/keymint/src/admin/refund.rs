//! An operator's refund request: written `pending` (holding the license)
//! before the provider is called; only the provider's webhook or the
//! reconciler settles it (docs/architecture.md, rule 5).

use super::AdminError;
use crate::domain::Millis;
use crate::licensing::{self, By, Cause, Step};
use crate::store::{self, licenses};
use crate::text;
use keymint_license::LicenseKey;

/// Refunds a license's payment through its provider: a `pending` refund row
/// is written (and the license suspended) first, then the provider is
/// called with that row's id as the `Idempotency-Key`. The answer never
/// makes the refund terminal; the provider's webhook or the reconciler
/// does.
pub async fn request_refund(
    state: &crate::app::AppState,
    key: &LicenseKey,
    amount_cents: Option<i64>,
    reason: Option<&str>,
    actor: &str,
) -> Result<crate::store::refunds::Refund, AdminError> {
    use crate::store::refunds;
    if amount_cents.is_some_and(|a| a <= 0) {
        return Err(AdminError::invalid(
            "invalid_amount",
            "amount_cents must be positive",
        ));
    }
    let now = store::now_ms();
    let mut tx = state.store.begin().await?;
    let license = licenses::by_key(&mut tx, key)
        .await?
        .ok_or(AdminError::NotFound)?;
    let ep = state
        .config
        .endpoint(&license.source)
        .filter(|ep| crate::provider_api::refunds_configured(ep))
        .ok_or_else(|| {
            AdminError::RefundsNotConfigured(format!(
                "refunds not configured for {}",
                license.source
            ))
        })?;
    // Asked before the refund row is written: a license the machine will
    // not hold has nothing to refund.
    let current = licensing::machine::State::of(license.status, license.status_reason.as_deref());
    if let Step::NotAllowed(why) = licensing::machine::apply(current, Cause::RefundRequested) {
        return Err(AdminError::conflict("license_revoked", why.to_string()));
    }
    // What the provider refunds: the order itself (Hyperswitch payment,
    // Stripe payment intent), else a payment intent recorded for it.
    let payment_ref = match license.order_id.as_deref() {
        Some(o) if ep.kind != crate::config::EndpointKind::Stripe || o.starts_with("pi_") => {
            Some(o.to_string())
        }
        _ => licenses::refs_of(&mut tx, &license.id)
            .await?
            .into_iter()
            .rfind(|r| r.starts_with("pi_")),
    }
    .ok_or_else(|| AdminError::invalid("no_payment", "no payment of this license to refund"))?;
    let refund = refunds::Refund {
        id: crate::domain::RefundId::generate(),
        license_id: license.id.clone(),
        endpoint: license.source.clone(),
        payment_ref,
        amount_cents,
        status: refunds::RefundStatus::Pending,
        provider_refund_id: None,
        reason: reason.map(text::clean_line).filter(|r| !r.is_empty()),
        error: None,
        requested_by: actor.to_string(),
        created_at: Millis(now),
        updated_at: Millis(now),
    };
    if !refunds::insert_pending(&mut tx, &refund).await? {
        let pending = match refunds::pending_for_license(&mut tx, &license.id).await? {
            Some(p) => format!(" ({})", p.id),
            // Settled between the insert and this read.
            None => String::new(),
        };
        return Err(AdminError::conflict(
            "refund_pending",
            format!(
                "a refund for this license is already pending{pending}; wait for the provider's answer"
            ),
        ));
    }
    let by = By {
        actor,
        delivery_id: None,
        now,
        reason: None,
    };
    licensing::transition(&mut tx, &license, Cause::RefundRequested, &by).await?;
    tx.commit().await?;

    // The row is committed: a crash from here on leaves an orphan the
    // reconciler fails and restores.
    let (provider_id, error) = match crate::provider_api::create_refund(
        &state.http,
        ep,
        &refund.payment_ref,
        amount_cents,
        refund.id.as_str(),
    )
    .await
    {
        Ok(id) => (id, None),
        Err(e) => {
            tracing::warn!(refund_id = %refund.id, error = %e, "the provider did not take the refund; the reconciler will settle it");
            (None, Some(e.to_string()))
        }
    };
    let mut conn = state.store.writer().await?;
    refunds::note_call(
        &mut conn,
        &refund.id,
        provider_id.as_deref(),
        error.as_deref(),
        store::now_ms(),
    )
    .await?;
    Ok(refunds::get(&mut conn, &refund.id).await?.unwrap_or(refund))
}
