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

async fn a_late_payment_of_an_expired_trial_checkout_still_pays_it(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let ids = Ids::new("stripe");
    let body = json!({"product": "datatools-sub", "email": ids.email, "success_url": SUCCESS});
    let first: CheckoutOut =
        expect_json(checkout(&app, Some("late-1"), body.clone()).await, 201).await;
    assert_eq!(first.trial_days, Some(14));
    // Stripe expires it unpaid; the buyer's next checkout has the trial.
    let session = |o: &CheckoutOut| {
        o.url
            .as_deref()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()
    };
    let expired = raw_step(
        "stripe",
        json!({
            "id": format!("evt_{}", ulid::Ulid::generate()), "object": "event",
            "type": "checkout.session.expired", "created": now_secs(), "livemode": false,
            "data": {"object": {"id": session(&first), "object": "checkout.session",
                "status": "expired", "payment_status": "unpaid",
                "metadata": {"keymint_order": first.order_id, "keymint_product": "datatools-sub"}}},
        }),
    );
    assert_eq!(app.send(&expired).await.status, "ok");
    let second: CheckoutOut = expect_json(checkout(&app, Some("late-2"), body).await, 201).await;
    assert_eq!(second.trial_days, Some(14));
    // Then the first one's payment arrives after all: the webhook is
    // applied (a license, the first order paid), not failed on the
    // trial's hold.
    let mut paid = crate::providers::sub_step(
        "stripe",
        &ids,
        crate::providers::Moment::Identity,
        now_secs(),
        now_secs() + 30 * 86_400,
        0,
    )
    .unwrap();
    paid.body = String::from_utf8(paid.body)
        .unwrap()
        .replace(
            "\"metadata\": {}",
            &format!(
                "\"metadata\": {{\"keymint_order\": \"{}\", \"keymint_product\": \"datatools-sub\"}}",
                first.order_id
            ),
        )
        .into_bytes();
    let answer = app.send(&paid).await;
    assert_eq!(answer.status, "ok", "{answer}");
    assert_eq!(
        order(&app, first.order_id.as_str()).await.status.as_str(),
        "paid"
    );
    assert_eq!(
        order(&app, second.order_id.as_str()).await.status.as_str(),
        "pending_payment"
    );
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

async fn failed_and_expired_checkouts_end_their_orders(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let ids = Ids::new("stripe");
    let a: CheckoutOut =
        expect_json(checkout(&app, Some("e1"), core_for(&ids.email)).await, 201).await;
    let b: CheckoutOut =
        expect_json(checkout(&app, Some("e2"), core_for(&ids.email)).await, 201).await;
    let event = |kind: &str, order: &CheckoutOut| {
        raw_step(
            "stripe",
            json!({
                "id": format!("evt_{}", ulid::Ulid::generate()), "object": "event", "type": kind,
                "created": now_secs(), "livemode": false,
                "data": {"object": {
                    "id": order.url.as_ref().unwrap().rsplit('/').next().unwrap(),
                    "object": "checkout.session", "status": "expired", "payment_status": "unpaid",
                    "metadata": {"keymint_order": order.order_id, "keymint_product": "datatools-core"},
                }},
            }),
        )
    };
    let expired = app.send(&event("checkout.session.expired", &a)).await;
    assert_eq!(expired.status, "ok", "{expired}");
    let failed = app
        .send(&event("checkout.session.async_payment_failed", &b))
        .await;
    assert_eq!(failed.status, "ok", "{failed}");
    let a = order(&app, a.order_id.as_str()).await;
    assert_eq!(a.status.as_str(), "expired");
    assert!(a.url.is_none());
    let b_now = order(&app, b.order_id.as_str()).await;
    assert_eq!(b_now.status.as_str(), "failed");
    assert_eq!(
        b_now.error.as_deref(),
        Some("the payment did not go through")
    );
    let reason = admin_order(&app, b.order_id.as_str())
        .await
        .order
        .error
        .unwrap();
    assert!(reason.contains("failed"), "{reason}");
    // An expiry after the end changes nothing.
    let late = app.send(&event("checkout.session.expired", &b)).await;
    assert_eq!(late.status, "ignored", "{late}");
    assert_eq!(
        order(&app, b.order_id.as_str()).await.status.as_str(),
        "failed"
    );
}

async fn the_reconciler_settles_a_stuck_order_and_the_late_webhook_changes_nothing(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let ids = Ids::new("stripe");
    let started: CheckoutOut = new_checkout(&app, &ids.email).await;
    let order_id = started.order_id.to_string();
    let session = started.url.unwrap().rsplit('/').next().unwrap().to_string();
    // Stripe says the session was paid; its webhook never came.
    Mock::given(method("GET"))
        .and(path(format!("/v1/checkout/sessions/{session}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": session, "object": "checkout.session", "status": "complete",
            "payment_status": "paid", "mode": "payment", "payment_intent": ids.order,
            "amount_total": 4900, "currency": "usd", "customer": ids.customer,
            "customer_details": {"email": ids.email, "name": "Jenny Rosen"},
            "metadata": {"keymint_order": order_id, "keymint_product": "datatools-core"},
        })))
        .mount(&api)
        .await;
    let tick = reconcile(&app).await;
    assert_eq!(tick.settled, 1, "{tick:?}");
    let paid = order(&app, &order_id).await;
    assert_eq!(paid.status.as_str(), "paid");
    let key = paid.license_key.expect("a license");
    let admin = app.admin().await;
    let detail: OrderDetail = admin
        .get_json(&format!("/admin/v1/orders/{order_id}"))
        .await;
    assert_eq!(detail.history.last().unwrap().actor, "reconciler");

    // The real webhook, late: the same license, nothing new.
    let late = app
        .send(&session_completed(
            &ids,
            &session,
            &order_id,
            "datatools-core",
        ))
        .await;
    assert_eq!(late.status, "duplicate", "{late}");
    assert_eq!(late.license_key.as_ref(), Some(&key));
    assert_eq!(app.licenses_for(&ids.order).await, 1);
    let after: OrderDetail = admin
        .get_json(&format!("/admin/v1/orders/{order_id}"))
        .await;
    assert_eq!(after.history.len(), detail.history.len());
    // A second tick finds nothing pending.
    let tick = reconcile(&app).await;
    assert_eq!(tick.settled, 0, "{tick:?}");
}

async fn redirects_off_the_allowed_hosts_are_refused(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    for url in [
        "https://evil.example.net/phish",
        "http://shop.example.com/thanks",
        "javascript:alert(1)",
        "https://user:pw@shop.example.com/",
        "https://shop.example.com.evil.net/",
        "https://example.org/",
    ] {
        let body =
            json!({"product": "datatools-core", "email": "r@example.com", "success_url": url});
        let resp = checkout(&app, None, body).await;
        let status = resp.status().as_u16();
        let err: crate::views::ErrorBody = expect_json(resp, status).await;
        assert!(
            (status == 422 && err.code == "redirect_not_allowed")
                || (status == 400 && err.code == "bad_request"),
            "{url}: {status} {err:?}"
        );
    }
    let cancel = json!({"product": "datatools-core", "success_url": SUCCESS, "cancel_url": "https://evil.example.net/"});
    expect_error(
        checkout(&app, None, cancel).await,
        422,
        "redirect_not_allowed",
    )
    .await;
    // A subdomain of a `*.` entry is allowed.
    let sub = json!({"product": "datatools-core", "success_url": "https://buy.example.org/ok"});
    expect_json::<CheckoutOut>(checkout(&app, None, sub).await, 201).await;
    assert_eq!(api.received_requests().await.unwrap().len(), 1);
}

async fn a_product_without_a_configured_provider_is_refused(db: Db) {
    // No API key on the stripe endpoint.
    let Some(app) = spawn_app_with(db, &[]).await else {
        return;
    };
    let err = expect_error(
        checkout(&app, None, core_for("n@example.com")).await,
        409,
        "checkout_not_configured",
    )
    .await;
    assert!(err.error.contains("api_key"), "{}", err.error);
    expect_error(
        checkout(
            &app,
            None,
            json!({"product": "no-such-product", "success_url": SUCCESS}),
        )
        .await,
        404,
        "product_not_found",
    )
    .await;
    expect_error(
        checkout(
            &app,
            None,
            json!({"product": "datatools-core", "email": "not an email"}),
        )
        .await,
        422,
        "invalid_email",
    )
    .await;
    expect_error(
        checkout(
            &app,
            None,
            json!({"product": "datatools-core", "surprise": 1}),
        )
        .await,
        422,
        "unprocessable",
    )
    .await;
    // Only JSON: a text/plain body (which a page on any site could send
    // without a CORS preflight) is refused.
    for content_type in [Some("text/plain"), None] {
        let mut req = app
            .client
            .post(app.url("/v1/checkout"))
            .body(core_for("n@example.com").to_string());
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        expect_error(req.send().await.unwrap(), 415, "unsupported_media_type").await;
    }
    // Two Idempotency-Key headers are one too many.
    let two = app
        .client
        .post(app.url("/v1/checkout"))
        .header("idempotency-key", "x1")
        .header("idempotency-key", "x2")
        .json(&core_for("n@example.com"))
        .send()
        .await
        .unwrap();
    expect_error(two, 400, "bad_request").await;
    // A control character in the product is named as such.
    expect_error(
        checkout(&app, None, json!({"product": "datatools-core\u{0}"})).await,
        422,
        "control_character",
    )
    .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM orders WHERE id <> $1", "")
            .await,
        0
    );
    // An order id that does not exist, or is not one.
    for id in ["ord_01JZZZZZZZZZZZZZZZZZZZZZZZ", "lic_01J", "..%2F"] {
        let resp = app
            .client
            .get(app.url(&format!("/v1/checkout/{id}")))
            .send()
            .await
            .unwrap();
        expect_error(resp, 404, "order_not_found").await;
    }
}

/// The headers a cross-origin page may read from a checkout answer.
async fn get_exposed(app: &TestApp) -> String {
    let resp = app
        .client
        .get(app.url("/v1/checkout/ord_01JZZZZZZZZZZZZZZZZZZZZZZZ"))
        .header("Origin", "https://shop.example.com")
        .send()
        .await
        .unwrap();
    resp.headers()
        .get("access-control-expose-headers")
        .map(|v| v.to_str().unwrap().to_lowercase())
        .unwrap_or_default()
}

async fn a_seller_page_on_an_allowed_host_may_call_checkout_across_origins(db: Db) {
    let Some(app) = spawn_app_with(db, &[]).await else {
        return;
    };
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/checkout"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,idempotency-key",
            )
            .send()
    };
    let ok = preflight("https://shop.example.com").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let exposed = get_exposed(&app).await;
    assert!(exposed.contains("retry-after"), "{exposed}");
    let allowed = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
    // The thanks page's plain GET is answered for its origin too.
    let get = app
        .client
        .get(app.url("/v1/checkout/ord_01JZZZZZZZZZZZZZZZZZZZZZZZ"))
        .header("Origin", "https://buy.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(
        get.headers()["access-control-allow-origin"],
        "https://buy.example.org"
    );
    let evil = preflight("https://evil.example.net").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    // The admin API answers no other origin.
    let admin = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/admin/v1/licenses"))
        .header("Origin", "https://shop.example.com")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(admin.headers().get("access-control-allow-origin").is_none());
}

async fn the_billing_portal_opens_for_a_stripe_subscription(db: Db) {
    use crate::providers::{Moment, sub_step};
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/billing_portal/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "bps_1", "url": "https://billing.stripe.com/p/session/bps_1"}),
        ))
        .mount(&api)
        .await;
    let ids = Ids::new("stripe");
    let t = now_secs();
    // A trial started through a Stripe Checkout of the subscription.
    let mut started = sub_step("stripe", &ids, Moment::Identity, t, t + 30 * 86_400, 0).unwrap();
    started.body = String::from_utf8(started.body)
        .unwrap()
        .replace(
            "\"metadata\": {}",
            "\"metadata\": {\"keymint_product\": \"datatools-sub\"}",
        )
        .into_bytes();
    let key = app.minted(&started).await;
    let portal = |key: String, body: Value| {
        app.client
            .post(app.url(&format!("/v1/licenses/{key}/billing-portal")))
            .json(&body)
            .send()
    };
    let out: PortalOut = expect_json(
        portal(
            key.to_string(),
            json!({"return_url": "https://shop.example.com/account"}),
        )
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(out.url, "https://billing.stripe.com/p/session/bps_1");
    let calls = api.received_requests().await.unwrap();
    let f = form(calls.last().unwrap());
    assert_eq!(field(&f, "customer"), Some(ids.customer.as_str()));
    assert_eq!(
        field(&f, "return_url"),
        Some("https://shop.example.com/account")
    );
    // An unknown key, and a return URL off the allowed hosts.
    let unknown = portal("DT1-SUB-AAAAA-AAAAA-AAAAA-AAAAA".into(), json!({}))
        .await
        .unwrap();
    expect_error(unknown, 404, "license_not_found").await;
    let evil = portal(
        key.to_string(),
        json!({"return_url": "https://evil.example.net/"}),
    )
    .await
    .unwrap();
    expect_error(evil, 422, "redirect_not_allowed").await;
    // A license of a provider without a billing portal.
    let gumroad = app
        .gumroad_sale(&crate::helpers::sale_form(&format!("g{}", ids.n)))
        .await;
    let none = portal(gumroad.to_string(), json!({})).await.unwrap();
    expect_error(none, 409, "billing_portal_not_available").await;
}

async fn the_cli_lists_and_shows_orders(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let ids = Ids::new("stripe");
    let started: CheckoutOut = new_checkout(&app, &ids.email).await;
    let id = started.order_id.to_string();
    let list = app.cli(&["orders", "list", "--status", "pending_payment"]);
    assert!(list.status.success(), "{}", crate::helpers::stderr(&list));
    let text = stdout(&list);
    assert!(text.contains(&id) && text.contains(&ids.email), "{text}");
    let none = app.cli(&["orders", "list", "--status", "paid"]);
    assert!(!stdout(&none).contains(&id));
    let show = app.cli(&["orders", "show", &id]);
    assert!(show.status.success());
    let detail: OrderDetail = serde_json::from_str(&stdout(&show)).unwrap();
    assert_eq!(detail.order.id.to_string(), id);
    assert_eq!(detail.history.len(), 2);
    let bad = app.cli(&["orders", "list", "--status", "paidd"]);
    assert!(!bad.status.success());
    // The admin API lists it by status too.
    let admin = app.admin().await;
    let page: crate::views::OrderPage = admin
        .get_json("/admin/v1/orders?status=pending_payment")
        .await;
    assert!(page.orders.iter().any(|o| o.id.to_string() == id));
    let empty: crate::views::OrderPage = admin.get_json("/admin/v1/orders?status=expired").await;
    assert!(empty.orders.is_empty());
}

/// An app whose `datatools-core` is sold through the `kind` endpoint's
/// checkout.
async fn app_selling_through(
    db: Db,
    kind: &str,
    api: &MockServer,
    extra: &[(&str, &str)],
) -> Option<TestApp> {
    let mut env = vec![("KEYMINT_PRODUCTS__DATATOOLS_CORE__CHECKOUT__ENDPOINT", kind)];
    env.extend_from_slice(extra);
    spawn_app_with_api(db, kind, api, &env).await
}

/// `sale(kind)` for a checkout keymint started: the provider carries the
/// order in the metadata (custom data) keymint gave the checkout.
fn paid_for(kind: &'static str, ids: &Ids, order_id: &str) -> Step {
    let mut paid = crate::providers::sale(kind, ids, now_secs());
    let body = String::from_utf8(paid.body).unwrap();
    let body = match kind {
        "polar" => body.replacen(
            "\"metadata\": {},",
            &format!("\"metadata\": {{\"keymint_order\": \"{order_id}\"}},"),
            1,
        ),
        "paddle" => body.replace(
            &format!("{{\"email\": \"{}\"}}", ids.email),
            &format!(
                "{{\"email\": \"{}\", \"keymint_order\": \"{order_id}\"}}",
                ids.email
            ),
        ),
        _ => body.replace(
            "\"custom_data\": { \"customer_id\": 25 }",
            &format!("\"custom_data\": {{\"keymint_order\": \"{order_id}\"}}"),
        ),
    };
    assert!(
        body.contains(order_id),
        "{kind}: the fixture changed: {body}"
    );
    paid.body = body.into_bytes();
    paid
}

async fn a_polar_checkout_completes_by_webhook_or_by_the_reconciler(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_selling_through(db, "polar", &api, &[]).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/checkouts/"))
        .respond_with(|_: &wiremock::Request| {
            let id = uuid_like();
            ResponseTemplate::new(201).set_body_json(json!({
                "id": id, "status": "open", "client_secret": "polar_c_x",
                "url": format!("https://buy.polar.sh/polar_c_{id}"),
            }))
        })
        .mount(&api)
        .await;
    let ids = Ids::new("polar");
    let started: CheckoutOut = new_checkout(&app, &ids.email).await;
    assert!(
        started
            .url
            .as_deref()
            .unwrap()
            .starts_with("https://buy.polar.sh/")
    );
    let call = &api.received_requests().await.unwrap()[0];
    assert_eq!(call.headers["authorization"], "Bearer sk_test_keymint");
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["products"], json!([crate::helpers::POLAR_CORE]));
    assert_eq!(
        sent["metadata"]["keymint_order"],
        started.order_id.to_string()
    );
    assert_eq!(sent["customer_email"], ids.email);
    assert_eq!(sent["return_url"], CANCEL);

    // Polar's order.paid names the order in the metadata it copied.
    let answer = app
        .send(&paid_for("polar", &ids, started.order_id.as_str()))
        .await;
    assert_eq!(answer.status, "ok", "{answer}");
    let paid = order(&app, started.order_id.as_str()).await;
    assert_eq!(paid.status.as_str(), "paid");
    assert_eq!(paid.license_key, answer.license_key);

    // Another order's webhook is lost; the reconciler reads the checkout,
    // then the order it made.
    let other = Ids::new("polar");
    let second: CheckoutOut = new_checkout(&app, &other.email).await;
    let checkout_id = api.received_requests().await.unwrap().len();
    assert_eq!(checkout_id, 2);
    let polar_id = second
        .url
        .as_deref()
        .unwrap()
        .rsplit("polar_c_")
        .next()
        .unwrap()
        .to_string();
    let order_object: Value =
        serde_json::from_slice(&paid_for("polar", &other, second.order_id.as_str()).body).unwrap();
    Mock::given(method("GET"))
        .and(path(format!("/v1/checkouts/{polar_id}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": polar_id, "status": "succeeded"})),
        )
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/orders/"))
        .and(wiremock::matchers::query_param(
            "checkout_id",
            polar_id.as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"items": [order_object["data"]]})),
        )
        .mount(&api)
        .await;
    let tick = reconcile(&app).await;
    assert_eq!(tick.settled, 1, "{tick:?}");
    let settled = order(&app, second.order_id.as_str()).await;
    assert_eq!(settled.status.as_str(), "paid");
    assert!(settled.license_key.is_some());
    assert_eq!(app.licenses_for(&other.order).await, 1);
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

/// A UUID-shaped id, as Polar gives.
fn uuid_like() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

async fn a_paddle_checkout_completes_by_webhook_and_a_canceled_one_fails(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_selling_through(db, "paddle", &api, &[]).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/transactions"))
        .respond_with(|_: &wiremock::Request| {
            let id = format!("txn_{}", ulid::Ulid::generate());
            ResponseTemplate::new(201).set_body_json(json!({"data": {
                "id": id, "status": "draft",
                "checkout": {"url": format!("https://shop.example.com/pay?_ptxn={id}")},
            }, "meta": {"request_id": "r"}}))
        })
        .mount(&api)
        .await;
    let ids = Ids::new("paddle");
    let started: CheckoutOut = new_checkout(&app, &ids.email).await;
    let url = started.url.clone().unwrap();
    assert!(
        url.starts_with("https://shop.example.com/pay?_ptxn=txn_"),
        "{url}"
    );
    let sent: Value =
        serde_json::from_slice(&api.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        sent["items"],
        json!([{"price_id": "pri_core_onetime", "quantity": 1}])
    );
    assert_eq!(
        sent["custom_data"]["keymint_order"],
        started.order_id.to_string()
    );
    assert_eq!(sent["custom_data"]["email"], ids.email);

    let answer = app
        .send(&paid_for("paddle", &ids, started.order_id.as_str()))
        .await;
    assert_eq!(answer.status, "ok", "{answer}");
    assert_eq!(
        order(&app, started.order_id.as_str()).await.status.as_str(),
        "paid"
    );

    // A second checkout's transaction is canceled; the reconciler reads it.
    let second: CheckoutOut = new_checkout(&app, "second@example.com").await;
    let txn = second
        .url
        .as_deref()
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .to_string();
    Mock::given(method("GET"))
        .and(path(format!("/transactions/{txn}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"id": txn, "status": "canceled"}})),
        )
        .mount(&api)
        .await;
    let tick = reconcile(&app).await;
    assert_eq!(tick.settled, 1, "{tick:?}");
    let failed = order(&app, second.order_id.as_str()).await;
    assert_eq!(failed.status.as_str(), "failed");
    assert!(failed.error.is_some());
    let reason = admin_order(&app, second.order_id.as_str())
        .await
        .order
        .error
        .unwrap();
    assert!(reason.contains("canceled"), "{reason}");
}

async fn a_lemon_squeezy_checkout_completes_by_webhook_and_an_unpaid_one_expires(db: Db) {
    let api = MockServer::start().await;
    let extra = [("KEYMINT_ENDPOINTS__LEMONSQUEEZY__STORE_ID", "7")];
    let Some(app) = app_selling_through(db, "lemonsqueezy", &api, &extra).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/checkouts"))
        .respond_with(|_: &wiremock::Request| {
            let id = uuid_like();
            ResponseTemplate::new(201).set_body_json(json!({"data": {
                "type": "checkouts", "id": id,
                "attributes": {"url": format!("https://store.lemonsqueezy.com/checkout/custom/{id}?signature=s")},
            }}))
        })
        .mount(&api)
        .await;
    let ids = Ids::new("lemonsqueezy");
    let before = now_secs();
    let started: CheckoutOut = new_checkout(&app, &ids.email).await;
    let call = &api.received_requests().await.unwrap()[0];
    assert_eq!(call.headers["content-type"], "application/vnd.api+json");
    assert_eq!(call.headers["accept"], "application/vnd.api+json");
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    let d = &sent["data"];
    assert_eq!(d["type"], "checkouts");
    assert_eq!(
        d["relationships"]["store"]["data"],
        json!({"type": "stores", "id": "7"})
    );
    assert_eq!(
        d["relationships"]["variant"]["data"],
        json!({"type": "variants", "id": "101"})
    );
    assert_eq!(d["attributes"]["checkout_data"]["email"], ids.email);
    assert_eq!(
        d["attributes"]["checkout_data"]["custom"]["keymint_order"],
        started.order_id.to_string()
    );
    let expires = time::OffsetDateTime::parse(
        d["attributes"]["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(expires >= before, "{expires} < {before}");

    let answer = app
        .send(&paid_for("lemonsqueezy", &ids, started.order_id.as_str()))
        .await;
    assert_eq!(answer.status, "ok", "{answer}");
    assert_eq!(
        order(&app, started.order_id.as_str()).await.status.as_str(),
        "paid"
    );

    // Lemon Squeezy says nothing of an unpaid checkout: past
    // checkout.expire_after (24 hours) the reconciler expires it. The
    // order is made 25 hours old rather than waited for.
    let second: CheckoutOut = new_checkout(&app, "late@example.com").await;
    let fresh = reconcile(&app).await;
    assert_eq!(fresh.settled, 0, "a fresh order is left alone: {fresh:?}");
    age_order(&app, second.order_id.as_str(), 25 * 3600).await;
    let tick = reconcile(&app).await;
    assert_eq!(tick.settled, 1, "{tick:?}");
    let expired = order(&app, second.order_id.as_str()).await;
    assert_eq!(expired.status.as_str(), "expired");
    assert_eq!(
        expired.error.as_deref(),
        Some("the checkout closed before it was paid")
    );
    let reason = admin_order(&app, second.order_id.as_str())
        .await
        .order
        .error
        .unwrap();
    assert!(reason.contains("expire_after"), "{reason}");
    assert!(expired.url.is_none());
}

async fn checkout_starts_are_limited_per_address_but_status_polls_are_not(db: Db) {
    let api = MockServer::start().await;
    let extra = [
        ("KEYMINT_CHECKOUT__PER_MINUTE", "2"),
        ("KEYMINT_CHECKOUT__NOT_FOUND_PER_MINUTE", "3"),
    ];
    let Some(app) = spawn_app_with_api(db, "stripe", &api, &extra).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let first: CheckoutOut = new_checkout(&app, "a@example.com").await;
    expect_json::<CheckoutOut>(checkout(&app, None, core_for("b@example.com")).await, 201).await;
    let third = checkout(&app, None, core_for("c@example.com")).await;
    assert!(third.headers().contains_key("retry-after"));
    expect_error(third, 429, "rate_limited").await;
    assert_eq!(api.received_requests().await.unwrap().len(), 2);
    // A thanks page polling its order is not held to the checkout budget.
    for _ in 0..20 {
        assert_eq!(
            order(&app, first.order_id.as_str()).await.status.as_str(),
            "pending_payment"
        );
    }
    // Guessing order ids is: three misses spend the budget, and then
    // every read from that address waits, a real order's too.
    let guess = |n: u32| {
        app.client
            .get(app.url(&format!("/v1/checkout/ord_01JZZZZZZZZZZZZZZZZZZZZZ{n:02}")))
            .send()
    };
    for n in 0..3 {
        expect_error(guess(n).await.unwrap(), 404, "order_not_found").await;
    }
    expect_error(guess(3).await.unwrap(), 429, "rate_limited").await;
    let real = app
        .client
        .get(app.url(&format!("/v1/checkout/{}", first.order_id)))
        .send()
        .await
        .unwrap();
    expect_error(real, 429, "rate_limited").await;
}

/// What a process that stopped between committing an order and recording
/// the provider's answer leaves: no provider reference, `secs` old.
async fn leave_mid_call(app: &TestApp, id: &str, secs: i64) {
    age_order(app, id, secs).await;
    let mut conn = app.state.store.conn().await.unwrap();
    sqlx::query("UPDATE orders SET provider_ref = NULL, checkout_url = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn an_order_left_mid_call_is_asked_of_the_provider_again(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = spawn_app_with_api(
        db,
        "stripe",
        &api,
        &[("KEYMINT_RECONCILER__ORPHAN_AGE", "0s")],
    )
    .await
    else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let first: CheckoutOut = expect_json(
        checkout(&app, Some("mid-1"), core_for("mid@example.com")).await,
        201,
    )
    .await;
    leave_mid_call(&app, first.order_id.as_str(), 60).await;
    // The buyer retries with the same key: keymint asks Stripe again, with
    // the same idempotency key (Stripe answers the session it made).
    let again: CheckoutOut = expect_json(
        checkout(&app, Some("mid-1"), core_for("mid@example.com")).await,
        200,
    )
    .await;
    assert_eq!(again.order_id, first.order_id);
    assert!(again.url.is_some());
    let calls = api.received_requests().await.unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].headers["idempotency-key"], first.order_id.as_str());

    // Nobody retries the second: the reconciler asks again.
    let second: CheckoutOut = new_checkout(&app, "mid2@example.com").await;
    leave_mid_call(&app, second.order_id.as_str(), 60).await;
    let tick = reconcile(&app).await;
    assert_eq!(tick.redriven, 1, "{tick:?}");
    let now = order(&app, second.order_id.as_str()).await;
    assert_eq!(now.status.as_str(), "pending_payment");
    assert!(now.url.is_some());
    let causes: Vec<String> = admin_order(&app, second.order_id.as_str())
        .await
        .history
        .into_iter()
        .map(|e| e.cause)
        .collect();
    assert_eq!(causes, ["created", "checkout_created", "checkout_created"]);
}

async fn an_event_for_another_product_does_not_pay_the_order(db: Db) {
    let api = MockServer::start().await;
    let Some(app) = app_with_api(db, "stripe", &api).await else {
        return;
    };
    stripe_creates_sessions(&api).await;
    let ids = Ids::new("stripe");
    let started: CheckoutOut = new_checkout(&app, &ids.email).await;
    let session = started
        .url
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let answer = app
        .send(&session_completed(
            &ids,
            &session,
            started.order_id.as_str(),
            "datatools-pro",
        ))
        .await;
    // The event licensed what it names; the order is left pending and
    // records the conflict.
    assert_eq!(answer.status, "ok", "{answer}");
    let still = order(&app, started.order_id.as_str()).await;
    assert_eq!(still.status.as_str(), "pending_payment");
    assert!(still.license_key.is_none());
    let last = admin_order(&app, started.order_id.as_str())
        .await
        .history
        .pop()
        .unwrap();
    assert_eq!(last.cause, "product_mismatch");
    assert!(last.detail.unwrap().contains("datatools-pro"));
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
    failed_and_expired_checkouts_end_their_orders,
    the_reconciler_settles_a_stuck_order_and_the_late_webhook_changes_nothing,
    redirects_off_the_allowed_hosts_are_refused,
    a_product_without_a_configured_provider_is_refused,
    a_seller_page_on_an_allowed_host_may_call_checkout_across_origins,
    the_billing_portal_opens_for_a_stripe_subscription,
    the_cli_lists_and_shows_orders,
    a_polar_checkout_completes_by_webhook_or_by_the_reconciler,
    a_paddle_checkout_completes_by_webhook_and_a_canceled_one_fails,
    a_lemon_squeezy_checkout_completes_by_webhook_and_an_unpaid_one_expires,
    checkout_starts_are_limited_per_address_but_status_polls_are_not,
    an_order_left_mid_call_is_asked_of_the_provider_again,
    an_event_for_another_product_does_not_pay_the_order,
    a_late_payment_of_an_expired_trial_checkout_still_pays_it,
);
