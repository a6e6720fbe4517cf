//! Paddle Billing: `Paddle-Signature: ts=..;h1=..` over `{ts}:{body}`;
//! dedupe key = `notification_id`; event time = `occurred_at`. Catalog ids
//! are price ids (then product ids).
//!
//! Paddle's transaction and subscription events name the customer by id
//! only: the buyer's email comes from `custom_data.email` when the
//! checkout sets it, else from a `customer.created` / `customer.updated`
//! event (enable them) linking the id to an email.

use super::json::{self, Value, items, push_all, str_at, time_at};
use super::signatures::PADDLE;
use super::{Adapter, ParseError, RawRequest, Scheme};
use crate::events::{
    Buyer, DisputeStage, Event, Parsed, Purchase, Sale, Subscription, SubscriptionChange as Change,
};
use crate::subscriptions::Status;

pub struct Paddle;

impl Adapter for Paddle {
    fn scheme(&self) -> Scheme {
        Scheme::Timestamped(&PADDLE)
    }

    fn parse(&self, req: &RawRequest<'_>) -> Result<Parsed, ParseError> {
        let v = json::parse(req.body)?;
        let kind = json::required(&v, "/event_type")?;
        let id = str_at(&v, "/notification_id")
            .or_else(|| str_at(&v, "/event_id"))
            .ok_or_else(|| ParseError::missing("/notification_id"))?;
        parse_notification(id, &kind, &v, req.received_at)
    }
}

/// One notification `v` (a webhook's body, or the reconciler's read of a
/// transaction wrapped as one): a transaction paid through keymint's
/// checkout names its order in `custom_data`.
pub fn parse_notification(
    id: String,
    kind: &str,
    v: &Value,
    received_at: i64,
) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::new(id, kind, parse_event(kind, v, received_at)?);
    if matches!(kind, "transaction.completed" | "transaction.paid") {
        parsed.order = json::keymint_order_at(v, "/data/custom_data/keymint_order");
    }
    Ok(parsed)
}

fn status(text: &str) -> Option<Status> {
    Some(match text {
        "trialing" => Status::Trialing,
        "active" => Status::Active,
        "past_due" => Status::PastDue,
        "paused" => Status::Paused,
        "canceled" => Status::Expired,
        _ => return None,
    })
}

fn buyer(d: &Value) -> Buyer {
    Buyer {
        email: str_at(d, "/custom_data/email").or_else(|| str_at(d, "/customer/email")),
        name: str_at(d, "/custom_data/name").or_else(|| str_at(d, "/customer/name")),
        customer_ref: str_at(d, "/customer_id"),
    }
}

fn price_ids(d: &Value) -> Vec<String> {
    let list = items(d, "/items");
    let mut ids = Vec::new();
    for i in list {
        push_all(&mut ids, [str_at(i, "/price/id"), str_at(i, "/price_id")]);
    }
    for i in list {
        push_all(
            &mut ids,
            [str_at(i, "/price/product_id"), str_at(i, "/product/id")],
        );
    }
    ids
}

fn parse_event(kind: &str, v: &Value, received_at: i64) -> Result<Event, ParseError> {
    let d = json::object(v, "/data")?;
    let at = time_at(v, "/occurred_at")?.unwrap_or(received_at);
    let id = || json::required(d, "/id");
    let currency = json::currency_at(d, "/currency_code");
    Ok(match kind {
        "transaction.completed" | "transaction.paid" => {
            let amount =
                json::first_i64(d, &["/details/totals/grand_total", "/details/totals/total"])?;
            let purchase = |refs, product_ids| Purchase {
                refs,
                product_ids,
                buyer: buyer(d),
                amount_cents: amount,
                currency,
                test: false,
            };
            match str_at(d, "/subscription_id") {
                Some(sub) => Event::Subscription(Subscription::paid(
                    sub,
                    at,
                    time_at(d, "/billing_period/ends_at")?,
                    purchase(vec![id()?], price_ids(d)),
                )),
                None => {
                    let product_ids = json::nonempty(price_ids(d), "/data/items/0/price/id")?;
                    Event::Sale(Sale {
                        order_id: id()?,
                        purchase: purchase(
                            str_at(d, "/invoice_id").into_iter().collect(),
                            product_ids,
                        ),
                    })
                }
            }
        }
        k if k.starts_with("subscription.") => {
            let status = json::status_at(d, "/status", "Paddle", status)?;
            let scheduled = str_at(d, "/scheduled_change/action");
            let trial_end = json::latest_time(items(d, "/items"), "/trial_dates/ends_at")?;
            Event::Subscription(Subscription {
                subscription_id: id()?,
                at_ms: at,
                change: Change::Snapshot {
                    status,
                    trial_end,
                    period_end: time_at(d, "/current_billing_period/ends_at")?,
                    cancel_at_period_end: scheduled.as_deref() == Some("cancel"),
                },
                purchase: Purchase {
                    refs: Vec::new(),
                    product_ids: price_ids(d),
                    buyer: buyer(d),
                    amount_cents: None,
                    currency,
                    test: false,
                },
            })
        }
        "adjustment.created" | "adjustment.updated" => {
            let refs = json::nonempty(
                json::distinct([str_at(d, "/transaction_id"), str_at(d, "/subscription_id")]),
                "/data/transaction_id",
            )?;
            let approved = str_at(d, "/status").as_deref() == Some("approved");
            match str_at(d, "/action").as_deref() {
                Some("refund") if approved => Event::Refund {
                    refs,
                    full: str_at(d, "/type").as_deref() == Some("full"),
                    amount_cents: None,
                },
                Some("refund") => Event::Ignored("refund not approved (yet)".into()),
                Some("chargeback") => Event::Dispute {
                    refs,
                    stage: DisputeStage::Opened,
                },
                Some("chargeback_reverse") => Event::Dispute {
                    refs,
                    stage: DisputeStage::Won,
                },
                other => {
                    Event::Ignored(format!("adjustment action {other:?} has no license effect"))
                }
            }
        }
        "transaction.canceled" => match json::keymint_order_at(d, "/custom_data/keymint_order") {
            Some(order) => Event::CheckoutEnded {
                order,
                expired: false,
                reason: format!("the Paddle transaction {} was canceled", id()?),
            },
            None => Event::Ignored("a canceled transaction has no license effect".into()),
        },
        "customer.created" | "customer.updated" => json::customer(d)?,
        other => Event::Ignored(format!("paddle event `{other}` has no license effect")),
    })
}
