//! Nothing silent on the way to a signature: a stored value keymint cannot
//! trust fails the delivery with its reason (200 `error`, replayable),
//! never a quietly different license (docs/architecture.md, rule 8).

use crate::both_databases;
use crate::helpers::{Db, TestApp, spawn_app};
use crate::providers::{Ids, Moment, Step, now_secs, sub_step};

const DAY: i64 = 86_400;

/// Sends `step`, asserts keymint answered `error` and failed the delivery
/// (replayable after a fix); the delivery's reason.
async fn failed_reason(app: &TestApp, step: &Step) -> String {
    let r = app.send(step).await;
    assert_eq!(r.status, "error", "{r}");
    let delivery = app.delivery(&r.delivery_id).await;
    assert_eq!(delivery.status, "failed");
    delivery.error.unwrap_or_default()
}

/// The subscription's next Stripe event, sent 700 s before `now`.
fn next_event(ids: &Ids, moment: Moment, now: i64, period_end: i64) -> Step {
    sub_step("stripe", ids, moment, now - 700, period_end, 0).unwrap()
}

async fn exec(app: &TestApp, sql: &'static str, arg: &str) {
    let mut conn = app.state.store.writer().await.unwrap();
    sqlx::query(sql)
        .bind(arg)
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// A Stripe subscription with an active license; returns its ids.
async fn active_subscription(app: &TestApp, now: i64) -> Ids {
    let ids = Ids::new("stripe");
    let t0 = now - 1000;
    app.send(&sub_step("stripe", &ids, Moment::Identity, t0, now + 2 * DAY, 0).unwrap())
        .await;
    let r = app
        .send(&sub_step("stripe", &ids, Moment::Active, t0 + 100, now + 2 * DAY, 0).unwrap())
        .await;
    assert_eq!(r.status, "ok", "{r}");
    ids
}

async fn corrupt_entitlements_fail_a_renewal_instead_of_signing_none(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let now = now_secs();
    let ids = active_subscription(&app, now).await;
    exec(
        &app,
        "UPDATE licenses SET entitlements = 'not json' WHERE order_id = $1",
        &ids.sub,
    )
    .await;

    let renewal = next_event(&ids, Moment::Recovered, now, now + 32 * DAY);
    let reason = failed_reason(&app, &renewal).await;

    assert!(
        reason.contains("stored entitlements are not a JSON list"),
        "{reason}"
    );
}

async fn an_unknown_stored_subscription_status_fails_the_event(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let now = now_secs();
    let ids = active_subscription(&app, now).await;
    exec(
        &app,
        "UPDATE subscriptions SET status = 'on_holiday' WHERE subscription_id = $1",
        &ids.sub,
    )
    .await;

    let next = next_event(&ids, Moment::PaymentFailed, now, now + 2 * DAY);
    let reason = failed_reason(&app, &next).await;

    assert!(
        reason.contains("unknown stored subscription status \"on_holiday\""),
        "{reason}"
    );
}

async fn a_renewal_of_a_product_gone_from_the_catalog_fails_instead_of_guessing(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let now = now_secs();
    let ids = active_subscription(&app, now).await;
    // The operator removed the product from the catalog since the sale.
    exec(
        &app,
        "UPDATE licenses SET product = 'retired-product' WHERE order_id = $1",
        &ids.sub,
    )
    .await;

    let renewal = next_event(&ids, Moment::Recovered, now, now + 32 * DAY);
    let reason = failed_reason(&app, &renewal).await;

    // Re-signing it without knowing whether the product puts the email in
    // its tokens would change what the token says.
    assert!(
        reason.contains("product \"retired-product\" is not in the catalog"),
        "{reason}"
    );
}

both_databases!(
    a_renewal_of_a_product_gone_from_the_catalog_fails_instead_of_guessing,
    corrupt_entitlements_fail_a_renewal_instead_of_signing_none,
    an_unknown_stored_subscription_status_fails_the_event,
);
