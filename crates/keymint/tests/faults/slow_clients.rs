//! Clients that send one byte a second don't exhaust the server: they are
//! cut off by the header and request timeouts while others are served.

use crate::helpers::{Db, GUMROAD_SECRET, sale_form, spawn_app_with};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Trickles `head` then one byte a second until the server closes the
/// connection; returns what the server sent back.
async fn trickle(addr: String, head: String) -> String {
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..60 {
        tokio::select! {
            read = stream.read(&mut buf) => {
                return match read {
                    Ok(0) | Err(_) => String::new(),
                    Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                };
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if stream.write_all(b"x").await.is_err() {
                    return String::new();
                }
            }
        }
    }
    panic!("the server kept a slow client for a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_do_not_block_others() {
    let env = [
        ("KEYMINT_SERVER__HEADER_READ_TIMEOUT", "2s"),
        ("KEYMINT_SERVER__REQUEST_TIMEOUT", "3s"),
    ];
    let Some(app) = spawn_app_with(Db::Sqlite, &env).await else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();

    let mut slow = Vec::new();
    for i in 0..100 {
        // Half trickle their headers, half their body.
        let head = if i % 2 == 0 {
            "POST /webhooks/gumroad HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_string()
        } else {
            format!(
                "POST /webhooks/gumroad?secret={GUMROAD_SECRET} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\nsale_id="
            )
        };
        slow.push(tokio::spawn(trickle(addr.clone(), head)));
    }

    // Meanwhile an ordinary sale is served.
    let resp = app.post_gumroad(&sale_form("SLOW-NEIGHBOUR")).await;
    assert_eq!(resp.status(), 200);

    let mut answers = Vec::new();
    for s in slow {
        answers.push(s.await.unwrap());
    }
    let body_timeouts = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 408"))
        .count();
    assert_eq!(body_timeouts, 50, "slow bodies get 408: {answers:?}");
    assert_eq!(app.licenses_for("SLOW-NEIGHBOUR").await, 1);
    let after = app.post_gumroad(&sale_form("SLOW-AFTER")).await;
    assert_eq!(after.status(), 200);
}
