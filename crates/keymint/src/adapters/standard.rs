//! Standard Webhooks (<https://www.standardwebhooks.com>): `webhook-id`,
//! `webhook-timestamp`, `webhook-signature` (`v1,` HMAC-SHA256 with a
//! `whsec_` secret, `v1a,` Ed25519 with a `whpk_` public key); event id =
//! `webhook-id`.
//!
//! The body is keymint's own provider-neutral schema, for any sender that
//! signs with Standard Webhooks (a custom store, a billing system):
//! `{"type": "...", "timestamp": "...", "data": {...}}` with the types and
//! fields of `docs/providers/standard.md`.

use super::json::{self, Value, bool_at, i64_at, str_at, time_at};
use super::{Adapter, CATALOG_ID_PREFIX, ParseError, RawRequest, Scheme};
use crate::events::{
    Buyer, DisputeStage, Event, Parsed, Purchase, Sale, Subscription, SubscriptionChange as Change,
};
use crate::subscriptions::Status;

pub struct Standard;

/// The event id (`webhook-id`) and the event time: the body's
/// `timestamp` when it has one, else `webhook-timestamp`, else when the
/// delivery was received.
pub fn id_and_time(req: &RawRequest<'_>, body: &Value) -> Result<(String, i64), ParseError> {
    let id = req
        .header("webhook-id")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ParseError("missing webhook-id header".into()))?
        .to_string();
    let header = match req.header("webhook-timestamp") {
        Some(text) => Some(super::parse_time_ms(text).ok_or_else(|| {
            ParseError(format!("header webhook-timestamp is not a time: {text:?}"))
        })?),
        None => None,
    };
    let at = time_at(body, "/timestamp")?
        .or(header)
        .unwrap_or(req.received_at);
    Ok((id, at))
}

impl Adapter for Standard {
    fn scheme(&self) -> Scheme {
        Scheme::Standard
    }

    fn parse(&self, req: &RawRequest<'_>) -> Result<Parsed, ParseError> {
        let v = json::parse(req.body)?;
        let (id, at) = id_and_time(req, &v)?;
        let kind = json::required(&v, "/type")?;
        let d = v.pointer("/data").unwrap_or(&Value::Null);
        Ok(Parsed::new(id, kind.clone(), parse_data(&kind, d, at)?))
    }
}

fn buyer(d: &Value) -> Buyer {
    Buyer {
        email: str_at(d, "/email").or_else(|| str_at(d, "/customer/email")),
        name: str_at(d, "/name").or_else(|| str_at(d, "/customer/name")),
        customer_ref: str_at(d, "/customer_id").or_else(|| str_at(d, "/customer/id")),
    }
}

fn products(d: &Value) -> Vec<String> {
    json::distinct([
        str_at(d, "/product_id"),
        str_at(d, "/keymint_product").map(|p| format!("{CATALOG_ID_PREFIX}{p}")),
    ])
}

fn order_refs(d: &Value) -> Result<Vec<String>, ParseError> {
    let refs = json::distinct([str_at(d, "/order_id"), str_at(d, "/id")]);
    json::nonempty(refs, "/data/order_id")
}

/// keymint's neutral subscription status names.
fn status(text: &str) -> Option<Status> {
    Status::parse(text).or(match text {
        "trial" | "on_trial" => Some(Status::Trialing),
        "incomplete" | "pending" => Some(Status::PendingPayment),
        "ended" | "cancelled_now" => Some(Status::Expired),
        _ => None,
    })
}

fn parse_data(kind: &str, d: &Value, at: i64) -> Result<Event, ParseError> {
    let test = bool_at(d, "/test")?.unwrap_or(false);
    Ok(match kind {
        "sale" | "order.paid" => {
            let refs = order_refs(d)?;
            let email =
                json::required(d, "/email").or_else(|_| json::required(d, "/customer/email"))?;
            let product_ids = json::nonempty(products(d), "/data/product_id")?;
            Event::Sale(Sale {
                order_id: refs[0].clone(),
                purchase: Purchase {
                    refs: refs[1..].to_vec(),
                    product_ids,
                    buyer: Buyer {
                        email: Some(email),
                        ..buyer(d)
                    },
                    amount_cents: i64_at(d, "/amount_cents")?,
                    currency: json::currency_at(d, "/currency"),
                    test,
                },
            })
        }
        "refund" | "order.refunded" => Event::Refund {
            refs: order_refs(d)?,
            // Absent means the whole payment (docs/providers); a `full` that is
            // not a boolean fails the delivery rather than revoke or keep.
            full: bool_at(d, "/full")?.unwrap_or(true),
            amount_cents: i64_at(d, "/amount_cents")?,
        },
        "dispute.opened" | "dispute.won" | "dispute.lost" => Event::Dispute {
            refs: order_refs(d)?,
            stage: match kind {
                "dispute.opened" => DisputeStage::Opened,
                "dispute.won" => DisputeStage::Won,
                _ => DisputeStage::Lost,
            },
        },
        "customer.created" | "customer.updated" => Event::Customer {
            customer_ref: json::required(d, "/id")
                .or_else(|_| json::required(d, "/customer_id"))?,
            email: json::required(d, "/email")?,
            name: str_at(d, "/name"),
        },
        k if k.starts_with("subscription.") => {
            let sub =
                json::required(d, "/subscription_id").or_else(|_| json::required(d, "/id"))?;
            let period_end = time_at(d, "/current_period_end")?;
            let trial_end = time_at(d, "/trial_end")?;
            let change = match &k["subscription.".len()..] {
                "created" | "updated" => {
                    let raw = json::required(d, "/status")?;
                    Change::Snapshot {
                        status: status(&raw).ok_or_else(|| {
                            ParseError(format!("unknown subscription status {raw:?}"))
                        })?,
                        trial_end,
                        period_end,
                        cancel_at_period_end: bool_at(d, "/cancel_at_period_end")?.unwrap_or(false),
                    }
                }
                "trialing" => Change::Trialing { trial_end },
                "active" | "activated" => Change::Activated { period_end },
                "payment_succeeded" | "renewed" => Change::PaymentSucceeded { period_end },
                "payment_failed" => Change::PaymentFailed,
                "past_due" => Change::PastDue,
                "canceled" => Change::Canceled {
                    at_period_end: d
                        .pointer("/cancel_at_period_end")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                    period_end,
                },
                "uncanceled" => Change::Uncanceled,
                "paused" => Change::Paused,
                "resumed" => Change::Resumed { period_end },
                "expired" => Change::Expired,
                "revoked" => Change::Revoked,
                other => {
                    return Ok(Event::Ignored(format!(
                        "subscription event `{other}` has no license effect"
                    )));
                }
            };
            let refs = json::distinct([str_at(d, "/order_id")]);
            Event::Subscription(Subscription {
                subscription_id: sub,
                at_ms: time_at(d, "/occurred_at")?.unwrap_or(at),
                change,
                purchase: Purchase {
                    refs,
                    product_ids: products(d),
                    buyer: buyer(d),
                    amount_cents: i64_at(d, "/amount_cents")?,
                    currency: json::currency_at(d, "/currency"),
                    test,
                },
            })
        }
        other => Event::Ignored(format!("event type `{other}` has no license effect")),
    })
}
