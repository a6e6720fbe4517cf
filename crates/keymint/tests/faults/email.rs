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

both_databases!(email_outage_delivers_every_email_once_after_recovery);
