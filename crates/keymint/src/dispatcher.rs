//! The dispatcher: applies one normalized event in one transaction:
//! the exactly-once claim, the license change, the outbox row and the
//! delivery's outcome commit together or not at all. It knows normalized
//! events only, never providers.

use crate::catalog::Catalog;
use crate::events::{DisputeStage, Event, Parsed, Sale};
use crate::fulfilment::{self, MintError, Minted, Order};
use crate::signing::Keyring;
use crate::store::deliveries::{self, Outcome, status as dstatus};
use crate::store::licenses::{self, status as lstatus};
use crate::store::{self, Conn, Store};
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
}

/// Result of the inner transaction: the outcome to record and the answer.
struct Step {
    outcome: Outcome,
    applied: Applied,
}

impl Dispatcher {
    pub fn new(store: Store, catalog: Arc<Catalog>, keyring: Arc<Keyring>, issuer: String) -> Self {
        Self {
            store,
            catalog,
            keyring,
            issuer,
        }
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
            let existing = match parsed.order_id() {
                Some(order) => licenses::by_order(conn, src.endpoint, order).await?,
                None => None,
            };
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
            Event::Refund { order_id, full } => {
                let (to, action) = if *full {
                    (Some(lstatus::REVOKED), "refunded")
                } else {
                    (None, "partially_refunded")
                };
                self.transition(conn, src, order_id, action, to, &[], &actor, &mut outcome)
                    .await?
            }
            Event::Dispute { order_id, stage } => {
                let (to, action, from): (_, _, &[&str]) = match stage {
                    DisputeStage::Opened => {
                        (lstatus::SUSPENDED, "dispute_opened", &[lstatus::ACTIVE])
                    }
                    DisputeStage::Won => (lstatus::ACTIVE, "dispute_won", &[lstatus::SUSPENDED]),
                    DisputeStage::Lost => (lstatus::REVOKED, "dispute_lost", &[]),
                };
                self.transition(
                    conn,
                    src,
                    order_id,
                    action,
                    Some(to),
                    from,
                    &actor,
                    &mut outcome,
                )
                .await?
            }
            Event::Ignored(_) => unreachable!("handled above"),
        };
        if let Applied::Failed { reason } | Applied::NoMint { reason } = &applied {
            outcome.status = dstatus::FAILED;
            outcome.error = Some(reason.clone());
        }
        Ok(Step { outcome, applied })
    }

    async fn sale(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        sale: &Sale,
        actor: &str,
        outcome: &mut Outcome,
    ) -> Result<Applied, DispatchError> {
        let Some(product) = sale
            .product_ids
            .iter()
            .find_map(|id| self.catalog.lookup(src.endpoint, id))
        else {
            return Ok(Applied::NoMint {
                reason: format!(
                    "endpoint {:?}: product id {} is not mapped to any product in the catalog",
                    src.endpoint,
                    sale.product_ids
                        .iter()
                        .map(|p| format!("{p:?}"))
                        .collect::<Vec<_>>()
                        .join(" / ")
                ),
            });
        };
        let order = Order {
            source: src.endpoint.to_string(),
            order_id: Some(sale.order_id.clone()),
            email: sale.email.clone(),
            name: sale.name.clone(),
            amount_cents: sale.amount_cents,
            currency: sale.currency.clone(),
            test: sale.test,
            notes: None,
        };
        let minted = fulfilment::mint(
            conn,
            product,
            &order,
            self.keyring.signer(),
            &self.issuer,
            actor,
            Some(src.delivery_id),
        )
        .await?;
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

    /// Moves the order's license to `to` when its status is one of `from`
    /// (any status but `to` when `from` is empty); `to = None` records the
    /// event without a change.
    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &self,
        conn: &mut Conn,
        src: &Source<'_>,
        order_id: &str,
        action: &str,
        to: Option<&str>,
        from: &[&str],
        actor: &str,
        outcome: &mut Outcome,
    ) -> Result<Applied, DispatchError> {
        let Some(license) = licenses::by_order(conn, src.endpoint, order_id).await? else {
            return Ok(Applied::Failed {
                reason: format!(
                    "no license for order {order_id:?} from endpoint {:?}",
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
}
