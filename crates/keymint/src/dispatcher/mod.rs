//! The dispatcher: applies one normalized event in one transaction:
//! the exactly-once claim, the license change, the outbox row and the
//! delivery's outcome commit together or not at all (docs/architecture.md,
//! rules 3 and 4). It knows normalized events only, never providers.
//!
//! This file holds the transaction wrapper and the routing; the handlers
//! live beside it: [`sales`], [`refunds`] (refunds and disputes),
//! [`subscriptions`] and [`sweeper`]. Each handler returns a [`Handled`];
//! the delivery's status follows from it in one place
//! ([`Applied::delivery_status`]).

mod orders;
mod refunds;
mod result;
mod sales;
mod subscriptions;
mod sweeper;

pub use result::Applied;
use result::{Count, Handled, outcome};

use crate::adapters::CATALOG_ID_PREFIX;
use crate::catalog::Catalog;
use crate::config::{ProductConfig, SubscriptionsConfig};
use crate::domain::{CustomerId, DeliveryId, DeliveryStatus, Email};
use crate::events::{Buyer, Event, Parsed, Purchase};
use crate::fulfilment::{self, MintError, Minted, Order};
use crate::signing::Keyring;
use crate::store::deliveries::{self, Outcome};
use crate::store::licenses::{self, License};
use crate::store::{self, Conn, Store, customers};
use std::sync::Arc;

pub use refunds::restore_after_refund;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Mint(#[from] MintError),
    /// A license whose product the catalog no longer lists: what its
    /// partial refund or renewal should do cannot be known, and guessing
    /// would change what it grants (docs/architecture.md, rule 8).
    #[error("license {license}: product {product:?} is not in the catalog; add it back and replay")]
    UnknownProduct { license: String, product: String },
}

impl DispatchError {
    pub(super) fn unknown_product(license: &License) -> Self {
        Self::UnknownProduct {
            license: license.id.to_string(),
            product: license.product.clone(),
        }
    }
}

/// Why an event's transaction body did not stand.
enum Unapplied {
    /// The handler decided the event failed: its writes are undone and
    /// the outcome is recorded on its own.
    Failed(Applied, Outcome),
    Error(DispatchError),
}

impl From<DispatchError> for Unapplied {
    fn from(e: DispatchError) -> Self {
        Self::Error(e)
    }
}

impl From<sqlx::Error> for Unapplied {
    fn from(e: sqlx::Error) -> Self {
        Self::Error(e.into())
    }
}

impl store::group::WorkError for Unapplied {
    fn failure(&self) -> store::group::Failure {
        match self {
            Self::Failed(..) => store::group::Failure::Own,
            Self::Error(
                DispatchError::Database(e) | DispatchError::Mint(MintError::Database(e)),
            ) => store::group::classify(e),
            Self::Error(_) => store::group::Failure::Own,
        }
    }
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
    pub delivery_id: &'a DeliveryId,
    /// The reconciler's synthetic event (what it read from the provider),
    /// not the provider's own webhook: the history names it as the actor.
    pub by_reconciler: bool,
}

/// One event's context: where it came from, who acts, and the one time
/// it is applied at (read once per event).
struct Cx<'a> {
    src: &'a Source<'a>,
    actor: String,
    now: i64,
}

impl Cx<'_> {
    fn by(&self) -> crate::licensing::By<'_> {
        crate::licensing::By {
            actor: &self.actor,
            delivery_id: Some(self.src.delivery_id.as_str()),
            now: self.now,
            reason: None,
        }
    }
}

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    catalog: Arc<Catalog>,
    keyring: Arc<Keyring>,
    issuer: String,
    subs: SubscriptionsConfig,
}

/// A buyer resolved against what the store knows.
struct Resolved {
    email: String,
    name: String,
}

impl Resolved {
    /// The order this buyer placed: what a sale or a subscription's event
    /// says of the purchase, to be licensed for the product's duration and
    /// emailed (a subscription sets `valid_until` and `send_email` itself).
    fn order(self, src: &Source<'_>, order_id: &str, purchase: &Purchase) -> Order {
        Order {
            source: src.endpoint.to_string(),
            order_id: Some(order_id.to_string()),
            email: self.email,
            name: self.name,
            amount_cents: purchase.amount_cents,
            currency: purchase.currency.clone(),
            test: purchase.test,
            notes: None,
            customer_ref: purchase.buyer.customer_ref.clone(),
            refs: purchase.refs.clone(),
            valid_until: None,
            send_email: true,
        }
    }
}

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
        // A grace too long for i64 milliseconds (292 million years) is
        // forever for every practical purpose.
        i64::try_from(self.subs.grace.as_millis()).unwrap_or(i64::MAX)
    }

    /// Applies `parsed` and records the delivery's outcome, in the next
    /// group commit: the answer comes once the effects are durable.
    pub async fn apply(&self, src: &Source<'_>, parsed: &Parsed) -> Result<Applied, DispatchError> {
        let work = Arc::new((
            self.clone(),
            src.endpoint.to_string(),
            src.delivery_id.clone(),
            parsed.clone(),
            src.by_reconciler,
        ));
        let result = self
            .store
            .write(move |conn| {
                let work = work.clone();
                Box::pin(async move {
                    let (this, endpoint, delivery_id, parsed, by_reconciler) = &*work;
                    let src = Source {
                        endpoint,
                        delivery_id,
                        by_reconciler: *by_reconciler,
                    };
                    this.apply_once(conn, &src, parsed).await
                })
            })
            .await;
        match result {
            Ok(handled) => {
                for count in &handled.counts {
                    count.record();
                }
                Ok(handled.applied)
            }
            Err(Unapplied::Failed(applied, outcome)) => {
                // The claim was rolled back with the rest, so a replay can
                // apply it later; record why on its own. Nothing committed:
                // nothing is counted.
                self.record_failure(src, parsed, &outcome).await?;
                Ok(applied)
            }
            Err(Unapplied::Error(e)) => Err(e),
        }
    }

    /// One run of an event's transaction body: the handler, then the
    /// delivery's outcome. A failed outcome is an error, so the group
    /// commit undoes its writes.
    async fn apply_once(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        parsed: &Parsed,
    ) -> Result<Handled, Unapplied> {
        let cx = Cx {
            src,
            actor: if src.by_reconciler {
                "reconciler".to_string()
            } else {
                format!("webhook:{}", src.endpoint)
            },
            now: store::now_ms(),
        };
        let handled = self.apply_in(conn, &cx, parsed).await?;
        let outcome = outcome(parsed, &handled);
        if outcome.status == DeliveryStatus::Failed {
            return Err(Unapplied::Failed(handled.applied, outcome));
        }
        deliveries::finish(conn, src.delivery_id, &outcome, cx.now).await?;
        Ok(handled)
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
        deliveries::finish_durably(&self.store, src.delivery_id, outcome).await
    }

    /// Routes one event to its handler, after the exactly-once claim.
    async fn apply_in(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        parsed: &Parsed,
    ) -> Result<Handled, DispatchError> {
        if let Event::Ignored(reason) = &parsed.event {
            return Ok(Handled::new(Applied::Ignored {
                reason: reason.clone(),
            }));
        }
        let src = cx.src;
        if !deliveries::claim_event(
            conn,
            src.endpoint,
            &parsed.event_id,
            src.delivery_id,
            cx.now,
        )
        .await?
        {
            let existing = self.license_of(conn, src, &parsed.event).await?;
            let handled = Handled::new(Applied::Duplicate {
                license_key: existing.as_ref().map(|l| l.key.clone()),
            });
            return Ok(match &existing {
                Some(l) => handled.on(&l.id),
                None => handled,
            });
        }
        let mut handled = match &parsed.event {
            Event::Sale(sale) => self.sale(conn, cx, sale).await,
            Event::Refund {
                refs,
                full,
                amount_cents,
            } => self.refund(conn, cx, refs, *full, *amount_cents).await,
            Event::RefundFailed { refs } => self.refund_failed(conn, cx, refs).await,
            Event::Dispute { refs, stage } => self.dispute(conn, cx, refs, *stage).await,
            Event::Subscription(ev) => self.subscription(conn, cx, ev, &parsed.event_type).await,
            Event::Customer {
                customer_ref,
                email,
                name,
            } => {
                let name = name.clone().unwrap_or_else(|| default_name(email));
                let id =
                    customers::upsert_customer(conn, &email.to_lowercase(), &name, cx.now).await?;
                customers::link_customer(conn, src.endpoint, customer_ref, &id).await?;
                Ok(Handled::ok(None))
            }
            Event::CheckoutEnded {
                order,
                expired,
                reason,
            } => self.checkout_ended(conn, cx, order, *expired, reason).await,
            Event::Ignored(_) => unreachable!("handled above"),
        }?;
        // A paid event of keymint's checkout: its order is paid by the
        // license, in this same transaction.
        if let (Some(order), Some(license)) = (&parsed.order, &handled.license_id)
            && !matches!(
                handled.applied,
                Applied::Failed { .. } | Applied::NoMint { .. }
            )
            && self.pay_order(conn, cx, order, license).await?
        {
            handled.counts.push(Count::Order { status: "paid" });
        }
        Ok(handled)
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
                .chain(s.purchase.refs.iter().cloned())
                .collect(),
            Event::Refund { refs, .. }
            | Event::RefundFailed { refs }
            | Event::Dispute { refs, .. } => refs.clone(),
            Event::Subscription(s) => vec![s.subscription_id.clone()],
            Event::Customer { .. } | Event::CheckoutEnded { .. } | Event::Ignored(_) => {
                return Ok(None);
            }
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
        known_customer: Option<&CustomerId>,
    ) -> Result<Option<Resolved>, sqlx::Error> {
        // The one address rule (domain::Email). A value that is no address
        // (providers send "" or a placeholder when the buyer gave none) is
        // treated as absent, so the linked customer decides; with none, the
        // event fails with the reason.
        if let Some(email) = buyer.email.as_deref().and_then(|e| Email::parse(e).ok()) {
            return Ok(Some(Resolved {
                name: buyer
                    .name
                    .clone()
                    .unwrap_or_else(|| email.local_part().to_string()),
                email: email.into_string(),
            }));
        }
        let mut customer = None;
        if let Some(r) = &buyer.customer_ref {
            customer = customers::customer_by_ref(conn, src.endpoint, r).await?;
        }
        if customer.is_none()
            && let Some(id) = known_customer
        {
            customer = customers::customer_by_id(conn, id).await?;
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
        cx: &Cx<'_>,
        product: &ProductConfig,
        order: &Order,
    ) -> Result<Minted, MintError> {
        let signer = self.keyring.signer(conn).await?;
        fulfilment::mint(conn, product, order, &signer, &self.issuer, &cx.by()).await
    }

    fn product_for(&self, endpoint: &str, ids: &[String]) -> Option<&Arc<ProductConfig>> {
        ids.iter()
            .find_map(|id| match id.strip_prefix(CATALOG_ID_PREFIX) {
                Some(catalog_id) => self.catalog.product(catalog_id),
                None => self.catalog.lookup(endpoint, id),
            })
    }

    fn unmapped(endpoint: &str, ids: &[String]) -> Handled {
        Handled::new(Applied::NoMint {
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
        })
    }
}

fn default_name(email: &str) -> String {
    // `split` always yields a first piece, so the default is never used.
    email.split('@').next().unwrap_or_default().to_string()
}

fn no_email_reason(endpoint: &str, buyer: &Buyer) -> String {
    match &buyer.customer_ref {
        Some(r) => format!(
            "endpoint {endpoint:?}: no email known for customer {r:?} (the event carries none; enable customer events, or replay after one arrives)"
        ),
        None => match &buyer.email {
            Some(e) if !e.trim().is_empty() => {
                format!("endpoint {endpoint:?}: the event's buyer email {e:?} is not an address")
            }
            _ => format!("endpoint {endpoint:?}: the event carries no buyer email"),
        },
    }
}
