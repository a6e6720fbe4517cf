//! Operator refunds and the reconciler, against fake provider APIs.

use crate::both_databases;
use crate::client::{Api, expect_json};
use crate::helpers::{
    Db, TestApp, keymint_cli, sale_form, spawn_app_with, spawn_app_with_api, stderr, stdout,
};
use crate::providers::{Ids, dispute, now_secs, refund, sale, sub_state};
use crate::views::{LicenseDetailExt, RefundOut};
use keymint::domain::RefundId;
use keymint_license::LicenseKey;
use serde_json::{Value, json};
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn app_with_api(db: Db, kind: &str, api: &MockServer) -> Option<TestApp> {
    spawn_app_with_api(db, kind, api, &[("KEYMINT_RECONCILER__ORPHAN_AGE", "0s")]).await
}

/// Makes the fake provider API answer `verb at` with 200 and `body`.
async fn api_answers(api: &MockServer, verb: &str, at: impl Into<String>, body: Value) {
    Mock::given(method(verb))
        .and(path(at.into()))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(api)
        .await;
}

/// A license sold through `kind`, with an admin client: (the client, the
/// sale's ids, the license's key).
async fn sold(app: &TestApp, kind: &'static str) -> (Api, Ids, LicenseKey) {
    let admin = app.admin().await;
    let ids = Ids::new(kind);
    let key = app.minted(&sale(kind, &ids, now_secs())).await;
    (admin, ids, key)
}

/// A license's status through the admin API.
async fn license_status(admin: &Api, key: &LicenseKey) -> String {
    admin.license(key).await.license.status.to_string()
}

/// Asks for a refund of `key` through the admin API; the raw answer.
async fn ask_refund(admin: &Api, key: &LicenseKey, body: Value) -> reqwest::Response {
    admin.act(key, "refund", body).await
}

async fn refund_status(app: &TestApp, id: &RefundId) -> String {
    app.scalar_text("SELECT status FROM refunds WHERE id = $1", id.as_str())
        .await
}

async fn a_stripe_refund_is_pending_until_the_webhook_settles_it(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .and(header_exists("idempotency-key"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "re_123", "object": "refund", "status": "pending"})),
        )
        .mount(&api)
        .await;
    let (admin, ids, key) = sold(&app, "stripe").await;

    let resp = ask_refund(&admin, &key, json!({"reason": "asked"})).await;
    let r: RefundOut = expect_json(resp, 202).await;
    let refund_id = r.id;
    // The provider's synchronous answer does not settle it.
    assert_eq!(r.status, "pending");
    assert_eq!(r.provider_refund_id.as_deref(), Some("re_123"));
    assert_eq!(license_status(&admin, &key).await, "suspended");
    // The provider was asked once, with the row's id as the idempotency key.
    let calls = api.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]
            .headers
            .get("idempotency-key")
            .unwrap()
            .to_str()
            .unwrap(),
        refund_id.as_str()
    );
    let form = String::from_utf8(calls[0].body.clone()).unwrap();
    assert!(
        form.contains(&format!("payment_intent={}", ids.order)),
        "{form}"
    );

    // A second request while one is pending: 409, and no second call.
    let again = ask_refund(&admin, &key, json!({})).await;
    let msg: Value = expect_json(again, 409).await;
    assert!(
        msg["error"].as_str().unwrap().contains("already pending"),
        "{msg}"
    );
    assert_eq!(api.received_requests().await.unwrap().len(), 1);

    // Stripe's webhook settles it.
    let r = app.send(&refund("stripe", &ids, now_secs(), true)).await;
    assert_eq!(r.status, "ok", "{r}");
    assert_eq!(refund_status(&app, &refund_id).await, "succeeded");
    assert_eq!(license_status(&admin, &key).await, "revoked");
}

async fn refunds_without_api_credentials_answer_409(db: Db) {
    let Some(app) = spawn_app_with(db, &[]).await else {
        return;
    };
    let admin = app.admin().await;
    let key = app.gumroad_sale(&sale_form("NR-1")).await;
    let resp = ask_refund(&admin, &key, json!({})).await;
    // Permanent until an operator configures it: a 409 with its own code,
    // not a 503 that tells callers to retry.
    assert!(resp.headers().get("retry-after").is_none());
    let body: Value = expect_json(resp, 409).await;
    assert_eq!(body["error"], "refunds not configured for gumroad");
    assert_eq!(body["code"], "refunds_not_configured");
    let ids = Ids::new("stripe");
    let key = app.minted(&sale("stripe", &ids, now_secs())).await;
    let resp = ask_refund(&admin, &key, json!({})).await;
    let body: Value = expect_json(resp, 409).await;
    assert_eq!(body["error"], "refunds not configured for stripe");
    assert_eq!(body["code"], "refunds_not_configured");
    // Nothing was written or changed.
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM refunds WHERE endpoint <> $1", "")
            .await,
        0
    );
    assert_eq!(license_status(&admin, &key).await, "active");
}

async fn the_reconciler_settles_a_stuck_refund_and_the_late_webhook_is_a_no_op(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "hyperswitch", &api).await else {
        return;
    };
    api_answers(
        &api,
        "POST",
        "/refunds",
        json!({"refund_id": "hs_ref_1", "status": "pending"}),
    )
    .await;
    // The first read fails: the row must stay for the next tick.
    Mock::given(method("GET"))
        .and(path("/refunds/hs_ref_1"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&api)
        .await;
    let (admin, ids, key) = sold(&app, "hyperswitch").await;
    let r: RefundOut = expect_json(ask_refund(&admin, &key, json!({})).await, 202).await;
    let refund_id = r.id;

    let tick = keymint::workers::reconciler::run_once(&app.state)
        .await
        .unwrap();
    assert_eq!((tick.settled, tick.left), (0, 1));
    assert_eq!(refund_status(&app, &refund_id).await, "pending");

    api_answers(
        &api,
        "GET",
        "/refunds/hs_ref_1",
        json!({"refund_id": "hs_ref_1", "status": "succeeded"}),
    )
    .await;
    let tick = keymint::workers::reconciler::run_once(&app.state)
        .await
        .unwrap();
    assert_eq!((tick.settled, tick.left), (1, 0));
    assert_eq!(refund_status(&app, &refund_id).await, "succeeded");
    assert_eq!(license_status(&admin, &key).await, "revoked");

    // Hyperswitch's own webhook arrives late: it changes nothing.
    let late = app
        .send(&refund("hyperswitch", &ids, now_secs(), true))
        .await;
    assert_eq!(late.status, "ok", "{late}");
    let detail = admin.license(&key).await;
    assert_eq!(detail.license.status, "revoked");
    let changes = detail
        .history
        .iter()
        .filter(|h| {
            h.to_status == "revoked" && h.from_status.map(|s| s.as_str()) != Some("revoked")
        })
        .count();
    assert_eq!(changes, 1, "{detail:?}");
    assert_eq!(refund_status(&app, &refund_id).await, "succeeded");
}

async fn an_orphan_refund_is_failed_and_the_license_restored(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    // The provider cannot be reached when the refund is requested.
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&api)
        .await;
    let (admin, _, key) = sold(&app, "stripe").await;
    let resp = ask_refund(&admin, &key, json!({"amount_cents": 1000})).await;
    let r: RefundOut = expect_json(resp, 202).await;
    assert_eq!(r.status, "pending");
    assert!(r.provider_refund_id.is_none());
    assert!(r.error.as_deref().unwrap().contains("503"), "{r:?}");
    assert_eq!(license_status(&admin, &key).await, "suspended");

    let tick = keymint::workers::reconciler::run_once(&app.state)
        .await
        .unwrap();
    assert_eq!(tick.orphans_failed, 1);
    assert_eq!(refund_status(&app, &r.id).await, "failed");
    assert_eq!(license_status(&admin, &key).await, "active");
    // A new refund may be asked for now.
    let again = ask_refund(&admin, &key, json!({})).await;
    assert_eq!(again.status(), 202);
}

async fn a_dispute_opened_during_a_pending_refund_still_holds_when_the_refund_fails(db: Db) {
    // Arrange: a refund held pending (the provider cannot be reached), then
    // the buyer's bank opens a chargeback.
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&api)
        .await;
    let admin = app.admin().await;
    let ids = Ids::new("stripe");
    let t = now_secs();
    let key = app.minted(&sale("stripe", &ids, t)).await;
    let resp = ask_refund(&admin, &key, json!({"amount_cents": 1000})).await;
    let r: RefundOut = expect_json(resp, 202).await;
    let opened = app
        .send(&dispute("stripe", &ids, t + 10, "opened").unwrap())
        .await;
    assert_eq!(opened.status, "ok", "{opened:?}");

    // Act: the reconciler fails the orphan refund.
    let tick = keymint::workers::reconciler::run_once(&app.state)
        .await
        .unwrap();

    // Assert: the refund failed, but the open dispute keeps the license
    // suspended; only its decision lifts it.
    assert_eq!(tick.orphans_failed, 1);
    assert_eq!(refund_status(&app, &r.id).await, "failed");
    assert_eq!(license_status(&admin, &key).await, "suspended");
    let won = app
        .send(&dispute("stripe", &ids, t + 20, "won").unwrap())
        .await;
    assert_eq!(won.status, "ok", "{won:?}");
    let detail = admin.license(&key).await;
    assert_eq!(detail.license.status, "active");
    assert_eq!(
        detail.actions(),
        [
            "minted",
            "refund_requested",
            "dispute_opened",
            "dispute_won"
        ]
    );
}

async fn the_reconciler_resolves_a_subscription_stuck_in_pending_payment(db: Db) {
    use crate::providers::{Moment, sub_step};
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    let admin = app.admin().await;
    let ids = Ids::new("stripe");
    let now = now_secs();
    // Checkout finished but the first payment has not (yet) gone through.
    let mut checkout = sub_step("stripe", &ids, Moment::Identity, now - 100, now, 0).unwrap();
    checkout.body = String::from_utf8(checkout.body)
        .unwrap()
        .replace("\"no_payment_required\"", "\"unpaid\"")
        .replace(
            "\"metadata\": {}",
            "\"metadata\": {\"keymint_product\": \"datatools-sub\"}",
        )
        .into_bytes();
    let r = app.send(&checkout).await;
    assert_eq!(r.status, "ok", "{r}");
    assert!(r.license_key.is_none());
    let (status, _) = sub_state(&admin, &ids.sub).await;
    assert_eq!(status, "pending_payment");

    // The webhook that would have activated it never came; Stripe says active.
    let period_end = now + 30 * 86_400;
    api_answers(&api, "GET", format!("/v1/subscriptions/{}", ids.sub), json!({
            "id": ids.sub, "object": "subscription", "status": "active",
            "customer": ids.customer, "cancel_at_period_end": false,
            "current_period_end": period_end, "trial_end": null, "livemode": false,
            "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_sub_monthly", "product": "prod_1"}}]}
        })).await;
    let tick = keymint::workers::reconciler::run_once(&app.state)
        .await
        .unwrap();
    assert_eq!(tick.settled, 1);
    let (status, license) = sub_state(&admin, &ids.sub).await;
    assert_eq!(status, "active");
    let license = license.expect("minted on reconciliation");
    assert_eq!(license.status, "active");
    assert_eq!(license.email, ids.email);

    // The late real webhook (created before the reconciler looked) is stale.
    let mut late = sub_step("stripe", &ids, Moment::Trial, now - 50, period_end, 0).unwrap();
    late.body = String::from_utf8(late.body)
        .unwrap()
        .replace("\"trialing\"", "\"incomplete\"")
        .into_bytes();
    let r = app.send(&late).await;
    assert_eq!(r.status, "ignored", "{r}");
    let (status, license) = sub_state(&admin, &ids.sub).await;
    assert_eq!(status, "active");
    assert_eq!(license.unwrap().status, "active");
}

/// The same flow from the command line: `keymint license refund` and
/// `keymint reconcile --once`.
async fn the_cli_refunds_and_reconciles(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = crate::helpers::spawn_app(db).await else {
        return;
    };
    api_answers(
        &api,
        "POST",
        "/v1/refunds",
        json!({"id": "re_cli", "status": "pending"}),
    )
    .await;
    api_answers(
        &api,
        "GET",
        "/v1/refunds/re_cli",
        json!({"id": "re_cli", "status": "succeeded"}),
    )
    .await;
    // The operator's config: the Stripe endpoint with API credentials.
    let config = app.config_replacing(
        r#"secrets = ["whsec_old_stripe_secret", "whsec_test_stripe_secret"]"#,
        &format!(
            "secrets = [\"whsec_old_stripe_secret\", \"whsec_test_stripe_secret\"]\napi_key = \"sk_test_cli\"\napi_url = \"{}\"",
            api.uri()
        ),
        "with-key.toml",
    );
    let cli =
        |args: &[&str]| keymint_cli(&config, args, &[("KEYMINT_RECONCILER__PENDING_AGE", "0s")]);
    let ids = Ids::new("stripe");
    let key = app.minted(&sale("stripe", &ids, now_secs())).await;
    let key = key.as_str();
    let out = cli(&["license", "refund", key, "--reason", "customer asked"]);
    assert!(out.status.success(), "{out:?}");
    let r: RefundOut = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.status, "pending");
    assert_eq!(r.provider_refund_id.as_deref(), Some("re_cli"));
    let again = cli(&["license", "refund", key]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already pending"));
    let out = cli(&["reconcile", "--once"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).starts_with("settled 1, orphans failed 0"),
        "{out:?}"
    );
    assert_eq!(refund_status(&app, &r.id).await, "succeeded");
    assert_eq!(
        app.admin().await.license(key).await.license.status,
        "revoked"
    );
}

async fn a_partial_refund_that_settles_an_operator_refund_is_recorded_as_one(db: Db) {
    // Arrange: an operator's partial refund holds the license.
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    api_answers(
        &api,
        "POST",
        "/v1/refunds",
        json!({"id": "re_part", "object": "refund", "status": "pending"}),
    )
    .await;
    let (admin, ids, key) = sold(&app, "stripe").await;
    let resp = ask_refund(&admin, &key, json!({"amount_cents": 1000})).await;
    let r: RefundOut = expect_json(resp, 202).await;
    assert_eq!(license_status(&admin, &key).await, "suspended");

    // Act: the provider's webhook reports the partial refund done.
    let settled = app.send(&refund("stripe", &ids, now_secs(), false)).await;

    // Assert: the refund succeeded, the license is back, and the history
    // says a partial refund did it (it once said `refund_failed`).
    assert_eq!(settled.status, "ok", "{settled}");
    assert_eq!(refund_status(&app, &r.id).await, "succeeded");
    let detail = admin.license(&key).await;
    assert_eq!(detail.license.status, "active");
    assert_eq!(
        detail.actions(),
        ["minted", "refund_requested", "partially_refunded"]
    );
    let last = &detail.history[2];
    assert_eq!(last.from_status.map(|s| s.as_str()), Some("suspended"));
    assert_eq!(last.to_status, "active");
}

both_databases!(
    the_cli_refunds_and_reconciles,
    the_reconciler_resolves_a_subscription_stuck_in_pending_payment,
    a_stripe_refund_is_pending_until_the_webhook_settles_it,
    refunds_without_api_credentials_answer_409,
    the_reconciler_settles_a_stuck_refund_and_the_late_webhook_is_a_no_op,
    an_orphan_refund_is_failed_and_the_license_restored,
    a_dispute_opened_during_a_pending_refund_still_holds_when_the_refund_fails,
    a_partial_refund_that_settles_an_operator_refund_is_recorded_as_one,
);
