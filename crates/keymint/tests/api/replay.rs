//! Replay: one delivery or every failed one, after fixing the cause.

use crate::both_databases;
use crate::client::expect_json;
use crate::helpers::{Db, assert_contains, keymint_cli, sale_form, spawn_app, stdout, with};
use serde_json::{Value, json};

/// The app's config with `new-product` mapped too, as a fixed catalog.
fn fixed_config(app: &crate::helpers::TestApp) -> std::path::PathBuf {
    app.config_replacing(
        r#"gumroad = ["datatools-core"]"#,
        r#"gumroad = ["datatools-core", "new-product"]"#,
        "fixed.toml",
    )
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
        let r = app.gumroad(&form).await;
        assert_eq!(r.status, "logged-no-mint", "{r}");
        failed.push(r.delivery_id);
    }
    app.gumroad_sale(&sale_form("OLD-1")).await;

    // Fixed catalog: replay every failed delivery.
    let fixed = fixed_config(&app);
    let run = |args: &[&str]| {
        let out = keymint_cli(&fixed, args, &[]);
        assert!(out.status.success(), "{out:?}");
        stdout(&out)
    };
    let summary = run(&["replay", "--failed", "--endpoint", "gumroad"]);
    assert_contains(
        &summary,
        "replayed 4: 3 ok, 1 duplicate, 0 ignored, 0 logged-no-mint, 0 error",
    );
    for order in ["NEW-1", "NEW-2", "NEW-3", "OLD-1"] {
        assert_eq!(app.licenses_for(order).await, 1, "{order}");
    }
    // Nothing is failed any more; replaying one again is a duplicate.
    let again = run(&["replay", "--failed"]);
    assert_contains(&again, "replayed 0:");
    let one = run(&["replay", failed[0].as_str()]);
    assert!(one.starts_with("duplicate"), "{one}");
    assert_eq!(app.licenses_for("NEW-1").await, 1);
    // One email per license.
    assert_eq!(app.emails_for_order("NEW-1").await, 1);
}

async fn bulk_replay_through_the_admin_api_pages_and_filters(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    let replay = |body: Value| {
        let admin = &admin;
        async move { admin.post("/admin/v1/deliveries/replay", &body).await }
    };
    for order in ["B-1", "B-2", "B-3"] {
        let form = with(sale_form(order), "product_id", "nope");
        app.post_gumroad(&form).await;
    }
    // Still unmapped: each fails again, and paging walks them all once.
    let page: Value = expect_json(replay(json!({"limit": 2})).await, 200).await;
    assert_eq!(page["replayed"], 2, "{page}");
    assert_eq!(page["logged-no-mint"], 2, "{page}");
    let after = page["next_after"].as_str().unwrap();
    let rest: Value = expect_json(replay(json!({"limit": 2, "after": after})).await, 200).await;
    assert_eq!(rest["replayed"], 1, "{rest}");
    assert!(rest["next_after"].is_null());
    // Another endpoint's failures only.
    let none: Value = expect_json(replay(json!({"endpoint": "stripe"})).await, 200).await;
    assert_eq!(none["replayed"], 0);
    let bad = replay(json!({"limit": 0})).await;
    assert_eq!(bad.status(), 400);
    let bad = replay(json!({"since": "yesterday-ish"})).await;
    assert_eq!(bad.status(), 400);
}

both_databases!(
    replay_failed_after_a_catalog_fix_mints_exactly_once,
    bulk_replay_through_the_admin_api_pages_and_filters,
);
