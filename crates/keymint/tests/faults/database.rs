//! PostgreSQL goes away mid-load: while it is down every answer is 503,
//! nothing answered 2xx is lost, and service resumes by itself.

use crate::helpers::{Db, sale_form, spawn_app_custom};
use crate::proxy::Proxy;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const UP: u8 = 0;
const DOWN: u8 = 1;
const RESTORING: u8 = 2;

/// One answer: (order, HTTP status, phase when sent, phase when answered).
type Seen = (String, u16, u8, u8);

/// Waits until `pred` holds for the answers so far (bounded).
async fn wait_for(seen: &Mutex<Vec<Seen>>, pred: impl Fn(&[Seen]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if pred(&seen.lock().await) {
            return;
        }
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_load_answers_503_and_loses_nothing() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let env = [("KEYMINT_DATABASE__ACQUIRE_TIMEOUT", "1s")];
    let Some(app) = spawn_app_custom(Db::Postgres, &env, Some(proxy.port)).await else {
        return;
    };
    let app = Arc::new(app);
    let phase = Arc::new(AtomicU8::new(UP));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));

    let mut senders = Vec::new();
    for s in 0..8 {
        let (app, phase, seen) = (app.clone(), phase.clone(), seen.clone());
        senders.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let order = format!("PGDOWN-{s}-{i}");
                let sent_in = phase.load(Ordering::SeqCst);
                let status = app.post_gumroad(&sale_form(&order)).await.status().as_u16();
                let answered_in = phase.load(Ordering::SeqCst);
                let mut seen = seen.lock().await;
                seen.push((order, status, sent_in, answered_in));
                let after_restore = seen.iter().filter(|e| e.2 == UP && e.1 == 200).count();
                if answered_in == UP && after_restore >= 400 {
                    return;
                }
            }
        }));
    }
    wait_for(&seen, |s| s.iter().filter(|e| e.1 == 200).count() >= 200).await;
    proxy.cut();
    phase.store(DOWN, Ordering::SeqCst);
    wait_for(&seen, |s| {
        s.iter().filter(|e| e.2 == DOWN && e.3 == DOWN).count() >= 16
    })
    .await;
    phase.store(RESTORING, Ordering::SeqCst);
    proxy.restore();
    phase.store(UP, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }

    let seen = seen.lock().await;
    let during: Vec<_> = seen.iter().filter(|e| e.2 == DOWN && e.3 == DOWN).collect();
    assert!(!during.is_empty());
    for (order, status, ..) in &during {
        assert_eq!(
            *status, 503,
            "{order} was answered {status} while the database was down"
        );
    }
    let resumed = seen
        .iter()
        .filter(|e| e.2 == UP && e.3 == UP && e.1 == 200)
        .count();
    assert!(resumed >= 1, "service did not resume by itself");
    for (order, status, ..) in seen.iter() {
        let licenses = app.licenses_for(order).await;
        match status {
            // Answered 2xx: it took effect, once.
            200 => assert_eq!(
                licenses, 1,
                "{order} was acknowledged but has {licenses} licenses"
            ),
            // Answered 503: the sender will retry; it may or may not have
            // taken effect, but never twice.
            503 => assert!(licenses <= 1, "{order} has {licenses} licenses"),
            other => panic!("{order}: unexpected status {other}"),
        }
    }
}
