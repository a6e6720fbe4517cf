//! License emails through the outbox and a fake Postmark.

use crate::both_databases;
use crate::helpers::{Db, assert_contains, sale_form, spawn_app, with};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

async fn sale_sends_one_license_email_through_postmark(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.postmark_accepts().await;
    let key = app.gumroad_sale(&sale_form("GUM-MAIL")).await;
    let key = key.as_str();

    assert_eq!(app.send_pending_emails().await, 1);
    assert_eq!(app.send_pending_emails().await, 0);

    let emails = app.sent_emails().await;
    assert_eq!(emails.len(), 1);
    let email = &emails[0];
    assert_eq!(email["To"], "jane@example.com");
    assert_eq!(email["From"], "licenses@example.com");
    assert!(
        email["Subject"]
            .as_str()
            .unwrap()
            .contains("DataTools Core")
    );
    assert!(email["TextBody"].as_str().unwrap().contains(key));
    assert!(email["HtmlBody"].as_str().unwrap().contains(key));
    let requests = app.postmark.received_requests().await.unwrap();
    assert_eq!(
        requests[0].headers.get("x-postmark-server-token").unwrap(),
        "pm-test-token"
    );
    assert_eq!(app.count("outbox", "status", "sent").await, 1);
}

async fn html_in_the_buyer_name_is_escaped(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.postmark_accepts().await;
    let evil = "<img src=x onerror=alert(1)>Mallory";
    app.post_gumroad(&with(sale_form("GUM-XSS"), "full_name", evil))
        .await;

    app.send_pending_emails().await;

    let html = app.sent_emails().await[0]["HtmlBody"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!html.contains("<img"), "{html}");
    assert_contains(&html, "&lt;img src=x onerror=alert(1)&gt;Mallory");
}

async fn failing_postmark_keeps_the_license_retries_then_marks_dead(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&app.postmark)
        .await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(ResponseTemplate::new(422).set_body_json(
            serde_json::json!({"ErrorCode": 300, "Message": "Invalid 'To' address"}),
        ))
        .mount(&app.postmark)
        .await;
    app.gumroad_sale(&sale_form("GUM-PMFAIL")).await;

    app.send_pending_emails().await;

    assert_eq!(
        app.postmark.received_requests().await.unwrap().len(),
        3,
        "two 5xx retried, then a 4xx"
    );
    assert_eq!(app.count("outbox", "status", "dead").await, 1);
    let mut conn = app.state.store.conn().await.unwrap();
    let l = keymint::store::licenses::by_order(&mut conn, "gumroad", "GUM-PMFAIL")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.status, "active");
    let rows = keymint::store::outbox::for_license(&mut conn, &l.id)
        .await
        .unwrap();
    assert_eq!(rows[0].attempts, 3);
    assert!(
        rows[0].last_error.as_deref().unwrap().contains("422"),
        "{:?}",
        rows[0].last_error
    );
}

async fn postmark_down_for_every_attempt_ends_dead_after_max_attempts(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.postmark)
        .await;
    app.post_gumroad(&sale_form("GUM-DOWNMAIL")).await;

    app.send_pending_emails().await;

    assert_eq!(app.postmark.received_requests().await.unwrap().len(), 3);
    assert_eq!(app.count("outbox", "status", "dead").await, 1);
    assert_eq!(app.licenses_for("GUM-DOWNMAIL").await, 1);
}

async fn resend_sends_the_email_again(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.postmark_accepts().await;
    let admin = app.admin().await;
    let key = app.gumroad_sale(&sale_form("GUM-RESEND")).await;
    app.send_pending_emails().await;

    let resp = admin.act(&key, "resend", serde_json::json!({})).await;

    assert_eq!(resp.status(), 202);
    app.send_pending_emails().await;
    assert_eq!(app.sent_emails().await.len(), 2);
}

async fn postmark_request_carries_the_token_header(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(header("x-postmark-server-token", "pm-test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"ErrorCode": 0, "Message": "OK", "MessageID": "m-1"}),
        ))
        .expect(1)
        .mount(&app.postmark)
        .await;
    app.post_gumroad(&sale_form("GUM-HDR")).await;
    app.send_pending_emails().await;
    app.postmark.verify().await;
    assert_eq!(app.count("outbox", "provider_message_id", "m-1").await, 1);
}

both_databases!(
    sale_sends_one_license_email_through_postmark,
    html_in_the_buyer_name_is_escaped,
    failing_postmark_keeps_the_license_retries_then_marks_dead,
    postmark_down_for_every_attempt_ends_dead_after_max_attempts,
    resend_sends_the_email_again,
    postmark_request_carries_the_token_header,
);

/// A minimal SMTP server on loopback that accepts every message and keeps
/// what it received.
struct FakeSmtp {
    port: u16,
    messages: std::sync::Arc<tokio::sync::Mutex<Vec<String>>>,
}

impl FakeSmtp {
    async fn start() -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let store = messages.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 fake ESMTP\r\n").await.unwrap();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 fake\r\n",
                            "DATA" => {
                                write.write_all(b"354 go ahead\r\n").await.unwrap();
                                let mut message = String::new();
                                while let Ok(Some(l)) = lines.next_line().await {
                                    if l == "." {
                                        break;
                                    }
                                    message.push_str(&l);
                                    message.push('\n');
                                }
                                store.lock().await.push(message);
                                b"250 queued as fake-1\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, messages }
    }
}

async fn smtp_provider_sends_the_license_email(db: Db) {
    let smtp = FakeSmtp::start().await;
    let port = smtp.port.to_string();
    let Some(app) = crate::helpers::spawn_app_with(
        db,
        &[
            ("KEYMINT_EMAIL__PROVIDER", "smtp"),
            ("KEYMINT_EMAIL__SMTP__HOST", "127.0.0.1"),
            ("KEYMINT_EMAIL__SMTP__PORT", &port),
            ("KEYMINT_EMAIL__SMTP__TLS", "none"),
            ("KEYMINT_EMAIL__FROM_NAME", "DataTools"),
        ],
    )
    .await
    else {
        return;
    };
    let key = app.gumroad_sale(&sale_form("GUM-SMTP")).await;

    app.send_pending_emails().await;

    let messages = smtp.messages.lock().await.clone();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(m.contains("To: ") && m.contains("jane@example.com"), "{m}");
    assert_contains(m, "From: DataTools <licenses@example.com>");
    assert_contains(m, "multipart/alternative");
    assert_contains(m, key.as_str());
    assert_eq!(app.postmark.received_requests().await.unwrap().len(), 0);
    assert_eq!(app.count("outbox", "status", "sent").await, 1);
}

mod smtp {
    use super::*;
    crate::both_databases!(smtp_provider_sends_the_license_email);
}
