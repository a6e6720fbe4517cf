//! Gumroad: authenticity by a `?secret=` URL parameter (Gumroad does not
//! sign its pings), bodies form-encoded or JSON. A wrong or missing secret
//! answers 404 so a prober learns nothing.
//!
//! Resources: `sale` (the default for plain pings), `refund`, `dispute`,
//! `dispute_won`; `cancellation` and `subscription_*` are recorded as
//! ignored for now.

use super::{Adapter, AuthError, ParseError, RawRequest, ct_eq};
use crate::config::Secret;
use crate::events::{DisputeStage, Event, Parsed, Sale};
use std::collections::HashMap;

pub struct Gumroad;

/// Query parameter carrying the shared secret.
pub const SECRET_PARAM: &str = "secret";

impl Adapter for Gumroad {
    fn authenticate(
        &self,
        req: &RawRequest<'_>,
        secrets: &[Secret],
        _now: i64,
    ) -> Result<(), AuthError> {
        let given = req
            .query
            .and_then(|q| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                    .ok()?
                    .into_iter()
                    .find(|(k, _)| k == SECRET_PARAM)
                    .map(|(_, v)| v)
            })
            .ok_or(AuthError::Hidden("missing secret"))?;
        // Compare against every configured secret without stopping early.
        let mut ok = false;
        for s in secrets {
            ok |= ct_eq(given.as_bytes(), s.expose().as_bytes());
        }
        if ok {
            Ok(())
        } else {
            Err(AuthError::Hidden("wrong secret"))
        }
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
        parse_fields(&fields)
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

fn truthy(fields: &HashMap<String, String>, name: &str) -> bool {
    field(fields, name).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Turns Gumroad's fields into a normalized event.
pub fn parse_fields(fields: &HashMap<String, String>) -> Result<Parsed, ParseError> {
    let resource = field(fields, "resource_name")
        .unwrap_or("sale")
        .to_ascii_lowercase();
    let event = match resource.as_str() {
        "sale" => Event::Sale(parse_sale(fields)?),
        "refund" => Event::Refund {
            order_id: required(fields, "sale_id")?.to_string(),
            full: !truthy(fields, "partially_refunded"),
        },
        "dispute" => Event::Dispute {
            order_id: required(fields, "sale_id")?.to_string(),
            stage: DisputeStage::Opened,
        },
        "dispute_won" => Event::Dispute {
            order_id: required(fields, "sale_id")?.to_string(),
            stage: DisputeStage::Won,
        },
        other => Event::Ignored(format!(
            "gumroad resource `{other}` has no license effect yet"
        )),
    };
    // Gumroad has no event id; the sale id plus the resource is unique.
    let key = field(fields, "sale_id")
        .or_else(|| field(fields, "subscription_id"))
        .unwrap_or("-");
    Ok(Parsed {
        event_id: format!("{resource}:{key}"),
        event_type: resource,
        event,
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
    let mut product_ids = Vec::new();
    for name in [
        "product_id",
        "product_permalink",
        "permalink",
        "short_product_id",
    ] {
        if let Some(v) = field(fields, name)
            && !product_ids.iter().any(|p| p == v)
        {
            product_ids.push(v.to_string());
        }
    }
    if product_ids.is_empty() {
        return Err(ParseError("missing required field `product_id`".into()));
    }
    let name = field(fields, "full_name")
        .or_else(|| field(fields, "purchaser_name"))
        .map(str::to_string)
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
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
        product_ids,
        email,
        name,
        amount_cents,
        currency: field(fields, "currency").map(|c| c.to_ascii_uppercase()),
        test: truthy(fields, "test"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        serde_urlencoded::to_string(pairs).unwrap().into_bytes()
    }

    fn parse(body: &[u8], json: bool) -> Result<Parsed, ParseError> {
        let mut headers = BTreeMap::new();
        if json {
            headers.insert("content-type".to_string(), "application/json".to_string());
        }
        Gumroad.parse(&RawRequest {
            headers: &headers,
            query: None,
            body,
        })
    }

    fn sale(p: &Parsed) -> &Sale {
        match &p.event {
            Event::Sale(s) => s,
            other => panic!("not a sale: {other:?}"),
        }
    }

    #[test]
    fn sale_ping_parses_with_cents_and_test_flag() {
        let body = form(&[
            ("sale_id", "S1"),
            ("email", "jane@example.com"),
            ("full_name", "Jane Doe"),
            ("product_id", "abc"),
            ("permalink", "datatools"),
            ("price", "9900"),
            ("currency", "usd"),
            ("test", "true"),
        ]);
        let p = parse(&body, false).unwrap();
        assert_eq!(p.event_id, "sale:S1");
        let s = sale(&p);
        assert_eq!(s.amount_cents, Some(9900));
        assert_eq!(s.currency.as_deref(), Some("USD"));
        assert!(s.test);
        assert_eq!(s.product_ids, ["abc", "datatools"]);
    }

    #[test]
    fn name_falls_back_to_the_email_local_part() {
        let body = form(&[
            ("sale_id", "S1"),
            ("email", "bob.smith@example.com"),
            ("product_id", "p"),
        ]);
        assert_eq!(sale(&parse(&body, false).unwrap()).name, "bob.smith");
    }

    #[test]
    fn json_bodies_parse_too() {
        let body =
            br#"{"sale_id":"S2","email":"a@b.co","product_id":"p","price":500,"test":false}"#;
        let p = parse(body, true).unwrap();
        assert_eq!(sale(&p).amount_cents, Some(500));
        assert!(!sale(&p).test);
    }

    #[test]
    fn missing_required_fields_are_named() {
        let err = parse(&form(&[("email", "a@b.co"), ("product_id", "p")]), false).unwrap_err();
        assert!(err.0.contains("sale_id"), "{err}");
        let err = parse(&form(&[("sale_id", "S"), ("product_id", "p")]), false).unwrap_err();
        assert!(err.0.contains("email"), "{err}");
        let err = parse(&form(&[("sale_id", "S"), ("email", "a@b.co")]), false).unwrap_err();
        assert!(err.0.contains("product_id"), "{err}");
        let err = parse(
            &form(&[
                ("sale_id", "S"),
                ("email", "a@b.co"),
                ("product_id", "p"),
                ("price", "9.99"),
            ]),
            false,
        )
        .unwrap_err();
        assert!(err.0.contains("price"), "{err}");
    }

    #[test]
    fn resources_map_to_events() {
        let refund = parse(
            &form(&[("resource_name", "refund"), ("sale_id", "S")]),
            false,
        )
        .unwrap();
        assert_eq!(
            refund.event,
            Event::Refund {
                order_id: "S".into(),
                full: true
            }
        );
        let partial = parse(
            &form(&[
                ("resource_name", "refund"),
                ("sale_id", "S"),
                ("partially_refunded", "true"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            partial.event,
            Event::Refund {
                order_id: "S".into(),
                full: false
            }
        );
        let won = parse(
            &form(&[("resource_name", "dispute_won"), ("sale_id", "S")]),
            false,
        )
        .unwrap();
        assert_eq!(
            won.event,
            Event::Dispute {
                order_id: "S".into(),
                stage: DisputeStage::Won
            }
        );
        assert_eq!(won.event_id, "dispute_won:S");
        let cancel = parse(
            &form(&[("resource_name", "cancellation"), ("sale_id", "S")]),
            false,
        )
        .unwrap();
        assert!(matches!(cancel.event, Event::Ignored(_)));
    }

    #[test]
    fn secret_must_match_one_of_the_configured_secrets() {
        let headers = BTreeMap::new();
        let secrets = [Secret::new("old"), Secret::new("new")];
        let req = |q| RawRequest {
            headers: &headers,
            query: q,
            body: b"",
        };
        assert!(
            Gumroad
                .authenticate(&req(Some("secret=new")), &secrets, 0)
                .is_ok()
        );
        assert!(
            Gumroad
                .authenticate(&req(Some("secret=old&x=1")), &secrets, 0)
                .is_ok()
        );
        assert_eq!(
            Gumroad.authenticate(&req(Some("secret=nope")), &secrets, 0),
            Err(AuthError::Hidden("wrong secret"))
        );
        assert_eq!(
            Gumroad.authenticate(&req(None), &secrets, 0),
            Err(AuthError::Hidden("missing secret"))
        );
        assert!(
            Gumroad
                .authenticate(&req(Some("secret=")), &secrets, 0)
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn form_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body, false);
            let _ = parse(&body, true);
        }

        #[test]
        fn encoded_sales_round_trip(
            sale_id in "[A-Za-z0-9_=-]{1,30}",
            local in "[a-z0-9.+]{1,20}",
            name in "\\PC{0,40}",
            price in 0i64..10_000_000,
            product in "[a-z0-9-]{1,20}",
        ) {
            let email = format!("{local}@example.com");
            let price_text = price.to_string();
            let body = form(&[("sale_id", &sale_id), ("email", &email), ("full_name", &name), ("product_id", &product), ("price", &price_text)]);
            let p = parse(&body, false).unwrap();
            let s = sale(&p);
            prop_assert_eq!(&s.order_id, sale_id.trim());
            prop_assert_eq!(&s.email, &email);
            prop_assert_eq!(s.amount_cents, Some(price));
            let expected_name = if name.trim().is_empty() { local.clone() } else { name.trim().to_string() };
            prop_assert_eq!(&s.name, &expected_name);
        }
    }
}
