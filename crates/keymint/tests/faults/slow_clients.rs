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

/// Reads until the server closes the connection; panics if it keeps it a
/// minute (the guard, not a measurement: the timeout under test is 1 s).
async fn read_until_closed(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 4096];
    let guard = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(guard);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            () = &mut guard => panic!("the server kept a silent connection for a minute"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_send_a_request_are_closed() {
    let env = [("KEYMINT_SERVER__HEADER_READ_TIMEOUT", "1s")];
    let Some(app) = spawn_app_with(Db::Sqlite, &env).await else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    // Silent from the start; half an HTTP/2 preface; a whole preface and
    // then nothing (no SETTINGS, no stream).
    let openings: [&[u8]; 3] = [
        b"",
        b"PRI * HTTP/2.0\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    let mut waits = Vec::new();
    for opening in openings {
        let addr = addr.clone();
        waits.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream.write_all(opening).await.unwrap();
            read_until_closed(&mut stream).await;
        }));
    }
    for w in waits {
        w.await.unwrap();
    }
    // An ordinary client is still served.
    let resp = app.post_gumroad(&sale_form("AFTER-SILENT")).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() {
    let env = [
        ("KEYMINT_SERVER__MAX_CONNECTIONS", "2"),
        ("KEYMINT_SERVER__HEADER_READ_TIMEOUT", "60s"),
    ];
    let Some(app) = spawn_app_with(Db::Sqlite, &env).await else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    let health = |timeout: Duration| {
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
        let url = app.url("/healthz");
        async move { client.get(url).send().await }
    };
    assert_eq!(health(Duration::from_secs(30)).await.unwrap().status(), 200);
    // Two silent clients hold both slots: a third is not served meanwhile.
    let a = TcpStream::connect(&addr).await.unwrap();
    let b = TcpStream::connect(&addr).await.unwrap();
    let held = health(Duration::from_millis(500)).await;
    assert!(held.is_err(), "a third connection was served: {held:?}");
    // When they go, new clients are served again.
    drop(a);
    drop(b);
    assert_eq!(health(Duration::from_secs(30)).await.unwrap().status(), 200);
}
