//! Orders keymint's checkout started: a paid event (a sale, or a
//! subscription's start) that names its order marks it paid in the same
//! transaction as the license; a failed or expired checkout ends it
//! (docs/checkout.md, "Order states").

use super::{Applied, Count, Cx, DispatchError, Dispatcher, Handled};
use crate::domain::{LicenseId, OrderId, OrderStatus};
use crate::store::{Conn, orders};

impl Dispatcher {
    /// After a paid event's handler: the order it names is paid by the
    /// license the handler minted or found; true when this made it paid.
    /// An order of another endpoint is left alone (a provider cannot pay
    /// another's order).
    pub(super) async fn pay_order(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        order: &OrderId,
        license: &LicenseId,
    ) -> Result<bool, DispatchError> {
        let Some(row) = orders::get(conn, order).await? else {
            return Ok(false);
        };
        if row.endpoint != cx.src.endpoint {
            tracing::warn!(order = %order, endpoint = cx.src.endpoint, "an event names an order of another endpoint; left alone");
            return Ok(false);
        }
        // The order pays for its product only: an event naming another
        // (metadata changed at the provider) licensed what it names, and
        // the order records the conflict for an operator.
        let licensed = crate::store::licenses::by_id(conn, license).await?;
        if let Some(l) = licensed.filter(|l| l.product != row.product) {
            let detail = format!(
                "the event licensed {} ({}), not this order's {}; the order is left as it was",
                l.product, l.key, row.product
            );
            tracing::warn!(order = %order, license = %l.id, "{detail}");
            let step = orders::Step {
                cause: "product_mismatch",
                actor: &cx.actor,
                delivery_id: Some(cx.src.delivery_id.as_str()),
                detail: Some(&detail),
                now: cx.now,
            };
            orders::note(conn, order, row.status, &step).await?;
            return Ok(false);
        }
        let step = orders::Step {
            cause: "paid",
            actor: &cx.actor,
            delivery_id: Some(cx.src.delivery_id.as_str()),
            detail: Some(license.as_str()),
            now: cx.now,
        };
        let paid = orders::mark_paid(conn, &row, license, &step).await?;
        if paid {
            tracing::info!(order = %order, license = %license, "order paid");
        }
        Ok(paid)
    }

    /// A checkout that ended unpaid: a pending order becomes failed or
    /// expired; one already settled (paid, or ended earlier) stays.
    pub(super) async fn checkout_ended(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        order: &OrderId,
        expired: bool,
        reason: &str,
    ) -> Result<Handled, DispatchError> {
        let to = if expired {
            OrderStatus::Expired
        } else {
            OrderStatus::Failed
        };
        let row = orders::get(conn, order).await?;
        let Some(row) = row.filter(|r| r.endpoint == cx.src.endpoint) else {
            return Ok(Handled::new(Applied::Ignored {
                reason: format!("order {order} is not an order of this endpoint"),
            }));
        };
        let step = orders::Step {
            cause: to.as_str(),
            actor: &cx.actor,
            delivery_id: Some(cx.src.delivery_id.as_str()),
            detail: Some(reason),
            now: cx.now,
        };
        if orders::close(conn, order, to, Some(reason), &step).await? {
            tracing::info!(order = %order, status = %to, reason, "order ended unpaid");
            let mut handled = Handled::ok(None);
            handled.counts.push(Count::Order {
                status: to.as_str(),
            });
            Ok(handled)
        } else {
            Ok(Handled::new(Applied::Ignored {
                reason: format!("order {order} is already {}", row.status),
            }))
        }
    }
}
