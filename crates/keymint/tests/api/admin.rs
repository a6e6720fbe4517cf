//! The admin API and admin tokens.

use crate::both_databases;
use crate::helpers::{Db, sale_form, spawn_app, with};
use serde_json::{Value, json};

async fn admin_routes_reject_missing_wrong_and_revoked_tokens(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");

    let missing = app
        .client
        .get(app.url("/admin/v1/deliveries"))
        .send()
        .await
        .unwrap();
    let wrong = app.admin_get("kmt_0000", "/admin/v1/deliveries").await;
    let good = app.admin_get(&token, "/admin/v1/deliveries").await;
    assert_eq!(missing.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(good.status(), 200);

    let out = app.cli(&["admin-token", "revoke", "ops"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        app.admin_get(&token, "/admin/v1/deliveries").await.status(),
        401
    );
}

async fn tokens_are_stored_hashed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM admin_tokens WHERE token_hash = $1",
            &token
        )
        .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM admin_tokens WHERE name = $1", "ops")
            .await,
        1
    );
    let listed = String::from_utf8(app.cli(&["admin-token", "list"]).stdout).unwrap();
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
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();

    let read = app.admin_get(&token, "/admin/v1/licenses").await;
    let write = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "datatools-core", "email": "a@b.co"}),
        )
        .await;

    assert_eq!(read.status(), 200);
    assert_eq!(write.status(), 403);
}

async fn manual_mint_creates_a_license_and_queues_its_email(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.postmark_accepts().await;
    let token = app.admin_token("ops");

    let resp = app
        .admin_post(&token, "/admin/v1/licenses", json!({"product": "datatools-pro", "email": "Buyer@Example.com", "name": "Bo Buyer", "order_id": "INV-7", "notes": "conference giveaway"}))
        .await;

    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let license = &body["license"];
    assert!(license["key"].as_str().unwrap().starts_with("DT1-PRO-"));
    assert_eq!(license["source"], "manual");
    assert_eq!(license["email"], "buyer@example.com");
    assert_eq!(license["expires_at"], Value::Null);
    assert_eq!(license["notes"], "conference giveaway");
    app.send_pending_emails().await;
    assert_eq!(app.sent_emails().await.len(), 1);

    let again = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "datatools-pro", "email": "buyer@example.com", "order_id": "INV-7"}),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.unwrap()["license"]["key"],
        license["key"]
    );
}

async fn manual_mint_rejects_bad_input_clearly(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");

    let unknown = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "nope", "email": "a@b.co"}),
        )
        .await;
    let bad_email = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "datatools-core", "email": "not-an-email"}),
        )
        .await;
    let missing = app
        .admin_post(&token, "/admin/v1/licenses", json!({"email": "a@b.co"}))
        .await;

    assert_eq!(unknown.status(), 422);
    assert!(
        unknown.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert_eq!(bad_email.status(), 422);
    assert_eq!(missing.status(), 422);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM licenses WHERE source = $1", "manual")
            .await,
        0
    );
}

async fn get_search_revoke_and_reinstate(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    let key = app
        .post_gumroad(&with(sale_form("GUM-ADM"), "email", "Jane.Doe@Example.COM"))
        .await
        .json::<Value>()
        .await
        .unwrap()["license_key"]
        .as_str()
        .unwrap()
        .to_string();

    let got: Value = app
        .admin_get(
            &token,
            &format!("/admin/v1/licenses/{}", key.to_lowercase()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["license"]["key"], key.as_str());
    assert_eq!(got["history"][0]["action"], "minted");
    assert_eq!(got["history"][0]["actor"], "webhook:gumroad");

    let found: Value = app
        .admin_get(&token, "/admin/v1/licenses?email=JANE.DOE@example.com")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["licenses"].as_array().unwrap().len(), 1);
    let none: Value = app
        .admin_get(
            &token,
            "/admin/v1/licenses?email=jane.doe@example.com&product=datatools-pro",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["licenses"].as_array().unwrap().len(), 0);

    let revoked = app
        .admin_post(
            &token,
            &format!("/admin/v1/licenses/{key}/revoke"),
            json!({"reason": "chargeback by phone"}),
        )
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        revoked.json::<Value>().await.unwrap()["license"]["status"],
        "revoked"
    );
    let by_status: Value = app
        .admin_get(&token, "/admin/v1/licenses?status=revoked")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_status["licenses"].as_array().unwrap().len(), 1);
    let twice = app
        .admin_post(
            &token,
            &format!("/admin/v1/licenses/{key}/revoke"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(twice.status(), 409);

    let reinstated = app
        .admin_post(
            &token,
            &format!("/admin/v1/licenses/{key}/reinstate"),
            json!({"reason": "resolved"}),
        )
        .await;
    assert_eq!(
        reinstated.json::<Value>().await.unwrap()["license"]["status"],
        "active"
    );
    let history: Value = app
        .admin_get(&token, &format!("/admin/v1/licenses/{key}"))
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["minted", "revoked", "reinstated"]);
    assert_eq!(history["history"][1]["reason"], "chargeback by phone");
    assert_eq!(history["history"][1]["actor"], "admin:ops");
}

async fn license_lookups_reject_bad_input(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    assert_eq!(
        app.admin_get(&token, "/admin/v1/licenses/not-a-key")
            .await
            .status(),
        400
    );
    assert_eq!(
        app.admin_get(
            &token,
            "/admin/v1/licenses/DT1-CORE-00000-00000-00000-00000"
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        app.admin_get(&token, "/admin/v1/licenses?status=weird")
            .await
            .status(),
        400
    );
    assert_eq!(
        app.admin_get(&token, "/admin/v1/licenses?limit=0")
            .await
            .status(),
        400
    );
    let no_reason = app
        .admin_post(
            &token,
            "/admin/v1/licenses/DT1-CORE-00000-00000-00000-00000/revoke",
            json!({"reason": " "}),
        )
        .await;
    assert_eq!(no_reason.status(), 422);
}

async fn deliveries_list_filter_and_show(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    app.post_gumroad(&sale_form("GUM-D1")).await;
    app.post_gumroad(&with(sale_form("GUM-D2"), "product_id", "unknown"))
        .await;
    app.post_gumroad_with_secret(&sale_form("GUM-D3"), Some("bad"))
        .await;

    let all: Value = app
        .admin_get(&token, "/admin/v1/deliveries")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 3);
    let failed: Value = app
        .admin_get(
            &token,
            "/admin/v1/deliveries?status=failed&endpoint=gumroad",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failed["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(failed["deliveries"][0]["order_id"], "GUM-D2");
    let rejected: Value = app
        .admin_get(&token, "/admin/v1/deliveries?status=rejected")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rejected["deliveries"][0]["signature_valid"], false);
    let recent: Value = app
        .admin_get(&token, "/admin/v1/deliveries?since=1h")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recent["deliveries"].as_array().unwrap().len(), 3);
    let future: Value = app
        .admin_get(&token, "/admin/v1/deliveries?since=2999-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(future["deliveries"].as_array().unwrap().len(), 0);
    let page: Value = app
        .admin_get(&token, "/admin/v1/deliveries?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let before = page["next_before"].as_str().unwrap();
    let rest: Value = app
        .admin_get(
            &token,
            &format!("/admin/v1/deliveries?limit=2&before={before}"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.admin_get(&token, "/admin/v1/deliveries?since=yesterday-ish")
            .await
            .status(),
        400
    );

    let id = failed["deliveries"][0]["id"].as_str().unwrap();
    let shown: Value = app
        .admin_get(&token, &format!("/admin/v1/deliveries/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(shown["body"].as_str().unwrap().contains("sale_id=GUM-D2"));
    assert_eq!(shown["path"], "/webhooks/gumroad?secret=***");
    assert_eq!(
        app.admin_get(&token, "/admin/v1/deliveries/dlv_nope")
            .await
            .status(),
        404
    );
}

async fn replaying_a_failed_delivery_applies_it_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    // A refund that arrives before its sale fails: there is no license yet.
    let refund = app
        .post_gumroad(&with(sale_form("GUM-EARLY"), "resource_name", "refund"))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(refund["status"], "error");
    app.post_gumroad(&sale_form("GUM-EARLY")).await;

    let id = refund["delivery_id"].as_str().unwrap();
    let replayed = app
        .admin_post(
            &token,
            &format!("/admin/v1/deliveries/{id}/replay"),
            json!({}),
        )
        .await;

    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM licenses WHERE order_id = $1 AND status = 'revoked'",
            "GUM-EARLY"
        )
        .await,
        1
    );
    let again: Value = app
        .admin_post(
            &token,
            &format!("/admin/v1/deliveries/{id}/replay"),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "duplicate");
    let cli = app.cli(&["replay", id]);
    assert!(cli.status.success());
    assert!(
        String::from_utf8(cli.stdout)
            .unwrap()
            .starts_with("duplicate")
    );
}

async fn rejected_deliveries_are_never_replayed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    app.post_gumroad_with_secret(&sale_form("GUM-FORGED"), Some("forged"))
        .await;
    let list: Value = app
        .admin_get(&token, "/admin/v1/deliveries?status=rejected")
        .await
        .json()
        .await
        .unwrap();
    let id = list["deliveries"][0]["id"].as_str().unwrap();

    let resp = app
        .admin_post(
            &token,
            &format!("/admin/v1/deliveries/{id}/replay"),
            json!({}),
        )
        .await;

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
    let token = app.admin_token("ops");

    let syntax = app
        .client
        .post(app.url("/admin/v1/licenses"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let shape = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": 7, "email": []}),
        )
        .await;
    let no_type = app
        .client
        .post(app.url("/admin/v1/licenses"))
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();

    assert_eq!(syntax.status(), 400);
    assert!(syntax.json::<Value>().await.unwrap()["error"].is_string());
    assert_eq!(shape.status(), 422);
    assert!(shape.json::<Value>().await.unwrap()["error"].is_string());
    assert_eq!(no_type.status(), 415);
    assert!(no_type.json::<Value>().await.unwrap()["error"].is_string());
}

mod json_errors {
    use super::*;
    crate::both_databases!(malformed_json_gets_a_json_error);
}
