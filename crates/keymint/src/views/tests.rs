//! A stored value that cannot be read back is an error naming the record
//! and the column, never a default (docs/architecture.md, rule 8).

use super::{DeliveryOut, ErrorBody, LicenseOut};
use crate::domain::{CustomerId, LicenseId, LicenseStatus, Millis};
use crate::store::deliveries::Delivery;
use crate::store::licenses::License;
use keymint_license::LicenseKey;

fn license(entitlements: &str) -> License {
    License {
        id: LicenseId::generate(),
        key: LicenseKey::generate("DT1", "PRO").unwrap(),
        customer_id: CustomerId::generate(),
        product: "datatools".into(),
        tier: "pro".into(),
        status: LicenseStatus::Active,
        status_reason: None,
        source: "manual".into(),
        order_id: None,
        name: "Ada".into(),
        email: "ada@example.com".into(),
        token: "v4.public.x".into(),
        kid: "k1".into(),
        issued_at: Millis(0),
        expires_at: None,
        max_machines: None,
        entitlements: entitlements.into(),
        amount_cents: None,
        currency: None,
        test: 0,
        notes: None,
        created_at: Millis(0),
        updated_at: Millis(0),
    }
}

fn delivery(headers: &str) -> Delivery {
    Delivery {
        id: "dlv_01J0000000000000000000000A".parse().unwrap(),
        endpoint: "gumroad".into(),
        kind: "gumroad".into(),
        received_at: Millis(0),
        source_ip: None,
        user_agent: None,
        request_id: None,
        path: "/webhooks/gumroad".into(),
        headers: headers.into(),
        body: b"a=1".to_vec(),
        body_size: Some(3),
        body_sha256: None,
        signature_valid: Some(1),
        status: crate::domain::DeliveryStatus::Processed,
        event_type: None,
        event_id: None,
        order_id: None,
        error: None,
        license_id: None,
        processed_at: None,
        attempts: 1,
    }
}

#[test]
fn stored_entitlements_are_shown_as_stored() {
    let out = LicenseOut::try_from(license(r#"["export","sync"]"#)).unwrap();
    assert_eq!(out.entitlements, ["export", "sync"]);
}

#[test]
fn unreadable_entitlements_are_an_error_not_an_empty_list() {
    let stored = license("not json");
    let id = stored.id.clone();
    let err = LicenseOut::try_from(stored).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "license {id}: the stored entitlements cannot be read"
        )),
        "{text}"
    );
}

#[test]
fn unreadable_headers_are_an_error_in_full_and_absent_in_a_list() {
    let err = DeliveryOut::full(delivery("{truncated")).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "delivery dlv_01J0000000000000000000000A: the stored headers cannot be read"
        ),
        "{err}"
    );
    // A list never shows headers, so it never reads them.
    let listed = DeliveryOut::summary(delivery("{truncated"));
    assert!(listed.headers.is_none() && listed.body.is_none());
    let full = DeliveryOut::full(delivery(r#"{"content-type":"x"}"#)).unwrap();
    assert_eq!(full.headers.unwrap()["content-type"], "x");
}

#[test]
fn an_error_body_puts_its_code_first() {
    // Webhook senders have always seen this byte order; programs match on
    // `code` (docs/admin-api.md, "Errors").
    let body = ErrorBody {
        code: "unauthorized".into(),
        error: "unauthorized".into(),
    };
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"code":"unauthorized","error":"unauthorized"}"#
    );
}
