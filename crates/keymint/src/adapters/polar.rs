//! Polar: Standard Webhooks signatures; event id = `webhook-id`; event time
//! = the body's `timestamp`. Secrets are used as Polar's SDKs use them:
//! a `whsec_` secret base64-decoded (the standard), any other secret (such
//! as `polar_whs_...`) as its raw text; `legacy_secret = true` uses every
//! secret, `whsec_` ones included, as raw text.
//!
//! `order.paid` of a one-time product is a sale; of a subscription, the
//! subscription's payment. `subscription.*` carry the whole subscription.

use super::json::{self, Value, bool_at, i64_at, str_at, time_at};
use super::{Adapter, ParseError, RawRequest, Scheme, standard};
use crate::events::{
    Buyer, Event, Parsed, Purchase, Sale, Subscription, SubscriptionChange as Change,
};
use crate::subscriptions::Status;

pub struct Polar;

impl Adapter for Polar {
    fn scheme(&self) -> Scheme {
        Scheme::Polar
    }

    fn parse(&self, req: &RawRequest<'_>) -> Result<Parsed, ParseError> {
        let v = json::parse(req.body)?;
        let (id, at) = standard::id_and_time(req, &v)?;
        let kind = json::required(&v, "/type")?;
        let d = json::object(&v, "/data")?;
        parse_object(id, &kind, d, at)
    }
}

/// One event about the object `d` (a webhook's `data`, or what the
/// reconciler read): an order paid through keymint's checkout names its
/// order in the metadata Polar copies from the checkout.
pub fn parse_object(id: String, kind: &str, d: &Value, at: i64) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::new(id, kind, parse_data(kind, d, at)?);
    if kind == "order.paid" {
        parsed.order = json::keymint_order(d);
    }
    Ok(parsed)
}

/// Polar's subscription status, as the state machine's.
fn status(text: &str) -> Option<Status> {
    Some(match text {
        "incomplete" => Status::PendingPayment,
        "trialing" => Status::Trialing,
        "active" => Status::Active,
        "past_due" | "unpaid" => Status::PastDue,
        "canceled" | "incomplete_expired" => Status::Expired,
        _ => return None,
    })
}

fn buyer(d: &Value) -> Buyer {
    Buyer {
        email: str_at(d, "/customer/email"),
        name: str_at(d, "/customer/name"),
        customer_ref: str_at(d, "/customer_id").or_else(|| str_at(d, "/customer/id")),
    }
}

fn products(d: &Value) -> Vec<String> {
    json::distinct([str_at(d, "/product_id"), str_at(d, "/product/id")])
}

fn parse_data(kind: &str, d: &Value, at: i64) -> Result<Event, ParseError> {
    let id = || json::required(d, "/id");
    Ok(match kind {
        "order.paid" => {
            let purchase = |refs, product_ids| -> Result<Purchase, ParseError> {
                Ok(Purchase {
                    refs,
                    product_ids,
                    buyer: buyer(d),
                    amount_cents: i64_at(d, "/total_amount")?,
                    currency: json::currency_at(d, "/currency"),
                    test: false,
                })
            };
            match str_at(d, "/subscription_id") {
                Some(sub) => Event::Subscription(Subscription::paid(
                    sub,
                    at,
                    time_at(d, "/subscription/current_period_end")?,
                    purchase(vec![id()?], products(d))?,
                )),
                None => {
                    let product_ids = json::nonempty(products(d), "/data/product_id")?;
                    Event::Sale(Sale {
                        order_id: id()?,
                        purchase: purchase(
                            str_at(d, "/checkout_id").into_iter().collect(),
                            product_ids,
                        )?,
                    })
                }
            }
        }
        "order.refunded" => {
            let total = i64_at(d, "/total_amount")?;
            let refunded = i64_at(d, "/refunded_amount")?;
            Event::Refund {
                refs: vec![id()?],
                full: str_at(d, "/status").as_deref() == Some("refunded")
                    || matches!((total, refunded), (Some(t), Some(r)) if r >= t),
                amount_cents: None,
            }
        }
        "refund.created" | "refund.updated" => {
            if str_at(d, "/status").as_deref() != Some("succeeded") {
                return Ok(Event::Ignored("refund not succeeded (yet)".into()));
            }
            Event::Refund {
                refs: vec![json::required(d, "/order_id")?],
                full: false,
                amount_cents: i64_at(d, "/amount")?,
            }
        }
        k if k.starts_with("subscription.") => {
            let status = json::status_at(d, "/status", "Polar", status)?;
            let change = match k {
                // Revoked: access ends now (immediate cancel, or the period
                // of a canceled subscription ended).
                "subscription.revoked" => Change::Expired,
                _ => Change::Snapshot {
                    status,
                    trial_end: time_at(d, "/trial_end")?,
                    period_end: time_at(d, "/current_period_end")?,
                    cancel_at_period_end: bool_at(d, "/cancel_at_period_end")?.unwrap_or(false),
                },
            };
            Event::Subscription(Subscription {
                subscription_id: id()?,
                at_ms: at,
                change,
                purchase: Purchase {
                    refs: Vec::new(),
                    product_ids: products(d),
                    buyer: buyer(d),
                    amount_cents: i64_at(d, "/amount")?,
                    currency: json::currency_at(d, "/currency"),
                    test: false,
                },
            })
        }
        "checkout.expired" | "checkout.updated" => {
            let status = str_at(d, "/status");
            match (json::keymint_order(d), status.as_deref()) {
                (Some(order), Some("expired")) => Event::CheckoutEnded {
                    order,
                    expired: true,
                    reason: format!("the Polar checkout {} expired unpaid", id()?),
                },
                (Some(order), Some("failed")) => Event::CheckoutEnded {
                    order,
                    expired: false,
                    reason: format!("the Polar checkout {} failed", id()?),
                },
                _ => Event::Ignored(format!(
                    "polar `{kind}` ({}) does not end a checkout keymint started",
                    status.as_deref().unwrap_or("no status")
                )),
            }
        }
        "customer.created" | "customer.updated" => json::customer(d)?,
        other => Event::Ignored(format!("polar event `{other}` has no license effect")),
    })
}
