//! The payment truth in the answers: refunds, disputes, an operator's
//! revocation, a subscription's warnings, and a Rust program through the
//! crate's client until its sale is refunded.

use super::*;

both_databases!(
    a_refund_a_dispute_and_an_operator_each_answer_their_own_code,
    subscriptions_carry_access_until_and_warnings,
    a_rust_program_uses_the_crates_client_until_a_refund,
);

async fn a_refund_a_dispute_and_an_operator_each_answer_their_own_code(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let admin = app.admin().await;
    let t = now_secs() - 600;

    // Refunded: the Gumroad refund ping for the sale.
    let order = format!("REF-{}", rand::random::<u32>());
    let key = app.gumroad_sale(&sale_form(&order)).await;
    p.activate(&key, "fp-refunded", 201).await;
    let answer = app
        .gumroad(&with(sale_form(&order), "resource_name", "refund"))
        .await;
    assert_eq!(answer.status, "ok", "{answer}");
    assert_eq!(
        p.code(json!({"key": key.as_str(), "fingerprint": "fp-refunded"}))
            .await,
        "REFUNDED"
    );
    refused(
        p.activate_raw(key.as_str(), "fp-other-1", json!({})).await,
        403,
        "REFUNDED",
    )
    .await;

    // A dispute opened suspends; lost revokes as DISPUTE_LOST.
    let ids = Ids::new("stripe");
    let key = app.minted(&providers::sale("stripe", &ids, t)).await;
    app.send(&providers::dispute("stripe", &ids, t + 10, "opened").unwrap())
        .await;
    assert_eq!(p.code(json!({"key": key.as_str()})).await, "SUSPENDED");
    refused(
        p.activate_raw(key.as_str(), "fp-disputed", json!({})).await,
        403,
        "SUSPENDED",
    )
    .await;
    app.send(&providers::dispute("stripe", &ids, t + 20, "lost").unwrap())
        .await;
    assert_eq!(p.code(json!({"key": key.as_str()})).await, "DISPUTE_LOST");

    // An operator's revocation: REVOKED, the reason not shown; reinstated,
    // valid again.
    let key = sold(&app).await;
    admin.revoke(&key, "shared on a forum").await;
    let out = p.validate(json!({"key": key.as_str()})).await;
    assert_eq!(out.code.as_str(), "REVOKED");
    assert!(!serde_json::to_string(&out).unwrap().contains("forum"));
    let resp = admin
        .act(&key, "reinstate", json!({"reason": "a misunderstanding"}))
        .await;
    let _: LicenseOne = expect_json(resp, 200).await;
    assert_eq!(p.code(json!({"key": key.as_str()})).await, "VALID");
}

async fn subscriptions_carry_access_until_and_warnings(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    use providers::Moment::*;
    let now = now_secs();
    let period_end = now + 10 * 86_400;
    let ids = Ids::new("stripe");
    let t0 = now - 1000;
    if let Some(s) = providers::sub_step("stripe", &ids, Identity, t0, period_end, 0) {
        app.send(&s).await;
    }
    app.send(&providers::sub_step("stripe", &ids, Active, t0 + 100, period_end, 0).unwrap())
        .await;
    let (_, license) = providers::sub_state(&app.admin().await, &ids.sub).await;
    let key = license.expect("a license").key;
    let grace = 3 * 86_400;

    let out = p.validate(json!({"key": key.as_str()})).await;
    assert_eq!(out.code.as_str(), "VALID");
    assert!(out.warnings.is_empty());
    assert_eq!(out.access_until, Some(providers::iso(period_end + grace)));

    app.send(&providers::sub_step("stripe", &ids, PaymentFailed, t0 + 200, period_end, 0).unwrap())
        .await;
    let out = p.validate(json!({"key": key.as_str()})).await;
    assert_eq!(out.code.as_str(), "VALID");
    assert_eq!(
        serde_json::to_value(&out.warnings).unwrap(),
        json!(["PAST_DUE"])
    );

    app.send(&providers::sub_step("stripe", &ids, Canceled, t0 + 300, period_end, 0).unwrap())
        .await;
    let out = p.validate(json!({"key": key.as_str()})).await;
    assert_eq!(out.code.as_str(), "VALID");
    assert!(
        serde_json::to_value(&out.warnings)
            .unwrap()
            .to_string()
            .contains("CANCELS_AT_PERIOD_END"),
        "{out:?}"
    );
    // A valid answer's receipt is not relied on past the access it reports.
    let nonce = "sub-nonce-0001";
    let raw: ValidationOut = expect_json(
        p.validate_raw(json!({"key": key.as_str(), "nonce": nonce}))
            .await,
        200,
    )
    .await;
    let receipt = p
        .keys
        .verify_receipt(&raw.receipt, nonce, OffsetDateTime::now_utc())
        .unwrap();
    assert!(receipt.exp.unix_timestamp() <= period_end + grace);

    app.send(&providers::sub_step("stripe", &ids, Ended, t0 + 400, period_end, 0).unwrap())
        .await;
    let out = p.validate(json!({"key": key.as_str()})).await;
    assert_eq!(out.code.as_str(), "EXPIRED");
    assert!(out.warnings.is_empty());
}

/// The "done when" of the licensing API, as a Rust program written from
/// docs/licensing-api.md would do it with `keymint-license`'s `client`
/// feature: activate, keep the machine file, verify it offline, validate
/// online with a nonce; then the sale is refunded and the next validation
/// says so.
async fn a_rust_program_uses_the_crates_client_until_a_refund(db: Db) {
    use keymint_license::client::{Client, ClientError, MachineMeta, ValidateRequest};
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let keys = Program::new(&app).await.keys;
    let order = format!("RUST-{}", rand::random::<u32>());
    let key = app.gumroad_sale(&sale_form(&order)).await;
    let client = Client::new(&app.base, keys.clone());
    let fingerprint = "rust-program-machine-01";
    let (activation, first) = {
        let (client, key) = (client.clone(), key.to_string());
        tokio::task::spawn_blocking(move || {
            let meta = MachineMeta {
                name: Some("build box".into()),
                ..MachineMeta::default()
            };
            let activation = client.activate(&key, fingerprint, &meta).unwrap();
            let first = client
                .validate(&ValidateRequest::new(key).fingerprint(fingerprint))
                .unwrap();
            (activation, first)
        })
        .await
        .unwrap()
    };
    assert!(activation.created);
    assert_eq!(first.receipt.code, "VALID");
    assert!(first.is_valid());
    // Next start, offline: the stored machine file is enough.
    let offline = keys
        .verify_machine_file(
            &activation.machine_file,
            fingerprint,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert_eq!(offline.key, key.as_str());

    let refund = app
        .gumroad(&with(sale_form(&order), "resource_name", "refund"))
        .await;
    assert_eq!(refund.status, "ok", "{refund}");
    let (after, again) = {
        let (client, key) = (client.clone(), key.to_string());
        tokio::task::spawn_blocking(move || {
            let after = client
                .validate(&ValidateRequest::new(key.clone()).fingerprint(fingerprint))
                .unwrap();
            let again = client.activate(&key, "rust-program-machine-02", &MachineMeta::default());
            (after, again)
        })
        .await
        .unwrap()
    };
    assert_eq!(after.receipt.code, "REFUNDED");
    assert!(!after.is_valid());
    match again {
        Err(ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "REFUNDED"));
        }
        other => panic!("activation of a refunded license: {other:?}"),
    }
}
