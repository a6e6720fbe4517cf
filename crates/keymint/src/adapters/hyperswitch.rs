//! Hyperswitch: `X-Webhook-Signature-512` = hex HMAC-SHA512 of the body,
//! keyed with the profile's payment response hash key; no timestamp.
//! Event id = the body's `event_id`. A payment names its product in its
//! `metadata`: `keymint_product` (a catalog product id) or `product_id`
//! (mapped through the catalog like any provider id).

use super::json::{self, Value, str_at};
use super::signatures::HYPERSWITCH;
use super::{Adapter, CATALOG_ID_PREFIX, ParseError, RawRequest, Scheme};
use crate::events::{Buyer, DisputeStage, Event, Parsed, Purchase, Sale};

pub struct Hyperswitch;

impl Adapter for Hyperswitch {
    fn scheme(&self) -> Scheme {
        Scheme::BodyHex(&HYPERSWITCH)
    }

    fn parse(&self, req: &RawRequest<'_>) -> Result<Parsed, ParseError> {
        let v = json::parse(req.body)?;
        let kind = json::required(&v, "/event_type")?;
        let id = json::required(&v, "/event_id")?;
        let o = v.pointer("/content/object").unwrap_or(&Value::Null);
        parse_payment_event(id, &kind, o)
    }
}

/// One event about the payment object `o` (a webhook's, or the
/// reconciler's read of the payment).
pub fn parse_payment_event(id: String, kind: &str, o: &Value) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::new(id, kind, parse_event(kind, o)?);
    if kind == "payment_succeeded" {
        parsed.order = json::keymint_order(o);
    }
    Ok(parsed)
}

fn parse_event(kind: &str, o: &Value) -> Result<Event, ParseError> {
    let payment = || json::required(o, "/payment_id");
    Ok(match kind {
        "payment_succeeded" => {
            let product_ids = json::distinct([
                str_at(o, "/metadata/keymint_product").map(|p| format!("{CATALOG_ID_PREFIX}{p}")),
                str_at(o, "/metadata/product_id"),
            ]);
            if product_ids.is_empty() {
                return Err(ParseError(
                    "missing required field `/content/object/metadata/keymint_product` (or metadata.product_id)"
                        .into(),
                ));
            }
            Event::Sale(Sale {
                order_id: payment()?,
                purchase: Purchase {
                    refs: Vec::new(),
                    product_ids,
                    buyer: Buyer {
                        email: str_at(o, "/email").or_else(|| str_at(o, "/customer/email")),
                        name: str_at(o, "/name")
                            .or_else(|| str_at(o, "/customer/name"))
                            .or_else(|| str_at(o, "/billing/address/first_name")),
                        customer_ref: str_at(o, "/customer_id")
                            .or_else(|| str_at(o, "/customer/id")),
                    },
                    amount_cents: json::first_i64(o, &["/amount_received", "/amount"])?,
                    currency: json::currency_at(o, "/currency"),
                    test: false,
                },
            })
        }
        "refund_succeeded" => Event::Refund {
            refs: vec![payment()?],
            full: false,
            amount_cents: json::first_i64(o, &["/amount", "/refund_amount"])?,
        },
        "dispute_opened" | "dispute_won" | "dispute_lost" | "dispute_accepted"
        | "dispute_cancelled" => Event::Dispute {
            refs: vec![payment()?],
            stage: match kind {
                "dispute_opened" => DisputeStage::Opened,
                "dispute_won" | "dispute_cancelled" => DisputeStage::Won,
                _ => DisputeStage::Lost,
            },
        },
        "payment_failed" | "payment_cancelled" => match json::keymint_order(o) {
            Some(order) => Event::CheckoutEnded {
                order,
                expired: false,
                reason: match str_at(o, "/error_message") {
                    Some(m) => format!("payment {} {}: {m}", payment()?, &kind[8..]),
                    None => format!("payment {} {}", payment()?, &kind[8..]),
                },
            },
            None => Event::Ignored(format!("payment {}: nothing was sold", &kind[8..])),
        },
        "refund_failed" => Event::RefundFailed {
            refs: vec![payment()?],
        },
        other => Event::Ignored(format!("hyperswitch event `{other}` has no license effect")),
    })
}
