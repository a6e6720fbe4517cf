//! Normalized, provider-neutral events (DESIGN section 2). Adapters produce
//! them; the dispatcher consumes them; neither knows the other's side.

pub use crate::subscriptions::Event as SubscriptionChange;

/// Who paid, as far as the event says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buyer {
    pub email: Option<String>,
    pub name: Option<String>,
    /// The provider's customer id; customers are linked by it first, then
    /// by email.
    pub customer_ref: Option<String>,
}

/// A one-time sale: mint a license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub order_id: String,
    /// Other provider ids that name this order (payment intent, charge,
    /// checkout session); refunds and disputes find the license by any.
    pub refs: Vec<String>,
    /// The provider's product identifiers, most specific first; the first
    /// one the catalog maps wins.
    pub product_ids: Vec<String>,
    pub buyer: Buyer,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub test: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeStage {
    Opened,
    Won,
    Lost,
}

/// Something happened to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub subscription_id: String,
    /// The provider's time for the event (Unix ms): orders events.
    pub at_ms: i64,
    pub change: SubscriptionChange,
    /// Orders, invoices or payments of this subscription, so refunds and
    /// disputes of them find its license.
    pub refs: Vec<String>,
    pub product_ids: Vec<String>,
    pub buyer: Buyer,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub test: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Sale(Sale),
    /// Money returned for an order (any of `refs` names it).
    Refund {
        refs: Vec<String>,
        full: bool,
        /// The amount returned, when the provider says it without saying
        /// whether it was all: a refund of at least the license's price
        /// counts as full.
        amount_cents: Option<i64>,
    },
    /// A refund the provider could not make (an operator's pending refund
    /// fails; the license is restored).
    RefundFailed {
        refs: Vec<String>,
    },
    Dispute {
        refs: Vec<String>,
        stage: DisputeStage,
    },
    Subscription(Subscription),
    /// A provider customer's contact details, linking its id to an email.
    Customer {
        customer_ref: String,
        email: String,
        name: Option<String>,
    },
    /// An event type with no license effect.
    Ignored(String),
}

/// What an adapter makes of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Unique per endpoint: processing happens once per event id.
    pub event_id: String,
    /// The provider's event type name.
    pub event_type: String,
    pub event: Event,
    /// A Stripe Checkout Session whose line items name the products (the
    /// webhook does not carry them); fetched before dispatch when the
    /// endpoint has an API key.
    pub line_items_of: Option<String>,
}

impl Parsed {
    pub fn new(event_id: impl Into<String>, event_type: impl Into<String>, event: Event) -> Self {
        Self {
            event_id: event_id.into(),
            event_type: event_type.into(),
            event,
            line_items_of: None,
        }
    }

    /// The order (or subscription) the event is about, for the delivery row.
    pub fn order_id(&self) -> Option<&str> {
        match &self.event {
            Event::Sale(s) => Some(&s.order_id),
            Event::Refund { refs, .. }
            | Event::RefundFailed { refs }
            | Event::Dispute { refs, .. } => refs.first().map(String::as_str),
            Event::Subscription(s) => Some(&s.subscription_id),
            Event::Customer { .. } | Event::Ignored(_) => None,
        }
    }

    /// The product ids the event names, to fill in after a line-item fetch.
    pub fn product_ids_mut(&mut self) -> Option<&mut Vec<String>> {
        match &mut self.event {
            Event::Sale(s) => Some(&mut s.product_ids),
            Event::Subscription(s) => Some(&mut s.product_ids),
            _ => None,
        }
    }
}
