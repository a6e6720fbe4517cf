//! How orders end and recover: expiry and failure, the reconciler and the
//! late webhook, orders left mid-call, conflicting events, late payments,
//! and the per-address limits.

use super::*;
use crate::both_databases;

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
    a_late_payment_of_an_expired_trial_checkout_still_pays_it,
    failed_and_expired_checkouts_end_their_orders,
    the_reconciler_settles_a_stuck_order_and_the_late_webhook_changes_nothing,
    checkout_starts_are_limited_per_address_but_status_polls_are_not,
    an_order_left_mid_call_is_asked_of_the_provider_again,
    an_event_for_another_product_does_not_pay_the_order,
);
