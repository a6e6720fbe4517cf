//! Durable acknowledgements: the settings in force on a running server's
//! writer connection, and concurrent deliveries sharing group commits
//! while each is applied exactly once and a failing one stays alone
//! (docs/architecture.md, "Durability and group commit").

use crate::both_databases;
use crate::client::{expect_error, expect_json};
use crate::helpers::{Db, sale_form, spawn_app, stderr, unstarted, with};
use crate::views::WebhookAnswer;
use serde_json::Value;

async fn database(app: &crate::helpers::TestApp, token: &str) -> Value {
    expect_json(app.admin_get(token, "/admin/v1/database").await, 200).await
}

async fn a_running_server_reports_durable_settings(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("durability").await;
    let body = database(&app, &token).await;
    let settings = &body["settings"];
    match db {
        Db::Sqlite => {
            assert_eq!(body["backend"], "sqlite");
            assert_eq!(settings["synchronous"], "full", "{body}");
            assert_eq!(settings["journal_mode"], "wal", "{body}");
        }
        Db::Postgres => {
            assert_eq!(body["backend"], "postgres");
            assert_eq!(settings["synchronous_commit"], "on", "{body}");
            assert_eq!(settings["fsync"], "on", "{body}");
        }
    }
    assert_eq!(body["durable"], true, "{body}");

    // It takes no parameters: one is refused, not ignored.
    expect_error(
        app.admin_get(&token, "/admin/v1/database?verbose=1").await,
        400,
        "bad_request",
    )
    .await;

    // A read-only token may not see it.
    let reader = app
        .scoped_token("reader", keymint::admin::scope::LICENSES_READ)
        .await;
    assert_eq!(
        app.admin_get(&reader, "/admin/v1/database").await.status(),
        403
    );
}

async fn concurrent_deliveries_share_commits_and_each_applies_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("batches").await;
    let before = database(&app, &token).await;

    // 40 sales, 10 of them twice, and 10 of an unmapped product (whose
    // transaction body fails and is undone alone), all at once.
    let mut forms = Vec::new();
    for i in 0..40 {
        forms.push(sale_form(&format!("GC-{i}")));
        if i % 4 == 0 {
            forms.push(sale_form(&format!("GC-{i}")));
        }
    }
    for i in 0..10 {
        forms.push(with(
            sale_form(&format!("GC-X{i}")),
            "product_id",
            "not-a-real-sku",
        ));
    }
    let responses = futures::future::join_all(forms.iter().map(|f| app.post_gumroad(f))).await;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for r in responses {
        *statuses
            .entry(expect_json::<WebhookAnswer>(r, 200).await.status)
            .or_default() += 1;
    }
    assert_eq!(statuses.get("ok"), Some(&40), "{statuses:?}");
    assert_eq!(statuses.get("duplicate"), Some(&10), "{statuses:?}");
    assert_eq!(statuses.get("logged-no-mint"), Some(&10), "{statuses:?}");
    for i in 0..40 {
        assert_eq!(app.licenses_for(&format!("GC-{i}")).await, 1, "GC-{i}");
    }
    for i in 0..10 {
        let order = format!("GC-X{i}");
        assert_eq!(app.licenses_for(&order).await, 0);
        // Its claim was undone with it: the delivery is failed, replayable.
        assert_eq!(
            app.scalar(
                "SELECT COUNT(*) FROM deliveries WHERE order_id = $1 AND status = 'failed'",
                &order
            )
            .await,
            1,
            "{order}"
        );
    }

    // Every delivery's record and its event went through the committer,
    // and concurrent ones shared commits.
    let after = database(&app, &token).await;
    let pieces = after["group_commit_pieces"].as_u64().unwrap()
        - before["group_commit_pieces"].as_u64().unwrap();
    let commits =
        after["group_commits"].as_u64().unwrap() - before["group_commits"].as_u64().unwrap();
    assert!(pieces >= 2 * 50 + 10, "{pieces} pieces");
    assert!(
        commits < pieces,
        "{commits} commits for {pieces} pieces: nothing was batched"
    );

    // One email per license, claimed and completed in batches.
    app.postmark_accepts().await;
    app.send_pending_emails().await;
    assert_eq!(app.sent_emails().await.len(), 40);
}

both_databases!(
    a_running_server_reports_durable_settings,
    concurrent_deliveries_share_commits_and_each_applies_once,
);

/// A PostgreSQL database set to acknowledge commits before they are on
/// disk is refused at start, with the setting and the fix named.
#[tokio::test]
async fn a_database_that_does_not_sync_commits_is_refused_at_start() {
    let Some((_dir, database, config)) = unstarted(Db::Postgres, "nodurable").await else {
        return;
    };
    let name = database.pg_name.clone().expect("a PostgreSQL database");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&database.url)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET synchronous_commit = off"
    )))
    .execute(&mut conn)
    .await
    .unwrap();

    // `serve` must stop by itself; one that started serving is killed after
    // a minute and fails the test.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("KEYMINT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < give_up {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let still_serving = child.try_wait().unwrap().is_none();
    if still_serving {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();

    assert!(!still_serving, "serve started on a non-durable database");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("does not make commits durable") && err.contains("synchronous_commit = off"),
        "{err}"
    );

    // `check-config` reports the same refusal before anyone restarts.
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        !checked.status.success(),
        "check-config passed a non-durable database"
    );
    let err = stderr(&checked);
    assert!(
        err.contains("database.url") && err.contains("synchronous_commit = off"),
        "{err}"
    );
}
