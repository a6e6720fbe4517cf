//! Normalized, provider-neutral events (docs/architecture.md, "Data flow"). Adapters produce
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

/// What a sale and a subscription's event both say about the purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// Other provider ids that name this purchase (payment intent, charge,
    /// checkout session, a subscription's orders and invoices); refunds and
    /// disputes find the license by any.
    pub refs: Vec<String>,
    /// The provider's product identifiers, most specific first; the first
    /// one the catalog maps wins.
    pub product_ids: Vec<String>,
    pub buyer: Buyer,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub test: bool,
}

impl Purchase {
    /// The input rules for what sales and subscriptions share (see
    /// `Parsed::validate`): references, products, the buyer, the price and
    /// its currency.
    fn validate(&mut self) -> Result<(), Invalid> {
        use crate::text::check_identifier as id;
        let refs = |refs: &[String]| refs.iter().try_for_each(|r| id("order reference", r));
        refs(&self.refs)?;
        refs(&self.product_ids)?;
        self.buyer.validate()?;
        non_negative("price", self.amount_cents)?;
        if let Some(c) = &self.currency {
            id("currency", c)?;
        }
        Ok(())
    }
}

/// A one-time sale: mint a license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub order_id: String,
    pub purchase: Purchase,
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
    pub purchase: Purchase,
}

impl Subscription {
    /// A payment of the subscription went through, paying it up to
    /// `period_end` when the provider says.
    pub fn paid(
        subscription_id: String,
        at_ms: i64,
        period_end: Option<i64>,
        purchase: Purchase,
    ) -> Self {
        Self {
            subscription_id,
            at_ms,
            change: SubscriptionChange::PaymentSucceeded { period_end },
            purchase,
        }
    }
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
    /// A checkout keymint started ended without a payment: the order
    /// becomes failed or expired (a paid one is a `Sale` or a
    /// `Subscription` naming the order in [`Parsed::order`]).
    CheckoutEnded {
        order: crate::domain::OrderId,
        expired: bool,
        reason: String,
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
    /// The keymint order (from keymint's checkout) the event pays, read
    /// from the metadata keymint gave the provider; a foreign value that
    /// is not an order id is left out.
    pub order: Option<crate::domain::OrderId>,
}

impl Parsed {
    pub fn new(event_id: impl Into<String>, event_type: impl Into<String>, event: Event) -> Self {
        Self {
            event_id: event_id.into(),
            event_type: event_type.into(),
            event,
            line_items_of: None,
            order: None,
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
            Event::CheckoutEnded { order, .. } => Some(order.as_str()),
            Event::Customer { .. } | Event::Ignored(_) => None,
        }
    }

    /// The product ids the event names, to fill in after a line-item fetch.
    pub fn product_ids_mut(&mut self) -> Option<&mut Vec<String>> {
        match &mut self.event {
            Event::Sale(s) => Some(&mut s.purchase.product_ids),
            Event::Subscription(s) => Some(&mut s.purchase.product_ids),
            _ => None,
        }
    }
}

/// Why an authentic event cannot be acted on as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error(transparent)]
    Control(#[from] crate::text::ControlCharacter),
    #[error("{field} is negative ({value})")]
    NegativeAmount { field: &'static str, value: i64 },
}

impl Parsed {
    /// Applies the input rules every adapter's output obeys, the same on
    /// both databases (docs/architecture.md, "Input text"): identifiers,
    /// emails and currencies with a control character and negative amounts
    /// are refused (the delivery fails with the reason and can be replayed
    /// after a fix); names are cleaned of control characters.
    pub fn validate(mut self) -> Result<Self, Invalid> {
        use crate::text::check_identifier as id;
        id("event id", &self.event_id)?;
        id("event type", &self.event_type)?;
        if let Some(session) = &self.line_items_of {
            id("checkout session", session)?;
        }
        let refs = |refs: &[String]| refs.iter().try_for_each(|r| id("order reference", r));
        match &mut self.event {
            Event::Sale(s) => {
                id("order id", &s.order_id)?;
                s.purchase.validate()?;
            }
            Event::Subscription(s) => {
                id("subscription id", &s.subscription_id)?;
                s.purchase.validate()?;
            }
            Event::Refund {
                refs: r,
                amount_cents,
                ..
            } => {
                refs(r)?;
                non_negative("refund amount", *amount_cents)?;
            }
            Event::RefundFailed { refs: r } | Event::Dispute { refs: r, .. } => refs(r)?,
            Event::Customer {
                customer_ref,
                email,
                name,
            } => {
                id("customer id", customer_ref)?;
                id("email", email)?;
                if let Some(n) = name {
                    *n = crate::text::clean_line(n);
                }
            }
            Event::CheckoutEnded { reason, .. } => *reason = crate::text::clean_line(reason),
            Event::Ignored(_) => {}
        }
        Ok(self)
    }
}

fn non_negative(field: &'static str, value: Option<i64>) -> Result<(), Invalid> {
    match value {
        Some(v) if v < 0 => Err(Invalid::NegativeAmount { field, value: v }),
        _ => Ok(()),
    }
}

impl Buyer {
    fn validate(&mut self) -> Result<(), crate::text::ControlCharacter> {
        if let Some(email) = &self.email {
            crate::text::check_identifier("email", email)?;
        }
        if let Some(customer) = &self.customer_ref {
            crate::text::check_identifier("customer id", customer)?;
        }
        if let Some(name) = &mut self.name {
            *name = crate::text::clean_line(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(order_id: &str, name: &str, amount: i64) -> Parsed {
        Parsed::new(
            "evt",
            "sale",
            Event::Sale(Sale {
                order_id: order_id.into(),
                purchase: Purchase {
                    refs: vec![],
                    product_ids: vec!["p".into()],
                    buyer: Buyer {
                        email: Some("a@example.com".into()),
                        name: Some(name.into()),
                        customer_ref: None,
                    },
                    amount_cents: Some(amount),
                    currency: Some("usd".into()),
                    test: false,
                },
            }),
        )
    }

    #[test]
    fn control_characters_in_ids_are_refused_and_names_cleaned() {
        assert_eq!(
            sale("NUL\0SALE", "Jane", 1)
                .validate()
                .unwrap_err()
                .to_string(),
            "order id contains a control character"
        );
        let ok = sale("S-1", "Ja\0ne\r\nDoe", 1).validate().unwrap();
        let Event::Sale(s) = ok.event else { panic!() };
        assert_eq!(s.purchase.buyer.name.as_deref(), Some("Ja ne Doe"));
    }

    #[test]
    fn negative_amounts_are_refused() {
        assert_eq!(
            sale("S-1", "Jane", -5).validate().unwrap_err().to_string(),
            "price is negative (-5)"
        );
        assert!(sale("S-1", "Jane", 0).validate().is_ok());
    }
}
