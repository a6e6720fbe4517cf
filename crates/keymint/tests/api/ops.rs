//! Health, readiness, metrics and configuration checks.

use crate::both_databases;
use crate::client::expect_json;
use crate::helpers::{
    Db, PRODUCT_B_MAPPED_TWICE, assert_contains, config_file, keymint_cli, sale_form, spawn_app,
    stderr,
};

async fn health_ready_and_metrics(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.post_gumroad(&sale_form("GUM-MET")).await;

    let api = app.api();
    let health = api.get("/healthz").await;
    let ready = api.get("/readyz").await;
    let metrics = api.get_text("/metrics").await;

    assert_eq!(health.status(), 200);
    assert_eq!(ready.status(), 200);
    assert_contains(&metrics, "keymint_webhook_deliveries_total");
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
    assert!(out.status.success(), "{}", stderr(&out));
}

both_databases!(
    health_ready_and_metrics,
    responses_carry_a_request_id,
    check_config_accepts_the_test_config
);

#[test]
fn check_config_reports_every_problem_and_fails() {
    let path = config_file(
        "cc",
        &format!(
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
{PRODUCT_B_MAPPED_TWICE}"#
        ),
    );
    let out = keymint_cli(&path, &["check-config"], &[]);
    let stderr = stderr(&out);
    assert!(!out.status.success());
    assert_contains(&stderr, "colour");
    assert_contains(&stderr, "no secret");
    assert_contains(&stderr, "mapped twice");
    assert_contains(&stderr, "server.listen");
}

#[test]
fn check_config_reports_an_unreachable_database() {
    let path = config_file(
        "cc",
        "[database]\nurl = \"postgres://nobody@127.0.0.1:1/none\"\nacquire_timeout = \"1s\"\n",
    );
    let out = keymint_cli(&path, &["check-config"], &[]);
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "unreachable");
}

#[test]
fn serve_refuses_to_start_on_a_bad_config() {
    let path = config_file(
        "bad",
        "[[endpoints]]\nname = \"gumroad\"\nkind = \"gumroad\"\n",
    );
    let out = keymint_cli(&path, &["serve"], &[]);
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "no secret");
}

/// Every route keymint serves, as docs/admin-api.md and the README list
/// them: the description must list exactly these, and each must be served.
const SERVED: &[(&str, &str)] = &[
    ("post", "/webhooks/{endpoint}"),
    ("get", "/v1/keys"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/admin/v1/licenses"),
    ("get", "/admin/v1/licenses"),
    ("get", "/admin/v1/licenses/{key}"),
    ("post", "/admin/v1/licenses/{key}/revoke"),
    ("post", "/admin/v1/licenses/{key}/reinstate"),
    ("post", "/admin/v1/licenses/{key}/resend"),
    ("post", "/admin/v1/licenses/{key}/refund"),
    ("get", "/admin/v1/deliveries"),
    ("get", "/admin/v1/deliveries/{id}"),
    ("post", "/admin/v1/deliveries/{id}/replay"),
    ("post", "/admin/v1/deliveries/replay"),
    ("get", "/admin/v1/subscriptions"),
    ("get", "/admin/v1/subscriptions/{id}"),
    ("get", "/admin/v1/database"),
    ("get", "/admin/v1/licenses/{key}/machines"),
    ("delete", "/admin/v1/licenses/{key}/machines/{id}"),
    ("post", "/admin/v1/licenses/{key}/machines/reset"),
    ("put", "/admin/v1/licenses/{key}/max-machines"),
    ("post", "/v1/licenses/validate"),
    ("put", "/v1/licenses/{key}/machines/{fingerprint}"),
    ("delete", "/v1/licenses/{key}/machines/{fingerprint}"),
    ("get", "/v1/licenses/{key}/machines"),
    ("post", "/v1/checkout"),
    ("get", "/v1/checkout/{order_id}"),
    ("post", "/v1/licenses/{key}/billing-portal"),
    ("get", "/admin/v1/orders"),
    ("get", "/admin/v1/orders/{id}"),
];

async fn openapi_lists_exactly_the_served_routes_and_their_answers(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let doc: serde_json::Value = app.api().get_json("/openapi.json").await;
    let methods = ["get", "post", "put", "delete", "patch"];
    let mut listed = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in methods {
            if item.get(m).is_some() {
                listed.insert((m.to_string(), path.clone()));
            }
        }
    }
    let served: std::collections::BTreeSet<(String, String)> = SERVED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        listed, served,
        "the description and the served routes differ"
    );

    // Each listed route is served (no router miss), and each other method
    // on its path is a 405, so nothing is served there undescribed.
    let concrete = |path: &str| {
        path.replace("{endpoint}", "gumroad")
            .replace("{key}", "DT1-CORE-00000-00000-00000-00000")
            .replace("{id}", "dlv_0")
            .replace("{fingerprint}", "machine-0001")
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in methods {
            let method = reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            let resp = app
                .client
                .request(method, app.url(&concrete(path)))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            // The router's miss answers `{"code": "no_such_route"}`; the
            // document itself lists that code, so look at the top level.
            let missed = serde_json::from_str::<serde_json::Value>(&body)
                .is_ok_and(|v| v["code"] == "no_such_route");
            if item.get(m).is_some() {
                assert!(
                    status != 405 && !missed,
                    "{m} {path} is described but not served: {status} {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{m} {path} is served but not described: {body}"
                );
                assert!(body.contains("method_not_allowed"), "{m} {path}: {body}");
            }
        }
    }
    let miss = app.api().get("/no/such/route").await;
    let v: serde_json::Value = expect_json(miss, 404).await;
    assert_eq!(v["code"], "no_such_route");

    // The answers every route of its kind can give are listed.
    let responses = |m: &str, p: &str| -> Vec<String> {
        doc["paths"][p][m]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{m} {p} has no responses"))
            .keys()
            .cloned()
            .collect()
    };
    for (m, p) in SERVED {
        let r = responses(m, p);
        assert!(r.contains(&"408".to_string()), "{m} {p}: {r:?}");
        assert!(r.contains(&"405".to_string()), "{m} {p}: {r:?}");
        // OpenAPI 3.1 requires a description on every response.
        for (status, response) in doc["paths"][p][m]["responses"].as_object().unwrap() {
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{m} {p} {status} has no description"
            );
        }
        if p.starts_with("/admin/") && p.contains('{') {
            assert!(r.contains(&"400".to_string()), "{m} {p}: {r:?}");
        }
        if p.starts_with("/admin/") {
            for s in ["401", "403", "503"] {
                assert!(r.contains(&s.to_string()), "{m} {p} lacks {s}: {r:?}");
            }
        }
    }
    for (m, p) in [
        ("post", "/admin/v1/licenses"),
        ("post", "/admin/v1/licenses/{key}/revoke"),
        ("post", "/admin/v1/licenses/{key}/refund"),
        ("post", "/admin/v1/deliveries/replay"),
    ] {
        let r = responses(m, p);
        for s in ["400", "413", "415", "422"] {
            assert!(r.contains(&s.to_string()), "{m} {p} lacks {s}: {r:?}");
        }
    }
    // The licensing API answers every malformed body with a 400, whatever
    // its content type: no 415 or 422 is described there.
    for (m, p) in [
        ("post", "/v1/licenses/validate"),
        ("put", "/v1/licenses/{key}/machines/{fingerprint}"),
    ] {
        let r = responses(m, p);
        assert!(r.contains(&"413".to_string()), "{m} {p}: {r:?}");
        for s in ["415", "422"] {
            assert!(!r.contains(&s.to_string()), "{m} {p} lists {s}: {r:?}");
        }
    }
    for (m, p) in [
        ("get", "/admin/v1/licenses"),
        ("get", "/admin/v1/deliveries"),
    ] {
        assert!(responses(m, p).contains(&"400".to_string()), "{m} {p}");
    }
    let webhook = responses("post", "/webhooks/{endpoint}");
    for s in ["200", "401", "404", "413", "503"] {
        assert!(
            webhook.contains(&s.to_string()),
            "webhooks lack {s}: {webhook:?}"
        );
    }
    assert!(responses("get", "/readyz").contains(&"503".to_string()));
    assert!(responses("post", "/admin/v1/licenses/{key}/resend").contains(&"409".to_string()));
    assert!(responses("post", "/admin/v1/licenses").contains(&"409".to_string()));

    // The limits the server enforces are in the description.
    let limit = doc["paths"]["/admin/v1/licenses"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("a limit parameter")
        .clone();
    assert_eq!(limit["schema"]["maximum"], 500, "{limit}");
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    let key = doc["paths"]["/admin/v1/licenses/{key}"]["get"]["parameters"][0]["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert_contains(&key, "PREFIX-TIER-XXXXX-XXXXX-XXXXX-XXXXX");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// The description validates as OpenAPI 3.1 with an independent
/// validator (Python's openapi-spec-validator; required in CI).
async fn openapi_is_valid_openapi_3_1(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let text = app.api().get_text("/openapi.json").await;
    let path = app.dir.join("openapi.json");
    std::fs::write(&path, text).unwrap();
    const SCRIPT: &str = "import json, sys\n\
from openapi_spec_validator import validate\n\
validate(json.load(open(sys.argv[1])))\n\
print('valid')";
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT, path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'openapi_spec_validator'") {
        if std::env::var("KEYMINT_TEST_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
            panic!("openapi-spec-validator is required (KEYMINT_TEST_REQUIRE_INTEROP=1)");
        }
        eprintln!("NOTICE: skipping the OpenAPI validation (pip install openapi-spec-validator)");
        return;
    }
    assert!(
        out.status.success(),
        "/openapi.json is not valid OpenAPI 3.1: {stderr}"
    );
}

mod openapi {
    use super::*;
    crate::both_databases!(
        openapi_lists_exactly_the_served_routes_and_their_answers,
        openapi_is_valid_openapi_3_1,
    );
}
