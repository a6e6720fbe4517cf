//! The admin API and admin tokens.

use crate::both_databases;
use crate::client::expect_json;
use crate::helpers::{Db, sale_form, spawn_app, stderr, stdout, with};
use crate::views::{LicenseDetailExt, LicenseOne, MintedOut};
use reqwest::Method;
use serde_json::{Value, json};

async fn admin_routes_reject_missing_wrong_and_revoked_tokens(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;

    let missing = app.api().get("/admin/v1/deliveries").await;
    let wrong = app.admin_with("kmt_0000").get("/admin/v1/deliveries").await;
    let good = admin.get("/admin/v1/deliveries").await;
    assert_eq!(missing.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(good.status(), 200);

    let out = app.cli(&["admin-token", "revoke", "ops"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(admin.get("/admin/v1/deliveries").await.status(), 401);
}

async fn tokens_are_stored_hashed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token_via_cli("ops");
    assert_eq!(app.count("admin_tokens", "token_hash", &token).await, 0);
    assert_eq!(app.count("admin_tokens", "name", "ops").await, 1);
    let listed = stdout(&app.cli(&["admin-token", "list"]));
    assert!(listed.contains("ops") && !listed.contains(&token));
}

async fn scopes_limit_what_a_token_can_do(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let out = app.cli(&[
        "admin-token",
        "create",
        "--name",
        "reader",
        "--scope",
        "licenses:read",
    ]);
    let reader = app.admin_with(stdout(&out).lines().last().unwrap());

    let read = reader.get("/admin/v1/licenses").await;
    let write = reader
        .mint(json!({"product": "datatools-core", "email": "a@b.co"}))
        .await;

    assert_eq!(read.status(), 200);
    assert_eq!(write.status(), 403);
}

async fn manual_mint_creates_a_license_and_queues_its_email(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.postmark_accepts().await;
    let admin = app.admin().await;

    let minted = admin
        .mint(
            json!({"product": "datatools-pro", "email": "Buyer@Example.com", "name": "Bo Buyer",
                     "order_id": "INV-7", "notes": "conference giveaway"}),
        )
        .await;

    let minted: MintedOut = expect_json(minted, 201).await;

    let license = &minted.license;
    assert!(license.key.as_str().starts_with("DT1-PRO-"));
    assert_eq!(license.source, "manual");
    assert_eq!(license.email, "buyer@example.com");
    assert_eq!(license.expires_at, None);
    assert_eq!(license.notes.as_deref(), Some("conference giveaway"));
    app.send_pending_emails().await;
    assert_eq!(app.sent_emails().await.len(), 1);

    let again = admin
        .mint(
            json!({"product": "datatools-pro", "email": "buyer@example.com", "order_id": "INV-7"}),
        )
        .await;
    let again: MintedOut = expect_json(again, 200).await;
    assert_eq!(again.license.key, license.key);
}

async fn manual_mint_rejects_bad_input_clearly(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;

    let unknown = admin
        .mint(json!({"product": "nope", "email": "a@b.co"}))
        .await;
    let bad_email = admin
        .mint(json!({"product": "datatools-core", "email": "not-an-email"}))
        .await;
    let missing = admin.mint(json!({"email": "a@b.co"})).await;

    let unknown: Value = expect_json(unknown, 422).await;
    assert!(unknown["error"].as_str().unwrap().contains("nope"));
    assert_eq!(bad_email.status(), 422);
    assert_eq!(missing.status(), 422);
    assert_eq!(app.count("licenses", "source", "manual").await, 0);
}

async fn get_search_revoke_and_reinstate(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    let key = app
        .gumroad_sale(&with(sale_form("GUM-ADM"), "email", "Jane.Doe@Example.COM"))
        .await;

    let got = admin.license(key.as_str().to_lowercase()).await;
    assert_eq!(got.license.key, key);
    assert_eq!(got.history[0].action, "minted");
    assert_eq!(got.history[0].actor, "webhook:gumroad");

    let found = admin.licenses("email=JANE.DOE@example.com").await;
    assert_eq!(found.licenses.len(), 1);
    let none = admin
        .licenses("email=jane.doe@example.com&product=datatools-pro")
        .await;
    assert_eq!(none.licenses.len(), 0);

    let revoked = admin.revoke(&key, "chargeback by phone").await;
    assert_eq!(revoked.license.status, "revoked");
    let by_status = admin.licenses("status=revoked").await;
    assert_eq!(by_status.licenses.len(), 1);
    let twice = admin.act(&key, "revoke", json!({"reason": "again"})).await;
    assert_eq!(twice.status(), 409);

    let reinstated = admin
        .act(&key, "reinstate", json!({"reason": "resolved"}))
        .await;
    let reinstated: LicenseOne = expect_json(reinstated, 200).await;
    assert_eq!(reinstated.license.status, "active");
    let detail = admin.license(&key).await;
    assert_eq!(detail.actions(), ["minted", "revoked", "reinstated"]);
    assert_eq!(
        detail.history[1].reason.as_deref(),
        Some("chargeback by phone")
    );
    assert_eq!(detail.history[1].actor, "admin:ops");
}

async fn license_lookups_reject_bad_input(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    let status = |path: &'static str| {
        let admin = &admin;
        async move { admin.get(path).await.status() }
    };
    assert_eq!(status("/admin/v1/licenses/not-a-key").await, 400);
    assert_eq!(
        status("/admin/v1/licenses/DT1-CORE-00000-00000-00000-00000").await,
        404
    );
    assert_eq!(status("/admin/v1/licenses?status=weird").await, 400);
    assert_eq!(status("/admin/v1/licenses?limit=0").await, 400);
    let no_reason = admin
        .act(
            "DT1-CORE-00000-00000-00000-00000",
            "revoke",
            json!({"reason": " "}),
        )
        .await;
    assert_eq!(no_reason.status(), 422);
}

async fn deliveries_list_filter_and_show(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    app.post_gumroad(&sale_form("GUM-D1")).await;
    app.post_gumroad(&with(sale_form("GUM-D2"), "product_id", "unknown"))
        .await;
    app.post_gumroad_with_secret(&sale_form("GUM-D3"), Some("bad"))
        .await;

    let all = admin.deliveries("").await;
    assert_eq!(all.deliveries.len(), 3);
    let failed = admin.deliveries("status=failed&endpoint=gumroad").await;
    assert_eq!(failed.deliveries.len(), 1);
    assert_eq!(failed.deliveries[0].order_id.as_deref(), Some("GUM-D2"));
    let rejected = admin.deliveries("status=rejected").await;
    assert_eq!(rejected.deliveries[0].signature_valid, Some(false));
    let recent = admin.deliveries("since=1h").await;
    assert_eq!(recent.deliveries.len(), 3);
    let future = admin.deliveries("since=2999-01-01T00:00:00Z").await;
    assert_eq!(future.deliveries.len(), 0);
    let page = admin.deliveries("limit=2").await;
    let before = page.next_before.expect("a next page");
    let rest = admin.deliveries(&format!("limit=2&before={before}")).await;
    assert_eq!(rest.deliveries.len(), 1);
    assert_eq!(
        admin
            .get("/admin/v1/deliveries?since=yesterday-ish")
            .await
            .status(),
        400
    );

    let shown = admin.delivery(&failed.deliveries[0].id).await;
    assert!(shown.body.unwrap().contains("sale_id=GUM-D2"));
    assert_eq!(shown.path.as_deref(), Some("/webhooks/gumroad?secret=***"));
    assert_eq!(
        admin.get("/admin/v1/deliveries/dlv_nope").await.status(),
        404
    );
}

async fn replaying_a_failed_delivery_applies_it_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    // A refund that arrives before its sale fails: there is no license yet.
    let refund = app
        .gumroad(&with(sale_form("GUM-EARLY"), "resource_name", "refund"))
        .await;
    assert_eq!(refund.status, "error");
    app.post_gumroad(&sale_form("GUM-EARLY")).await;

    let replayed = admin.replayed(&refund.delivery_id).await;

    assert_eq!(replayed.status, "ok");
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM licenses WHERE order_id = $1 AND status = 'revoked'",
            "GUM-EARLY"
        )
        .await,
        1
    );
    let again = admin.replayed(&refund.delivery_id).await;
    assert_eq!(again.status, "duplicate");
    let cli = app.cli(&["replay", refund.delivery_id.as_str()]);
    assert!(cli.status.success());
    assert!(stdout(&cli).starts_with("duplicate"));
}

async fn rejected_deliveries_are_never_replayed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    app.post_gumroad_with_secret(&sale_form("GUM-FORGED"), Some("forged"))
        .await;
    let list = admin.deliveries("status=rejected").await;

    let resp = admin.replay(&list.deliveries[0].id).await;

    assert_eq!(resp.status(), 409);
    assert_eq!(app.licenses_for("GUM-FORGED").await, 0);
}

both_databases!(
    admin_routes_reject_missing_wrong_and_revoked_tokens,
    tokens_are_stored_hashed,
    scopes_limit_what_a_token_can_do,
    manual_mint_creates_a_license_and_queues_its_email,
    manual_mint_rejects_bad_input_clearly,
    get_search_revoke_and_reinstate,
    license_lookups_reject_bad_input,
    deliveries_list_filter_and_show,
    replaying_a_failed_delivery_applies_it_once,
    rejected_deliveries_are_never_replayed,
);

async fn malformed_json_gets_a_json_error(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    let raw = |content_type: Option<&str>, body: &'static str| {
        let mut req = admin.request(Method::POST, "/admin/v1/licenses").body(body);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        async move { req.send().await.unwrap() }
    };

    let syntax = raw(Some("application/json"), "{not json").await;
    let shape = admin.mint(json!({"product": 7, "email": []})).await;
    let no_type = raw(None, "{}").await;

    assert!(expect_json::<Value>(syntax, 400).await["error"].is_string());
    assert!(expect_json::<Value>(shape, 422).await["error"].is_string());
    assert!(expect_json::<Value>(no_type, 415).await["error"].is_string());
}

mod json_errors {
    use super::*;
    crate::both_databases!(malformed_json_gets_a_json_error);
}
