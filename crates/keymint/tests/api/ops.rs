//! Health, readiness, metrics and configuration checks.

use crate::both_databases;
use crate::helpers::{Db, sale_form, spawn_app};

async fn health_ready_and_metrics(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.post_gumroad(&sale_form("GUM-MET")).await;

    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert_eq!(health.status(), 200);
    assert_eq!(ready.status(), 200);
    assert!(
        metrics.contains("keymint_webhook_deliveries_total"),
        "{metrics}"
    );
    assert!(metrics.contains("keymint_licenses_minted_total"));
    assert!(metrics.contains("keymint_http_request_duration_seconds"));
    assert!(!metrics.contains(crate::helpers::GUMROAD_SECRET));
}

async fn responses_carry_a_request_id(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
}

async fn check_config_accepts_the_test_config(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let out = app.cli(&["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

both_databases!(
    health_ready_and_metrics,
    responses_carry_a_request_id,
    check_config_accepts_the_test_config
);

#[test]
fn check_config_reports_every_problem_and_fails() {
    let dir = std::env::temp_dir().join(format!("keymint-cc-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "nowhere"
colour = "blue"
[database]
url = "sqlite:///nonexistent-dir-keymint/x/y.db?mode=ro"
[[endpoints]]
name = "gumroad"
kind = "gumroad"
[[products]]
id = "a"
name = "A"
tier = "core"
key_prefix = "A"
[products.map]
gumroad = ["same"]
[[products]]
id = "b"
name = "B"
tier = "core"
key_prefix = "B"
[products.map]
gumroad = ["same"]
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("colour"), "{stderr}");
    assert!(stderr.contains("no secret"), "{stderr}");
    assert!(stderr.contains("mapped twice"), "{stderr}");
    assert!(stderr.contains("server.listen"), "{stderr}");
}

#[test]
fn check_config_reports_an_unreachable_database() {
    let dir = std::env::temp_dir().join(format!("keymint-cc-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("k.toml");
    std::fs::write(
        &path,
        "[database]\nurl = \"postgres://nobody@127.0.0.1:1/none\"\nacquire_timeout = \"1s\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}

#[test]
fn serve_refuses_to_start_on_a_bad_config() {
    let dir = std::env::temp_dir().join(format!("keymint-bad-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("k.toml");
    std::fs::write(
        &path,
        "[[endpoints]]\nname = \"gumroad\"\nkind = \"gumroad\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
        .args(["--config", path.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no secret"));
}

async fn openapi_describes_the_routes(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let doc: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/webhooks/{endpoint}",
        "/v1/keys",
        "/admin/v1/licenses",
        "/admin/v1/deliveries/{id}/replay",
    ] {
        assert!(
            paths.contains_key(route),
            "{route} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

mod openapi {
    use super::*;
    crate::both_databases!(openapi_describes_the_routes);
}
