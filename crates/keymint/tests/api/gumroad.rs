//! Gumroad webhook ingest: the seed license server's behaviours and more.

use crate::both_databases;
use crate::helpers::{Db, sale_form, spawn_app, with};
use serde_json::Value;

async fn valid_sale_mints_a_license_and_records_the_delivery(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };

    let resp = app.post_gumroad(&sale_form("GUM-2001")).await;

    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let key = body["license_key"].as_str().unwrap();
    assert!(key.starts_with("DT1-CORE-"), "{key}");
    let delivery_id = body["delivery_id"].as_str().unwrap();
    assert_eq!(app.licenses_for("GUM-2001").await, 1);
    let d = app.delivery(delivery_id).await;
    assert_eq!(d.status, "processed");
    assert_eq!(d.signature_valid, Some(1));
    assert_eq!(d.event_type.as_deref(), Some("sale"));
    assert_eq!(d.source_ip.as_deref(), Some("127.0.0.1"));
    assert!(d.request_id.is_some() || d.path == "/webhooks/gumroad?secret=***");
    assert!(
        !d.path.contains(crate::helpers::GUMROAD_SECRET),
        "secret stored in clear: {}",
        d.path
    );
    let mut conn = app.state.store.conn().await.unwrap();
    let l = keymint::store::licenses::by_key(&mut conn, &key.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.email, "jane@example.com");
    assert_eq!(l.name, "Jane Doe");
    assert_eq!(l.amount_cents, Some(9900));
    assert_eq!(l.currency.as_deref(), Some("USD"));
    assert_eq!(l.status, "active");
    assert!(l.expires_at.is_some());
}

async fn wrong_or_missing_secret_is_404_and_recorded_as_rejected(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };

    let wrong = app
        .post_gumroad_with_secret(&sale_form("GUM-1"), Some("wrong"))
        .await;
    let missing = app
        .post_gumroad_with_secret(&sale_form("GUM-1"), None)
        .await;

    assert_eq!(wrong.status(), 404);
    assert_eq!(wrong.text().await.unwrap(), "");
    assert_eq!(missing.status(), 404);
    assert_eq!(app.licenses_for("GUM-1").await, 0);
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM deliveries WHERE status = $1 AND signature_valid = 0",
            "rejected"
        )
        .await,
        2
    );
    let stored: i64 = app
        .scalar(
            "SELECT COUNT(*) FROM deliveries WHERE path LIKE $1",
            "%wrong%",
        )
        .await;
    assert_eq!(stored, 0, "the wrong secret must not be stored either");
}

async fn unknown_endpoint_is_404(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let resp = app
        .client
        .post(app.url("/webhooks/nope?secret=x"))
        .form(&sale_form("X"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

async fn rotated_secrets_are_all_accepted(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let resp = app
        .post_gumroad_with_secret(&sale_form("GUM-OLD"), Some("old-secret"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ok");
}

async fn same_sale_twice_gives_one_license_and_two_deliveries(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };

    let first: Value = app
        .post_gumroad(&sale_form("GUM-2002"))
        .await
        .json()
        .await
        .unwrap();
    let second: Value = app
        .post_gumroad(&sale_form("GUM-2002"))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(first["status"], "ok");
    assert_eq!(second["status"], "duplicate");
    assert_eq!(second["license_key"], first["license_key"]);
    assert_eq!(app.licenses_for("GUM-2002").await, 1);
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM deliveries WHERE order_id = $1",
            "GUM-2002"
        )
        .await,
        2
    );
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM deliveries WHERE status = $1",
            "duplicate"
        )
        .await,
        1
    );
}

async fn twenty_concurrent_duplicates_give_one_license_and_one_email(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.postmark_accepts().await;

    let form = sale_form("GUM-RACE");
    let responses = futures::future::join_all((0..20).map(|_| app.post_gumroad(&form))).await;

    let mut statuses = Vec::new();
    for r in responses {
        assert_eq!(r.status(), 200);
        statuses.push(
            r.json::<Value>().await.unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "ok").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "duplicate").count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(app.licenses_for("GUM-RACE").await, 1);
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM deliveries WHERE order_id = $1",
            "GUM-RACE"
        )
        .await,
        20
    );
    app.send_pending_emails().await;
    app.send_pending_emails().await;
    assert_eq!(app.sent_emails().await.len(), 1);
}

async fn unmapped_product_is_logged_no_mint_with_the_reason(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };

    let resp = app
        .post_gumroad(&with(sale_form("GUM-666"), "product_id", "not-a-real-sku"))
        .await;

    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "logged-no-mint");
    assert!(body.get("license_key").is_none());
    assert_eq!(app.licenses_for("GUM-666").await, 0);
    let d = app.delivery(body["delivery_id"].as_str().unwrap()).await;
    assert_eq!(d.status, "failed");
    let reason = d.error.unwrap();
    assert!(
        reason.contains("gumroad") && reason.contains("not-a-real-sku"),
        "{reason}"
    );
}

async fn permalink_maps_when_product_id_does_not(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let form = with(
        with(sale_form("GUM-PERMA"), "product_id", "unknown-id"),
        "permalink",
        "datatools-pro-permalink",
    );
    let body: Value = app.post_gumroad(&form).await.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert!(
        body["license_key"]
            .as_str()
            .unwrap()
            .starts_with("DT1-PRO-")
    );
}

async fn json_bodies_are_accepted(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let resp = app
        .client
        .post(app.url(&format!("/webhooks/gumroad?secret={}", crate::helpers::GUMROAD_SECRET)))
        .json(&serde_json::json!({"sale_id": "GUM-JSON", "email": "j@example.com", "product_id": "datatools-core", "price": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ok");
}

async fn missing_required_field_is_a_failed_delivery_with_a_clear_reason(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let form: Vec<(String, String)> = sale_form("GUM-NOMAIL")
        .into_iter()
        .filter(|(k, _)| k != "email")
        .collect();

    let body: Value = app.post_gumroad(&form).await.json().await.unwrap();

    assert_eq!(body["status"], "error");
    let d = app.delivery(body["delivery_id"].as_str().unwrap()).await;
    assert_eq!(d.status, "failed");
    assert!(d.error.unwrap().contains("`email`"));
}

async fn oversize_body_is_413_and_mints_nothing(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let huge = "x".repeat(256 * 1024 + 1);
    let form = with(sale_form("GUM-BIG"), "notes", &huge);

    let resp = app.post_gumroad(&form).await;

    assert_eq!(resp.status(), 413);
    assert_eq!(app.licenses_for("GUM-BIG").await, 0);
}

async fn test_sales_are_tagged(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.post_gumroad(&with(sale_form("GUM-TEST"), "test", "true"))
        .await;
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM licenses WHERE order_id = $1 AND test = 1",
            "GUM-TEST"
        )
        .await,
        1
    );
}

async fn refund_revokes_dispute_suspends_and_dispute_won_reinstates(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let key = app
        .post_gumroad(&sale_form("GUM-LIFE"))
        .await
        .json::<Value>()
        .await
        .unwrap()["license_key"]
        .as_str()
        .unwrap()
        .to_string();
    let status = || async {
        let mut conn = app.state.store.conn().await.unwrap();
        keymint::store::licenses::by_key(&mut conn, &key.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .status
    };

    let dispute = with(sale_form("GUM-LIFE"), "resource_name", "dispute");
    assert_eq!(
        app.post_gumroad(&dispute)
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "ok"
    );
    assert_eq!(status().await, "suspended");

    let won = with(sale_form("GUM-LIFE"), "resource_name", "dispute_won");
    assert_eq!(
        app.post_gumroad(&won).await.json::<Value>().await.unwrap()["status"],
        "ok"
    );
    assert_eq!(status().await, "active");

    let refund = with(sale_form("GUM-LIFE"), "resource_name", "refund");
    assert_eq!(
        app.post_gumroad(&refund)
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "ok"
    );
    assert_eq!(status().await, "revoked");

    let again = app
        .post_gumroad(&refund)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(again["status"], "duplicate");
}

async fn partial_refund_keeps_the_license(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.post_gumroad(&sale_form("GUM-PART")).await;
    let partial = with(
        with(sale_form("GUM-PART"), "resource_name", "refund"),
        "partially_refunded",
        "true",
    );
    assert_eq!(
        app.post_gumroad(&partial)
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "ok"
    );
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM licenses WHERE order_id = $1 AND status = 'active'",
            "GUM-PART"
        )
        .await,
        1
    );
}

async fn unsupported_resources_are_ignored(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let unknown = with(sale_form("GUM-C"), "resource_name", "something_new");
    let body: Value = app.post_gumroad(&unknown).await.json().await.unwrap();
    assert_eq!(body["status"], "ignored");
    // A known resource missing what it needs is an error naming the field.
    let cancel = with(sale_form("GUM-C"), "resource_name", "cancellation");
    let body: Value = app.post_gumroad(&cancel).await.json().await.unwrap();
    assert_eq!(body["status"], "error");
    let d = app.delivery(body["delivery_id"].as_str().unwrap()).await;
    assert!(d.error.unwrap().contains("subscription_id"));
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM deliveries WHERE status = $1",
            "ignored"
        )
        .await,
        1
    );
}

async fn stopped_database_gives_503_never_200_and_recovers(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let outage = crate::helpers::Outage::start(&app).await;

    let during = app.post_gumroad(&sale_form("GUM-DOWN")).await;

    assert_eq!(during.status(), 503);
    assert!(during.headers().contains_key("retry-after"));
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    outage.end().await;
    if db == Db::Postgres {
        assert_eq!(ready.status(), 503);
    }
    let after = app.post_gumroad(&sale_form("GUM-DOWN")).await;
    assert_eq!(after.status(), 200);
    assert_eq!(after.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(app.licenses_for("GUM-DOWN").await, 1);
}

both_databases!(
    valid_sale_mints_a_license_and_records_the_delivery,
    wrong_or_missing_secret_is_404_and_recorded_as_rejected,
    unknown_endpoint_is_404,
    rotated_secrets_are_all_accepted,
    same_sale_twice_gives_one_license_and_two_deliveries,
    twenty_concurrent_duplicates_give_one_license_and_one_email,
    unmapped_product_is_logged_no_mint_with_the_reason,
    permalink_maps_when_product_id_does_not,
    json_bodies_are_accepted,
    missing_required_field_is_a_failed_delivery_with_a_clear_reason,
    oversize_body_is_413_and_mints_nothing,
    test_sales_are_tagged,
    refund_revokes_dispute_suspends_and_dispute_won_reinstates,
    partial_refund_keeps_the_license,
    unsupported_resources_are_ignored,
    stopped_database_gives_503_never_200_and_recovers,
);
