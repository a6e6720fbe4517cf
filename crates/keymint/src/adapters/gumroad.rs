//! Gumroad: authenticity by a `?secret=` URL parameter (Gumroad does not
//! sign its pings), bodies form-encoded or JSON. A wrong or missing secret
//! answers 404 so a prober learns nothing.
//!
//! Resources: `sale` (the default for plain pings; a membership sale, one
//! with a `subscription_id`, is the subscription's payment), `refund`,
//! `dispute`, `dispute_won`, `cancellation`, `subscription_updated`,
//! `subscription_ended`, `subscription_restarted`.

use super::{Adapter, ParseError, RawRequest, Scheme, parse_time_ms};
use crate::events::{
    Buyer, DisputeStage, Event, Parsed, Purchase, Sale, Subscription, SubscriptionChange,
};
use std::collections::HashMap;

pub struct Gumroad;

/// Query parameter carrying the shared secret.
pub const SECRET_PARAM: &str = "secret";

impl Adapter for Gumroad {
    fn scheme(&self) -> Scheme {
        Scheme::UrlSecret(SECRET_PARAM)
    }

    fn parse(&self, req: &RawRequest<'_>) -> Result<Parsed, ParseError> {
        let json = req
            .header("content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
        let fields = if json {
            parse_json(req.body)?
        } else {
            parse_form(req.body)?
        };
        parse_fields(&fields, req.received_at)
    }

    fn secret_query_params(&self) -> &'static [&'static str] {
        &[SECRET_PARAM]
    }
}

/// Parses a form body into its fields (the last value of a repeated key
/// wins, as Gumroad sends each scalar once).
pub fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, ParseError> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|e| ParseError(format!("body is not form-encoded: {e}")))
}

fn parse_json(body: &[u8]) -> Result<HashMap<String, String>, ParseError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ParseError(format!("body is not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ParseError("JSON body is not an object".into()))?;
    Ok(obj
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), text))
        })
        .collect())
}

fn field<'a>(fields: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    fields.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn required<'a>(fields: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ParseError> {
    field(fields, name).ok_or_else(|| ParseError(format!("missing required field `{name}`")))
}

/// A time field: `None` when absent; there but not a time is an error.
fn time_field_ms(fields: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ParseError> {
    field(fields, name)
        .map(|text| {
            parse_time_ms(text)
                .ok_or_else(|| ParseError(format!("field `{name}` is not a time: {text:?}")))
        })
        .transpose()
}

/// A flag field: absent is false; `true`/`1` and `false`/`0` are read;
/// anything else fails the delivery naming it, since a misread
/// `partially_refunded` or `test` would change what the license says.
fn truthy(fields: &HashMap<String, String>, name: &str) -> Result<bool, ParseError> {
    match field(fields, name) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        Some(v) => Err(ParseError(format!(
            "field `{name}` is not true or false: {v:?}"
        ))),
    }
}

/// Turns Gumroad's fields into a normalized event; `received_at` (Unix ms)
/// stands in for a time the fields do not carry.
pub fn parse_fields(
    fields: &HashMap<String, String>,
    received_at: i64,
) -> Result<Parsed, ParseError> {
    let resource = field(fields, "resource_name")
        .unwrap_or("sale")
        .to_ascii_lowercase();
    let sale_ref = || -> Result<Vec<String>, ParseError> {
        Ok(vec![required(fields, "sale_id")?.to_string()])
    };
    // Gumroad has no event id: the sale id (or subscription id and the
    // change's time) plus the resource is unique.
    let mut key = field(fields, "sale_id")
        .or_else(|| field(fields, "subscription_id"))
        .unwrap_or("-")
        .to_string();
    let event = match resource.as_str() {
        "sale" => match field(fields, "subscription_id") {
            Some(sub) => Event::Subscription(parse_subscription_sale(fields, sub, received_at)?),
            None => Event::Sale(parse_sale(fields)?),
        },
        "refund" => Event::Refund {
            refs: sale_ref()?,
            full: !truthy(fields, "partially_refunded")?,
            amount_cents: None,
        },
        "dispute" => Event::Dispute {
            refs: sale_ref()?,
            stage: DisputeStage::Opened,
        },
        "dispute_won" => Event::Dispute {
            refs: sale_ref()?,
            stage: DisputeStage::Won,
        },
        "cancellation"
        | "subscription_updated"
        | "subscription_ended"
        | "subscription_restarted" => {
            let sub = required(fields, "subscription_id")?;
            let (time_field, change) = match resource.as_str() {
                "cancellation" => (
                    "cancelled_at",
                    SubscriptionChange::Canceled {
                        at_period_end: true,
                        period_end: None,
                    },
                ),
                "subscription_ended" => ("ended_at", SubscriptionChange::Expired),
                "subscription_restarted" => (
                    "restarted_at",
                    SubscriptionChange::Resumed { period_end: None },
                ),
                _ => (
                    "effective_as_of",
                    SubscriptionChange::Activated { period_end: None },
                ),
            };
            let at = time_field_ms(fields, time_field)?;
            key = format!("{sub}:{}", field(fields, time_field).unwrap_or("-"));
            Event::Subscription(Subscription {
                subscription_id: sub.to_string(),
                at_ms: at.unwrap_or(received_at),
                change,
                purchase: Purchase {
                    refs: Vec::new(),
                    product_ids: product_ids(fields),
                    buyer: Buyer {
                        email: field(fields, "user_email")
                            .or_else(|| field(fields, "email"))
                            .map(str::to_string),
                        name: None,
                        customer_ref: field(fields, "user_id").map(str::to_string),
                    },
                    amount_cents: None,
                    currency: None,
                    test: truthy(fields, "test")?,
                },
            })
        }
        other => Event::Ignored(format!("gumroad resource `{other}` has no license effect")),
    };
    Ok(Parsed::new(format!("{resource}:{key}"), resource, event))
}

fn product_ids(fields: &HashMap<String, String>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for name in [
        "product_id",
        "product_permalink",
        "permalink",
        "short_product_id",
    ] {
        if let Some(v) = field(fields, name)
            && !ids.iter().any(|p| p == v)
        {
            ids.push(v.to_string());
        }
    }
    ids
}

/// Length of one paid period for Gumroad's `recurrence`.
fn recurrence_ms(recurrence: Option<&str>) -> i64 {
    const DAY: i64 = 86_400_000;
    match recurrence.map(str::to_ascii_lowercase).as_deref() {
        Some("yearly") => 366 * DAY,
        Some("biannually") => 183 * DAY,
        Some("quarterly") => 92 * DAY,
        Some("every_two_years") => 731 * DAY,
        _ => 31 * DAY,
    }
}

/// A sale of a membership: the subscription's first or next payment.
fn parse_subscription_sale(
    fields: &HashMap<String, String>,
    subscription_id: &str,
    received_at: i64,
) -> Result<Subscription, ParseError> {
    let sale = parse_sale(fields)?;
    let at = time_field_ms(fields, "sale_timestamp")?.unwrap_or(received_at);
    let period_end = Some(at + recurrence_ms(field(fields, "recurrence")));
    let change = if truthy(fields, "is_recurring_charge")? {
        SubscriptionChange::PaymentSucceeded { period_end }
    } else {
        SubscriptionChange::Created {
            status: crate::subscriptions::Status::Active,
            trial_end: None,
            period_end,
        }
    };
    Ok(Subscription {
        subscription_id: subscription_id.to_string(),
        at_ms: at,
        change,
        purchase: Purchase {
            refs: vec![sale.order_id],
            ..sale.purchase
        },
    })
}

fn parse_sale(fields: &HashMap<String, String>) -> Result<Sale, ParseError> {
    let order_id = required(fields, "sale_id")?.to_string();
    let email = required(fields, "email")?.to_string();
    if !email.contains('@') {
        return Err(ParseError(format!(
            "field `email` is not an email address: {email:?}"
        )));
    }
    let product_ids = product_ids(fields);
    if product_ids.is_empty() {
        return Err(ParseError("missing required field `product_id`".into()));
    }
    let name = field(fields, "full_name")
        .or_else(|| field(fields, "purchaser_name"))
        .map(str::to_string);
    // Gumroad sends `price` in cents.
    let amount_cents = match field(fields, "price") {
        Some(p) => Some(p.parse::<i64>().map_err(|_| {
            ParseError(format!(
                "field `price` is not a whole number of cents: {p:?}"
            ))
        })?),
        None => None,
    };
    Ok(Sale {
        order_id,
        purchase: Purchase {
            refs: Vec::new(),
            product_ids,
            buyer: Buyer {
                email: Some(email),
                name,
                customer_ref: field(fields, "purchaser_id").map(str::to_string),
            },
            amount_cents,
            currency: field(fields, "currency").map(|c| c.to_ascii_uppercase()),
            test: truthy(fields, "test")?,
        },
    })
}

#[cfg(test)]
mod tests;
