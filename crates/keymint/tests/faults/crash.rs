//! kill -9 under sustained load, then restart: every delivery answered 2xx
//! is in the database and took effect; retried sales end with exactly one
//! license and one email each.

use crate::both_databases;
use crate::helpers::{Db, GUMROAD_SECRET, Served, sale_form, unstarted};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the load saw: acknowledged sales with their delivery ids, and sales
/// sent without an answer.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, Vec<String>>,
    unanswered: BTreeSet<String>,
}

async fn post(client: &reqwest::Client, base: &str, order: &str) -> Option<Value> {
    let resp = client
        .post(format!("{base}/webhooks/gumroad?secret={GUMROAD_SECRET}"))
        .form(&sale_form(order))
        .send()
        .await
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.json().await.ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn kill_9_under_load_loses_nothing_acknowledged(db: Db) {
    let Some((dir, database, config)) = unstarted(db, "crash").await else {
        return;
    };
    let config_arg = config.to_str().unwrap().to_string();
    let port = free_port().to_string();
    let env = [
        ("KEYMINT_SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("KEYMINT_WORKERS__ENABLED", "true".into()),
        ("KEYMINT_EMAIL__PROVIDER", "log".into()),
        ("KEYMINT_EMAIL__POLL_INTERVAL", "20ms".into()),
        // Emails leased by the killed process become claimable again after this.
        ("KEYMINT_EMAIL__LEASE", "2s".into()),
        // Deliveries the kill left `received` are recovered once older than
        // twice this.
        ("KEYMINT_SERVER__REQUEST_TIMEOUT", "2s".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Served::start(&dir, &["--config", &config_arg], &env);
    let base = server.url("");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let client = reqwest::Client::new();

    // Sustained load from 16 senders; the server is killed mid-way.
    let mut senders = Vec::new();
    for s in 0..16 {
        let (client, base, ledger) = (client.clone(), base.clone(), ledger.clone());
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let order = format!("CRASH-{s}-{i}");
                match post(&client, &base, &order).await {
                    Some(body) => {
                        let id = body["delivery_id"].as_str().unwrap().to_string();
                        ledger
                            .lock()
                            .unwrap()
                            .acked
                            .entry(order)
                            .or_default()
                            .push(id);
                    }
                    None => {
                        ledger.lock().unwrap().unanswered.insert(order);
                        return; // the server is gone
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ledger.lock().unwrap().acked.len() < 300 {
        assert!(Instant::now() < deadline, "load made no progress");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for s in senders {
        s.await.unwrap();
    }

    // Restart on the same port; the provider retries what had no answer.
    let server = Served::start(&dir, &["--config", &config_arg], &env);
    let retry: Vec<String> = ledger.lock().unwrap().unanswered.iter().cloned().collect();
    for order in &retry {
        let body = post(&client, &base, order)
            .await
            .expect("answered after restart");
        ledger
            .lock()
            .unwrap()
            .acked
            .entry(order.clone())
            .or_default()
            .push(body["delivery_id"].as_str().unwrap().into());
    }
    let store = database.store().await;
    let mut conn = store.conn().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = keymint::store::outbox::count_by_status(
            &mut conn,
            keymint::domain::EmailStatus::Pending,
        )
        .await
        .unwrap();
        let received: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'received'")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        if pending == 0 && received == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} emails still pending, {received} deliveries still received"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop();

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    for (order, ids) in &ledger.acked {
        for id in ids {
            let d = keymint::store::deliveries::get(&mut conn, &id.parse().unwrap())
                .await
                .unwrap();
            let d =
                d.unwrap_or_else(|| panic!("acknowledged delivery {id} for {order} is missing"));
            assert!(
                matches!(d.status.as_str(), "processed" | "duplicate"),
                "{id}: {}",
                d.status
            );
        }
        assert_eq!(
            keymint::store::licenses::count_for_order(&mut conn, "gumroad", order)
                .await
                .unwrap(),
            1,
            "{order}"
        );
    }
    let licenses: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM licenses")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(
        licenses as usize,
        ledger.acked.len(),
        "licenses equal the distinct acknowledged sales"
    );
    let emails: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'license_issued' AND status = 'sent'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(emails, licenses, "one email per license");
    let doubled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT license_id FROM outbox GROUP BY license_id HAVING COUNT(*) > 1) AS d",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(doubled, 0);
    drop(conn);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

both_databases!(kill_9_under_load_loses_nothing_acknowledged);
