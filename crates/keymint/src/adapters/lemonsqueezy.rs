//! Lemon Squeezy: `X-Signature` = hex HMAC-SHA256 of the body; no
//! timestamp. Event id = `meta.webhook_id` when present, else a hash of the
//! body (a retried delivery is byte-identical). Event time = the object's
//! `updated_at`. Catalog ids are variant ids (then product ids).

use super::json::{self, Value, bool_at, i64_at, push_all, str_at, time_at};
use super::signatures::LEMONSQUEEZY;
use super::{Adapter, ParseError, RawRequest, Scheme};
use crate::events::{
    Buyer, Event, Parsed, Purchase, Sale, Subscription, SubscriptionChange as Change,
};
use crate::subscriptions::Status;
use sha2::{Digest, Sha256};

pub struct LemonSqueezy;

impl Adapter for LemonSqueezy {
    fn scheme(&self) -> Scheme {
        Scheme::BodyHex(&LEMONSQUEEZY)
    }

    fn parse(&self, req: &RawRequest<'_>) -> Result<Parsed, ParseError> {
        let v = json::parse(req.body)?;
        let kind = json::required(&v, "/meta/event_name")?;
        let id = str_at(&v, "/meta/webhook_id")
            .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(req.body))));
        let event = parse_event(&kind, &v, req.received_at)?;
        let mut parsed = Parsed::new(id, kind.as_str(), event);
        // An order of keymint's checkout carries its order in the custom
        // data the checkout was given.
        if kind == "order_created" {
            parsed.order = json::keymint_order_at(&v, "/meta/custom_data/keymint_order");
        }
        Ok(parsed)
    }
}

fn status(text: &str) -> Option<Status> {
    Some(match text {
        "on_trial" => Status::Trialing,
        "active" => Status::Active,
        "past_due" | "unpaid" => Status::PastDue,
        "paused" => Status::Paused,
        "cancelled" => Status::Canceled,
        "expired" => Status::Expired,
        _ => return None,
    })
}

fn buyer(a: &Value) -> Buyer {
    Buyer {
        email: str_at(a, "/user_email"),
        name: str_at(a, "/user_name"),
        customer_ref: str_at(a, "/customer_id"),
    }
}

fn parse_event(kind: &str, v: &Value, received_at: i64) -> Result<Event, ParseError> {
    let id = json::required(v, "/data/id")?;
    let a = json::object(v, "/data/attributes")?;
    let test = bool_at(a, "/test_mode")?.unwrap_or(false)
        || bool_at(v, "/meta/test_mode")?.unwrap_or(false);
    let at = json::first_time(a, &["/updated_at", "/created_at"])?.unwrap_or(received_at);
    let currency = json::currency_at(a, "/currency");
    Ok(match kind {
        "order_created" => {
            if str_at(a, "/status").as_deref() != Some("paid") {
                return Ok(Event::Ignored("order not paid".into()));
            }
            let product_ids = json::distinct([
                str_at(a, "/first_order_item/variant_id"),
                str_at(a, "/first_order_item/product_id"),
            ]);
            Event::Sale(Sale {
                purchase: Purchase {
                    product_ids: json::nonempty(
                        product_ids,
                        "/data/attributes/first_order_item/variant_id",
                    )?,
                    refs: str_at(a, "/identifier").into_iter().collect(),
                    buyer: buyer(a),
                    amount_cents: i64_at(a, "/total")?,
                    currency,
                    test,
                },
                order_id: id,
            })
        }
        "order_refunded" => Event::Refund {
            refs: vec![id],
            full: str_at(a, "/status").as_deref() == Some("refunded"),
            amount_cents: i64_at(a, "/refunded_amount")?,
        },
        "subscription_payment_refunded" => {
            let mut refs = vec![id];
            push_all(&mut refs, [str_at(a, "/subscription_id")]);
            Event::Refund {
                refs,
                full: str_at(a, "/status").as_deref() == Some("refunded"),
                amount_cents: i64_at(a, "/refunded_amount")?,
            }
        }
        "subscription_payment_success"
        | "subscription_payment_recovered"
        | "subscription_payment_failed" => Event::Subscription(Subscription {
            subscription_id: json::required(a, "/subscription_id")?,
            at_ms: at,
            change: if kind == "subscription_payment_failed" {
                Change::PaymentFailed
            } else {
                Change::PaymentSucceeded { period_end: None }
            },
            purchase: Purchase {
                refs: vec![id],
                product_ids: Vec::new(),
                buyer: buyer(a),
                amount_cents: i64_at(a, "/total")?,
                currency,
                test,
            },
        }),
        k if k.starts_with("subscription_") => {
            let status = json::status_at(a, "/status", "Lemon Squeezy", status)?;
            let period_end = match status {
                Status::Canceled | Status::Expired => {
                    json::first_time(a, &["/ends_at", "/renews_at"])?
                }
                _ => time_at(a, "/renews_at")?,
            };
            let product_ids = json::distinct([str_at(a, "/variant_id"), str_at(a, "/product_id")]);
            Event::Subscription(Subscription {
                subscription_id: id,
                at_ms: at,
                change: Change::Snapshot {
                    status,
                    trial_end: time_at(a, "/trial_ends_at")?,
                    period_end,
                    cancel_at_period_end: status == Status::Canceled,
                },
                purchase: Purchase {
                    refs: str_at(a, "/order_id").into_iter().collect(),
                    product_ids,
                    buyer: buyer(a),
                    amount_cents: None,
                    currency,
                    test,
                },
            })
        }
        other => Event::Ignored(format!(
            "lemon squeezy event `{other}` has no license effect"
        )),
    })
}
