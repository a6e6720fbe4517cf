//! The dispatcher: applies one normalized event in one transaction:
//! the exactly-once claim, the license change, the outbox row and the
//! delivery's outcome commit together or not at all. It knows normalized
//! events only, never providers.

use crate::adapters::CATALOG_ID_PREFIX;
use crate::catalog::Catalog;
use crate::config::{ProductConfig, SubscriptionsConfig};
use crate::events::{Buyer, DisputeStage, Event, Parsed, Sale, Subscription};
use crate::fulfilment::{self, MintError, Minted, Order};
use crate::signing::Keyring;
use crate::store::deliveries::{self, Outcome, status as dstatus};
use crate::store::licenses::{self, License, status as lstatus};
use crate::store::refunds;
use crate::store::subscriptions as subs;
use crate::store::{self, Conn, Store, outbox};
use crate::subscriptions::{self as machine, Status};
use std::sync::Arc;

/// What applying an event did; maps onto the webhook response `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A license was minted or changed.
    Ok { license_key: Option<String> },
    /// Already processed earlier.
    Duplicate { license_key: Option<String> },
    /// No license effect.
    Ignored { reason: String },
    /// Authentic sale of a product the catalog does not map.
    NoMint { reason: String },
    /// The event could not be applied (reason on the delivery row).
    Failed { reason: String },
}

impl Applied {
    pub fn response_status(&self) -> &'static str {
        match self {
            Self::Ok { .. } => "ok",
            Self::Duplicate { .. } => "duplicate",
            Self::Ignored { .. } => "ignored",
            Self::NoMint { .. } => "logged-no-mint",
            Self::Failed { .. } => "error",
        }
    }

    pub fn license_key(&self) -> Option<&str> {
        match self {
            Self::Ok { license_key } | Self::Duplicate { license_key } => license_key.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Mint(#[from] MintError),
}

impl DispatchError {
    /// True when the database itself is unavailable: nothing was applied
    /// and the sender should retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) | Self::Mint(MintError::Database(e)) => store::is_unavailable(e),
            _ => false,
        }
    }
}

/// Where the event came from.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub endpoint: &'a str,
    pub delivery_id: &'a str,
}

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    catalog: Arc<Catalog>,
    keyring: Arc<Keyring>,
    issuer: String,
    subs: SubscriptionsConfig,
}

/// Result of the inner transaction: the outcome to record and the answer.
struct Step {
    outcome: Outcome,
    applied: Applied,
}

/// A buyer resolved against what the store knows.
struct Resolved {
    email: String,
    name: String,
}

/// Default token life of a subscription whose period end is not known yet.
const PROVISIONAL_PERIOD_MS: i64 = 31 * 86_400_000;

impl Dispatcher {
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        keyring: Arc<Keyring>,
        issuer: String,
        subs: SubscriptionsConfig,
    ) -> Self {
        Self {
            store,
            catalog,
            keyring,
            issuer,
            subs,
        }
    }

    fn grace_ms(&self) -> i64 {
        i64::try_from(self.subs.grace.as_millis()).unwrap_or(i64::MAX)
    }

    /// Applies `parsed` and records the delivery's outcome.
    pub async fn apply(&self, src: &Source<'_>, parsed: &Parsed) -> Result<Applied, DispatchError> {
        let mut tx = self.store.begin().await?;
        let step = self.apply_in(&mut tx, src, parsed).await;
        match step {
            Ok(step) if step.outcome.status == dstatus::FAILED => {
                // Roll back the claim so a replay can apply it later, then
                // record why on its own.
                tx.rollback().await?;
                self.record_failure(src, parsed, &step.outcome).await?;
                Ok(step.applied)
            }
            Ok(step) => {
                deliveries::finish(&mut tx, src.delivery_id, &step.outcome, store::now_ms())
                    .await?;
                tx.commit().await?;
                Ok(step.applied)
            }
            Err(e) => {
                drop(tx);
                Err(e)
            }
        }
    }

    /// Records a failure that happened before or outside the transaction.
    pub async fn record_failure(
        &self,
        src: &Source<'_>,
        parsed: &Parsed,
        outcome: &Outcome,
    ) -> Result<(), sqlx::Error> {
        let mut outcome = outcome.clone();
        outcome
            .event_type
            .get_or_insert_with(|| parsed.event_type.clone());
        outcome
            .event_id
            .get_or_insert_with(|| parsed.event_id.clone());
        let mut conn = self.store.writer().await?;
        deliveries::finish(&mut conn, src.delivery_id, &outcome, store::now_ms()).await
    }

    async fn apply_in(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        parsed: &Parsed,
    ) -> Result<Step, DispatchError> {
        let mut outcome = Outcome {
            status: dstatus::PROCESSED,
            event_type: Some(parsed.event_type.clone()),
            event_id: Some(parsed.event_id.clone()),
            order_id: parsed.order_id().map(str::to_string),
            ..Outcome::default()
        };
        if let Event::Ignored(reason) = &parsed.event {
            outcome.status = dstatus::IGNORED;
            outcome.error = Some(reason.clone());
            return Ok(Step {
                outcome,
                applied: Applied::Ignored {
                    reason: reason.clone(),
                },
            });
        }
        let now = store::now_ms();
        if !deliveries::claim_event(conn, src.endpoint, &parsed.event_id, src.delivery_id, now)
            .await?
        {
            outcome.status = dstatus::DUPLICATE;
            let existing = self.license_of(conn, src, &parsed.event).await?;
            outcome.license_id = existing.as_ref().map(|l| l.id.clone());
            let license_key = existing.map(|l| l.key);
            return Ok(Step {
                outcome,
                applied: Applied::Duplicate { license_key },
            });
        }
        let actor = format!("webhook:{}", src.endpoint);
        let applied = match &parsed.event {
            Event::Sale(sale) => self.sale(conn, src, sale, &actor, &mut outcome).await?,
            Event::Refund {
                refs,
                full,
                amount_cents,
            } => {
                self.refund(conn, src, refs, *full, *amount_cents, &actor, &mut outcome)
                    .await?
            }
            Event::RefundFailed { refs } => {
                self.refund_failed(conn, src, refs, &actor, &mut outcome)
                    .await?
            }
            Event::Dispute { refs, stage } => {
                let (to, action, from): (_, _, &[&str]) = match stage {
                    DisputeStage::Opened => {
                        (lstatus::SUSPENDED, "dispute_opened", &[lstatus::ACTIVE])
                    }
                    DisputeStage::Won => (lstatus::ACTIVE, "dispute_won", &[lstatus::SUSPENDED]),
                    DisputeStage::Lost => (lstatus::REVOKED, "dispute_lost", &[]),
                };
                let license = licenses::find_by_refs(conn, src.endpoint, refs).await?;
                self.transition(
                    conn,
                    src,
                    refs,
                    license,
                    action,
                    Some(to),
                    from,
                    &actor,
                    &mut outcome,
                )
                .await?
            }
            Event::Subscription(ev) => {
                self.subscription(conn, src, ev, &parsed.event_type, &actor, &mut outcome)
                    .await?
            }
            Event::Customer {
                customer_ref,
                email,
                name,
            } => {
                let name = name.clone().unwrap_or_else(|| default_name(email));
                let id = licenses::upsert_customer(conn, &email.to_lowercase(), &name, now).await?;
                licenses::link_customer(conn, src.endpoint, customer_ref, &id).await?;
                Applied::Ok { license_key: None }
            }
            Event::Ignored(_) => unreachable!("handled above"),
        };
        match &applied {
            Applied::Failed { reason } | Applied::NoMint { reason } => {
                outcome.status = dstatus::FAILED;
                outcome.error = Some(reason.clone());
            }
            Applied::Ignored { reason } => {
                outcome.status = dstatus::IGNORED;
                outcome.error = Some(reason.clone());
            }
            _ => {}
        }
        Ok(Step { outcome, applied })
    }

    /// The license an event is about, if it exists.
    async fn license_of(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        event: &Event,
    ) -> Result<Option<License>, sqlx::Error> {
        let ids: Vec<String> = match event {
            Event::Sale(s) => std::iter::once(s.order_id.clone())
                .chain(s.refs.iter().cloned())
                .collect(),
            Event::Refund { refs, .. }
            | Event::RefundFailed { refs }
            | Event::Dispute { refs, .. } => refs.clone(),
            Event::Subscription(s) => vec![s.subscription_id.clone()],
            Event::Customer { .. } | Event::Ignored(_) => return Ok(None),
        };
        licenses::find_by_refs(conn, src.endpoint, &ids).await
    }

    /// The buyer's email and name: from the event, else from the customer
    /// the provider's customer id was linked to.
    async fn resolve_buyer(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        buyer: &Buyer,
        known_customer: Option<&str>,
    ) -> Result<Option<Resolved>, sqlx::Error> {
        if let Some(email) = buyer.email.as_deref().filter(|e| e.contains('@')) {
            return Ok(Some(Resolved {
                email: email.to_lowercase(),
                name: buyer.name.clone().unwrap_or_else(|| default_name(email)),
            }));
        }
        let mut customer = None;
        if let Some(r) = &buyer.customer_ref {
            customer = licenses::customer_by_ref(conn, src.endpoint, r).await?;
        }
        if customer.is_none()
            && let Some(id) = known_customer
        {
            customer = licenses::customer_by_id(conn, id).await?;
        }
        Ok(customer.map(|c| Resolved {
            name: buyer.name.clone().unwrap_or(c.name),
            email: c.email,
        }))
    }

    /// Mints `order` with this instance's signing key, from this delivery.
    async fn mint(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        product: &ProductConfig,
        order: &Order,
        actor: &str,
    ) -> Result<Minted, MintError> {
        let signer = self.keyring.signer(conn).await?;
        fulfilment::mint(
            conn,
            product,
            order,
            &signer,
            &self.issuer,
            actor,
            Some(src.delivery_id),
        )
        .await
    }

    fn product_for(&self, endpoint: &str, ids: &[String]) -> Option<&Arc<ProductConfig>> {
        ids.iter()
            .find_map(|id| match id.strip_prefix(CATALOG_ID_PREFIX) {
                Some(catalog_id) => self.catalog.product(catalog_id),
                None => self.catalog.lookup(endpoint, id),
            })
    }

    fn unmapped(endpoint: &str, ids: &[String]) -> Applied {
        Applied::NoMint {
            reason: if ids.is_empty() {
                format!(
                    "endpoint {endpoint:?}: the event names no product (Stripe Checkout: set metadata keymint_product, or an api_key to read line items)"
                )
            } else {
                format!(
                    "endpoint {endpoint:?}: product id {} is not mapped to any product in the catalog",
                    ids.iter()
                        .map(|p| format!("{p:?}"))
                        .collect::<Vec<_>>()
                        .join(" / ")
                )
            },
        }
    }

    async fn sale(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        sale: &Sale,
        actor: &str,
        outcome: &mut Outcome,
    ) -> Result<Applied, DispatchError> {
        // A sale some other event already licensed (a subscription's first
        // order) is not sold twice. One indexed read; a repeat of this very
        // order is left to the `(source, order_id)` unique key in `mint`.
        let ids: Vec<String> = std::iter::once(sale.order_id.clone())
            .chain(sale.refs.iter().cloned())
            .collect();
        if let Some(existing) = licenses::by_any_ref(conn, src.endpoint, &ids).await? {
            licenses::add_refs(conn, src.endpoint, &ids, &existing.id).await?;
            outcome.status = dstatus::DUPLICATE;
            outcome.license_id = Some(existing.id);
            return Ok(Applied::Duplicate {
                license_key: Some(existing.key),
            });
        }
        let Some(product) = self.product_for(src.endpoint, &sale.product_ids) else {
            return Ok(Self::unmapped(src.endpoint, &sale.product_ids));
        };
        if product.subscription {
            return Ok(Applied::Ignored {
                reason: format!(
                    "product {:?} is a subscription: its license comes from the subscription's events",
                    product.id
                ),
            });
        }
        let Some(buyer) = self.resolve_buyer(conn, src, &sale.buyer, None).await? else {
            return Ok(Applied::Failed {
                reason: no_email_reason(src.endpoint, &sale.buyer),
            });
        };
        let order = Order {
            source: src.endpoint.to_string(),
            order_id: Some(sale.order_id.clone()),
            email: buyer.email,
            name: buyer.name,
            amount_cents: sale.amount_cents,
            currency: sale.currency.clone(),
            test: sale.test,
            notes: None,
            customer_ref: sale.buyer.customer_ref.clone(),
            refs: sale.refs.clone(),
            valid_until: None,
            send_email: true,
        };
        let minted = self.mint(conn, src, product, &order, actor).await?;
        Ok(match minted {
            Minted::New(l) => {
                outcome.license_id = Some(l.id);
                Applied::Ok {
                    license_key: Some(l.key),
                }
            }
            Minted::Existing(l) => {
                outcome.status = dstatus::DUPLICATE;
                outcome.license_id = Some(l.id);
                Applied::Duplicate {
                    license_key: Some(l.key),
                }
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn refund(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        refs: &[String],
        full: bool,
        amount_cents: Option<i64>,
        actor: &str,
        outcome: &mut Outcome,
    ) -> Result<Applied, DispatchError> {
        let license = licenses::find_by_refs(conn, src.endpoint, refs).await?;
        let full = full
            || matches!((amount_cents, license.as_ref().and_then(|l| l.amount_cents)),
                (Some(refunded), Some(paid)) if refunded >= paid);
        let revoke = full
            || license.as_ref().is_some_and(|l| {
                self.catalog
                    .product(&l.product)
                    .is_some_and(|p| p.revoke_on_partial_refund)
            });
        let (to, action) = match (full, revoke) {
            (true, _) => (Some(lstatus::REVOKED), "refunded"),
            (false, true) => (Some(lstatus::REVOKED), "partially_refunded"),
            (false, false) => (None, "partially_refunded"),
        };
        let applied = self
            .transition(
                conn,
                src,
                refs,
                license.clone(),
                action,
                to,
                &[],
                actor,
                outcome,
            )
            .await?;
        // An operator's pending refund is now done.
        if let Some(l) = &license
            && let Some(r) = refunds::pending_for_license(conn, &l.id).await?
        {
            let now = store::now_ms();
            refunds::finish(conn, &r.id, refunds::status::SUCCEEDED, None, now).await?;
            // A partial refund that keeps the license lifts the hold.
            if let Some(after) = licenses::by_id(conn, &l.id).await? {
                restore_after_refund(conn, &after, actor, Some(src.delivery_id), now).await?;
            }
        }
        Ok(applied)
    }

    /// The provider could not refund: an operator's pending refund fails
    /// and the license it held comes back.
    async fn refund_failed(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        refs: &[String],
        actor: &str,
        outcome: &mut Outcome,
    ) -> Result<Applied, DispatchError> {
        let Some(license) = licenses::find_by_refs(conn, src.endpoint, refs).await? else {
            return Ok(Applied::Ignored {
                reason: "refund failed for an order keymint has no license for".into(),
            });
        };
        outcome.license_id = Some(license.id.clone());
        let Some(r) = refunds::pending_for_license(conn, &license.id).await? else {
            return Ok(Applied::Ignored {
                reason: "refund failed; no operator refund was pending".into(),
            });
        };
        let now = store::now_ms();
        refunds::finish(
            conn,
            &r.id,
            refunds::status::FAILED,
            Some("the provider reported the refund failed"),
            now,
        )
        .await?;
        restore_after_refund(conn, &license, actor, Some(src.delivery_id), now).await?;
        Ok(Applied::Ok {
            license_key: Some(license.key),
        })
    }

    /// Moves `license` (the one `refs` names, found by the caller) to `to`
    /// when its status is one of `from` (any status but `to` when `from` is
    /// empty); `to = None` records the event without a change.
    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        refs: &[String],
        license: Option<License>,
        action: &str,
        to: Option<&str>,
        from: &[&str],
        actor: &str,
        outcome: &mut Outcome,
    ) -> Result<Applied, DispatchError> {
        let Some(license) = license else {
            return Ok(Applied::Failed {
                reason: format!(
                    "no license for order {} from endpoint {:?}",
                    refs.iter()
                        .map(|r| format!("{r:?}"))
                        .collect::<Vec<_>>()
                        .join(" / "),
                    src.endpoint
                ),
            });
        };
        outcome.license_id = Some(license.id.clone());
        let now = store::now_ms();
        let license_key = Some(license.key.clone());
        match to {
            Some(to)
                if license.status != to
                    && (from.is_empty() || from.contains(&license.status.as_str())) =>
            {
                licenses::set_status(
                    conn,
                    &license,
                    to,
                    action,
                    Some(action),
                    actor,
                    Some(src.delivery_id),
                    now,
                )
                .await?;
            }
            _ => {
                // No state change (already there, or not applicable), but the
                // history still says what happened.
                licenses::record_event(
                    conn,
                    &license.id,
                    action,
                    Some(&license.status),
                    &license.status,
                    Some(action),
                    actor,
                    Some(src.delivery_id),
                    now,
                )
                .await?;
            }
        }
        Ok(Applied::Ok { license_key })
    }

    /// Applies a subscription event: the state machine first (by the
    /// provider's event time), then the license follows the state.
    async fn subscription(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        ev: &Subscription,
        event_type: &str,
        actor: &str,
        outcome: &mut Outcome,
    ) -> Result<Applied, DispatchError> {
        let now = store::now_ms();
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
        let from_status = before.as_ref().map(|s| s.status.as_str().to_string());
        let old_period_end = row.current_period_end;
        let (result, note) = match machine::apply(before.as_ref(), &ev.change, ev.at_ms) {
            machine::Applied::Changed(next) => {
                row.status = next.status.as_str().to_string();
                row.trial_end = next.trial_end;
                row.current_period_end = next.current_period_end;
                row.cancel_at_period_end = i64::from(next.cancel_at_period_end);
                row.last_event_at = next.last_event_at;
                ("applied", None)
            }
            machine::Applied::Stale => (
                "stale",
                Some(format!(
                    "stale: the event's time {} is older than the last applied event's {}",
                    store::format_ms(ev.at_ms),
                    store::format_ms(row.last_event_at)
                )),
            ),
            machine::Applied::Ignored(why) => ("ignored", Some(why.to_string())),
        };
        metrics::counter!("keymint_subscription_events_total", "endpoint" => src.endpoint.to_string(), "result" => result)
            .increment(1);
        subs::record_event(
            conn,
            &subs::SubscriptionEvent {
                id: store::new_id("sev"),
                subscription_id: row.id.clone(),
                at: ev.at_ms,
                received_at: now,
                event_type: event_type.to_string(),
                result: result.to_string(),
                from_status,
                to_status: row.status.clone(),
                period_end: row.current_period_end,
                actor: actor.to_string(),
                delivery_id: Some(src.delivery_id.to_string()),
            },
        )
        .await?;

        // What the event says about who and what, whatever its time.
        if row.product.is_none()
            && let Some(p) = self.product_for(src.endpoint, &ev.product_ids)
        {
            row.product = Some(p.id.clone());
        }
        if row.customer_ref.is_none() {
            row.customer_ref = ev.buyer.customer_ref.clone();
        }
        let buyer = self
            .resolve_buyer(conn, src, &ev.buyer, row.customer_id.as_deref())
            .await?;
        // The subscription's customer is settled once; later events only
        // read it.
        if row.customer_id.is_none()
            && let Some(b) = &buyer
        {
            let id = licenses::upsert_customer(conn, &b.email, &b.name, now).await?;
            if let Some(r) = &ev.buyer.customer_ref {
                licenses::link_customer(conn, src.endpoint, r, &id).await?;
            }
            row.customer_id = Some(id);
        }
        row.updated_at = now;

        let state = row.state();
        let product = row.product.as_ref().and_then(|p| self.catalog.product(p));
        let mut license = match &row.license_id {
            Some(id) => licenses::by_id(conn, id).await?,
            None => None,
        };
        // A subscription that ever got past pending payment has a license
        // (expired at once when first seen after it ended), so the same
        // events in any order end in the same state.
        let grants = machine::grants_access(&state, now, self.grace_ms());
        if license.is_none() && state.status != Status::PendingPayment {
            let Some(product) = product else {
                if ev.product_ids.is_empty() && result == "applied" {
                    // Nothing to mint from yet; later events name the product.
                    subs::save(conn, &row).await?;
                    return Ok(Applied::Ok { license_key: None });
                }
                return Ok(Self::unmapped(src.endpoint, &ev.product_ids));
            };
            let Some(buyer) = buyer else {
                // Keep the state; the license is minted when an event
                // (checkout, customer) brings the buyer's email.
                subs::save(conn, &row).await?;
                outcome.error = Some(format!(
                    "license waits for the buyer's email ({})",
                    no_email_reason(src.endpoint, &ev.buyer)
                ));
                return Ok(Applied::Ok { license_key: None });
            };
            let order = Order {
                source: src.endpoint.to_string(),
                order_id: Some(ev.subscription_id.clone()),
                email: buyer.email,
                name: buyer.name,
                amount_cents: ev.amount_cents,
                currency: ev.currency.clone(),
                test: ev.test,
                notes: None,
                customer_ref: ev.buyer.customer_ref.clone(),
                refs: ev.refs.clone(),
                valid_until: Some(if grants {
                    self.valid_until(&state, now)
                } else {
                    now
                }),
                send_email: grants,
            };
            let l = self
                .mint(conn, src, product, &order, actor)
                .await?
                .into_license();
            row.license_id = Some(l.id.clone());
            license = Some(l);
        } else if let Some(l) = &license {
            licenses::add_refs(conn, src.endpoint, &ev.refs, &l.id).await?;
        }
        subs::save(conn, &row).await?;

        let Some(license) = license else {
            outcome.error = note.clone();
            return Ok(match note {
                Some(reason) if result != "applied" => Applied::Ignored { reason },
                _ => Applied::Ok { license_key: None },
            });
        };
        outcome.license_id = Some(license.id.clone());
        let renewed = result == "applied"
            && matches!((old_period_end, row.current_period_end), (Some(old), Some(new)) if new > old);
        self.follow(conn, src, &row, &license, renewed, actor, now)
            .await?;
        if let Some(reason) = note {
            outcome.error = Some(reason.clone());
            return Ok(Applied::Ignored { reason });
        }
        Ok(Applied::Ok {
            license_key: Some(license.key),
        })
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

    /// Brings a subscription's license in line with its state: status, and
    /// a fresh token (emailed on renewal) when the paid period moved.
    #[allow(clippy::too_many_arguments)]
    async fn follow(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        row: &subs::Subscription,
        license: &License,
        renewed: bool,
        actor: &str,
        now: i64,
    ) -> Result<(), DispatchError> {
        let state = row.state();
        let want = match state.status {
            _ if machine::grants_access(&state, now, self.grace_ms()) => lstatus::ACTIVE,
            Status::Paused => lstatus::SUSPENDED,
            Status::Revoked => lstatus::REVOKED,
            _ => lstatus::EXPIRED,
        };
        // Refunds, lost disputes and operators revoke for good; an open
        // dispute holds until it is decided.
        let held = license.status == lstatus::REVOKED
            || (license.status == lstatus::SUSPENDED
                && license.status_reason.as_deref() == Some("dispute_opened"));
        if !held && license.status != want {
            let action = format!("subscription_{}", state.status.as_str());
            licenses::set_status(
                conn,
                license,
                want,
                &action,
                Some(&action),
                actor,
                Some(src.delivery_id),
                now,
            )
            .await?;
        }
        if held || want != lstatus::ACTIVE {
            return Ok(());
        }
        let valid_until = self.valid_until(&state, now);
        if license.expires_at == Some(valid_until) {
            return Ok(());
        }
        let include_email = self
            .catalog
            .product(&license.product)
            .is_some_and(|p| p.include_email);
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
            Some(want),
            want,
            Some(&format!("valid until {}", store::format_ms(valid_until))),
            actor,
            Some(src.delivery_id),
            now,
        )
        .await?;
        if renewed && self.subs.renewal_email {
            outbox::enqueue(
                conn,
                &license.id,
                outbox::kind::LICENSE_RENEWED,
                &format!(
                    "{}:{}:{}",
                    outbox::kind::LICENSE_RENEWED,
                    license.id,
                    row.current_period_end.unwrap_or_default()
                ),
                &license.email,
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// Expires subscription licenses whose paid period plus grace has
    /// ended (the sweeper's tick). Returns how many it expired.
    pub async fn sweep(&self, limit: i64) -> Result<usize, DispatchError> {
        self.sweep_at(store::now_ms(), limit).await
    }

    /// [`Self::sweep`] as if the time were `now` (Unix ms).
    pub async fn sweep_at(&self, now: i64, limit: i64) -> Result<usize, DispatchError> {
        let due = {
            let mut conn = self.store.conn().await?;
            subs::due_for_expiry(&mut conn, now, self.grace_ms(), limit).await?
        };
        let mut done = 0;
        for candidate in due {
            let mut tx = self.store.begin().await?;
            let (mut row, _) = subs::lock_or_create(
                &mut tx,
                self.store.backend(),
                &candidate.source,
                &candidate.subscription_id,
                candidate.last_event_at,
                now,
            )
            .await?;
            let state = row.state();
            if machine::grants_access(&state, now, self.grace_ms()) {
                continue;
            }
            let Some(license) = (match &row.license_id {
                Some(id) => licenses::by_id(&mut tx, id).await?,
                None => None,
            }) else {
                continue;
            };
            if license.status != lstatus::ACTIVE {
                continue;
            }
            let from = row.status.clone();
            if state.status == Status::Canceled {
                row.status = Status::Expired.as_str().to_string();
                row.cancel_at_period_end = 0;
                row.updated_at = now;
                subs::save(&mut tx, &row).await?;
            }
            subs::record_event(
                &mut tx,
                &subs::SubscriptionEvent {
                    id: store::new_id("sev"),
                    subscription_id: row.id.clone(),
                    at: now,
                    received_at: now,
                    event_type: "keymint.period_ended".into(),
                    result: "applied".into(),
                    from_status: Some(from),
                    to_status: row.status.clone(),
                    period_end: row.current_period_end,
                    actor: "sweeper".into(),
                    delivery_id: None,
                },
            )
            .await?;
            licenses::set_status(
                &mut tx,
                &license,
                lstatus::EXPIRED,
                "period_ended",
                Some("the paid period and grace ended"),
                "sweeper",
                None,
                now,
            )
            .await?;
            tx.commit().await?;
            metrics::counter!("keymint_subscription_licenses_expired_total").increment(1);
            done += 1;
        }
        Ok(done)
    }
}

/// Puts back a license an operator's refund suspended.
pub async fn restore_after_refund(
    conn: &mut Conn,
    license: &License,
    actor: &str,
    delivery_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    if license.status == lstatus::SUSPENDED
        && license.status_reason.as_deref() == Some(REFUND_PENDING)
    {
        licenses::set_status(
            conn,
            license,
            lstatus::ACTIVE,
            "refund_failed",
            Some("refund_failed"),
            actor,
            delivery_id,
            now,
        )
        .await?;
    }
    Ok(())
}

/// The status reason of a license held while an operator's refund is pending.
pub const REFUND_PENDING: &str = "refund_pending";

fn default_name(email: &str) -> String {
    email.split('@').next().unwrap_or_default().to_string()
}

fn no_email_reason(endpoint: &str, buyer: &Buyer) -> String {
    match &buyer.customer_ref {
        Some(r) => format!(
            "endpoint {endpoint:?}: no email known for customer {r:?} (the event carries none; enable customer events, or replay after one arrives)"
        ),
        None => format!("endpoint {endpoint:?}: the event carries no buyer email"),
    }
}
