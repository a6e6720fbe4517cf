//! keymint's checkout, black-box: `POST /v1/checkout` against fake Stripe
//! and Hyperswitch APIs (wiremock servers on loopback that record what
//! they received), the providers' signed webhooks settling the order, the
//! reconciler, the admin API and the CLI.

use crate::both_databases;
use crate::client::{expect_error, expect_json};
use crate::helpers::{Db, TestApp, spawn_app_with, spawn_app_with_api, stdout};
use crate::providers::{Ids, Step, now_secs, step};
use crate::views::{CheckoutErrorBody, CheckoutOut, OrderDetail, PortalOut};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod edges;
mod providers;
mod recovery;

const SUCCESS: &str = "https://shop.example.com/thanks?order={ORDER_ID}";
const CANCEL: &str = "https://shop.example.com/cancelled";

async fn app_with_api(db: Db, kind: &str, api: &MockServer) -> Option<TestApp> {
    spawn_app_with_api(db, kind, api, &[]).await
}

/// The fake Stripe creates Checkout Sessions `cs_test_<n>` in turn.
async fn stripe_creates_sessions(api: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(|req: &wiremock::Request| {
            let n = ulid::Ulid::generate();
            let _ = req;
            ResponseTemplate::new(200).set_body_json(json!({
                "id": format!("cs_test_{n}"),
                "object": "checkout.session",
                "url": format!("https://checkout.stripe.com/c/pay/cs_test_{n}"),
                "status": "open",
            }))
        })
        .mount(api)
        .await;
}

/// The fake Hyperswitch creates payments with a client secret.
async fn hyperswitch_creates_payments(api: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/payments"))
        .respond_with(|_: &wiremock::Request| {
            let n = ulid::Ulid::generate();
            ResponseTemplate::new(200).set_body_json(json!({
                "payment_id": format!("pay_{n}"),
                "client_secret": format!("pay_{n}_secret_{n}"),
                "status": "requires_payment_method",
            }))
        })
        .mount(api)
        .await;
}

async fn checkout(app: &TestApp, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = app.client.post(app.url("/v1/checkout")).json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.expect("checkout request sent")
}

async fn order(app: &TestApp, id: &str) -> CheckoutOut {
    expect_json(
        app.client
            .get(app.url(&format!("/v1/checkout/{id}")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await
}

/// Runs one reconciler pass.
async fn reconcile(app: &TestApp) -> keymint::workers::reconciler::Tick {
    keymint::workers::reconciler::run_once(&app.state)
        .await
        .expect("reconciler pass")
}

/// A new checkout of `datatools-core` for `email`, without a key.
async fn new_checkout(app: &TestApp, email: &str) -> CheckoutOut {
    expect_json(checkout(app, None, core_for(email)).await, 201).await
}

fn core_for(email: &str) -> Value {
    json!({"product": "datatools-core", "email": email, "success_url": SUCCESS, "cancel_url": CANCEL})
}

/// The form fields of a recorded request.
fn form(req: &wiremock::Request) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&req.body).expect("a form body")
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Stripe's `checkout.session.completed` for the session keymint created,
/// its metadata as keymint set it.
fn session_completed(ids: &Ids, session: &str, order_id: &str, product: &str) -> Step {
    let t = now_secs();
    step(
        "stripe",
        "checkout.session.completed",
        ids,
        vec![
            ("T", t.to_string()),
            ("T_ISO", crate::providers::iso(t)),
            ("SESSION", session.to_string()),
            ("MODE", "payment".into()),
            ("PAYMENT_STATUS", "paid".into()),
            ("PAYMENT_INTENT", format!("\"{}\"", ids.order)),
            ("SUBSCRIPTION", "null".into()),
            ("INVOICE", "null".into()),
            (
                "METADATA",
                json!({"keymint_order": order_id, "keymint_product": product}).to_string(),
            ),
        ],
    )
}

/// A signed delivery of `kind` with this JSON body.
fn raw_step(kind: &'static str, body: Value) -> Step {
    Step {
        kind,
        body: body.to_string().into_bytes(),
        msg_id: format!("msg_{}", ulid::Ulid::generate()),
    }
}

async fn a_stripe_checkout_goes_from_pending_to_a_minted_emailed_license(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    app.postmark_accepts().await;
    let ids = Ids::new("stripe");

    // The buyer clicks "Buy": an order, pending, with Stripe's page.
    let started: CheckoutOut = new_checkout(&app, &ids.email).await;
    assert_eq!(started.status.as_str(), "pending_payment");
    let url = started.url.clone().expect("a checkout url");
    assert!(url.starts_with("https://checkout.stripe.com/"), "{url}");
    let order_id = started.order_id.to_string();

    // Stripe was asked once, the order's id as the idempotency key and in
    // the metadata, for the catalog's price, with the redirect URLs.
    let calls = api.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].headers["idempotency-key"], order_id.as_str());
    assert_eq!(calls[0].headers["authorization"], "Bearer sk_test_keymint");
    let f = form(&calls[0]);
    assert_eq!(field(&f, "mode"), Some("payment"));
    assert_eq!(
        field(&f, "line_items[0][price]"),
        Some("price_core_onetime")
    );
    assert_eq!(
        field(&f, "metadata[keymint_order]"),
        Some(order_id.as_str())
    );
    assert_eq!(
        field(&f, "payment_intent_data[metadata][keymint_order]"),
        Some(order_id.as_str())
    );
    assert_eq!(field(&f, "customer_email"), Some(ids.email.as_str()));
    assert_eq!(
        field(&f, "success_url"),
        Some(format!("https://shop.example.com/thanks?order={order_id}").as_str())
    );
    assert_eq!(field(&f, "cancel_url"), Some(CANCEL));
    assert_eq!(field(&f, "subscription_data[trial_period_days]"), None);

    // Until the webhook, the order grants nothing and resumes as it was;
    // no cache keeps the answer.
    let raw = app
        .client
        .get(app.url(&format!("/v1/checkout/{order_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["cache-control"], "no-store");
    let pending = order(&app, &order_id).await;
    assert_eq!(pending.status.as_str(), "pending_payment");
    assert_eq!(pending.url.as_deref(), Some(url.as_str()));
    assert!(pending.license_key.is_none());
    assert_eq!(app.licenses_for(&ids.order).await, 0);

    // Stripe's webhook: the order is paid, one license minted and emailed.
    let session = url.rsplit('/').next().unwrap().to_string();
    let answer = app
        .send(&session_completed(
            &ids,
            &session,
            &order_id,
            "datatools-core",
        ))
        .await;
    assert_eq!(answer.status, "ok", "{answer}");
    let key = answer.license_key.clone().expect("a license");
    let paid = order(&app, &order_id).await;
    assert_eq!(paid.status.as_str(), "paid");
    assert_eq!(paid.license_key.as_ref(), Some(&key));
    assert!(paid.url.is_none(), "a paid order offers no checkout");
    assert_eq!(app.send_pending_emails().await, 1);
    let emails = app.sent_emails().await;
    assert_eq!(emails.len(), 1);
    assert!(
        emails[0]["TextBody"]
            .as_str()
            .unwrap()
            .contains(&key.to_string())
    );

    // Every step is in the order's history, the last one by the webhook.
    let admin = app.admin().await;
    let detail: OrderDetail = admin
        .get_json(&format!("/admin/v1/orders/{order_id}"))
        .await;
    let causes: Vec<&str> = detail.history.iter().map(|e| e.cause.as_str()).collect();
    assert_eq!(causes, ["created", "checkout_created", "paid"]);
    assert_eq!(detail.history[2].actor, "webhook:stripe");
    assert_eq!(
        detail.history[2].delivery_id.as_deref(),
        Some(answer.delivery_id.to_string().as_str())
    );
    assert_eq!(
        detail.order.license_key.as_deref(),
        Some(key.to_string().as_str())
    );
    assert_eq!(detail.order.provider_ref.as_deref(), Some(session.as_str()));

    // The same webhook again changes nothing.
    let again = app
        .send(&session_completed(
            &ids,
            &session,
            &order_id,
            "datatools-core",
        ))
        .await;
    assert_eq!(again.status, "duplicate", "{again}");
    assert_eq!(app.licenses_for(&ids.order).await, 1);
}

async fn twenty_concurrent_checkouts_with_one_key_make_one_order_and_one_call(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    // A slow provider, so the twenty requests overlap its one call.
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "cs_test_once", "url": "https://checkout.stripe.com/c/pay/cs_test_once"}))
                .set_delay(std::time::Duration::from_millis(300)),
        )
        .mount(&api)
        .await;
    let ids = Ids::new("stripe");
    let key = format!("buy-{}", ids.n);
    let answers = futures::future::join_all(
        (0..20).map(|_| checkout(&app, Some(&key), core_for(&ids.email))),
    )
    .await;
    let mut created = 0;
    let mut orders = std::collections::BTreeSet::new();
    for resp in answers {
        let status = resp.status().as_u16();
        let out: CheckoutOut = expect_json(resp, status).await;
        assert!(status == 200 || status == 201, "{status}");
        created += usize::from(status == 201);
        assert_eq!(
            out.url.as_deref(),
            Some("https://checkout.stripe.com/c/pay/cs_test_once")
        );
        orders.insert(out.order_id.to_string());
    }
    assert_eq!(created, 1, "one request created the order");
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(api.received_requests().await.unwrap().len(), 1);
    assert_eq!(app.count("orders", "product", "datatools-core").await, 1);

    // The same key for another request is refused, and calls nothing.
    let other = checkout(&app, Some(&key), core_for("someone-else@example.com")).await;
    expect_error(other, 409, "idempotency_key_reused").await;
    assert_eq!(api.received_requests().await.unwrap().len(), 1);
}

async fn a_retried_request_without_a_key_resumes_its_pending_order(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let ids = Ids::new("stripe");
    let first: CheckoutOut = new_checkout(&app, &ids.email).await;
    let again: CheckoutOut =
        expect_json(checkout(&app, None, core_for(&ids.email)).await, 200).await;
    assert_eq!(again.order_id, first.order_id);
    assert_eq!(again.url, first.url);
    // Another buyer is another order.
    let other: CheckoutOut = new_checkout(&app, "other@example.com").await;
    assert_ne!(other.order_id, first.order_id);
    assert_eq!(api.received_requests().await.unwrap().len(), 2);
}

async fn a_provider_error_leaves_a_failed_order_and_no_license(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"message": "an error occurred on Stripe's side"}})),
        )
        .mount(&api)
        .await;
    let ids = Ids::new("stripe");
    let resp = checkout(&app, Some("k-500"), core_for(&ids.email)).await;
    let err: CheckoutErrorBody = expect_json(resp, 502).await;
    assert_eq!(err.code, "provider_failed");
    // The buyer is told it failed, not what Stripe said.
    assert!(!err.error.contains("Stripe's side"), "{}", err.error);
    let id = err.order_id.expect("the failed order's id").to_string();
    let failed = order(&app, &id).await;
    assert_eq!(failed.status.as_str(), "failed");
    assert_eq!(
        failed.error.as_deref(),
        Some("the payment did not go through")
    );
    // The operator sees Stripe's answer.
    let detail = admin_order(&app, &id).await;
    let reason = detail.order.error.unwrap();
    assert!(
        reason.contains("500") && reason.contains("an error occurred on Stripe's side"),
        "{reason}"
    );
    // A 5xx is asked again (twice), with the same idempotency key.
    let calls = api.received_requests().await.unwrap();
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|c| c.headers["idempotency-key"] == id.as_str())
    );
    assert!(failed.url.is_none() && failed.license_key.is_none());
    assert_eq!(app.count("licenses", "email", &ids.email).await, 0);
    // The same key answers the same failed order, without a second call.
    let again: CheckoutOut = expect_json(
        checkout(&app, Some("k-500"), core_for(&ids.email)).await,
        200,
    )
    .await;
    assert_eq!(again.order_id.to_string(), id);
    assert_eq!(again.status.as_str(), "failed");
    assert_eq!(api.received_requests().await.unwrap().len(), 3);
}

/// An order as the admin API shows it, with its history.
async fn admin_order(app: &TestApp, id: &str) -> OrderDetail {
    app.admin()
        .await
        .get_json(&format!("/admin/v1/orders/{id}"))
        .await
}

async fn a_first_time_trial_is_given_once_per_buyer(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let sub =
        |email: &str| json!({"product": "datatools-sub", "email": email, "success_url": SUCCESS});
    let ids = Ids::new("stripe");
    let first: CheckoutOut =
        expect_json(checkout(&app, Some("t1"), sub(&ids.email)).await, 201).await;
    assert_eq!(first.trial_days, Some(14));
    // The same buyer again (another click, another key): no second trial.
    let second: CheckoutOut = expect_json(
        checkout(&app, Some("t2"), sub(&ids.email.to_uppercase())).await,
        201,
    )
    .await;
    assert_eq!(second.trial_days, None);
    assert_eq!(second.trial_withheld.as_deref(), Some("first_time"));
    // Another buyer gets one.
    let other: CheckoutOut = expect_json(
        checkout(&app, Some("t3"), sub("new@example.com")).await,
        201,
    )
    .await;
    assert_eq!(other.trial_days, Some(14));

    let calls = api.received_requests().await.unwrap();
    let trials: Vec<Option<String>> = calls
        .iter()
        .map(|c| field(&form(c), "subscription_data[trial_period_days]").map(str::to_string))
        .collect();
    assert_eq!(
        trials,
        [Some("14".to_string()), None, Some("14".to_string())]
    );
    for c in &calls {
        let f = form(c);
        assert_eq!(field(&f, "mode"), Some("subscription"));
        assert_eq!(field(&f, "line_items[0][price]"), Some("price_sub_monthly"));
        assert!(field(&f, "subscription_data[metadata][keymint_order]").is_some());
    }
}

async fn racing_checkouts_of_one_buyer_start_one_trial(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let body =
        json!({"product": "datatools-sub", "email": "racer@example.com", "success_url": SUCCESS});
    let answers = futures::future::join_all((0..8).map(|i| {
        let body = body.clone();
        let app = &app;
        async move { checkout(app, Some(&format!("race-{i}")), body).await }
    }))
    .await;
    let mut trials = 0;
    for resp in answers {
        let out: CheckoutOut = expect_json(resp, 201).await;
        trials += usize::from(out.trial_days.is_some());
    }
    assert_eq!(trials, 1);
}

async fn consent_is_required_checked_and_recorded(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "hyperswitch", &api).await else {
        return;
    };
    hyperswitch_creates_payments(&api).await;
    let pro = |consent: Value| json!({"product": "datatools-pro", "email": "c@example.com", "consent": consent});
    expect_error(
        checkout(&app, None, pro(Value::Null)).await,
        422,
        "consent_required",
    )
    .await;
    expect_error(
        checkout(
            &app,
            None,
            pro(json!({"accepted": false, "terms_version": "2026-05"})),
        )
        .await,
        422,
        "consent_required",
    )
    .await;
    let stale = expect_error(
        checkout(
            &app,
            None,
            pro(json!({"accepted": true, "terms_version": "2025-01"})),
        )
        .await,
        422,
        "consent_required",
    )
    .await;
    assert!(stale.error.contains("2026-05"), "{}", stale.error);
    assert!(api.received_requests().await.unwrap().is_empty());
    assert_eq!(app.count("orders", "product", "datatools-pro").await, 0);

    let before = now_secs();
    let ok: CheckoutOut = expect_json(
        checkout(
            &app,
            None,
            pro(json!({"accepted": true, "terms_version": "2026-05"})),
        )
        .await,
        201,
    )
    .await;
    assert!(ok.client_secret.is_some());
    let admin = app.admin().await;
    let detail: OrderDetail = admin
        .get_json(&format!("/admin/v1/orders/{}", ok.order_id))
        .await;
    let consent = detail.order.consent.expect("the consent is recorded");
    assert_eq!(consent.terms_version, "2026-05");
    assert_eq!(consent.ip.as_deref(), Some("127.0.0.1"));
    let at = time::OffsetDateTime::parse(
        &consent.accepted_at,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(at >= before, "{at} < {before}");
}

async fn a_hyperswitch_payment_resumes_then_completes_by_webhook(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "hyperswitch", &api).await else {
        return;
    };
    hyperswitch_creates_payments(&api).await;
    let body = json!({"product": "datatools-pro", "email": "hs@example.com",
        "success_url": "https://shop.example.com/done",
        "consent": {"accepted": true, "terms_version": "2026-05"}});
    let started: CheckoutOut = expect_json(checkout(&app, Some("hs-1"), body).await, 201).await;
    let secret = started.client_secret.clone().expect("a client secret");
    assert!(started.url.is_none());
    let call = &api.received_requests().await.unwrap()[0];
    assert_eq!(
        call.headers["idempotency-key"],
        started.order_id.to_string().as_str()
    );
    assert_eq!(call.headers["api-key"], "sk_test_keymint");
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["amount"], 4900);
    assert_eq!(sent["currency"], "USD");
    assert_eq!(
        sent["metadata"]["keymint_order"],
        started.order_id.to_string()
    );
    assert_eq!(sent["return_url"], "https://shop.example.com/done");

    // The buyer's page stalled: the same client secret resumes it.
    let resumed = order(&app, started.order_id.as_str()).await;
    assert_eq!(resumed.client_secret.as_deref(), Some(secret.as_str()));

    // Hyperswitch's webhook completes it.
    let payment = secret.split("_secret_").next().unwrap().to_string();
    let mut ids = Ids::new("hyperswitch");
    ids.order = payment;
    let t = now_secs();
    let paid = step(
        "hyperswitch",
        "payment",
        &ids,
        vec![
            ("T", t.to_string()),
            ("T_ISO", crate::providers::iso(t)),
            ("TYPE", "payment_succeeded".into()),
            ("PAYMENT_STATUS", "succeeded".into()),
            (
                "METADATA",
                json!({"keymint_order": started.order_id, "keymint_product": "datatools-pro"})
                    .to_string(),
            ),
        ],
    );
    let answer = app.send(&paid).await;
    assert_eq!(answer.status, "ok", "{answer}");
    let done = order(&app, started.order_id.as_str()).await;
    assert_eq!(done.status.as_str(), "paid");
    assert_eq!(done.license_key, answer.license_key);
    assert!(done.client_secret.is_none());
    // Emailed, and every step in the history.
    app.postmark_accepts().await;
    assert_eq!(app.send_pending_emails().await, 1);
    let key = done.license_key.unwrap().to_string();
    assert!(
        app.sent_emails().await[0]["TextBody"]
            .as_str()
            .unwrap()
            .contains(&key)
    );
    let admin = app.admin().await;
    let detail: OrderDetail = admin
        .get_json(&format!("/admin/v1/orders/{}", started.order_id))
        .await;
    let causes: Vec<&str> = detail.history.iter().map(|e| e.cause.as_str()).collect();
    assert_eq!(causes, ["created", "checkout_created", "paid"]);
    assert_eq!(detail.history[2].actor, "webhook:hyperswitch");
}

/// Moves an order's creation `secs` into the past (what a day's wait
/// would do).
async fn age_order(app: &TestApp, id: &str, secs: i64) {
    let mut conn = app.state.store.conn().await.unwrap();
    sqlx::query(
        "UPDATE orders SET created_at = created_at - $2, updated_at = updated_at - $2 WHERE id = $1",
    )
    .bind(id)
    .bind(secs * 1000)
    .execute(&mut *conn)
    .await
    .unwrap();
}

both_databases!(
    a_stripe_checkout_goes_from_pending_to_a_minted_emailed_license,
    twenty_concurrent_checkouts_with_one_key_make_one_order_and_one_call,
    a_retried_request_without_a_key_resumes_its_pending_order,
    a_provider_error_leaves_a_failed_order_and_no_license,
    a_first_time_trial_is_given_once_per_buyer,
    racing_checkouts_of_one_buyer_start_one_trial,
    consent_is_required_checked_and_recorded,
    a_hyperswitch_payment_resumes_then_completes_by_webhook,
);
