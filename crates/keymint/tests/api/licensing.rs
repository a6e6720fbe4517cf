//! The licensing API as a buyer's program uses it (docs/licensing-api.md):
//! validation codes with signed receipts, idempotent activation with
//! machine files, seat limits under concurrency, the deactivation budget,
//! the operators' machine routes and CLI, and the per-address limits.

use crate::both_databases;
use crate::client::{expect_error, expect_json};
use crate::helpers::{Db, TestApp, sale_form, spawn_app, spawn_app_with, stderr, stdout, with};
use crate::providers::{self, Ids, now_secs};
use crate::views::{LicenseDetailExt, LicenseOne};
use keymint::views::licensing::{
    ActivationOut, LicensingErrorBody, MachinesOut, ResetOut, ValidationOut,
};
use keymint_license::{KeySet, LicenseKey, TokenError};
use serde_json::{Value, json};
use time::OffsetDateTime;

both_databases!(
    every_code_comes_with_a_receipt_that_echoes_the_nonce,
    activation_is_idempotent_and_returns_a_machine_file,
    a_refund_a_dispute_and_an_operator_each_answer_their_own_code,
    subscriptions_carry_access_until_and_warnings,
    bad_requests_are_400_and_say_nothing_about_the_license,
    thirty_racing_activations_fill_exactly_three_seats,
    twenty_racing_activations_of_one_machine_make_one,
    deactivation_frees_a_seat_within_a_budget_operators_do_not_have,
    operators_list_deactivate_reset_and_raise_the_limit,
    the_cli_checks_out_a_machine_file_for_an_air_gapped_machine,
    validation_records_last_seen_at_most_once_a_minute,
    key_guessing_spends_a_small_budget_then_every_request_waits,
    a_license_minted_before_machines_existed_activates,
    a_rust_program_uses_the_crates_client_until_a_refund,
);

/// A buyer's program talking to one server.
pub struct Program {
    base: String,
    http: reqwest::Client,
    pub keys: KeySet,
}

impl Program {
    pub async fn new(app: &TestApp) -> Self {
        let published = app.api().published_keys().await;
        let keys = KeySet::from_paserks(published.keys.iter().map(|k| k.public_key.as_str()))
            .expect("published keys parse");
        Self {
            base: app.base.clone(),
            http: app.client.clone(),
            keys,
        }
    }

    pub async fn validate_raw(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/licenses/validate", self.base))
            .json(&body)
            .send()
            .await
            .expect("validate answers")
    }

    /// Validates with a fresh nonce and checks the receipt before reading
    /// the answer, as a careful program does.
    pub async fn validate(&self, mut body: Value) -> ValidationOut {
        let nonce = format!("nonce-{}", rand::random::<u64>());
        body["nonce"] = json!(nonce);
        let out: ValidationOut = expect_json(self.validate_raw(body.clone()).await, 200).await;
        let now = OffsetDateTime::now_utc();
        let receipt = self
            .keys
            .verify_receipt(&out.receipt, &nonce, now)
            .expect("the receipt verifies with this request's nonce");
        assert_eq!(receipt.valid, out.valid);
        assert_eq!(receipt.code, out.code.as_str());
        assert_eq!(receipt.fingerprint.as_deref(), body["fingerprint"].as_str());
        // The rest of the answer is signed too.
        assert_eq!(receipt.missing_entitlements, out.missing_entitlements);
        let warnings: Vec<&str> = out.warnings.iter().map(|w| w.as_str()).collect();
        assert_eq!(receipt.warnings, warnings);
        let until = out.access_until.as_deref().map(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
        });
        assert_eq!(receipt.access_until, until);
        assert_eq!(out.valid, out.code.as_str() == "VALID", "{out:?}");
        // Replayed to a program that sent another nonce, it is refused.
        assert_eq!(
            self.keys
                .verify_receipt(&out.receipt, "another-nonce", now)
                .unwrap_err(),
            TokenError::NonceMismatch
        );
        out
    }

    pub async fn code(&self, body: Value) -> String {
        self.validate(body).await.code.as_str().to_string()
    }

    pub fn machine_url(&self, key: &str, fingerprint: &str) -> String {
        format!("{}/v1/licenses/{key}/machines/{fingerprint}", self.base)
    }

    pub async fn activate_raw(
        &self,
        key: &str,
        fingerprint: &str,
        body: Value,
    ) -> reqwest::Response {
        self.http
            .put(self.machine_url(key, fingerprint))
            .json(&body)
            .send()
            .await
            .expect("activate answers")
    }

    /// Activates and checks the machine file offline; the answer.
    pub async fn activate(
        &self,
        key: &LicenseKey,
        fingerprint: &str,
        status: u16,
    ) -> ActivationOut {
        let out: ActivationOut = expect_json(
            self.activate_raw(key.as_str(), fingerprint, json!({}))
                .await,
            status,
        )
        .await;
        let claims = self
            .keys
            .verify_machine_file(&out.machine_file, fingerprint, OffsetDateTime::now_utc())
            .expect("the machine file verifies for this fingerprint");
        assert_eq!(claims.key, key.as_str());
        assert_eq!(claims.machine, out.machine.id.as_str());
        out
    }

    pub async fn deactivate(&self, key: &str, fingerprint: &str) -> reqwest::Response {
        self.http
            .delete(self.machine_url(key, fingerprint))
            .send()
            .await
            .expect("deactivate answers")
    }

    pub async fn machines(&self, key: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/licenses/{key}/machines", self.base))
            .send()
            .await
            .expect("machines answers")
    }
}

/// Asserts a licensing error answer; returns its body.
async fn refused(resp: reqwest::Response, status: u16, code: &str) -> LicensingErrorBody {
    let body: LicensingErrorBody = expect_json(resp, status).await;
    assert_eq!(body.code, code, "{body:?}");
    body
}

/// A Gumroad sale of `datatools-core` (3 seats, 365 days); its key.
async fn sold(app: &TestApp) -> LicenseKey {
    let order = format!("LIC-{}", rand::random::<u32>());
    app.gumroad_sale(&sale_form(&order)).await
}

async fn every_code_comes_with_a_receipt_that_echoes_the_nonce(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let k = key.as_str();

    let out = p.validate(json!({"key": k})).await;
    assert_eq!(out.code.as_str(), "VALID");
    let license = out.license.expect("the license");
    assert_eq!(
        (
            license.product.as_str(),
            license.max_machines,
            license.machines_active
        ),
        ("datatools-core", Some(3), 0)
    );
    assert_eq!(license.entitlements, vec!["export".to_string()]);
    assert!(out.access_until.is_some(), "a 365-day license ends");
    assert!(out.warnings.is_empty() && out.machine.is_none());

    // The forgiving parse: lower case, O for 0, I for 1.
    let (head, groups) = k.split_at(9);
    let sloppy = format!(
        " {}{} ",
        head.to_lowercase(),
        groups.to_lowercase().replace('0', "o").replace('1', "i")
    );
    assert_eq!(p.code(json!({"key": sloppy})).await, "VALID");

    // Unknown and malformed keys: the same answer, license and machine null.
    let unknown = LicenseKey::generate("DT1", "CORE").unwrap();
    for missing in [
        unknown.as_str(),
        "not-a-key",
        "DT1-CORE-?????-00000-00000-00000",
    ] {
        let out = p
            .validate(json!({"key": missing, "fingerprint": "machine-aaaa"}))
            .await;
        assert_eq!(out.code.as_str(), "NOT_FOUND", "{missing}");
        assert!(out.license.is_none() && out.machine.is_none() && out.access_until.is_none());
    }

    assert_eq!(
        p.code(json!({"key": k, "product": "datatools-pro"})).await,
        "PRODUCT_MISMATCH"
    );
    assert_eq!(
        p.code(json!({"key": k, "product": "datatools-core"})).await,
        "VALID"
    );
    let out = p
        .validate(json!({"key": k, "entitlements": ["export", "sync", "cloud"]}))
        .await;
    assert_eq!(out.code.as_str(), "ENTITLEMENTS_MISSING");
    assert_eq!(
        out.missing_entitlements,
        vec!["sync".to_string(), "cloud".into()]
    );
    assert_eq!(
        p.code(json!({"key": k, "entitlements": ["export"]})).await,
        "VALID"
    );

    assert_eq!(
        p.code(json!({"key": k, "fingerprint": "machine-0001"}))
            .await,
        "NOT_ACTIVATED"
    );
    p.activate(&key, "machine-0001", 201).await;
    let out = p
        .validate(json!({"key": k, "fingerprint": "machine-0001"}))
        .await;
    assert_eq!(out.code.as_str(), "VALID");
    assert!(out.machine.is_some());
    assert_eq!(out.license.unwrap().machines_active, 1);

    // A receipt lasts `licensing.receipt_ttl` (24 h by default).
    let before = OffsetDateTime::now_utc();
    let nonce = "a-fresh-nonce-1";
    let out: ValidationOut =
        expect_json(p.validate_raw(json!({"key": k, "nonce": nonce})).await, 200).await;
    let receipt = p.keys.verify_receipt(&out.receipt, nonce, before).unwrap();
    let ttl = receipt.exp - receipt.iat;
    assert_eq!(ttl, time::Duration::hours(24));
    assert!(receipt.iat >= before.replace_nanosecond(0).unwrap());
    // It is a receipt: not a license, not a machine file.
    assert!(matches!(
        p.keys.verify(&out.receipt),
        Err(TokenError::WrongKind { .. })
    ));
    assert!(matches!(
        p.keys
            .verify_machine_file(&out.receipt, "machine-0001", before),
        Err(TokenError::WrongKind { .. })
    ));
    // After its exp, it is refused offline.
    assert!(matches!(
        p.keys.verify_receipt(&out.receipt, nonce, receipt.exp),
        Err(TokenError::Expired(_))
    ));
    // Without a nonce there is nothing to echo: a program that sent one
    // must not accept it.
    let out: ValidationOut = expect_json(p.validate_raw(json!({"key": k})).await, 200).await;
    assert_eq!(
        p.keys
            .verify_receipt(&out.receipt, nonce, before)
            .unwrap_err(),
        TokenError::NonceMismatch
    );
}

async fn activation_is_idempotent_and_returns_a_machine_file(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let body = json!({"name": "Jane's laptop", "platform": "linux", "hostname": "jane-l",
                      "app_version": "2.1.0", "nonce": "activation-nonce"});
    let first: ActivationOut =
        expect_json(p.activate_raw(key.as_str(), "fp-laptop-1", body).await, 201).await;
    assert!(first.created);
    assert_eq!(first.machine.name.as_deref(), Some("Jane's laptop"));
    assert_eq!(first.license.machines_active, 1);
    let now = OffsetDateTime::now_utc();
    let claims = p
        .keys
        .verify_machine_file(&first.machine_file, "fp-laptop-1", now)
        .unwrap();
    assert_eq!(claims.nonce.as_deref(), Some("activation-nonce"));
    assert_eq!(
        (claims.product.as_str(), claims.tier.as_str()),
        ("datatools-core", "core")
    );
    assert_eq!(claims.entitlements, vec!["export".to_string()]);
    // 30 days by default, well inside the license's 365.
    assert_eq!(claims.exp - claims.iat, time::Duration::days(30));
    assert_eq!(
        p.keys
            .verify_machine_file(&first.machine_file, "fp-desktop-2", now)
            .unwrap_err(),
        TokenError::FingerprintMismatch
    );
    assert!(matches!(
        p.keys
            .verify_machine_file(&first.machine_file, "fp-laptop-1", claims.exp),
        Err(TokenError::Expired(_))
    ));

    // The same device asking again: 200, the same machine, a fresh file.
    let again = p.activate(&key, "fp-laptop-1", 200).await;
    assert!(!again.created);
    assert_eq!(again.machine.id, first.machine.id);
    assert_eq!(again.machine.name.as_deref(), Some("Jane's laptop"));
    assert_eq!(again.license.machines_active, 1);

    let listed: MachinesOut = expect_json(p.machines(key.as_str()).await, 200).await;
    assert_eq!((listed.machines_active, listed.max_machines), (1, Some(3)));
    assert_eq!(listed.machines[0].app_version.as_deref(), Some("2.1.0"));
    // The fingerprint is nowhere in the listing, nor in the database.
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains("fp-laptop-1"), "{text}");
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM machines WHERE fingerprint_hash LIKE '%' || $1 || '%' OR name = $1",
            "fp-laptop-1"
        )
        .await,
        0
    );
    let detail = app.admin().await.license(&key).await;
    assert_eq!(
        detail
            .actions()
            .iter()
            .filter(|a| **a == "machine_activated")
            .count(),
        1
    );
    assert_eq!(detail.machines.len(), 1);

    // Unknown keys: 404 NOT_FOUND, for activation, listing and deactivation.
    let unknown = LicenseKey::generate("DT1", "CORE").unwrap();
    refused(
        p.activate_raw(unknown.as_str(), "fp-laptop-1", json!({}))
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    refused(
        p.activate_raw("nonsense", "fp-laptop-1", json!({})).await,
        404,
        "NOT_FOUND",
    )
    .await;
    refused(p.machines(unknown.as_str()).await, 404, "NOT_FOUND").await;
    refused(
        p.deactivate(unknown.as_str(), "fp-laptop-1").await,
        404,
        "NOT_FOUND",
    )
    .await;
    refused(
        p.deactivate(key.as_str(), "fp-never-seen").await,
        404,
        "NOT_ACTIVATED",
    )
    .await;
}

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

async fn bad_requests_are_400_and_say_nothing_about_the_license(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let k = key.as_str();
    let validate_url = format!("{}/v1/licenses/validate", app.base);
    let raw = |body: &'static str| {
        app.client
            .post(&validate_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["not json", "[1,2]", "{\"key\": 5}", ""] {
        let resp = raw(body).await.unwrap();
        refused(resp, 400, "bad_request").await;
    }
    for body in [
        json!({"fingerprint": "machine-0001"}),
        json!({"key": "K".repeat(65)}),
        json!({"key": k, "nonce": "short"}),
        json!({"key": k, "nonce": "n".repeat(129)}),
        json!({"key": k, "nonce": "tab\there-ok?"}),
        json!({"key": k, "fingerprint": "short"}),
        json!({"key": k, "fingerprint": "f".repeat(256)}),
        json!({"key": k, "unknown": true}),
        json!({"key": k, "entitlements": vec!["e"; 65]}),
    ] {
        let resp = p.validate_raw(body.clone()).await;
        let err = refused(resp, 400, "bad_request").await;
        let text = serde_json::to_string(&err).unwrap();
        assert!(
            !text.contains("datatools") && !text.contains("active"),
            "{body}: {text}"
        );
    }
    // Activation: a bad fingerprint, bad metadata or a bad nonce.
    refused(
        p.activate_raw(k, "short", json!({})).await,
        400,
        "bad_request",
    )
    .await;
    refused(
        p.activate_raw(k, &"f".repeat(256), json!({})).await,
        400,
        "bad_request",
    )
    .await;
    refused(
        p.activate_raw(k, "machine-0001", json!({"name": "a\u{7}b"}))
            .await,
        400,
        "bad_request",
    )
    .await;
    refused(
        p.activate_raw(k, "machine-0001", json!({"nonce": "x"}))
            .await,
        400,
        "bad_request",
    )
    .await;
    refused(
        p.activate_raw(k, "machine-0001", json!({"color": "red"}))
            .await,
        400,
        "bad_request",
    )
    .await;
    // What the framework refuses is answered in the same JSON shape: a
    // body over 16 KiB, a path that is not UTF-8.
    let big = json!({"key": k, "product": "x".repeat(20 * 1024)});
    refused(p.validate_raw(big).await, 413, "body_too_large").await;
    let not_utf8 = app.url(&format!("/v1/licenses/{k}/machines/abcdefgh%FF%FE"));
    refused(
        app.client.put(&not_utf8).send().await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    // A NUL is a key that does not parse, on PostgreSQL too.
    let out = p
        .validate(json!({"key": "DT1-CORE-\u{0}0000-00000-00000-00000"}))
        .await;
    assert_eq!(out.code.as_str(), "NOT_FOUND");
    // Surrounding spaces do not count towards the 64 characters.
    let padded = format!("{}{k}{}", " ".repeat(20), " ".repeat(20));
    assert_eq!(p.code(json!({"key": padded})).await, "VALID");
    // Nothing was activated by any of them.
    let listed: MachinesOut = expect_json(p.machines(k).await, 200).await;
    assert_eq!(listed.machines_active, 0);
}

async fn thirty_racing_activations_fill_exactly_three_seats(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let machines: Vec<String> = (0..30).map(|i| format!("racing-machine-{i:02}")).collect();
    let answers = futures::future::join_all(
        machines
            .iter()
            .map(|m| p.activate_raw(key.as_str(), m, json!({}))),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        27,
        "{statuses:?}"
    );
    for resp in answers.into_iter().filter(|r| r.status() == 409) {
        refused(resp, 409, "TOO_MANY_MACHINES").await;
    }
    let listed: MachinesOut = expect_json(p.machines(key.as_str()).await, 200).await;
    assert_eq!(listed.machines_active, 3);
    let detail = app.admin().await.license(&key).await;
    assert_eq!(
        detail
            .actions()
            .iter()
            .filter(|a| **a == "machine_activated")
            .count(),
        3
    );
}

async fn twenty_racing_activations_of_one_machine_make_one(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let answers = futures::future::join_all(
        (0..20).map(|_| p.activate_raw(key.as_str(), "the-same-machine", json!({}))),
    )
    .await;
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for resp in answers {
        let status = resp.status().as_u16();
        let out: ActivationOut = expect_json(resp, status).await;
        assert_eq!(status, if out.created { 201 } else { 200 });
        created += usize::from(out.created);
        ids.insert(out.machine.id.to_string());
    }
    assert_eq!((created, ids.len()), (1, 1));
    let listed: MachinesOut = expect_json(p.machines(key.as_str()).await, 200).await;
    assert_eq!(listed.machines_active, 1);
}

async fn deactivation_frees_a_seat_within_a_budget_operators_do_not_have(db: Db) {
    let Some(app) = spawn_app_with(db, &[("KEYMINT_LICENSING__DEACTIVATIONS_PER_30D", "2")]).await
    else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let k = key.as_str();
    for i in 0..3 {
        p.activate(&key, &format!("seat-{i}-machine"), 201).await;
    }
    refused(
        p.activate_raw(k, "seat-3-machine", json!({})).await,
        409,
        "TOO_MANY_MACHINES",
    )
    .await;
    // Two moves within the budget.
    for i in 0..2 {
        let resp = p.deactivate(k, &format!("seat-{i}-machine")).await;
        assert_eq!(resp.status(), 204);
        refused(
            p.deactivate(k, &format!("seat-{i}-machine")).await,
            404,
            "NOT_ACTIVATED",
        )
        .await;
        p.activate(&key, &format!("moved-{i}-machine"), 201).await;
    }
    assert_eq!(
        p.code(json!({"key": k, "fingerprint": "seat-0-machine"}))
            .await,
        "NOT_ACTIVATED"
    );
    // The third is over the budget: 429 with when to retry, nothing freed.
    let resp = p.deactivate(k, "seat-2-machine").await;
    let retry_header: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let err = refused(resp, 429, "DEACTIVATION_LIMIT").await;
    let retry = err.retry_after.expect("retry_after");
    assert_eq!(retry, retry_header);
    assert!(retry > 29 * 86_400 && retry <= 30 * 86_400, "{retry}");
    assert_eq!(
        p.code(json!({"key": k, "fingerprint": "seat-2-machine"}))
            .await,
        "VALID"
    );
    // An operator is never budgeted.
    let admin = app.admin().await;
    let listed: MachinesOut = admin
        .get_json(&format!("/admin/v1/licenses/{k}/machines"))
        .await;
    let id = listed.machines[0].id.clone();
    let resp = admin
        .request(
            reqwest::Method::DELETE,
            &format!("/admin/v1/licenses/{k}/machines/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let listed: MachinesOut = expect_json(p.machines(k).await, 200).await;
    assert_eq!(listed.machines_active, 2);
}

async fn operators_list_deactivate_reset_and_raise_the_limit(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let admin = app.admin().await;
    let key = sold(&app).await;
    let k = key.as_str();
    for i in 0..3 {
        p.activate(&key, &format!("office-{i}-machine"), 201).await;
    }
    let put_max = |body: Value| {
        admin
            .request(
                reqwest::Method::PUT,
                &format!("/admin/v1/licenses/{k}/max-machines"),
            )
            .json(&body)
            .send()
    };
    // Four seats for this license: a fourth machine fits, a fifth not.
    let one: LicenseOne =
        expect_json(put_max(json!({"max_machines": 4})).await.unwrap(), 200).await;
    assert_eq!(one.license.max_machines, Some(4));
    let token = p
        .keys
        .verify(&one.license.token)
        .expect("the re-signed token verifies");
    assert_eq!(token.max_machines, Some(4));
    p.activate(&key, "office-3-machine", 201).await;
    refused(
        p.activate_raw(k, "office-4-machine", json!({})).await,
        409,
        "TOO_MANY_MACHINES",
    )
    .await;
    expect_error(
        put_max(json!({"max_machines": 0})).await.unwrap(),
        422,
        "invalid_max_machines",
    )
    .await;
    expect_error(put_max(json!({})).await.unwrap(), 422, "unprocessable").await;
    let one: LicenseOne =
        expect_json(put_max(json!({"max_machines": null})).await.unwrap(), 200).await;
    assert_eq!(one.license.max_machines, None);
    p.activate(&key, "office-4-machine", 201).await;

    let listed: MachinesOut = admin
        .get_json(&format!("/admin/v1/licenses/{k}/machines"))
        .await;
    assert_eq!((listed.machines_active, listed.max_machines), (5, None));
    let bogus = format!("/admin/v1/licenses/{k}/machines/mch_01JUNKJUNKJUNKJUNKJUNKJUNK");
    let resp = admin
        .request(reqwest::Method::DELETE, &bogus)
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "machine_not_found").await;

    let reset: ResetOut = expect_json(
        admin
            .post(
                &format!("/admin/v1/licenses/{k}/machines/reset"),
                &json!({}),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(reset.deactivated, 5);
    let listed: MachinesOut = expect_json(p.machines(k).await, 200).await;
    assert_eq!(listed.machines_active, 0);

    let detail = admin.license(&key).await;
    let actions = detail.actions();
    assert!(
        actions.contains(&"max_machines_set") && actions.contains(&"machines_reset"),
        "{actions:?}"
    );
    let reset_by = detail
        .history
        .iter()
        .find(|h| h.action == "machines_reset")
        .unwrap();
    assert_eq!(reset_by.actor, "admin:ops");
    let set = detail
        .history
        .iter()
        .find(|h| h.action == "max_machines_set")
        .unwrap();
    assert_eq!(set.reason.as_deref(), Some("3 -> 4"));
    // Reading needs licenses:read, writing licenses:write.
    let (_, reader) = keymint::admin::create_token(
        &app.state.store,
        "reader",
        &[keymint::admin::scope::LICENSES_READ.to_string()],
    )
    .await
    .unwrap();
    let reader = app.admin_with(&reader);
    let resp = reader
        .post(
            &format!("/admin/v1/licenses/{k}/machines/reset"),
            &json!({}),
        )
        .await;
    expect_error(resp, 403, "forbidden").await;
}

async fn the_cli_checks_out_a_machine_file_for_an_air_gapped_machine(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let admin = app.admin().await;
    let key = sold(&app).await;
    let k = key.as_str();
    let file = app.dir.join("air-gapped.machine");
    let out = app.cli(&[
        "machines",
        "checkout",
        k,
        "air-gapped-0001",
        "--ttl",
        "90d",
        "--out",
        file.to_str().unwrap(),
        "--name",
        "lab",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let claims = p
        .keys
        .verify_machine_file(text.trim(), "air-gapped-0001", OffsetDateTime::now_utc())
        .unwrap();
    assert_eq!(claims.exp - claims.iat, time::Duration::days(90));
    // Longer than the license lasts: capped at its expiry.
    let out = app.cli(&[
        "machines",
        "checkout",
        k,
        "air-gapped-0002",
        "--ttl",
        "1000d",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let long = p
        .keys
        .verify_machine_file(
            stdout(&out).trim(),
            "air-gapped-0002",
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let detail = admin.license(&key).await;
    let expires = time::OffsetDateTime::parse(
        detail.license.expires_at.as_deref().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(long.exp, expires);

    // A file that cannot be written, or a lifetime under a minute, is
    // refused before a seat is taken.
    let nowhere = app.dir.join("no-such-dir/x.machine");
    let out = app.cli(&[
        "machines",
        "checkout",
        k,
        "air-gapped-0009",
        "--out",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-dir"), "{}", stderr(&out));
    let out = app.cli(&["machines", "checkout", k, "air-gapped-0009", "--ttl", "0s"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("shorter than a minute"),
        "{}",
        stderr(&out)
    );

    let out = app.cli(&["machines", "list", k]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: MachinesOut = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.machines_active, 2);
    assert_eq!(listed.machines[0].name.as_deref(), Some("lab"));
    // Without --ttl, `[licensing] machine_file_ttl` (30 days here).
    let out = app.cli(&["machines", "reset", k]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = app.cli(&[
        "machines",
        "checkout",
        k,
        "air-gapped-0001",
        "--name",
        "lab",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let default = p
        .keys
        .verify_machine_file(
            stdout(&out).trim(),
            "air-gapped-0001",
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert_eq!(default.exp - default.iat, time::Duration::days(30));
    let out = app.cli(&[
        "machines",
        "checkout",
        k,
        "air-gapped-0002",
        "--ttl",
        "1000d",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // It counts against the seats like any activation.
    p.activate(&key, "online-machine", 201).await;
    let out = app.cli(&["machines", "checkout", k, "air-gapped-0003"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));

    let out = app.cli(&["machines", "list", k]);
    let listed: MachinesOut = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.machines_active, 3);
    let id = listed.machines[0].id.to_string();
    let out = app.cli(&["machines", "deactivate", k, &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = app.cli(&["machines", "reset", k]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reset: ResetOut = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(reset.deactivated, 2);
    let detail = admin.license(&key).await;
    let by_cli = detail.history.iter().filter(|h| h.actor == "cli").count();
    // Activated 0001 and 0002, reset, activated them again, deactivated
    // one, reset.
    assert_eq!(by_cli, 7, "{:?}", detail.actions());
    let out = app.cli(&["machines", "list", "DT1-CORE-00000-00000-00000-00000"]);
    assert!(!out.status.success());
}

async fn validation_records_last_seen_at_most_once_a_minute(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let activated = p.activate(&key, "seen-machine-1", 201).await;
    let body = json!({"key": key.as_str(), "fingerprint": "seen-machine-1"});
    let id = activated.machine.id.to_string();
    let stored = || app.scalar("SELECT last_seen_at FROM machines WHERE id = $1", &id);
    let at_activation = stored().await;
    // Within the minute: answered, nothing written.
    let out = p.validate(body.clone()).await;
    assert_eq!(
        out.machine.unwrap().last_seen_at,
        activated.machine.last_seen_at
    );
    assert_eq!(stored().await, at_activation);
    // Seen two minutes ago: the next validation records now.
    let two_minutes_ago = at_activation - 120_000;
    let store = app.database.store().await;
    sqlx::query("UPDATE machines SET last_seen_at = $1 WHERE id = $2")
        .bind(two_minutes_ago)
        .bind(&id)
        .execute(store.pool())
        .await
        .unwrap();
    let before = keymint::domain::Millis::now().as_i64();
    p.validate(body.clone()).await;
    let after_first = stored().await;
    assert!(after_first >= before, "{after_first} < {before}");
    p.validate(body).await;
    assert_eq!(stored().await, after_first);
}

async fn key_guessing_spends_a_small_budget_then_every_request_waits(db: Db) {
    let Some(app) = spawn_app_with(
        db,
        &[
            ("KEYMINT_LICENSING__RATE_LIMIT__NOT_FOUND_PER_MINUTE", "3"),
            ("KEYMINT_LICENSING__RATE_LIMIT__PER_MINUTE", "1000"),
        ],
    )
    .await
    else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    // Found keys do not spend the small budget.
    for _ in 0..10 {
        assert_eq!(p.code(json!({"key": key.as_str()})).await, "VALID");
    }
    for _ in 0..3 {
        let guess = LicenseKey::generate("DT1", "CORE").unwrap();
        assert_eq!(p.code(json!({"key": guess.as_str()})).await, "NOT_FOUND");
    }
    // Past it, a real key waits too: a guesser learns nothing more.
    let resp = p.validate_raw(json!({"key": key.as_str()})).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let err = refused(resp, 429, "rate_limited").await;
    assert_eq!(err.retry_after, Some(retry));
    assert!((1..=20).contains(&retry), "{retry}");
    refused(
        p.activate_raw(key.as_str(), "machine-0001", json!({}))
            .await,
        429,
        "rate_limited",
    )
    .await;
    // Other routes are not licensing routes.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn a_license_minted_before_machines_existed_activates(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    // As a license from before the licensing API: minted with no seat
    // limit recorded and nothing in the machines table.
    let store = app.database.store().await;
    sqlx::query("UPDATE licenses SET max_machines = NULL WHERE key = $1")
        .bind(key.as_str())
        .execute(store.pool())
        .await
        .unwrap();
    let detail = app.admin().await.license(&key).await;
    p.keys
        .verify(&detail.license.token)
        .expect("its token still verifies");
    for i in 0..5 {
        p.activate(&key, &format!("legacy-machine-{i}"), 201).await;
    }
    assert_eq!(
        p.code(json!({"key": key.as_str(), "fingerprint": "legacy-machine-4"}))
            .await,
        "VALID"
    );
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
