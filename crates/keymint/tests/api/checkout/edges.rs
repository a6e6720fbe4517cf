//! What checkout refuses and what else it serves: open redirects,
//! unconfigured products, bad input, CORS, the billing portal, and the
//! operators' CLI and admin API.

use super::*;
use crate::both_databases;

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
    // A trial started through a Stripe Checkout of the subscription.
    let key = app.stripe_subscription_license(&ids).await;
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

both_databases!(
    redirects_off_the_allowed_hosts_are_refused,
    a_product_without_a_configured_provider_is_refused,
    a_seller_page_on_an_allowed_host_may_call_checkout_across_origins,
    the_billing_portal_opens_for_a_stripe_subscription,
    the_cli_lists_and_shows_orders,
);
