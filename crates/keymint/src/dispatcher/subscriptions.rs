//! Subscription events: the subscription state machine first (by the
//! provider's event time, `crate::subscriptions`), then the license
//! follows the subscription's state through the license state machine.

use super::{Applied, Count, Cx, DispatchError, Dispatcher, Handled, no_email_reason};
use crate::domain::{LicenseStatus, Millis};
use crate::events::Subscription;
use crate::fulfilment::{self, MintError, Minted, Order};
use crate::licensing::{self, Cause};
use crate::store::licenses::{self, License};
use crate::store::subscriptions as subs;
use crate::store::{self, Conn, customers, outbox};
use crate::subscriptions::{self as machine, Status};

/// Default token life of a subscription whose period end is not known yet.
const PROVISIONAL_PERIOD_MS: i64 = 31 * 86_400_000;

impl Dispatcher {
    pub(super) async fn subscription(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        ev: &Subscription,
        event_type: &str,
    ) -> Result<Handled, DispatchError> {
        let (src, now) = (cx.src, cx.now);
        let (mut row, created) = subs::lock_or_create(
            conn,
            self.store.backend(),
            src.endpoint,
            &ev.subscription_id,
            ev.at_ms,
            now,
        )
        .await?;
        let before = (!created).then(|| row.state());
        let from_status = before.as_ref().map(|s| s.status);
        let old_period_end = row.current_period_end;
        let (result, note) = match machine::apply(before.as_ref(), &ev.change, ev.at_ms) {
            machine::Applied::Changed(next) => {
                row.status = next.status;
                row.trial_end = next.trial_end;
                row.current_period_end = next.current_period_end;
                row.cancel_at_period_end = i64::from(next.cancel_at_period_end);
                row.last_event_at = Millis(next.last_event_at);
                ("applied", None)
            }
            machine::Applied::Stale => (
                "stale",
                Some(format!(
                    "stale: the event's time {} is older than the last applied event's {}",
                    store::format_ms(Millis(ev.at_ms)),
                    store::format_ms(row.last_event_at)
                )),
            ),
            machine::Applied::Ignored(why) => ("ignored", Some(why.to_string())),
        };
        let counted = Count::SubscriptionEvent {
            endpoint: src.endpoint.to_string(),
            result,
        };
        subs::record_event(
            conn,
            &subs::SubscriptionEvent {
                id: crate::domain::SubscriptionEventId::generate(),
                subscription_id: row.id.clone(),
                at: Millis(ev.at_ms),
                received_at: Millis(now),
                event_type: event_type.to_string(),
                result: result.to_string(),
                from_status,
                to_status: row.status,
                period_end: row.current_period_end,
                actor: cx.actor.clone(),
                delivery_id: Some(src.delivery_id.to_string()),
            },
        )
        .await?;

        // What the event says about who and what, whatever its time.
        if row.product.is_none()
            && let Some(p) = self.product_for(src.endpoint, &ev.purchase.product_ids)
        {
            row.product = Some(p.id.clone());
        }
        if row.customer_ref.is_none() {
            row.customer_ref = ev.purchase.buyer.customer_ref.clone();
        }
        let buyer = self
            .resolve_buyer(conn, src, &ev.purchase.buyer, row.customer_id.as_ref())
            .await?;
        // The subscription's customer is settled once; later events only
        // read it.
        if row.customer_id.is_none()
            && let Some(b) = &buyer
        {
            let id = customers::upsert_customer(conn, &b.email, &b.name, now).await?;
            if let Some(r) = &ev.purchase.buyer.customer_ref {
                customers::link_customer(conn, src.endpoint, r, &id).await?;
            }
            row.customer_id = Some(id);
        }
        row.updated_at = Millis(now);

        let state = row.state();
        let product = row.product.as_ref().and_then(|p| self.catalog.product(p));
        let mut license = match &row.license_id {
            Some(id) => licenses::by_id(conn, id).await?,
            None => None,
        };
        let mut counts = vec![counted];
        // A subscription that ever got past pending payment has a license
        // (expired at once when first seen after it ended), so the same
        // events in any order end in the same state.
        let grants = machine::grants_access(&state, now, self.grace_ms());
        if license.is_none() && state.status != Status::PendingPayment {
            let Some(product) = product else {
                if ev.purchase.product_ids.is_empty() && result == "applied" {
                    // Nothing to mint from yet; later events name the product.
                    subs::save(conn, &row).await?;
                    return Ok(with_counts(Handled::ok(None), counts));
                }
                return Ok(with_counts(
                    Self::unmapped(src.endpoint, &ev.purchase.product_ids),
                    counts,
                ));
            };
            let Some(buyer) = buyer else {
                // Keep the state; the license is minted when an event
                // (checkout, customer) brings the buyer's email.
                subs::save(conn, &row).await?;
                let mut handled = with_counts(Handled::ok(None), counts);
                handled.note = Some(format!(
                    "license waits for the buyer's email ({})",
                    no_email_reason(src.endpoint, &ev.purchase.buyer)
                ));
                return Ok(handled);
            };
            let order = Order {
                valid_until: Some(if grants {
                    self.valid_until(&state, now)
                } else {
                    now
                }),
                send_email: grants,
                ..buyer.order(src, &ev.subscription_id, &ev.purchase)
            };
            let l = match self.mint(conn, cx, product, &order).await? {
                Minted::New(l) => {
                    counts.push(Count::Minted {
                        product: product.id.clone(),
                    });
                    l
                }
                Minted::Existing(l) => l,
            };
            row.license_id = Some(l.id.clone());
            license = Some(l);
        } else if let Some(l) = &license {
            licenses::add_refs(conn, src.endpoint, &ev.purchase.refs, &l.id).await?;
        }
        subs::save(conn, &row).await?;

        let Some(license) = license else {
            let handled = match note {
                Some(reason) if result != "applied" => Handled::new(Applied::Ignored { reason }),
                note => {
                    let mut handled = Handled::ok(None);
                    handled.note = note;
                    handled
                }
            };
            return Ok(with_counts(handled, counts));
        };
        let renewed = result == "applied"
            && matches!((old_period_end, row.current_period_end), (Some(old), Some(new)) if new > old);
        self.follow(conn, cx, &row, &state, &license, renewed)
            .await?;
        let handled = match note {
            Some(reason) => Handled::new(Applied::Ignored { reason }).on(&license.id),
            None => Handled::ok(Some(&license)),
        };
        Ok(with_counts(handled, counts))
    }

    /// Token expiry for a subscription license: the end of what was paid
    /// (or the trial) plus grace.
    fn valid_until(&self, state: &machine::State, now: i64) -> i64 {
        let end = match state.status {
            Status::Trialing => state.trial_end.or(state.current_period_end),
            _ => state.current_period_end,
        };
        end.unwrap_or(now + PROVISIONAL_PERIOD_MS)
            .saturating_add(self.grace_ms())
    }

    /// Brings a subscription's license in line with its state: status
    /// (through the license state machine), and a fresh token (emailed on
    /// renewal) when the paid period moved.
    async fn follow(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        row: &subs::Subscription,
        state: &machine::State,
        license: &License,
        renewed: bool,
    ) -> Result<(), DispatchError> {
        let now = cx.now;
        let cause = Cause::Subscription {
            status: state.status,
            grants: machine::grants_access(state, now, self.grace_ms()),
        };
        let step = licensing::transition(conn, license, cause, &cx.by()).await?;
        let status_now = match step {
            licensing::Step::Move(to) => to,
            _ => license.status,
        };
        // Only an active license gets a fresh token: a held or ended one
        // keeps the token it has.
        if status_now != LicenseStatus::Active {
            return Ok(());
        }
        let valid_until = self.valid_until(state, now);
        if license.expires_at == Some(Millis(valid_until)) {
            return Ok(());
        }
        let include_email = self
            .catalog
            .product(&license.product)
            .ok_or_else(|| DispatchError::unknown_product(license))?
            .include_email;
        let signer = self.keyring.signer(conn).await.map_err(MintError::from)?;
        let token = fulfilment::reissue(
            license,
            include_email,
            Some(valid_until),
            &signer,
            &self.issuer,
            now,
        )?;
        licenses::set_token(
            conn,
            &license.id,
            &token,
            signer.kid(),
            Some(valid_until),
            now,
        )
        .await?;
        licenses::record_event(
            conn,
            &license.id,
            if renewed { "renewed" } else { "token_reissued" },
            Some(status_now),
            status_now,
            Some(&format!(
                "valid until {}",
                store::format_ms(Millis(valid_until))
            )),
            &cx.actor,
            Some(cx.src.delivery_id.as_str()),
            now,
        )
        .await?;
        if renewed && self.subs.renewal_email {
            // Every renewal that moved the period has an end, so the
            // dedupe key always names it.
            let period_end = row.current_period_end.unwrap_or_default();
            outbox::enqueue(
                conn,
                &license.id,
                outbox::EmailKind::LicenseRenewed,
                &format!(
                    "{}:{}:{}",
                    outbox::EmailKind::LicenseRenewed,
                    license.id,
                    period_end
                ),
                &license.email,
                now,
            )
            .await?;
        }
        Ok(())
    }
}

fn with_counts(mut handled: Handled, counts: Vec<Count>) -> Handled {
    handled.counts = counts;
    handled
}
