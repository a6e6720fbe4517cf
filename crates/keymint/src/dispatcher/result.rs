//! What applying an event did: [`Applied`], the answer (webhook response
//! status and delivery status, mapped here once), and [`Handled`], what a
//! handler returns to the transaction wrapper, with the counters to bump
//! once it commits.

use crate::domain::{DeliveryStatus, LicenseId};
use crate::events::Parsed;
use crate::fulfilment;
use crate::store::deliveries::Outcome;
use crate::store::licenses::License;
use keymint_license::LicenseKey;

/// What applying an event did; maps onto the webhook response `status`
/// and the delivery's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A license was minted or changed.
    Ok { license_key: Option<LicenseKey> },
    /// Already processed earlier.
    Duplicate { license_key: Option<LicenseKey> },
    /// No license effect.
    Ignored { reason: String },
    /// Authentic sale of a product the catalog does not map.
    NoMint { reason: String },
    /// The event could not be applied (reason on the delivery row).
    Failed { reason: String },
}

impl Applied {
    /// The webhook response's `status`.
    pub fn response_status(&self) -> &'static str {
        match self {
            Self::Ok { .. } => "ok",
            Self::Duplicate { .. } => "duplicate",
            Self::Ignored { .. } => "ignored",
            Self::NoMint { .. } => "logged-no-mint",
            Self::Failed { .. } => "error",
        }
    }

    /// The delivery row's status: a failure is replayable, a no-mint too
    /// (the catalog may map the product later).
    pub fn delivery_status(&self) -> DeliveryStatus {
        match self {
            Self::Ok { .. } => DeliveryStatus::Processed,
            Self::Duplicate { .. } => DeliveryStatus::Duplicate,
            Self::Ignored { .. } => DeliveryStatus::Ignored,
            Self::NoMint { .. } | Self::Failed { .. } => DeliveryStatus::Failed,
        }
    }

    /// The reason written on the delivery row, if the answer carries one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Ignored { reason } | Self::NoMint { reason } | Self::Failed { reason } => {
                Some(reason)
            }
            Self::Ok { .. } | Self::Duplicate { .. } => None,
        }
    }

    pub fn license_key(&self) -> Option<&LicenseKey> {
        match self {
            Self::Ok { license_key } | Self::Duplicate { license_key } => license_key.as_ref(),
            _ => None,
        }
    }
}

/// What a handler did, returned rather than written into an out-parameter.
#[derive(Debug)]
pub(super) struct Handled {
    pub(super) applied: Applied,
    /// The license the event touched, for the delivery row.
    pub(super) license_id: Option<LicenseId>,
    /// A note for the delivery row when the answer carries no reason
    /// (a license that waits for the buyer's email).
    pub(super) note: Option<String>,
    /// Counters to increment once the transaction commits.
    pub(super) counts: Vec<Count>,
}

impl Handled {
    pub(super) fn new(applied: Applied) -> Self {
        Self {
            applied,
            license_id: None,
            note: None,
            counts: Vec::new(),
        }
    }

    pub(super) fn on(mut self, license_id: &LicenseId) -> Self {
        self.license_id = Some(license_id.clone());
        self
    }

    pub(super) fn ok(license: Option<&License>) -> Self {
        let handled = Self::new(Applied::Ok {
            license_key: license.map(|l| l.key.clone()),
        });
        match license {
            Some(l) => handled.on(&l.id),
            None => handled,
        }
    }
}

/// A metric the dispatcher counts only for work that committed
/// (docs/architecture.md, rule 8: a rolled-back mint was never minted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Count {
    Minted {
        product: String,
    },
    SubscriptionEvent {
        endpoint: String,
        result: &'static str,
    },
    SubscriptionLicenseExpired,
    /// An order of keymint's checkout reached `status`.
    Order {
        status: &'static str,
    },
}

impl Count {
    pub(super) fn record(&self) {
        match self {
            Self::Minted { product } => fulfilment::count_minted(product),
            Self::SubscriptionEvent { endpoint, result } => {
                metrics::counter!("keymint_subscription_events_total", "endpoint" => endpoint.clone(), "result" => *result)
                    .increment(1);
            }
            Self::SubscriptionLicenseExpired => {
                metrics::counter!("keymint_subscription_licenses_expired_total").increment(1);
            }
            Self::Order { status } => {
                metrics::counter!("keymint_orders_total", "status" => *status).increment(1);
            }
        }
    }
}

/// The delivery row's outcome for what a handler did: the one mapping
/// from a result to a delivery status.
pub(super) fn outcome(parsed: &Parsed, handled: &Handled) -> Outcome {
    Outcome {
        status: handled.applied.delivery_status(),
        event_type: Some(parsed.event_type.clone()),
        event_id: Some(parsed.event_id.clone()),
        order_id: parsed.order_id().map(str::to_string),
        error: handled
            .applied
            .reason()
            .map(str::to_string)
            .or_else(|| handled.note.clone()),
        license_id: handled.license_id.clone(),
    }
}
