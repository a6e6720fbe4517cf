//! Normalized, provider-neutral events (DESIGN section 2). Adapters produce
//! them; the dispatcher consumes them; neither knows the other's side.

/// A sale: mint a license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub order_id: String,
    /// The provider's product identifiers, most specific first; the first
    /// one the catalog maps wins.
    pub product_ids: Vec<String>,
    pub email: String,
    pub name: String,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Sale(Sale),
    Refund {
        order_id: String,
        full: bool,
    },
    Dispute {
        order_id: String,
        stage: DisputeStage,
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
}

impl Parsed {
    pub fn order_id(&self) -> Option<&str> {
        match &self.event {
            Event::Sale(s) => Some(&s.order_id),
            Event::Refund { order_id, .. } | Event::Dispute { order_id, .. } => Some(order_id),
            Event::Ignored(_) => None,
        }
    }
}
