//! Refunds and disputes: each moves the license it names through the
//! license state machine (`licensing::machine`), and settles an operator's
//! pending refund.

use super::{Cx, DispatchError, Dispatcher, Handled};
use crate::events::DisputeStage;
use crate::licensing::{self, By, Cause};
use crate::store::licenses::{self, License};
use crate::store::{Conn, refunds};

impl Dispatcher {
    pub(super) async fn refund(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        refs: &[String],
        full: bool,
        amount_cents: Option<i64>,
    ) -> Result<Handled, DispatchError> {
        let Some(license) = licenses::find_by_refs(conn, cx.src.endpoint, refs).await? else {
            return Ok(no_license(cx, refs));
        };
        let full = full
            || matches!((amount_cents, license.amount_cents),
                (Some(refunded), Some(paid)) if refunded >= paid);
        let cause = if full {
            Cause::Refunded
        } else {
            let product = self
                .catalog
                .product(&license.product)
                .ok_or_else(|| DispatchError::unknown_product(&license))?;
            Cause::PartiallyRefunded {
                revokes: product.revoke_on_partial_refund,
            }
        };
        // An operator's pending refund is now done; the machine lifts its
        // hold when a partial refund keeps the license.
        if let Some(r) = refunds::pending_for_license(conn, &license.id).await? {
            refunds::finish(conn, &r.id, refunds::RefundStatus::Succeeded, None, cx.now).await?;
        }
        licensing::transition(conn, &license, cause, &cx.by()).await?;
        Ok(Handled::ok(Some(&license)))
    }

    /// The provider could not refund: an operator's pending refund fails
    /// and the license it held comes back.
    pub(super) async fn refund_failed(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        refs: &[String],
    ) -> Result<Handled, DispatchError> {
        let Some(license) = licenses::find_by_refs(conn, cx.src.endpoint, refs).await? else {
            return Ok(Handled::new(super::Applied::Ignored {
                reason: "refund failed for an order keymint has no license for".into(),
            }));
        };
        let Some(r) = refunds::pending_for_license(conn, &license.id).await? else {
            return Ok(Handled::new(super::Applied::Ignored {
                reason: "refund failed; no operator refund was pending".into(),
            })
            .on(&license.id));
        };
        refunds::finish(
            conn,
            &r.id,
            refunds::RefundStatus::Failed,
            Some("the provider reported the refund failed"),
            cx.now,
        )
        .await?;
        restore_after_refund(conn, &license, &cx.by()).await?;
        Ok(Handled::ok(Some(&license)))
    }

    pub(super) async fn dispute(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        refs: &[String],
        stage: DisputeStage,
    ) -> Result<Handled, DispatchError> {
        let Some(license) = licenses::find_by_refs(conn, cx.src.endpoint, refs).await? else {
            return Ok(no_license(cx, refs));
        };
        let cause = match stage {
            DisputeStage::Opened => Cause::DisputeOpened,
            DisputeStage::Won => Cause::DisputeWon,
            DisputeStage::Lost => Cause::DisputeLost,
        };
        licensing::transition(conn, &license, cause, &cx.by()).await?;
        Ok(Handled::ok(Some(&license)))
    }
}

/// Puts back a license an operator's refund held (the refund failed), in
/// the caller's transaction; any other license is left as it is.
pub async fn restore_after_refund(
    conn: &mut Conn,
    license: &License,
    by: &By<'_>,
) -> Result<(), sqlx::Error> {
    licensing::transition(conn, license, Cause::RefundFailed, by).await?;
    Ok(())
}

fn no_license(cx: &Cx<'_>, refs: &[String]) -> Handled {
    Handled::new(super::Applied::Failed {
        reason: format!(
            "no license for order {} from endpoint {:?}",
            refs.iter()
                .map(|r| format!("{r:?}"))
                .collect::<Vec<_>>()
                .join(" / "),
            cx.src.endpoint
        ),
    })
}
