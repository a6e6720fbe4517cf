//! The console's refusals that must come before anything is done: a
//! token lacking the read scope an action's answer needs, a replay of an
//! endpoint that does not exist, a search too long to run; and what it
//! answers at paths it does not serve.

use crate::both_databases;
use crate::console::{hidden, page, post, signed_in};
use crate::helpers::{Db, sale_form, spawn_app, with};

async fn write_only_tokens_are_refused_before_anything_is_done(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let key = app.gumroad_sale(&sale_form("SCOPE-1")).await.to_string();
    let early = with(sale_form("SCOPE-EARLY"), "resource_name", "refund");
    let failed = app.gumroad(&early).await;
    assert_eq!(failed.status, "error");
    app.gumroad_sale(&sale_form("SCOPE-EARLY")).await;

    let writer = signed_in(&app, &app.scoped_token("lw", "licenses:write").await).await;
    let (_, overview) = page(&app, &writer, "/console").await;
    let csrf = hidden(&overview, "csrf");
    let (status, body) = post(
        &app,
        &writer,
        &format!("/console/licenses/{key}/status"),
        &[("csrf", &csrf), ("action", "revoke"), ("reason", "x")],
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("licenses:read"), "{body}");
    let (status, _) = post(
        &app,
        &writer,
        "/console/licenses/mint",
        &[
            ("csrf", &csrf),
            ("product", "datatools-core"),
            ("email", "lw@example.com"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    let admin = app.admin().await;
    assert_eq!(admin.license(&key).await.license.status, "active");
    assert_eq!(app.count("licenses", "email", "lw@example.com").await, 0);

    let replayer = signed_in(&app, &app.scoped_token("dw", "deliveries:write").await).await;
    let (_, overview) = page(&app, &replayer, "/console").await;
    let csrf = hidden(&overview, "csrf");
    let id = failed.delivery_id.to_string();
    for path in [
        format!("/console/deliveries/{id}/replay"),
        "/console/deliveries/replay-failed".to_string(),
    ] {
        let (status, _) = post(&app, &replayer, &path, &[("csrf", &csrf)]).await;
        assert_eq!(status, 403, "{path}");
    }
    assert_eq!(app.delivery(&id).await.status.as_str(), "failed");

    // A full operator naming an endpoint that does not exist replays
    // nothing (not every endpoint's).
    let ops = signed_in(&app, &app.admin_token("ops-full").await).await;
    let (_, overview) = page(&app, &ops, "/console").await;
    let csrf = hidden(&overview, "csrf");
    let (status, body) = post(
        &app,
        &ops,
        "/console/deliveries/replay-failed",
        &[("csrf", &csrf), ("endpoint", "nope")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("nothing was replayed"), "{body}");
    assert_eq!(app.delivery(&id).await.status.as_str(), "failed");
}

async fn searches_filter_by_product_and_refuse_what_cannot_run(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let core = app.gumroad_sale(&sale_form("PROD-1")).await.to_string();
    let pro = app
        .gumroad_sale(&with(sale_form("PROD-2"), "product_id", "dt-pro"))
        .await
        .to_string();
    let ops = signed_in(&app, &app.admin_token("ops-full").await).await;
    let (status, list) = page(&app, &ops, "/console/licenses?product=datatools-pro").await;
    assert_eq!(status, 200);
    assert!(list.contains(&pro) && !list.contains(&core), "{list}");
    assert!(
        list.contains("<option value=\"datatools-pro\" selected>"),
        "{list}"
    );

    // A search far longer than any key, email or name: refused, said so.
    let long = "a".repeat(50_000);
    let (status, body) = page(&app, &ops, &format!("/console/licenses?q={long}")).await;
    assert_eq!(status, 400);
    assert!(body.contains("Search too long"), "{body}");
    let api = app
        .admin_get(
            &app.admin_token("api").await,
            &format!("/admin/v1/licenses?q={}", "a".repeat(300)),
        )
        .await;
    assert_eq!(api.status(), 400);
    let err: serde_json::Value = api.json().await.unwrap();
    assert_eq!(err["code"], "filter_too_long");

    // Filters that name nothing are said to, not ignored; the forms'
    // "any" (empty) is no filter.
    for path in [
        "/console/licenses?status=bogus",
        "/console/licenses?product=nope",
        "/console/licenses?before=garbage",
        "/console/deliveries?status=bogus&endpoint=",
        "/console/deliveries?endpoint=nope",
        "/console/deliveries?within=2h",
        "/console/subscriptions?status=nope",
    ] {
        let (status, body) = page(&app, &ops, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("Unknown filter"), "{path}: {body}");
    }
    let (status, body) = page(&app, &ops, "/console/licenses?q=a%01b").await;
    assert_eq!(status, 400);
    assert!(body.contains("control characters"), "{body}");
    for path in [
        "/console/licenses?q=&product=&status=",
        "/console/deliveries?endpoint=&status=&within=",
        "/console/subscriptions?status=",
    ] {
        assert_eq!(page(&app, &ops, path).await.0, 200, "{path}");
    }

    // Paths the console does not serve: a page with the console's headers.
    let resp = crate::console::browser()
        .get(app.url("/console/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(resp.text().await.unwrap().contains("No such page"));
}

both_databases!(
    write_only_tokens_are_refused_before_anything_is_done,
    searches_filter_by_product_and_refuse_what_cannot_run,
);
