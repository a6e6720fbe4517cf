//! `Client::validate` against the loopback fake: what it accepts and
//! what it refuses as forged, replayed or not keymint's.

use super::*;

#[test]
fn a_body_whose_warnings_differ_from_the_receipt_is_tampered() {
    let fake = Fake::serve(1, |signing, request| {
        let mut reply = validate_answer(signing, request, (true, "VALID"), (true, "VALID"), None);
        let mut body: Value = serde_json::from_str(&reply.body).unwrap();
        body["warnings"] = json!([]);
        reply.body = body.to_string();
        reply
    });
    let err = fake
        .client()
        .validate(&ValidateRequest::new(KEY).fingerprint(FINGERPRINT))
        .unwrap_err();
    assert!(matches!(err, ClientError::Tampered(_)), "{err:?}");
}

#[test]
fn a_valid_signed_answer_is_accepted() {
    let fake = Fake::serve(1, |signing, request| {
        validate_answer(signing, request, (true, "VALID"), (true, "VALID"), None)
    });
    let request = ValidateRequest::new(KEY.to_lowercase())
        .fingerprint(FINGERPRINT)
        .product("datatools-core")
        .entitlement("export");

    let validation = fake.client().validate(&request).unwrap();

    assert!(validation.is_valid());
    assert_eq!(validation.receipt.code, "VALID");
    assert_eq!(validation.answer.warnings, ["PAST_DUE"]);
    assert_eq!(
        validation.answer.license.as_ref().unwrap().max_machines,
        Some(3)
    );
    assert_eq!(
        validation.answer.access_until,
        Some(
            OffsetDateTime::parse(
                "2030-01-01T00:00:00Z",
                &time::format_description::well_known::Rfc3339
            )
            .unwrap()
        )
    );
    let seen = fake.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/licenses/validate");
    let body = &seen[0].body;
    assert_eq!(body["key"], KEY.to_lowercase());
    assert_eq!(body["fingerprint"], FINGERPRINT);
    assert_eq!(body["product"], "datatools-core");
    assert_eq!(body["entitlements"], json!(["export"]));
    let nonce = body["nonce"].as_str().unwrap();
    assert_eq!(nonce.len(), NONCE_LEN);
    assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()), "{nonce}");
}

#[test]
fn an_invalid_license_is_an_answer_not_an_error() {
    let fake = Fake::serve(1, |signing, request| {
        validate_answer(
            signing,
            request,
            (false, "REFUNDED"),
            (false, "REFUNDED"),
            None,
        )
    });
    let validation = fake.client().validate(&ValidateRequest::new(KEY)).unwrap();
    assert!(!validation.is_valid());
    assert_eq!(validation.receipt.code, "REFUNDED");
    // Optional fields absent from the request are not sent.
    let body = &fake.seen()[0].body;
    for absent in ["fingerprint", "product", "entitlements"] {
        assert!(body.get(absent).is_none(), "{absent}: {body}");
    }
}

#[test]
fn each_request_sends_a_fresh_nonce() {
    let fake = Fake::serve(2, |signing, request| {
        validate_answer(signing, request, (true, "VALID"), (true, "VALID"), None)
    });
    let client = fake.client();
    client.validate(&ValidateRequest::new(KEY)).unwrap();
    client.validate(&ValidateRequest::new(KEY)).unwrap();
    let seen = fake.seen();
    assert_ne!(seen[0].body["nonce"], seen[1].body["nonce"]);
}

#[test]
fn a_receipt_echoing_another_nonce_is_rejected_as_replayed() {
    let fake = Fake::serve(1, |signing, request| {
        validate_answer(
            signing,
            request,
            (true, "VALID"),
            (true, "VALID"),
            Some("RecordedEarlierRecordedEarlier00"),
        )
    });
    let err = fake
        .client()
        .validate(&ValidateRequest::new(KEY))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Token(TokenError::NonceMismatch)),
        "{err:?}"
    );
}

#[test]
fn a_body_whose_valid_disagrees_with_the_receipt_is_rejected() {
    let fake = Fake::serve(1, |signing, request| {
        validate_answer(signing, request, (true, "VALID"), (false, "REFUNDED"), None)
    });
    let err = fake
        .client()
        .validate(&ValidateRequest::new(KEY))
        .unwrap_err();
    assert!(matches!(err, ClientError::Tampered(_)), "{err:?}");
}

#[test]
fn a_receipt_for_another_fingerprint_is_rejected() {
    let fake = Fake::serve(1, |signing, request| {
        let nonce = request.body["nonce"].as_str().unwrap();
        let mut answer = validate_answer(signing, request, (true, "VALID"), (true, "VALID"), None);
        let mut body: Value = serde_json::from_str(&answer.body).unwrap();
        body["receipt"] = receipt(signing, true, "VALID", KEY, Some("other-machine"), nonce).into();
        answer.body = body.to_string();
        answer
    });
    let request = ValidateRequest::new(KEY).fingerprint(FINGERPRINT);
    let err = fake.client().validate(&request).unwrap_err();
    assert!(matches!(err, ClientError::Tampered(_)), "{err:?}");
}

#[test]
fn a_receipt_signed_by_an_untrusted_key_is_rejected() {
    let fake = Fake::serve(1, |_, request| {
        let forger = SigningKey::generate();
        validate_answer(&forger, request, (true, "VALID"), (true, "VALID"), None)
    });
    let err = fake
        .client()
        .validate(&ValidateRequest::new(KEY))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Token(TokenError::UnknownKey)),
        "{err:?}"
    );
}

#[test]
fn an_answer_that_is_not_keymints_is_a_protocol_error() {
    let fake = Fake::serve(2, |_, request| {
        if request.path.ends_with("validate") {
            reply(200, json!({"hello": "world"}))
        } else {
            Reply {
                status: 502,
                headers: Vec::new(),
                body: "<html>Bad gateway</html>".into(),
            }
        }
    });
    let client = fake.client();
    let err = client.validate(&ValidateRequest::new(KEY)).unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    let err = client.machines(KEY).unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol(m) if m.contains("502")),
        "{err:?}"
    );
}
