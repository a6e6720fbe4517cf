//! Replay: one delivery or every failed one, after fixing the cause.

use crate::both_databases;
use crate::helpers::{Db, sale_form, spawn_app, with};
use serde_json::Value;

/// The app's config with `new-product` mapped too, as a fixed catalog.
fn fixed_config(app: &crate::helpers::TestApp) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let fixed = text.replacen(
        r#"gumroad = ["datatools-core"]"#,
        r#"gumroad = ["datatools-core", "new-product"]"#,
        1,
    );
    assert_ne!(text, fixed);
    let path = app.dir.join("fixed.toml");
    std::fs::write(&path, fixed).unwrap();
    path
}

async fn replay_failed_after_a_catalog_fix_mints_exactly_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // Three sales of a product the catalog does not map yet, one of them
    // delivered twice, and one mapped sale.
    let mut failed = Vec::new();
    for order in ["NEW-1", "NEW-2", "NEW-3", "NEW-1"] {
        let form = with(sale_form(order), "product_id", "new-product");
        let r: Value = app.post_gumroad(&form).await.json().await.unwrap();
        assert_eq!(r["status"], "logged-no-mint", "{r}");
        failed.push(r["delivery_id"].as_str().unwrap().to_string());
    }
    let ok: Value = app
        .post_gumroad(&sale_form("OLD-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ok["status"], "ok");

    // Fixed catalog: replay every failed delivery.
    let fixed = fixed_config(&app);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
            .arg("--config")
            .arg(&fixed)
            .args(args)
            .env("KEYMINT_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let summary = run(&["replay", "--failed", "--endpoint", "gumroad"]);
    assert!(
        summary.contains("replayed 4: 3 ok, 1 duplicate, 0 ignored, 0 logged-no-mint, 0 error"),
        "{summary}"
    );
    for order in ["NEW-1", "NEW-2", "NEW-3", "OLD-1"] {
        assert_eq!(app.licenses_for(order).await, 1, "{order}");
    }
    // Nothing is failed any more; replaying one again is a duplicate.
    let again = run(&["replay", "--failed"]);
    assert!(again.contains("replayed 0:"), "{again}");
    let one = run(&["replay", &failed[0]]);
    assert!(one.starts_with("duplicate"), "{one}");
    assert_eq!(app.licenses_for("NEW-1").await, 1);
    // One email per license.
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM outbox o JOIN licenses l ON l.id = o.license_id WHERE l.order_id = $1",
            "NEW-1"
        )
        .await,
        1
    );
}

async fn bulk_replay_through_the_admin_api_pages_and_filters(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    for order in ["B-1", "B-2", "B-3"] {
        let form = with(sale_form(order), "product_id", "nope");
        app.post_gumroad(&form).await;
    }
    // Still unmapped: each fails again, and paging walks them all once.
    let page: Value = app
        .admin_post(
            &token,
            "/admin/v1/deliveries/replay",
            serde_json::json!({"limit": 2}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["replayed"], 2, "{page}");
    assert_eq!(page["logged-no-mint"], 2, "{page}");
    let after = page["next_after"].as_str().unwrap();
    let rest: Value = app
        .admin_post(
            &token,
            "/admin/v1/deliveries/replay",
            serde_json::json!({"limit": 2, "after": after}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["replayed"], 1, "{rest}");
    assert!(rest["next_after"].is_null());
    // Another endpoint's failures only.
    let none: Value = app
        .admin_post(
            &token,
            "/admin/v1/deliveries/replay",
            serde_json::json!({"endpoint": "stripe"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["replayed"], 0);
    let bad = app
        .admin_post(
            &token,
            "/admin/v1/deliveries/replay",
            serde_json::json!({"limit": 0}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let bad = app
        .admin_post(
            &token,
            "/admin/v1/deliveries/replay",
            serde_json::json!({"since": "yesterday-ish"}),
        )
        .await;
    assert_eq!(bad.status(), 400);
}

both_databases!(
    replay_failed_after_a_catalog_fix_mints_exactly_once,
    bulk_replay_through_the_admin_api_pages_and_filters,
);
