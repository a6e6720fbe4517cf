//! `keymint serve` as a real process: the zero-config start, and logs that
//! never carry a secret.

use crate::both_databases;
use crate::helpers::{Db, GUMROAD_SECRET, Served, sale_form, spawn_app};

#[tokio::test]
async fn zero_config_start_creates_sqlite_and_a_private_signing_key() {
    let dir = std::env::temp_dir().join(format!("keymint-zero-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    // Only the port is changed, so parallel tests don't collide on 8080.
    let served = Served::start(&dir, &[], &[("KEYMINT_SERVER__LISTEN", "127.0.0.1:0")]);

    let ready = reqwest::get(served.url("/readyz")).await.unwrap();
    // The group-commit counters show from the start (seen in a process of
    // its own: the harness's in-process servers share one recorder).
    let metrics = reqwest::get(served.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("keymint_db_group_commits_total ")),
        "no group-commit counter: {metrics}"
    );
    let keys: serde_json::Value = reqwest::get(served.url("/v1/keys"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let log = served.stop();

    assert_eq!(ready.status(), 200);
    assert!(dir.join("keymint-data/keymint.db").is_file());
    let key_files: Vec<_> = std::fs::read_dir(dir.join("keymint-data/keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(key_files.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_files[0])
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let published = keys["keys"][0]["public_key"].as_str().unwrap();
    assert!(
        log.contains(published),
        "the start-up log names the public key: {log}"
    );
    let secret = std::fs::read_to_string(&key_files[0]).unwrap();
    assert!(
        !log.contains(&secret["k4.secret.".len()..]),
        "the private key never reaches the log"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn logs_never_contain_secrets(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let served = Served::start(
        &app.dir,
        &["--config", app.config_path.to_str().unwrap()],
        &[("KEYMINT_SERVER__LOG_FORMAT", "json")],
    );
    let client = reqwest::Client::new();
    let mut key = None;
    for secret in [GUMROAD_SECRET, "a-wrong-secret-value"] {
        let answer = client
            .post(served.url(&format!("/webhooks/gumroad?secret={secret}")))
            .header("authorization", "Bearer kmt_should_not_be_logged")
            .form(&sale_form("GUM-LOG"))
            .send()
            .await
            .unwrap();
        if let Ok(v) = answer.json::<serde_json::Value>().await
            && let Some(k) = v["license_key"].as_str()
        {
            key = Some(k.to_string());
        }
    }
    // A buyer's program: its key and its machine's fingerprint are
    // credentials and private, so neither is logged (the route's template
    // is).
    let key = key.expect("the sale minted a license");
    let fingerprint = "fp-never-in-the-log-0001";
    let machine = served.url(&format!("/v1/licenses/{key}/machines/{fingerprint}"));
    assert_eq!(client.put(&machine).send().await.unwrap().status(), 201);
    let validated = client
        .post(served.url("/v1/licenses/validate"))
        .json(&serde_json::json!({"key": key, "fingerprint": fingerprint}))
        .send()
        .await
        .unwrap();
    assert_eq!(validated.status(), 200);
    assert_eq!(client.delete(&machine).send().await.unwrap().status(), 204);
    client
        .get(served.url(&format!("/admin/v1/licenses/{key}")))
        .bearer_auth("kmt_should_not_be_logged")
        .send()
        .await
        .unwrap();
    client
        .get(served.url("/admin/v1/deliveries"))
        .bearer_auth("kmt_should_not_be_logged")
        .send()
        .await
        .unwrap();

    let log = served.stop();

    assert!(
        log.contains("/webhooks/{endpoint}")
            && log.contains("/v1/licenses/{key}/machines/{fingerprint}"),
        "requests are logged by route: {log}"
    );
    let request_line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.to_string().contains("/webhooks/{endpoint}"))
        .expect("JSON log lines");
    assert!(
        request_line.to_string().contains("request_id"),
        "{request_line}"
    );
    for secret in [
        GUMROAD_SECRET,
        "a-wrong-secret-value",
        "kmt_should_not_be_logged",
        "pm-test-token",
        "old-secret",
        key.as_str(),
        fingerprint,
    ] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}

both_databases!(logs_never_contain_secrets);
