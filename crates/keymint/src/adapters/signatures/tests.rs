use super::*;
use proptest::prelude::*;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../../tests/fixtures/signatures.json")).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap()
}

/// Changes the first signature digit after the last `marker` (the
/// first character when `marker` is empty).
fn corrupt(sig: &str, marker: &str) -> String {
    let at = if marker.is_empty() {
        0
    } else {
        sig.rfind(marker).unwrap() + marker.len()
    };
    let mut chars: Vec<char> = sig.chars().collect();
    chars[at] = if chars[at] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

#[test]
fn standard_webhooks_vectors() {
    for v in vectors()["standard_webhooks"].as_array().unwrap() {
        let ts = v["timestamp"].as_i64().unwrap();
        let secret = v
            .get("secret")
            .or_else(|| v.get("public_key"))
            .unwrap()
            .as_str()
            .unwrap();
        let check = |sig: &str, now: i64| {
            verify_standard(
                Some(s(v, "msg_id")),
                Some(&ts.to_string()),
                Some(sig),
                s(v, "payload").as_bytes(),
                &[secret],
                StandardKeyMode::Standard,
                now,
                DEFAULT_TOLERANCE,
            )
        };
        assert_eq!(check(s(v, "signature"), ts), Ok(()), "{v}");
        if let Some(bad) = v["must_fail_signature"].as_str() {
            assert_eq!(check(bad, ts), Err(SigError::Mismatch));
        }
        assert_eq!(
            check(&corrupt(s(v, "signature"), ","), ts),
            Err(SigError::Mismatch)
        );
        assert_eq!(check(s(v, "signature"), ts + 301), Err(SigError::Stale));
        assert_eq!(check(s(v, "signature"), ts - 301), Err(SigError::Stale));
        // Several signatures in one header: any may match.
        let listed = format!("v1,AAAA {} v2,zzzz", s(v, "signature"));
        assert_eq!(check(&listed, ts + 299), Ok(()));
    }
}

#[test]
fn signing_for_a_test_event_verifies_with_each_scheme() {
    use crate::config::EndpointKind as K;
    let body = br#"{"test": 1}"#;
    let now = 1_700_000_000;
    let check = |kind, secret: &str, legacy| {
        let headers = sign(kind, secret, legacy, body, now, "msg_1").unwrap();
        let h = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        match kind {
            K::Stripe => STRIPE.verify(h("stripe-signature"), body, &[secret], now, 300),
            K::Paddle => PADDLE.verify(h("paddle-signature"), body, &[secret], now, 300),
            K::Lemonsqueezy => LEMONSQUEEZY.verify(h("x-signature"), body, &[secret]),
            K::Hyperswitch => HYPERSWITCH.verify(h("x-webhook-signature-512"), body, &[secret]),
            _ => verify_standard(
                h("webhook-id"),
                h("webhook-timestamp"),
                h("webhook-signature"),
                body,
                &[secret],
                if legacy {
                    StandardKeyMode::LegacyRawString
                } else {
                    StandardKeyMode::Standard
                },
                now,
                300,
            ),
        }
    };
    let std_secret = s(&vectors()["standard_webhooks"][0], "secret").to_string();
    for (kind, secret, legacy) in [
        (K::Stripe, "whsec_test_secret", false),
        (K::Paddle, "pdl_ntfset_x", false),
        (K::Lemonsqueezy, "ls", false),
        (K::Hyperswitch, "hash-key", false),
        (K::Standard, std_secret.as_str(), false),
        (K::Polar, std_secret.as_str(), true),
    ] {
        assert_eq!(check(kind, secret, legacy), Ok(()), "{kind:?}");
    }
    assert!(sign(K::Standard, "whpk_AAAA", false, body, now, "m").is_err());
}

#[test]
fn polar_legacy_vector_needs_legacy_mode() {
    let v = &vectors()["polar_legacy"][0];
    let ts = v["timestamp"].as_i64().unwrap();
    let check = |mode| {
        verify_standard(
            Some(s(v, "msg_id")),
            Some(&ts.to_string()),
            Some(s(v, "signature")),
            s(v, "payload").as_bytes(),
            &[s(v, "secret")],
            mode,
            ts,
            DEFAULT_TOLERANCE,
        )
    };
    assert_eq!(check(StandardKeyMode::LegacyRawString), Ok(()));
    assert_eq!(check(StandardKeyMode::Standard), Err(SigError::Mismatch));
}

/// What each timestamped scheme does with its provider's vector: accepts
/// it (also among rotated secrets), refuses another secret, a changed
/// signature or body, a missing header and a time out of the window.
/// Returns the vector's header, body, secret and timestamp.
fn timestamped_vector<'a>(
    scheme: &Timestamped,
    v: &'a Value,
    marker: &str,
    header_name: &'static str,
) -> (&'a str, &'a [u8], &'a str, i64) {
    let header = s(v, "header");
    let (ts, _) = scheme.parse(header).unwrap();
    let body = s(v, "payload").as_bytes();
    let secret = s(v, "secret");
    let check = |header: Option<&str>, body: &[u8], secrets: &[&str], now: i64| {
        scheme.verify(header, body, secrets, now, 300)
    };
    assert_eq!(check(Some(header), body, &[secret], ts), Ok(()));
    assert_eq!(check(Some(header), body, &["old", secret], ts), Ok(()));
    assert_eq!(
        check(Some(header), body, &["other"], ts),
        Err(SigError::Mismatch)
    );
    let corrupted = corrupt(header, marker);
    assert_eq!(
        check(Some(&corrupted), body, &[secret], ts),
        Err(SigError::Mismatch)
    );
    for stale in [ts + 301, ts - 301] {
        assert_eq!(
            check(Some(header), body, &[secret], stale),
            Err(SigError::Stale)
        );
    }
    assert_eq!(
        check(None, body, &[secret], ts),
        Err(SigError::Missing(header_name))
    );
    let mut changed = body.to_vec();
    changed[0] ^= 1;
    assert_eq!(
        check(Some(header), &changed, &[secret], ts),
        Err(SigError::Mismatch)
    );
    (header, body, secret, ts)
}

#[test]
fn stripe_vector_and_rotation() {
    let v = &vectors()["stripe"][0];
    let (header, body, secret, ts) = timestamped_vector(&STRIPE, v, "v1=", "Stripe-Signature");
    assert_eq!(ts, v["timestamp"].as_i64().unwrap());
    assert_eq!(
        STRIPE.verify(Some(header), body, &["whsec_old", secret], ts, 300),
        Ok(())
    );
    let two = format!("{header},v1={}", "00".repeat(32));
    assert_eq!(STRIPE.verify(Some(&two), body, &[secret], ts, 300), Ok(()));
}

#[test]
fn paddle_vector() {
    let v = &vectors()["paddle"][0];
    let (header, body, secret, ts) = timestamped_vector(&PADDLE, v, "h1=", "Paddle-Signature");
    assert_eq!(
        PADDLE.verify(Some(header), body, &[secret], ts + 400, 300),
        Err(SigError::Stale)
    );
    assert_eq!(
        PADDLE.verify(Some(header), body, &["pdl_other"], ts, 300),
        Err(SigError::Mismatch)
    );
}

#[test]
fn lemonsqueezy_and_hyperswitch_vectors() {
    for (scheme, name) in [(LEMONSQUEEZY, "lemonsqueezy"), (HYPERSWITCH, "hyperswitch")] {
        let v = &vectors()[name][0];
        let body = s(v, "payload").as_bytes();
        let check = |sig| scheme.verify(sig, body, &[s(v, "secret")]);
        assert_eq!(check(Some(s(v, "signature"))), Ok(()), "{name}");
        let corrupted = corrupt(s(v, "signature"), "");
        assert_eq!(check(Some(&corrupted)), Err(SigError::Mismatch), "{name}");
    }
    let v = &vectors()["lemonsqueezy"][0];
    assert_eq!(
        LEMONSQUEEZY.verify(Some("zz"), s(v, "payload").as_bytes(), &[s(v, "secret")]),
        Err(SigError::Malformed("X-Signature"))
    );
    let v = &vectors()["hyperswitch"][0];
    assert_eq!(
        HYPERSWITCH.verify(None, s(v, "payload").as_bytes(), &[s(v, "secret")]),
        Err(SigError::Missing("X-Webhook-Signature-512"))
    );
}

#[test]
fn window_extremes_never_overflow() {
    let now: i64 = 1_700_000_000;
    for ts in [i64::MIN, i64::MIN + 1, now.wrapping_sub(1 << 62), i64::MAX] {
        assert_eq!(check_window(ts, now, 300), Err(SigError::Stale), "ts {ts}");
    }
    assert_eq!(check_window(now - 300, now, 300), Ok(()));
    assert_eq!(check_window(now + 300, now, 300), Ok(()));
    assert_eq!(check_window(now - 301, now, 300), Err(SigError::Stale));
    assert_eq!(
        check_window(i64::MIN, i64::MAX, i64::MAX),
        Err(SigError::Stale)
    );
}

#[test]
fn oversized_signature_headers_are_refused_before_any_mac() {
    let many = std::iter::once("t=1".to_string())
        .chain((0..=MAX_SIGNATURES).map(|_| format!("v1={}", "ab".repeat(32))))
        .collect::<Vec<_>>()
        .join(",");
    assert!(many.len() < MAX_HEADER_BYTES);
    assert_eq!(
        STRIPE.parse(&many),
        Err(SigError::TooLarge("Stripe-Signature"))
    );
    let long = format!("t=1,v1=ab,{}", "x".repeat(MAX_HEADER_BYTES));
    assert_eq!(
        STRIPE.parse(&long),
        Err(SigError::TooLarge("Stripe-Signature"))
    );
    let standard = ["v1,AAAA"; MAX_SIGNATURES + 1].join(" ");
    assert_eq!(
        parse_standard_signatures(&standard),
        Err(SigError::TooLarge("webhook-signature"))
    );
    let exactly = ["v1,AAAA"; MAX_SIGNATURES].join(" ");
    assert_eq!(
        parse_standard_signatures(&exactly).unwrap().len(),
        MAX_SIGNATURES
    );
    assert_eq!(
        LEMONSQUEEZY.verify(Some(&"a".repeat(MAX_HEADER_BYTES + 2)), b"", &["k"]),
        Err(SigError::TooLarge("X-Signature"))
    );
}

proptest! {
    #[test]
    fn header_parsers_never_panic(text in "\\PC{0,200}") {
        let _ = STRIPE.parse(&text);
        let _ = PADDLE.parse(&text);
        let _ = parse_standard_signatures(&text);
    }

    #[test]
    fn stripe_header_round_trips(ts in 0i64..4_000_000_000, sigs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 32), 1..4)) {
        let header = std::iter::once(format!("t={ts}"))
            .chain(sigs.iter().map(|s| format!("v1={}", hex::encode(s))))
            .chain(std::iter::once("v0=abc".to_string()))
            .collect::<Vec<_>>()
            .join(",");
        prop_assert_eq!(STRIPE.parse(&header).unwrap(), (ts, sigs));
    }

    #[test]
    fn paddle_header_round_trips(ts in 0i64..4_000_000_000, sigs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 32), 1..4)) {
        let header = std::iter::once(format!("ts={ts}"))
            .chain(sigs.iter().map(|s| format!("h1={}", hex::encode(s))))
            .collect::<Vec<_>>()
            .join(";");
        prop_assert_eq!(PADDLE.parse(&header).unwrap(), (ts, sigs));
    }

    #[test]
    fn standard_signatures_round_trip(sigs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..80), 1..4)) {
        let header = sigs.iter().map(|s| format!("v1,{}", B64.encode(s))).collect::<Vec<_>>().join(" ");
        let parsed: Vec<Vec<u8>> = parse_standard_signatures(&header).unwrap().into_iter().map(|(_, b)| b).collect();
        prop_assert_eq!(parsed, sigs);
    }
}
