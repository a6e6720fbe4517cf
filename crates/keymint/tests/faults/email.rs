//! The email provider is down for a while: every email is delivered once it
//! recovers, and none twice.

use crate::both_databases;
use crate::helpers::{Db, sale_form, spawn_app_with};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

async fn email_outage_delivers_every_email_once_after_recovery(db: Db) {
    let env = [
        ("KEYMINT_WORKERS__ENABLED", "true"),
        ("KEYMINT_EMAIL__MAX_ATTEMPTS", "1000"),
        ("KEYMINT_EMAIL__RETRY_BASE", "5ms"),
        ("KEYMINT_EMAIL__RETRY_MAX", "50ms"),
        ("KEYMINT_EMAIL__POLL_INTERVAL", "10ms"),
    ];
    let Some(app) = spawn_app_with(db, &env).await else {
        return;
    };
    // Down for the first 60 attempts (5xx, then timeouts-like 429s), then up.
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(40)
        .mount(&app.postmark)
        .await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(20)
        .mount(&app.postmark)
        .await;
    app.postmark_accepts().await;

    for i in 0..20 {
        let resp = app.post_gumroad(&sale_form(&format!("MAILDOWN-{i}"))).await;
        assert_eq!(resp.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while app
        .scalar("SELECT COUNT(*) FROM outbox WHERE status = $1", "sent")
        .await
        < 20
    {
        assert!(
            Instant::now() < deadline,
            "emails were not all delivered after the provider recovered"
        );
        assert_eq!(
            app.scalar("SELECT COUNT(*) FROM outbox WHERE status = $1", "dead")
                .await,
            0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let requests = app.postmark.received_requests().await.unwrap();
    assert!(requests.len() >= 60 + 20, "the outage was exercised");
    // The last 20 answers were successes: one per buyer, none twice.
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests[60..] {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        *accepted
            .entry(body["TextBody"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(requests.len(), 80, "every email sent once after recovery");
    assert_eq!(accepted.len(), 20);
    assert!(accepted.values().all(|n| *n == 1));
}

/// SIGTERM under an email backlog: the process sends at most the email in
/// flight, hands back what it had claimed, and exits; the backlog is left
/// for the next process, none of it lost or leased.
async fn a_graceful_stop_does_not_wait_for_the_email_backlog(db: Db) {
    use crate::helpers::{GUMROAD_SECRET, Served, TestDb, write_config};
    let dir = std::env::temp_dir().join(format!("keymint-stop-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(database) = TestDb::create(db, &dir, None).await else {
        return;
    };
    let postmark = wiremock::MockServer::start().await;
    // A slow provider: each send takes a while, so a backlog builds up.
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"MessageID": "m", "ErrorCode": 0}))
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&postmark)
        .await;
    let config = write_config(&dir, &database.url, &postmark.uri());
    let config_arg = config.to_str().unwrap().to_string();
    let env = [
        ("KEYMINT_WORKERS__ENABLED", "true"),
        ("KEYMINT_EMAIL__POLL_INTERVAL", "10ms"),
    ];
    let server = Served::start(&dir, &["--config", &config_arg], &env);
    let client = reqwest::Client::new();
    const SALES: i64 = 30;
    for i in 0..SALES {
        let resp = client
            .post(server.url(&format!("/webhooks/gumroad?secret={GUMROAD_SECRET}")))
            .form(&sale_form(&format!("BACKLOG-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Stop once the worker is busy with the backlog.
    let deadline = Instant::now() + Duration::from_secs(60);
    while postmark.received_requests().await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the worker never started sending"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop();

    let store = database.store().await;
    let mut conn = store.conn().await.unwrap();
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let sent = count("SELECT COUNT(*) FROM outbox WHERE status = 'sent'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let pending = count("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let leased =
        count("SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND lease_until IS NOT NULL")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let counted = count("SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND attempts > 0")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(sent + pending, SALES, "every email is sent or still queued");
    assert!(
        pending > 0,
        "the stop waited for the whole backlog ({sent} sent)"
    );
    assert_eq!(leased, 0, "claimed but unsent emails are handed back");
    assert_eq!(counted, 0, "a handed-back email has not used an attempt");
    // Each email the provider got was recorded as sent (none in limbo).
    let requests = postmark.received_requests().await.unwrap().len() as i64;
    assert_eq!(requests, sent);
}

both_databases!(
    email_outage_delivers_every_email_once_after_recovery,
    a_graceful_stop_does_not_wait_for_the_email_backlog,
);
