//! Stripe: `Stripe-Signature: t=..,v1=..` over `{t}.{body}` keyed with the
//! whole `whsec_` string; event id = the event's `id`; event time = its
//! `created`.
//!
//! Checkout Sessions carry no line items: a session maps to a product by
//! its metadata `keymint_product` (a catalog product id), or, when the
//! endpoint has an `api_key`, by the price ids of the line items fetched
//! from the API before dispatch. Subscriptions follow
//! `customer.subscription.*` snapshots and `invoice.*` payments.

use super::json::{self, Value, bool_at, i64_at, items, push_all, str_at, time_at};
use super::signatures::STRIPE;
use super::{Adapter, CATALOG_ID_PREFIX, ParseError, RawRequest, Scheme};
use crate::events::{
    Buyer, DisputeStage, Event, Parsed, Purchase, Sale, Subscription, SubscriptionChange as Change,
};
use crate::subscriptions::Status;

pub struct Stripe;

impl Adapter for Stripe {
    fn scheme(&self) -> Scheme {
        Scheme::Timestamped(&STRIPE)
    }

    fn parse(&self, req: &RawRequest<'_>) -> Result<Parsed, ParseError> {
        parse_event_at(&json::parse(req.body)?, req.received_at)
    }
}

/// Stripe's subscription status, as the state machine's.
pub fn status(text: &str) -> Option<Status> {
    Some(match text {
        "incomplete" => Status::PendingPayment,
        "trialing" => Status::Trialing,
        "active" => Status::Active,
        "past_due" | "unpaid" => Status::PastDue,
        "paused" => Status::Paused,
        "canceled" | "incomplete_expired" => Status::Expired,
        _ => return None,
    })
}

fn buyer(o: &Value) -> Buyer {
    Buyer {
        email: str_at(o, "/customer_details/email")
            .or_else(|| str_at(o, "/customer_email"))
            .or_else(|| str_at(o, "/receipt_email"))
            .or_else(|| str_at(o, "/billing_details/email")),
        name: str_at(o, "/customer_details/name")
            .or_else(|| str_at(o, "/customer_name"))
            .or_else(|| str_at(o, "/billing_details/name")),
        customer_ref: str_at(o, "/customer").or_else(|| str_at(o, "/customer/id")),
    }
}

fn metadata_product(o: &Value) -> Option<String> {
    str_at(o, "/metadata/keymint_product").map(|p| format!("{CATALOG_ID_PREFIX}{p}"))
}

/// Price and product ids of subscription items or invoice lines.
fn price_ids(list: &[Value]) -> Vec<String> {
    let mut ids = Vec::new();
    for item in list {
        push_all(
            &mut ids,
            [
                str_at(item, "/price/id"),
                str_at(item, "/pricing/price_details/price"),
                str_at(item, "/plan/id"),
            ],
        );
    }
    for item in list {
        push_all(
            &mut ids,
            [
                str_at(item, "/price/product"),
                str_at(item, "/pricing/price_details/product"),
            ],
        );
    }
    ids
}

/// An event keymint built itself (the reconciler's snapshot of a
/// subscription), which always says when it was taken in `created`.
pub fn parse_event(v: &Value) -> Result<Parsed, ParseError> {
    let created = time_at(v, "/created")?.ok_or_else(|| ParseError::missing("/created"))?;
    parse_event_at(v, created)
}

/// A Stripe event; `received_at` (Unix ms) is its time when the body has
/// no `created`.
pub fn parse_event_at(v: &Value, received_at: i64) -> Result<Parsed, ParseError> {
    let id = json::required(v, "/id")?;
    let kind = json::required(v, "/type")?;
    let at = time_at(v, "/created")?.unwrap_or(received_at);
    let o = json::object(v, "/data/object")?;
    let test = v.pointer("/livemode") == Some(&Value::Bool(false));
    let object_id = || json::required(o, "/id");
    let mut line_items_of = None;
    let mut order = None;
    let event = match kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            let session = object_id()?;
            order = json::keymint_order(o);
            let paid = matches!(
                str_at(o, "/payment_status").as_deref(),
                Some("paid" | "no_payment_required")
            );
            let products = json::distinct([metadata_product(o)]);
            if products.is_empty() {
                line_items_of = Some(session.clone());
            }
            let mut refs = vec![session.clone()];
            push_all(
                &mut refs,
                [str_at(o, "/invoice"), str_at(o, "/payment_intent")],
            );
            // Read only for a paid or subscription checkout: an unpaid
            // one is ignored whatever its amount says.
            let purchase = move || -> Result<Purchase, ParseError> {
                Ok(Purchase {
                    refs,
                    product_ids: products,
                    buyer: buyer(o),
                    amount_cents: i64_at(o, "/amount_total")?,
                    currency: json::currency_at(o, "/currency"),
                    test,
                })
            };
            match str_at(o, "/subscription") {
                Some(sub) => Event::Subscription(Subscription {
                    subscription_id: sub,
                    at_ms: at,
                    change: match str_at(o, "/payment_status").as_deref() {
                        Some("paid") => Change::Activated { period_end: None },
                        Some("no_payment_required") => Change::Trialing { trial_end: None },
                        _ => Change::Created {
                            status: Status::PendingPayment,
                            trial_end: None,
                            period_end: None,
                        },
                    },
                    purchase: purchase()?,
                }),
                None if !paid => Event::Ignored(
                    "checkout completed but not paid yet (async payment); waiting for checkout.session.async_payment_succeeded".into(),
                ),
                None => Event::Sale(Sale {
                    order_id: str_at(o, "/payment_intent").unwrap_or(session),
                    purchase: purchase()?,
                }),
            }
        }
        "checkout.session.async_payment_failed" | "checkout.session.expired" => {
            match json::keymint_order(o) {
                Some(order) => Event::CheckoutEnded {
                    order,
                    expired: kind == "checkout.session.expired",
                    reason: if kind == "checkout.session.expired" {
                        format!("the Checkout Session {} expired unpaid", object_id()?)
                    } else {
                        format!("the payment of Checkout Session {} failed", object_id()?)
                    },
                },
                None => Event::Ignored(format!(
                    "stripe event `{kind}` of a checkout keymint did not start"
                )),
            }
        }
        "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed" => {
            let sub = str_at(o, "/subscription")
                .or_else(|| str_at(o, "/parent/subscription_details/subscription"))
                .or_else(|| str_at(o, "/subscription_details/subscription"));
            match sub {
                None => Event::Ignored("invoice of no subscription".into()),
                Some(sub) => {
                    let lines = items(o, "/lines/data");
                    let period_end = match json::latest_time(lines, "/period/end")? {
                        Some(end) => Some(end),
                        None => time_at(o, "/period_end")?,
                    };
                    let mut refs = vec![object_id()?];
                    push_all(
                        &mut refs,
                        [
                            str_at(o, "/payment_intent"),
                            str_at(o, "/charge"),
                            str_at(o, "/payments/data/0/payment/payment_intent"),
                        ],
                    );
                    Event::Subscription(Subscription {
                        subscription_id: sub,
                        at_ms: at,
                        change: if kind == "invoice.payment_failed" {
                            Change::PaymentFailed
                        } else {
                            Change::PaymentSucceeded { period_end }
                        },
                        purchase: Purchase {
                            refs,
                            product_ids: price_ids(lines),
                            buyer: buyer(o),
                            amount_cents: i64_at(o, "/amount_paid")?,
                            currency: json::currency_at(o, "/currency"),
                            test,
                        },
                    })
                }
            }
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed"
        | "customer.subscription.trial_will_end" => {
            let status = json::status_at(o, "/status", "Stripe", status)?;
            let list = items(o, "/items/data");
            let period_end = match time_at(o, "/current_period_end")? {
                Some(end) => Some(end),
                None => json::latest_time(list, "/current_period_end")?,
            };
            let mut products = price_ids(list);
            push_all(&mut products, [metadata_product(o)]);
            Event::Subscription(Subscription {
                subscription_id: object_id()?,
                at_ms: at,
                change: Change::Snapshot {
                    status: if kind == "customer.subscription.deleted" {
                        Status::Expired
                    } else {
                        status
                    },
                    trial_end: time_at(o, "/trial_end")?,
                    period_end,
                    cancel_at_period_end: bool_at(o, "/cancel_at_period_end")?.unwrap_or(false)
                        || (time_at(o, "/cancel_at")?.is_some() && status != Status::Expired),
                },
                purchase: Purchase {
                    refs: Vec::new(),
                    product_ids: products,
                    buyer: buyer(o),
                    amount_cents: None,
                    currency: json::currency_at(o, "/currency"),
                    test,
                },
            })
        }
        "charge.refunded" => {
            let amount = i64_at(o, "/amount")?;
            let refunded = i64_at(o, "/amount_refunded")?;
            let full = bool_at(o, "/refunded")?.unwrap_or(false)
                || matches!((amount, refunded), (Some(a), Some(r)) if r >= a);
            let refs = json::distinct([
                str_at(o, "/payment_intent"),
                Some(object_id()?),
                str_at(o, "/invoice"),
            ]);
            Event::Refund {
                refs,
                full,
                amount_cents: None,
            }
        }
        "charge.refund.updated" | "refund.updated" | "refund.failed" => {
            match str_at(o, "/status").as_deref() {
                Some("failed" | "canceled") => {
                    let refs = json::distinct([str_at(o, "/payment_intent"), str_at(o, "/charge")]);
                    Event::RefundFailed { refs }
                }
                _ => Event::Ignored("refund update with no license effect".into()),
            }
        }
        "charge.dispute.created" | "charge.dispute.closed" => {
            let stage = if kind == "charge.dispute.created" {
                Some(DisputeStage::Opened)
            } else {
                match str_at(o, "/status").as_deref() {
                    Some("won" | "warning_closed") => Some(DisputeStage::Won),
                    Some("lost") => Some(DisputeStage::Lost),
                    _ => None,
                }
            };
            let refs = json::nonempty(
                json::distinct([str_at(o, "/payment_intent"), str_at(o, "/charge")]),
                "/data/object/charge",
            )?;
            match stage {
                Some(stage) => Event::Dispute { refs, stage },
                None => Event::Ignored("dispute closed with an undecided status".into()),
            }
        }
        "customer.created" | "customer.updated" => json::customer(o)?,
        other => Event::Ignored(format!("stripe event `{other}` has no license effect")),
    };
    let mut parsed = Parsed::new(id, kind, event);
    parsed.line_items_of = line_items_of;
    parsed.order = order;
    Ok(parsed)
}

/// The price and product ids of a Checkout Session's line items, from
/// `GET /v1/checkout/sessions/{id}/line_items`.
pub async fn fetch_line_items(
    http: &reqwest::Client,
    api_url: Option<&str>,
    api_key: &str,
    session_id: &str,
) -> Result<Vec<String>, String> {
    let base = api_url
        .unwrap_or("https://api.stripe.com")
        .trim_end_matches('/');
    let url = format!("{base}/v1/checkout/sessions/{session_id}/line_items?limit=100");
    let resp = http
        .get(&url)
        .bearer_auth(api_key)
        .send()
        .await
        .map_err(|e| format!("Stripe API unreachable: {}", e.without_url()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!(
            "Stripe API answered {status} for the line items of {session_id}"
        ));
    }
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("Stripe API answer is not JSON: {}", e.without_url()))?;
    Ok(price_ids(items(&body, "/data")))
}
