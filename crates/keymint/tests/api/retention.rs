//! Retention: old rows go in batches; nothing younger than its cut-off.

use crate::both_databases;
use crate::helpers::{Db, assert_contains, sale_form, spawn_app_with, with};
use serde_json::Value;

const DAY: i64 = 86_400_000;

async fn set_received(app: &crate::helpers::TestApp, id: &str, at: i64) {
    let mut conn = app.state.store.writer().await.unwrap();
    sqlx::query("UPDATE deliveries SET received_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn retention_deletes_only_what_is_older_than_its_cut_off(db: Db) {
    // Small batches, to show several are used.
    let Some(app) = spawn_app_with(
        db,
        &[
            ("KEYMINT_RETENTION__BATCH", "2"),
            ("KEYMINT_RETENTION__PAUSE", "1ms"),
        ],
    )
    .await
    else {
        return;
    };
    let now = keymint::store::now_ms();
    let post = |form: Vec<(String, String)>| {
        let app = &app;
        async move {
            let r: Value = app.post_gumroad(&form).await.json().await.unwrap();
            r["delivery_id"].as_str().unwrap().to_string()
        }
    };
    let mut old = Vec::new();
    for i in 0..5 {
        old.push(post(sale_form(&format!("R-OLD-{i}"))).await);
    }
    let young = post(sale_form("R-YOUNG")).await;
    let failed = post(with(sale_form("R-FAILED"), "product_id", "unmapped")).await;
    let very_old_failed = post(with(sale_form("R-FAILED-2"), "product_id", "unmapped")).await;
    for id in &old {
        set_received(&app, id, now - 91 * DAY).await;
    }
    // A minute younger than the 90-day cut-off: kept.
    set_received(&app, &young, now - 90 * DAY + 60_000).await;
    // Failed deliveries are kept for a year.
    set_received(&app, &failed, now - 200 * DAY).await;
    set_received(&app, &very_old_failed, now - 366 * DAY).await;
    // Deliveries that failed authentication are kept for 30 days.
    let mut rejected = Vec::new();
    for _ in 0..2 {
        let r = app
            .post_gumroad_with_secret(&sale_form("R-REJECTED"), Some("not-the-secret"))
            .await;
        assert_eq!(r.status(), 404);
    }
    {
        let mut conn = app.state.store.conn().await.unwrap();
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM deliveries WHERE status = 'rejected' ORDER BY id")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        rejected.extend(ids);
    }
    assert_eq!(rejected.len(), 2);
    set_received(&app, &rejected[0], now - 31 * DAY).await;
    set_received(&app, &rejected[1], now - 29 * DAY).await;

    // One email gave up long ago, one recently.
    {
        let mut conn = app.state.store.writer().await.unwrap();
        for (order, age) in [("R-OLD-0", 91 * DAY), ("R-OLD-1", 89 * DAY)] {
            sqlx::query(
                "UPDATE outbox SET status = 'dead', created_at = $2 WHERE license_id = \
                 (SELECT id FROM licenses WHERE order_id = $1)",
            )
            .bind(order)
            .bind(now - age)
            .execute(&mut *conn)
            .await
            .unwrap();
        }
    }

    let dry = app.cli(&["retention", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{dry:?}");
    assert!(
        text.starts_with("would delete: 5 deliveries older than"),
        "{text}"
    );
    assert_contains(&text, ", 1 failed deliveries");
    assert_contains(&text, ", 1 rejected deliveries");
    assert_contains(&text, ", 1 dead emails");
    assert_eq!(app.count("deliveries", "endpoint", "gumroad").await, 10);

    let run = app.cli(&["retention"]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{run:?}");
    assert!(text.starts_with("deleted: 5 deliveries"), "{text}");
    let left: Vec<String> = {
        let mut conn = app.state.store.conn().await.unwrap();
        sqlx::query_scalar("SELECT id FROM deliveries ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
    };
    let mut want = vec![young, failed, rejected[1].clone()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(
        app.count("outbox", "status", "dead").await,
        1,
        "the recent dead email stays"
    );
    // Licenses are never retention's business.
    for i in 0..5 {
        assert_eq!(app.licenses_for(&format!("R-OLD-{i}")).await, 1);
    }
    // A second pass finds nothing.
    let again = app.cli(&["retention"]);
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("deleted: 0 deliveries"));
}

/// Singleton jobs: one holder at a time; a dead holder's lease expires.
async fn job_leases_have_one_holder_at_a_time(db: Db) {
    let Some(app) = crate::helpers::spawn_app(db).await else {
        return;
    };
    use keymint::store::leases::{acquire, holder, release};
    let mut conn = app.state.store.writer().await.unwrap();
    let t = 1_000_000;
    assert!(
        acquire(&mut conn, "sweeper", "a", t, t + 100)
            .await
            .unwrap()
    );
    assert!(
        !acquire(&mut conn, "sweeper", "b", t + 10, t + 110)
            .await
            .unwrap()
    );
    // The holder renews.
    assert!(
        acquire(&mut conn, "sweeper", "a", t + 50, t + 150)
            .await
            .unwrap()
    );
    assert!(
        !acquire(&mut conn, "sweeper", "b", t + 120, t + 220)
            .await
            .unwrap()
    );
    // Other jobs are independent.
    assert!(
        acquire(&mut conn, "retention", "b", t, t + 100)
            .await
            .unwrap()
    );
    // `a` stops renewing: after the lease ends, `b` takes over.
    assert!(
        acquire(&mut conn, "sweeper", "b", t + 150, t + 250)
            .await
            .unwrap()
    );
    assert_eq!(
        holder(&mut conn, "sweeper", t + 160)
            .await
            .unwrap()
            .as_deref(),
        Some("b")
    );
    assert!(
        !acquire(&mut conn, "sweeper", "a", t + 160, t + 260)
            .await
            .unwrap()
    );
    // Released early, it is free at once.
    release(&mut conn, "sweeper", "b").await.unwrap();
    assert!(
        acquire(&mut conn, "sweeper", "a", t + 170, t + 270)
            .await
            .unwrap()
    );
}

both_databases!(
    retention_deletes_only_what_is_older_than_its_cut_off,
    job_leases_have_one_holder_at_a_time,
);
