//! Three `keymint serve` processes on one PostgreSQL behave as one server:
//! they migrate a fresh database together, the same sale sent to all three
//! at once mints once and emails once, distinct sales spread across them
//! each get one license and one email, a license's seat limit holds when
//! activations race across them, each singleton job has one holder
//! at a time, and they generate and sign with one key. PostgreSQL only: SQLite is one instance by design.

use crate::client::Api;
use crate::helpers::{Db, GUMROAD_SECRET, Served, sale_form, unstarted};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

async fn post(client: &reqwest::Client, base: &str, order: &str) -> Value {
    let resp = client
        .post(format!("{base}/webhooks/gumroad?secret={GUMROAD_SECRET}"))
        .form(&sale_form(order))
        .send()
        .await
        .expect("replica answers");
    assert_eq!(resp.status(), 200, "{order}");
    resp.json().await.unwrap()
}

/// The statuses of answers that must all have come.
fn statuses_of(answers: Vec<reqwest::Result<reqwest::Response>>) -> Vec<u16> {
    answers
        .into_iter()
        .map(|r| r.expect("replica answers").status().as_u16())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_postgres_behave_as_one_server() {
    let Some((dir, database, config)) = unstarted(Db::Postgres, "replicas").await else {
        return;
    };
    let config_arg = config.to_str().unwrap().to_string();
    let env = [
        ("KEYMINT_WORKERS__ENABLED", "true"),
        ("KEYMINT_EMAIL__PROVIDER", "log"),
        ("KEYMINT_EMAIL__POLL_INTERVAL", "20ms"),
        ("KEYMINT_SUBSCRIPTIONS__SWEEP_INTERVAL", "100ms"),
        ("KEYMINT_RETENTION__INTERVAL", "100ms"),
    ];
    // All three start at once on a database nobody has migrated yet.
    let replicas: Vec<Served> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| Served::start(&dir, &["--config", &config_arg], &env)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let bases: Vec<String> = replicas.iter().map(|r| r.url("")).collect();
    let client = reqwest::Client::new();

    // They chose one signing key between them: one was generated.
    let keys = Api::new(client.clone(), &bases[0], None)
        .published_keys()
        .await;
    assert_eq!(keys.keys.len(), 1, "{keys:?}");

    // The same sale to every replica at the same moment, ten times over.
    let same_orders: Vec<String> = (0..10).map(|i| format!("SAME-{i}")).collect();
    let mut sends = Vec::new();
    for order in &same_orders {
        for base in &bases {
            sends.push(post(&client, base, order));
        }
    }
    let answers = futures::future::join_all(sends).await;
    let statuses: BTreeSet<String> = answers
        .iter()
        .map(|a| a["status"].as_str().unwrap().to_string())
        .collect();
    assert!(
        statuses.iter().all(|s| s == "ok" || s == "duplicate"),
        "{statuses:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| a["status"] == "ok").count(),
        same_orders.len(),
        "one replica minted each sale"
    );

    // Many distinct sales spread across the replicas, 24 in flight.
    let distinct: Vec<String> = (0..150).map(|i| format!("SPREAD-{i}")).collect();
    for chunk in distinct.chunks(24) {
        let sends = chunk
            .iter()
            .enumerate()
            .map(|(i, order)| post(&client, &bases[i % 3], order));
        for a in futures::future::join_all(sends).await {
            assert_eq!(a["status"], "ok", "{a}");
        }
    }

    // Seats across replicas: 30 machines racing for a 3-seat license, ten
    // on each replica, get exactly 3 seats; 20 activations of one machine
    // make one.
    let keys: Vec<String> = futures::future::join_all(
        ["SEATS-1", "SEATS-2"].map(|order| post(&client, &bases[0], order)),
    )
    .await
    .into_iter()
    .map(|a| a["license_key"].as_str().unwrap().to_string())
    .collect();
    let activate = |base: &str, key: &str, fingerprint: String| {
        client
            .put(format!("{base}/v1/licenses/{key}/machines/{fingerprint}"))
            .send()
    };
    let racing = futures::future::join_all(
        (0..30).map(|i| activate(&bases[i % 3], &keys[0], format!("replica-race-{i:02}"))),
    )
    .await;
    let statuses = statuses_of(racing);
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        27,
        "{statuses:?}"
    );
    let same = futures::future::join_all(
        (0..20).map(|i| activate(&bases[i % 3], &keys[1], "one-machine-everywhere".into())),
    )
    .await;
    let statuses = statuses_of(same);
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        19,
        "{statuses:?}"
    );

    let store = database.store().await;
    {
        let mut conn = store.conn().await.unwrap();
        for (key, want) in [(&keys[0], 3), (&keys[1], 1)] {
            let machines: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM machines m JOIN licenses l ON l.id = m.license_id WHERE l.key = $1",
            )
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            assert_eq!(machines, want, "{key}");
        }
    }
    // Every email is sent by some replica; wait for the outbox to drain.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut conn = store.conn().await.unwrap();
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status <> 'sent'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} emails still unsent");
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = store.conn().await.unwrap();
    for order in same_orders.iter().chain(&distinct) {
        let licenses: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM licenses WHERE order_id = $1")
            .bind(order)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(licenses, 1, "{order}: one license");
        let emails: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox o JOIN licenses l ON l.id = o.license_id \
             WHERE l.order_id = $1 AND o.status = 'sent' AND o.attempts = 1",
        )
        .bind(order)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(emails, 1, "{order}: one email, sent once");
    }

    // Singleton jobs: sampled over a second (ten sweeper intervals), each
    // job has exactly one holder, always the same live replica.
    for job in ["sweeper", "retention"] {
        let mut holders = BTreeSet::new();
        for _ in 0..20 {
            let now = keymint::store::now_ms();
            if let Some(h) = keymint::store::leases::holder(&mut conn, job, now)
                .await
                .unwrap()
            {
                holders.insert(h);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(holders.len(), 1, "{job}: {holders:?}");
    }
    drop(conn);
    // Across the three logs, each email was sent by exactly one replica.
    let mut sent = 0;
    for r in replicas {
        let log = r.stop();
        assert!(!log.contains("panicked"), "{log}");
        sent += log.lines().filter(|l| l.contains("email sent")).count();
    }
    // Two more sales made the licenses the machines raced for.
    assert_eq!(sent, same_orders.len() + distinct.len() + 2);
    // Stopped gracefully, the holders gave their leases back.
    let mut conn = store.conn().await.unwrap();
    for job in keymint::workers::SINGLETON_JOBS {
        let now = keymint::store::now_ms();
        let holder = keymint::store::leases::holder(&mut conn, job, now)
            .await
            .unwrap();
        assert_eq!(holder, None, "{job}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
