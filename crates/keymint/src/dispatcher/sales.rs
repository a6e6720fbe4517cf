//! Sales: a one-off purchase of a catalog product mints its license.

use super::{Applied, Count, Cx, DispatchError, Dispatcher, Handled, no_email_reason};
use crate::events::Sale;
use crate::fulfilment::Minted;
use crate::store::{Conn, licenses};

impl Dispatcher {
    pub(super) async fn sale(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        sale: &Sale,
    ) -> Result<Handled, DispatchError> {
        let src = cx.src;
        // A sale some other event already licensed (a subscription's first
        // order) is not sold twice. One indexed read; a repeat of this very
        // order is left to the `(source, order_id)` unique key in `mint`.
        let ids: Vec<String> = std::iter::once(sale.order_id.clone())
            .chain(sale.purchase.refs.iter().cloned())
            .collect();
        if let Some(existing) = licenses::by_any_ref(conn, src.endpoint, &ids).await? {
            licenses::add_refs(conn, src.endpoint, &ids, &existing.id).await?;
            return Ok(Handled::new(Applied::Duplicate {
                license_key: Some(existing.key.clone()),
            })
            .on(&existing.id));
        }
        let Some(product) = self.product_for(src.endpoint, &sale.purchase.product_ids) else {
            return Ok(Self::unmapped(src.endpoint, &sale.purchase.product_ids));
        };
        if product.subscription {
            return Ok(Handled::new(Applied::Ignored {
                reason: format!(
                    "product {:?} is a subscription: its license comes from the subscription's events",
                    product.id
                ),
            }));
        }
        let Some(buyer) = self
            .resolve_buyer(conn, src, &sale.purchase.buyer, None)
            .await?
        else {
            return Ok(Handled::new(Applied::Failed {
                reason: no_email_reason(src.endpoint, &sale.purchase.buyer),
            }));
        };
        let order = buyer.order(src, &sale.order_id, &sale.purchase);
        Ok(match self.mint(conn, cx, product, &order).await? {
            Minted::New(l) => {
                let mut handled = Handled::ok(Some(&l));
                handled.counts.push(Count::Minted {
                    product: product.id.clone(),
                });
                handled
            }
            Minted::Existing(l) => Handled::new(Applied::Duplicate {
                license_key: Some(l.key.clone()),
            })
            .on(&l.id),
        })
    }
}
