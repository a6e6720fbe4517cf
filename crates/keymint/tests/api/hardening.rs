//! What a hostile client found (signature floods, unbounded forensics,
//! made-up methods, NUL bytes, overflowing timestamps, negative prices,
//! deliveries a crash left unfinished): each answered clearly, stored
//! boundedly, and the same on both databases.

use crate::both_databases;
use crate::client::expect_json;
use crate::helpers::{Db, TestApp, assert_contains, sale_form, spawn_app, spawn_app_with, with};
use crate::providers::{Ids, Secret, now_secs, sale, sign};
use crate::views::ErrorBody;
use serde_json::Value;
use sha2::Digest;

/// The newest delivery row of `endpoint`.
async fn last_delivery(app: &TestApp, endpoint: &str) -> keymint::store::deliveries::Delivery {
    let id = app
        .scalar_text(
            "SELECT id FROM deliveries WHERE endpoint = $1 ORDER BY id DESC LIMIT 1",
            endpoint,
        )
        .await;
    app.delivery(&id).await
}

async fn signature_headers_with_thousands_of_entries_are_refused(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let body = vec![b'x'; 250 * 1024];
    let many = |prefix: &str, sep: &str| {
        std::iter::repeat_n(prefix, 10_000)
            .collect::<Vec<_>>()
            .join(sep)
    };
    let now = now_secs();
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "stripe",
            vec![(
                "Stripe-Signature".into(),
                format!("t={now},{}", many("v1=", ",")),
            )],
        ),
        (
            "paddle",
            vec![(
                "Paddle-Signature".into(),
                format!("ts={now};{}", many("h1=", ";")),
            )],
        ),
        (
            "standard",
            vec![
                ("webhook-id".into(), "msg_flood".into()),
                ("webhook-timestamp".into(), now_secs().to_string()),
                ("webhook-signature".into(), many("v1,AAAA", " ")),
            ],
        ),
        (
            "polar",
            vec![
                ("webhook-id".into(), "msg_flood".into()),
                ("webhook-timestamp".into(), now_secs().to_string()),
                ("webhook-signature".into(), many("v1,AAAA", " ")),
            ],
        ),
    ];
    for (kind, headers) in cases {
        let resp = app.post_webhook(kind, &headers, body.clone()).await;
        let v: ErrorBody = expect_json(resp, 401).await;
        assert_eq!(v.error, "unauthorized", "{kind}");
        let d = last_delivery(&app, kind).await;
        assert_eq!(d.status, "rejected", "{kind}");
        assert_eq!(
            d.error.as_deref(),
            Some("signature header too large"),
            "{kind}"
        );
        // Its headers are kept short too: each value's start and size.
        assert!(d.headers.len() < 4096, "{kind}: {} bytes", d.headers.len());
        assert!(d.headers.contains("bytes)"), "{kind}: {}", d.headers);
    }
    // Many large headers on a forged delivery are not kept whole either.
    let mut padded: Vec<(String, String)> = (0..48)
        .map(|i| (format!("x-pad-{i}"), "p".repeat(8000)))
        .collect();
    padded.push(("Stripe-Signature".into(), "t=1,v1=abc".into()));
    let resp = app.post_webhook("stripe", &padded, b"{}".to_vec()).await;
    assert_eq!(resp.status(), 401);
    let d = last_delivery(&app, "stripe").await;
    assert!(
        d.headers.len() < 8192,
        "{} bytes of headers kept",
        d.headers.len()
    );
    assert!(d.headers.contains("more headers"), "{}", d.headers);

    // The server is still answering at once.
    app.api().get_text("/healthz").await;
}

async fn rejected_deliveries_keep_a_prefix_size_and_digest(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let body: Vec<u8> = (0..250 * 1024u32).map(|i| b'a' + (i % 26) as u8).collect();
    let resp = app
        .client
        .post(app.url("/webhooks/gumroad?secret=wrong-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let d = last_delivery(&app, "gumroad").await;
    assert_eq!(d.status, "rejected");
    assert_eq!(d.body, body[..4096].to_vec());
    assert_eq!(d.body_size, Some(250 * 1024));
    assert_eq!(
        d.body_sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&body)).as_str())
    );
    // An operator sees the same through the admin API.
    let token = app.admin_token("forensics").await;
    let shown = app.admin_with(&token).delivery(d.id.as_str()).await;
    assert_eq!(shown.body_size, Some(250 * 1024), "{shown:?}");
    assert!(shown.body_truncated, "{shown:?}");
    assert_eq!(
        shown.body_sha256,
        Some(hex::encode(sha2::Sha256::digest(&body))),
        "{shown:?}"
    );
    assert_eq!(shown.body.as_deref().unwrap().len(), 4096);

    // An authentic delivery is kept whole, with the same digest.
    let ids = Ids::new("stripe");
    let good = sale("stripe", &ids, now_secs());
    let v = app.send(&good).await;
    let d = app.delivery(&v.delivery_id).await;
    assert_eq!(d.body, good.body);
    assert_eq!(d.body_size, Some(good.body.len() as i64));
    assert_eq!(
        d.body_sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&good.body)).as_str())
    );
}

async fn rejected_deliveries_past_the_per_source_limit_are_counted_not_stored(db: Db) {
    let Some(app) = spawn_app_with(db, &[("KEYMINT_SERVER__REJECTED_PER_MINUTE", "3")]).await
    else {
        return;
    };
    for _ in 0..7 {
        let resp = app
            .post_gumroad_with_secret(&sale_form("FLOOD"), Some("wrong-secret"))
            .await;
        assert_eq!(resp.status(), 404);
    }
    assert_eq!(app.count("deliveries", "status", "rejected").await, 3);
    let metrics = app.api().get_text("/metrics").await;
    // The recorder is shared by every app in this test process, so other
    // tests may have counted too: at least our four.
    let unrecorded: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("keymint_webhook_rejected_unrecorded_total")
                && l.contains("endpoint=\"gumroad\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no unrecorded counter in {metrics}"));
    assert!(unrecorded >= 4.0, "{unrecorded}");
    // Authentic deliveries from the same source are never limited.
    let ok = app.post_gumroad(&sale_form("AFTER-FLOOD")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(app.licenses_for("AFTER-FLOOD").await, 1);
}

async fn a_client_cannot_choose_its_source_through_x_forwarded_for(db: Db) {
    // Arrange: behind a proxy that appends the peer it saw (10.0.0.7) to
    // whatever X-Forwarded-For the client sent.
    let Some(app) = spawn_app_with(
        db,
        &[
            ("KEYMINT_SERVER__REJECTED_PER_MINUTE", "3"),
            ("KEYMINT_SERVER__TRUST_FORWARDED_FOR", "true"),
        ],
    )
    .await
    else {
        return;
    };

    // Act: seven forged deliveries, each claiming another source.
    for i in 0..7 {
        let resp = app
            .client
            .post(app.url("/webhooks/gumroad?secret=wrong-secret"))
            .header("x-forwarded-for", format!("203.0.113.{i}, 10.0.0.7"))
            .form(&sale_form("XFF"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }

    // Assert: one source, the proxy's view of it, and the limit held.
    assert_eq!(app.count("deliveries", "status", "rejected").await, 3);
    assert_eq!(app.count("deliveries", "source_ip", "10.0.0.7").await, 3);
}

async fn made_up_methods_share_one_metric_label(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let resp = app
            .client
            .request(method, app.url(&format!("/no/such/path/{i}")))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let metrics = app.api().get_text("/metrics").await;
    assert!(
        !metrics.contains("MADEUP"),
        "a made-up method became a label"
    );
    assert!(
        !metrics.contains("/no/such/path"),
        "a raw path became a label"
    );
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}

async fn nul_bytes_fail_the_delivery_or_are_cleaned_alike_on_both_databases(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // In an id: the delivery fails with the reason (200 error), never 503.
    let v = app.gumroad(&sale_form("NUL\0SALE")).await;
    assert_eq!(v.status, "error", "{v}");
    let d = app.delivery(&v.delivery_id).await;
    assert_eq!(d.status, "failed");
    assert!(
        d.error
            .as_deref()
            .unwrap()
            .contains("contains a control character"),
        "{:?}",
        d.error
    );
    // In an email too.
    let v = app
        .gumroad(&with(sale_form("NUL-EMAIL"), "email", "a\0b@example.com"))
        .await;
    assert_eq!(v.status, "error", "{v}");

    // In the buyer's name only: minted, with the name cleaned.
    let v = app
        .gumroad(&with(sale_form("NUL-NAME"), "full_name", "Ja\0ne\r\nDoe"))
        .await;
    assert_eq!(v.status, "ok", "{v}");
    let name = app
        .scalar_text("SELECT name FROM licenses WHERE order_id = $1", "NUL-NAME")
        .await;
    assert_eq!(name, "Ja ne Doe");
}

async fn negative_prices_fail_the_delivery(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let v = app
        .gumroad(&with(sale_form("NEGATIVE"), "price", "-5"))
        .await;
    assert_eq!(v.status, "error", "{v}");
    let d = app.delivery(&v.delivery_id).await;
    assert_eq!(d.status, "failed");
    assert_eq!(d.error.as_deref(), Some("price is negative (-5)"));
    assert_eq!(app.licenses_for("NEGATIVE").await, 0);
    // Free is fine.
    let v = app.gumroad(&with(sale_form("FREE"), "price", "0")).await;
    assert_eq!(v.status, "ok", "{v}");
}

async fn timestamps_at_the_extremes_never_pass_the_window(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for kind in ["stripe", "paddle", "standard", "polar"] {
        let ids = Ids::new(kind);
        let s = sale(kind, &ids, now_secs());
        // now - 2^63 (its difference from now wraps an i64), and the ends.
        for ts in [now_secs() + i64::MIN, i64::MIN, i64::MAX] {
            let headers = sign(kind, &s.body, ts, Secret::Current, &s.msg_id);
            let resp = app.post_webhook(kind, &headers, s.body.clone()).await;
            assert_eq!(resp.status(), 401, "{kind} at {ts}");
            let d = last_delivery(&app, kind).await;
            assert_eq!(
                d.error.as_deref(),
                Some("timestamp outside the replay window"),
                "{kind} at {ts}"
            );
        }
        assert_eq!(app.licenses_for(&ids.order).await, 0, "{kind}");
    }
}

/// A delivery recorded by a process that died before applying it: the row
/// is there, authentic and `received`, older than the recovery bound.
async fn record_as_if_crashed(app: &TestApp, order: &str, age_ms: i64) -> String {
    use keymint::domain::{DeliveryId, DeliveryStatus, Millis};
    use keymint::store::deliveries::{self, NewDelivery, StoredBody};
    let body = serde_urlencoded::to_string(sale_form(order)).unwrap();
    let id = DeliveryId::generate();
    let d = NewDelivery {
        id: id.clone(),
        endpoint: "gumroad".into(),
        kind: "gumroad".into(),
        received_at: Millis(keymint::store::now_ms() - age_ms),
        source_ip: Some("127.0.0.1".into()),
        user_agent: None,
        request_id: None,
        path: "/webhooks/gumroad?secret=***".into(),
        headers: r#"{"content-type":"application/x-www-form-urlencoded"}"#.into(),
        body: StoredBody::whole(body.into_bytes()),
        signature_valid: true,
        status: DeliveryStatus::Received,
        error: None,
    };
    deliveries::record(&app.state.store, std::sync::Arc::new(d))
        .await
        .unwrap();
    id.to_string()
}

async fn deliveries_left_received_by_a_crash_are_recovered(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // The default request timeout is 30 s: older than a minute is stuck.
    let stuck = record_as_if_crashed(&app, "CRASHED-SALE", 5 * 60_000).await;
    // One whose request may still be running is left alone.
    let young = record_as_if_crashed(&app, "YOUNG-SALE", 1_000).await;
    // The provider's retry already took effect for this one.
    let retried = app.post_gumroad(&sale_form("RETRIED-SALE")).await;
    assert_eq!(retried.status(), 200);
    let stuck_retried = record_as_if_crashed(&app, "RETRIED-SALE", 5 * 60_000).await;

    let out = app.cli(&["reconcile", "--once"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_contains(&text, "recovered 2 stuck deliveries");

    assert_eq!(app.delivery(&stuck).await.status, "processed");
    assert_eq!(app.licenses_for("CRASHED-SALE").await, 1);
    assert_eq!(app.delivery(&stuck_retried).await.status, "duplicate");
    assert_eq!(app.licenses_for("RETRIED-SALE").await, 1);
    assert_eq!(app.delivery(&young).await.status, "received");
    assert_eq!(app.licenses_for("YOUNG-SALE").await, 0);
    // Nothing is left for a second pass.
    let again = app.cli(&["reconcile", "--once"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("recovered 0 stuck deliveries"),
        "{again:?}"
    );
}

both_databases!(
    signature_headers_with_thousands_of_entries_are_refused,
    rejected_deliveries_keep_a_prefix_size_and_digest,
    rejected_deliveries_past_the_per_source_limit_are_counted_not_stored,
    a_client_cannot_choose_its_source_through_x_forwarded_for,
    made_up_methods_share_one_metric_label,
    nul_bytes_fail_the_delivery_or_are_cleaned_alike_on_both_databases,
    negative_prices_fail_the_delivery,
    timestamps_at_the_extremes_never_pass_the_window,
    deliveries_left_received_by_a_crash_are_recovered,
);

mod admin_bodies {
    use super::*;

    /// An admin body over `server.max_body_bytes` is a 413 with its code,
    /// as the description says, not a 400.
    async fn an_oversized_admin_body_is_413(db: Db) {
        let Some(app) = spawn_app(db).await else {
            return;
        };
        let admin = app.admin_with(&app.admin_token("big").await);
        let notes = "n".repeat(300 * 1024);
        let resp = admin
            .post(
                "/admin/v1/licenses",
                &serde_json::json!({"product": "datatools-core", "email": "big@example.com", "notes": notes}),
            )
            .await;
        let v: Value = expect_json(resp, 413).await;
        assert_eq!(v["code"], "body_too_large", "{v}");
    }

    crate::both_databases!(an_oversized_admin_body_is_413);
}
