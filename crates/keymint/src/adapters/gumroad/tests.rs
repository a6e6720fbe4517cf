use super::*;
use crate::adapters::AuthError;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    serde_urlencoded::to_string(pairs).unwrap().into_bytes()
}

/// When the test deliveries were received (Unix ms).
const RECEIVED_AT: i64 = 1_700_000_000_000;

fn parse(body: &[u8], json: bool) -> Result<Parsed, ParseError> {
    let mut headers = BTreeMap::new();
    if json {
        headers.insert("content-type".to_string(), "application/json".to_string());
    }
    Gumroad.parse(&RawRequest {
        headers: &headers,
        query: None,
        body,
        received_at: RECEIVED_AT,
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
    assert_eq!(s.purchase.amount_cents, Some(9900));
    assert_eq!(s.purchase.currency.as_deref(), Some("USD"));
    assert!(s.purchase.test);
    assert_eq!(s.purchase.product_ids, ["abc", "datatools"]);
}

#[test]
fn a_missing_name_is_left_to_the_dispatcher() {
    let body = form(&[
        ("sale_id", "S1"),
        ("email", "bob.smith@example.com"),
        ("product_id", "p"),
    ]);
    assert_eq!(
        sale(&parse(&body, false).unwrap()).purchase.buyer.name,
        None
    );
}

#[test]
fn json_bodies_parse_too() {
    let body = br#"{"sale_id":"S2","email":"a@b.co","product_id":"p","price":500,"test":false}"#;
    let p = parse(body, true).unwrap();
    assert_eq!(sale(&p).purchase.amount_cents, Some(500));
    assert!(!sale(&p).purchase.test);
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
fn a_flag_that_is_neither_true_nor_false_fails_the_delivery() {
    let err = parse(
        &form(&[
            ("resource_name", "refund"),
            ("sale_id", "S"),
            ("partially_refunded", "maybe"),
        ]),
        false,
    )
    .unwrap_err();
    assert!(err.0.contains("partially_refunded"), "{err}");
}

#[test]
fn resources_map_to_events() {
    // A refund is full unless Gumroad says it is partial.
    let refund: &[(&str, &str)] = &[("resource_name", "refund"), ("sale_id", "S")];
    for (extra, full) in [(None, true), (Some(("partially_refunded", "true")), false)] {
        let fields: Vec<_> = refund.iter().copied().chain(extra).collect();
        assert_eq!(
            parse(&form(&fields), false).unwrap().event,
            Event::Refund {
                refs: vec!["S".into()],
                full,
                amount_cents: None
            }
        );
    }
    let won = parse(
        &form(&[("resource_name", "dispute_won"), ("sale_id", "S")]),
        false,
    )
    .unwrap();
    assert_eq!(
        won.event,
        Event::Dispute {
            refs: vec!["S".into()],
            stage: DisputeStage::Won
        }
    );
    assert_eq!(won.event_id, "dispute_won:S");
    let cancel = parse(
        &form(&[
            ("resource_name", "cancellation"),
            ("subscription_id", "SUB"),
            ("cancelled_at", "2026-01-02T03:04:05Z"),
        ]),
        false,
    )
    .unwrap();
    match cancel.event {
        Event::Subscription(s) => {
            assert_eq!(s.subscription_id, "SUB");
            assert_eq!(s.at_ms, 1_767_323_045_000);
            assert!(matches!(
                s.change,
                SubscriptionChange::Canceled {
                    at_period_end: true,
                    ..
                }
            ));
        }
        other => panic!("not a subscription event: {other:?}"),
    }
    assert_eq!(cancel.event_id, "cancellation:SUB:2026-01-02T03:04:05Z");
    let unknown = parse(&form(&[("resource_name", "ping"), ("sale_id", "S")]), false).unwrap();
    assert!(matches!(unknown.event, Event::Ignored(_)));
}

#[test]
fn secret_must_match_one_of_the_configured_secrets() {
    let headers = BTreeMap::new();
    let secrets = crate::config::EndpointConfig::for_test(
        "g",
        crate::config::EndpointKind::Gumroad,
        &["old", "new"],
    );
    let req = |q| RawRequest {
        headers: &headers,
        query: q,
        body: b"",
        received_at: 0,
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
        prop_assert_eq!(s.purchase.buyer.email.as_ref(), Some(&email));
        prop_assert_eq!(s.purchase.amount_cents, Some(price));
        let expected_name = (!name.trim().is_empty()).then(|| name.trim().to_string());
        prop_assert_eq!(&s.purchase.buyer.name, &expected_name);
    }
}

#[test]
fn a_subscription_event_without_a_time_takes_the_delivery_time() {
    // A replay days later must not move the event (and the period it
    // starts) to the replay's clock.
    for body in [
        &b"sale_id=S9&email=a@b.co&product_id=p&subscription_id=SUB9"[..],
        b"resource_name=cancellation&subscription_id=SUB9",
    ] {
        let parsed = parse(body, false).unwrap();
        match &parsed.event {
            Event::Subscription(s) => assert_eq!(s.at_ms, RECEIVED_AT, "{parsed:?}"),
            other => panic!("not a subscription event: {other:?}"),
        }
    }
}

#[test]
fn a_time_that_is_there_but_unreadable_fails_the_delivery() {
    let e = parse(
        b"resource_name=cancellation&subscription_id=SUB9&cancelled_at=last+tuesday",
        false,
    )
    .unwrap_err();
    assert!(e.0.contains("cancelled_at"), "{e}");
}
