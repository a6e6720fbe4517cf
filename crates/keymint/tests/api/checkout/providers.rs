//! Checkouts through Polar, Paddle and Lemon Squeezy, against their fake
//! APIs: created with the order in their metadata, settled by webhook or
//! by the reconciler.

use super::*;
use crate::both_databases;

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

both_databases!(
    a_polar_checkout_completes_by_webhook_or_by_the_reconciler,
    a_paddle_checkout_completes_by_webhook_and_a_canceled_one_fails,
    a_lemon_squeezy_checkout_completes_by_webhook_and_an_unpaid_one_expires,
);
