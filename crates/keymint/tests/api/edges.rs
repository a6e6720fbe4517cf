//! The edges refuse to turn a bad value into a default (docs/architecture.md,
//! rule 8): a signing key that cannot load stops the server and names
//! itself, corrupt stored headers fail a replay with the reason, and a
//! replayed delivery keeps the time it was received.

use crate::both_databases;
use crate::helpers::{Db, TestApp, sale_form, spawn_app, with};
use serde_json::Value;
use std::path::PathBuf;

const DAY: i64 = 86_400_000;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keymint-{tag}-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The corrupt key file, named as the data directory is configured
/// (relative here).
const CORRUPT_KEY: &str = "keymint-data/keys/0000000000001-corrupt.key";

/// A scratch directory whose key directory holds a file that is not a key;
/// returns the directory and its key directory.
fn with_corrupt_key_file(tag: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(tag);
    let keys = dir.join("keymint-data/keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(dir.join(CORRUPT_KEY), "k4.secret.not-a-key").unwrap();
    (dir, keys)
}

/// Runs the keymint binary in `dir` without a config file.
fn keymint(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
        .args(args)
        .current_dir(dir)
        .env("KEYMINT_SERVER__LISTEN", "127.0.0.1:0")
        .env_remove("KEYMINT_LOG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run keymint");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn exec(app: &TestApp, sql: &'static str, id: &str, value: &str) {
    let mut conn = app.state.store.writer().await.unwrap();
    sqlx::query(sql)
        .bind(id)
        .bind(value)
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[test]
fn a_corrupt_signing_key_file_stops_serve_and_check_config_naming_the_file() {
    // Arrange: a key directory holding a file that is not a key.
    let (dir, keys) = with_corrupt_key_file("badkey");

    // Act
    let (served, serve_err) = keymint(&dir, &["serve"]);
    let (checked, check_err) = keymint(&dir, &["check-config"]);

    // Assert: neither goes on without it, and both say which file.
    assert!(!served, "serve refuses to start: {serve_err}");
    assert!(serve_err.contains(CORRUPT_KEY), "{serve_err}");
    assert!(
        serve_err.contains("not a PASERK k4.secret key"),
        "{serve_err}"
    );
    assert!(!checked, "{check_err}");
    assert!(check_err.contains(CORRUPT_KEY), "{check_err}");
    let key_files = std::fs::read_dir(&keys).unwrap().count();
    assert_eq!(key_files, 1, "no other key was made in its place");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_list_with_a_corrupt_key_file_fails_naming_the_file() {
    // Arrange: a key directory holding a file that is not a key.
    let (dir, _keys) = with_corrupt_key_file("badkey-list");

    // Act
    let (listed, list_err) = keymint(&dir, &["keys", "list"]);

    // Assert: the listing does not go on without it, and says which file.
    assert!(!listed, "keys list refuses: {list_err}");
    assert!(list_err.contains(CORRUPT_KEY), "{list_err}");
    assert!(
        list_err.contains("not a PASERK k4.secret key"),
        "{list_err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn a_stored_public_key_that_does_not_parse_is_an_error_not_a_missing_key(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let kid = app
        .state
        .keyring
        .at_start()
        .expect("the server signs")
        .kid()
        .to_string();

    exec(
        &app,
        "UPDATE signing_keys SET public_key = $2 WHERE kid = $1",
        &kid,
        "k4.public.garbage",
    )
    .await;

    // Published keys: an error, not a list without the key.
    let published = app.client.get(app.url("/v1/keys")).send().await.unwrap();
    assert_eq!(published.status(), 500);
    // A new start: refused, naming the key.
    let config = keymint::config::Config::load_with_env(Some(&app.config_path), &[]).unwrap();
    let Err(e) = keymint::app::Application::build(config).await else {
        panic!("a server started with a corrupt stored key");
    };
    let message = e.to_string();
    assert!(message.contains(&kid), "{message}");
    assert!(message.contains("signing_keys"), "{message}");
}

async fn a_replay_with_corrupt_stored_headers_fails_with_the_reason(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops").await;
    // A failed (replayable) delivery whose stored headers are then damaged.
    let form = with(sale_form("HDR-1"), "product_id", "not-mapped");
    let first: Value = app.post_gumroad(&form).await.json().await.unwrap();
    assert_eq!(first["status"], "logged-no-mint", "{first}");
    let id = first["delivery_id"].as_str().unwrap().to_string();
    let body_before = app.delivery(&id).await.body;
    exec(
        &app,
        "UPDATE deliveries SET headers = $2 WHERE id = $1",
        &id,
        "{\"content-type\": ",
    )
    .await;

    let replayed: Value = app
        .admin_post(
            &token,
            &format!("/admin/v1/deliveries/{id}/replay"),
            serde_json::json!({}),
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(replayed["status"], "error", "{replayed}");
    let row = app.delivery(&id).await;
    assert_eq!(row.status, "failed", "still replayable once repaired");
    let error = row.error.unwrap_or_default();
    assert!(error.contains("stored headers"), "{error}");
    assert!(error.contains(&id), "{error}");
    assert_eq!(row.body, body_before, "the body is kept");
    assert_eq!(app.licenses_for("HDR-1").await, 0);
}

async fn a_replayed_delivery_keeps_the_time_it_was_received(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // A membership sale without `sale_timestamp`, for a product the
    // catalog does not map yet; it fails and waits for a replay.
    let form = with(
        with(sale_form("SUBSALE-1"), "product_id", "new-membership"),
        "subscription_id",
        "SUB-OLD-1",
    );
    let first: Value = app.post_gumroad(&form).await.json().await.unwrap();
    assert_eq!(first["status"], "logged-no-mint", "{first}");
    let id = first["delivery_id"].as_str().unwrap().to_string();
    // It arrived a week ago.
    let received_at = app.delivery(&id).await.received_at.as_i64() - 7 * DAY;
    {
        let mut conn = app.state.store.writer().await.unwrap();
        sqlx::query("UPDATE deliveries SET received_at = $2 WHERE id = $1")
            .bind(&id)
            .bind(received_at)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let fixed_path = app.config_replacing(
        r#"gumroad = ["dt-membership"]"#,
        r#"gumroad = ["dt-membership", "new-membership"]"#,
        "fixed.toml",
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
        .arg("--config")
        .arg(&fixed_path)
        .args(["replay", &id])
        .env("KEYMINT_LOG", "warn")
        .output()
        .unwrap();

    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("ok"), "{stdout}");
    let last_event_at = app
        .scalar(
            "SELECT last_event_at FROM subscriptions WHERE subscription_id = $1",
            "SUB-OLD-1",
        )
        .await;
    assert_eq!(
        last_event_at, received_at,
        "the event's time, not the replay's"
    );
    let period_end = app
        .scalar(
            "SELECT current_period_end FROM subscriptions WHERE subscription_id = $1",
            "SUB-OLD-1",
        )
        .await;
    assert_eq!(period_end, received_at + 31 * DAY, "a month from the sale");
}

both_databases!(
    a_stored_public_key_that_does_not_parse_is_an_error_not_a_missing_key,
    a_replay_with_corrupt_stored_headers_fails_with_the_reason,
    a_replayed_delivery_keeps_the_time_it_was_received,
);
