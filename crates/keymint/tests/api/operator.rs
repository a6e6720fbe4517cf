//! What an operator and a hostile admin client can do: input text, search,
//! error shapes, token names, resends, manual order ids, key rotation and
//! the CLI's exit codes.

use crate::both_databases;
use crate::helpers::{Db, TestApp, TestDb, sale_form, spawn_app, with, write_config};
use keymint_license::KeySet;
use serde_json::{Value, json};
use std::process::Output;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Mints through a Gumroad sale; returns the license key.
async fn gumroad_key(app: &TestApp, form: &[(String, String)]) -> String {
    let body: Value = app.post_gumroad(form).await.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    body["license_key"].as_str().unwrap().to_string()
}

async fn license(app: &TestApp, token: &str, key: &str) -> Value {
    let resp = app
        .admin_get(token, &format!("/admin/v1/licenses/{key}"))
        .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Asserts a JSON error answer with this status and code.
async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status(), status, "{:?}", resp.url().to_string());
    let body: Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    body
}

async fn licenses_found(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let resp = app
        .admin_get(token, &format!("/admin/v1/licenses?{query}"))
        .await;
    assert_eq!(resp.status(), 200, "{query}");
    let body: Value = resp.json().await.unwrap();
    let mut keys: Vec<String> = body["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

// Item 5: control characters in admin input.

async fn control_characters_are_refused_in_ids_and_cleaned_in_free_text(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");

    let minted = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "datatools-core", "email": "nul@example.com",
                   "name": "Ja\u{0}ne\r\nBcc: x@y.z", "notes": "line one\u{0}\r\nline\u{1b} two"}),
        )
        .await;
    let nul_email = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "datatools-core", "email": "a\u{0}b@example.com"}),
        )
        .await;
    let nul_order = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "datatools-core", "email": "c@example.com", "order_id": "INV\u{0}1"}),
        )
        .await;
    let nul_query = app
        .admin_get(&token, "/admin/v1/licenses?email=a%00b")
        .await;
    let nul_delivery = app.admin_get(&token, "/admin/v1/deliveries/dlv%00x").await;
    let nul_subscription = app
        .admin_get(&token, "/admin/v1/subscriptions/sub%00x")
        .await;

    assert_eq!(minted.status(), 201);
    let minted: Value = minted.json().await.unwrap();
    // Names are one line, notes keep their line breaks (docs/admin-api.md).
    assert_eq!(minted["license"]["name"], "Ja ne Bcc: x@y.z");
    assert_eq!(minted["license"]["notes"], "line one\nline two");
    assert_error(nul_email, 422, "control_character").await;
    assert_error(nul_order, 422, "control_character").await;
    assert_error(nul_query, 400, "control_character").await;
    assert_error(nul_delivery, 400, "control_character").await;
    assert_error(nul_subscription, 400, "control_character").await;

    let key = minted["license"]["key"].as_str().unwrap();
    let revoked = app
        .admin_post(
            &token,
            &format!("/admin/v1/licenses/{key}/revoke"),
            json!({"reason": "chargeback\u{0}\nforged line"}),
        )
        .await;
    assert_eq!(revoked.status(), 200);
    let detail = license(&app, &token, key).await;
    assert_eq!(detail["history"][1]["reason"], "chargeback forged line");
}

// Item 19: search.

async fn license_search_matches_parts_and_refuses_bad_filters(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    let jane = gumroad_key(
        &app,
        &with(sale_form("GUM-SRCH-1"), "email", "Jane.Doe@Example.COM"),
    )
    .await;
    let bob = gumroad_key(
        &app,
        &with(
            with(sale_form("GUM-SRCH-2"), "email", "bob@other.org"),
            "full_name",
            "Bob Stone",
        ),
    )
    .await;
    let key_part = jane[9..20].to_lowercase();

    assert_eq!(
        licenses_found(&app, &token, "email=DOE@example").await,
        std::slice::from_ref(&jane)
    );
    assert_eq!(
        licenses_found(&app, &token, "order_id=GUM-SRCH-2").await,
        std::slice::from_ref(&bob)
    );
    assert!(
        licenses_found(&app, &token, "order_id=GUM-SRCH")
            .await
            .is_empty()
    );
    assert_eq!(
        licenses_found(&app, &token, "q=stone").await,
        std::slice::from_ref(&bob)
    );
    assert_eq!(
        licenses_found(&app, &token, &format!("q={key_part}")).await,
        std::slice::from_ref(&jane)
    );
    assert_eq!(
        licenses_found(&app, &token, "q=srch-1").await,
        std::slice::from_ref(&jane)
    );
    assert_eq!(
        licenses_found(&app, &token, "q=OTHER.ORG").await,
        std::slice::from_ref(&bob)
    );
    assert!(
        licenses_found(&app, &token, "q=%25").await.is_empty(),
        "% is not a wildcard"
    );
    assert_eq!(licenses_found(&app, &token, "q=gum-srch").await.len(), 2);

    for (query, code) in [
        ("q=", "empty_filter"),
        ("order_id=", "empty_filter"),
        ("email=", "empty_filter"),
        ("emial=jane", "bad_request"),
        ("status=nope", "bad_status"),
        ("limit=abc", "bad_request"),
        ("before=yesterday", "bad_cursor"),
    ] {
        let resp = app
            .admin_get(&token, &format!("/admin/v1/licenses?{query}"))
            .await;
        assert_error(resp, 400, code).await;
    }
    let deliveries = app
        .admin_get(&token, "/admin/v1/deliveries?stauts=failed")
        .await;
    assert_error(deliveries, 400, "bad_request").await;
    let subscriptions = app.admin_get(&token, "/admin/v1/subscriptions?q=x").await;
    assert_error(subscriptions, 400, "bad_request").await;
}

async fn the_cli_exits_non_zero_on_a_bad_delivery_filter(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.post_gumroad(&sale_form("GUM-CLI-FILTER")).await;

    let bogus = app.cli(&["deliveries", "list", "--status", "bogus"]);
    let zero = app.cli(&["deliveries", "list", "--limit", "0"]);
    let good = app.cli(&["deliveries", "list", "--status", "processed"]);

    assert!(!bogus.status.success());
    assert!(stderr(&bogus).contains("bogus"), "{}", stderr(&bogus));
    assert!(!zero.status.success());
    assert!(good.status.success());
    assert!(stdout(&good).contains("processed"));
}

// Item 20: every admin error is JSON; bulk replay takes no body.

async fn admin_errors_are_json_with_a_code(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");

    let no_body = app
        .client
        .post(app.url("/admin/v1/deliveries/replay"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let unknown_route = app.admin_get(&token, "/admin/v1/nothing-here").await;
    let wrong_method = app.admin_get(&token, "/admin/v1/deliveries/replay").await;
    let bad_limit = app
        .admin_get(&token, "/admin/v1/deliveries?limit=abc")
        .await;
    let no_token = app
        .client
        .get(app.url("/admin/v1/licenses"))
        .send()
        .await
        .unwrap();
    let bad_field = app
        .admin_post(&token, "/admin/v1/deliveries/replay", json!({"limt": 5}))
        .await;

    assert_eq!(no_body.status(), 200);
    assert_eq!(no_body.json::<Value>().await.unwrap()["replayed"], 0);
    assert_error(unknown_route, 404, "no_such_route").await;
    assert!(wrong_method.headers().contains_key("allow"));
    assert_error(wrong_method, 405, "method_not_allowed").await;
    assert_error(bad_limit, 400, "bad_request").await;
    assert_error(no_token, 401, "unauthorized").await;
    assert_error(bad_field, 422, "unprocessable").await;
}

// Item 21: token names.

async fn admin_token_names_are_unique_among_live_tokens(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let mine = app.admin_token("me");
    let other = app.admin_token("other");

    let twice = app.cli(&["admin-token", "create", "--name", "me"]);
    let id_like = app.cli(&["admin-token", "create", "--name", "tok_me"]);

    assert!(!twice.status.success());
    assert!(stderr(&twice).contains("me"), "{}", stderr(&twice));
    assert!(!id_like.status.success());
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM admin_tokens WHERE name = $1", "me")
            .await,
        1
    );

    let revoked = app.cli(&["admin-token", "revoke", "me"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert_eq!(
        app.admin_get(&mine, "/admin/v1/licenses").await.status(),
        401
    );
    assert_eq!(
        app.admin_get(&other, "/admin/v1/licenses").await.status(),
        200
    );
    // The name is free again once its token is revoked.
    let again = app.admin_token("me");
    assert_eq!(
        app.admin_get(&again, "/admin/v1/licenses").await.status(),
        200
    );
}

/// Live tokens that shared a name before names were unique keep working
/// after `keymint migrate`; all but the oldest get their id in their name.
async fn the_migration_renames_live_tokens_that_share_a_name(db: Db) {
    let dir = std::env::temp_dir().join(format!("keymint-test-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let Some(database) = TestDb::create(db, &dir, None).await else {
        return;
    };
    let config = write_config(&dir, &database.url, "http://127.0.0.1:9");
    // The schema as it was before migration 0006, with three tokens named
    // `me`: a revoked one, then two live ones.
    let migrations = match db {
        Db::Sqlite => concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"),
        Db::Postgres => concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"),
    };
    let migrator = sqlx::migrate::Migrator::new(std::path::Path::new(migrations))
        .await
        .unwrap();
    let insert = "INSERT INTO admin_tokens (id, name, token_hash, scopes, created_at, revoked_at) \
                  VALUES ($1, 'me', $2, 'admin', $3, $4)";
    let rows: [(&str, i64, Option<i64>); 3] = [
        ("tok_revoked", 1, Some(2)),
        ("tok_oldest", 3, None),
        ("tok_younger", 4, None),
    ];
    match db {
        Db::Sqlite => {
            use sqlx::ConnectOptions;
            let mut conn = database
                .url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true)
                .connect()
                .await
                .unwrap();
            migrator.run_to(5, &mut conn).await.unwrap();
            for (id, at, revoked) in rows {
                sqlx::query(insert)
                    .bind(id)
                    .bind(format!("hash-{id}"))
                    .bind(at)
                    .bind(revoked)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
        Db::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
            migrator.run_to(5, &mut conn).await.unwrap();
            for (id, at, revoked) in rows {
                sqlx::query(insert)
                    .bind(id)
                    .bind(format!("hash-{id}"))
                    .bind(at)
                    .bind(revoked)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("KEYMINT_LOG", "warn")
            .output()
            .unwrap()
    };

    let migrated = cli(&["migrate"]);
    let revoked = cli(&["admin-token", "revoke", "me"]);
    let listed = cli(&["admin-token", "list"]);

    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let listed = stdout(&listed);
    let state_of = |id: &str| {
        let line = listed
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} listed: {listed}"));
        line.split_whitespace()
            .skip(1)
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(state_of("tok_revoked"), "me revoked");
    assert_eq!(
        state_of("tok_oldest"),
        "me revoked",
        "revoke NAME took the oldest"
    );
    assert_eq!(state_of("tok_younger"), "me-tok_younger active");
    let _ = std::fs::remove_dir_all(&dir);
}

// Item 8: resending a revoked license.

async fn resend_is_refused_for_a_revoked_license_unless_forced(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    let key = gumroad_key(&app, &sale_form("GUM-RESEND-REVOKED")).await;
    let revoke = app
        .admin_post(
            &token,
            &format!("/admin/v1/licenses/{key}/revoke"),
            json!({"reason": "chargeback"}),
        )
        .await;
    assert_eq!(revoke.status(), 200);
    let emails_before = license(&app, &token, &key).await["emails"]
        .as_array()
        .unwrap()
        .len();

    let refused = app
        .client
        .post(app.url(&format!("/admin/v1/licenses/{key}/resend")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let cli_refused = app.cli(&["license", "resend", &key]);

    let body = assert_error(refused, 409, "license_revoked").await;
    assert!(
        body["error"].as_str().unwrap().contains("chargeback"),
        "{body}"
    );
    assert!(!cli_refused.status.success());
    assert!(
        stderr(&cli_refused).contains("--force"),
        "{}",
        stderr(&cli_refused)
    );
    let detail = license(&app, &token, &key).await;
    assert_eq!(detail["emails"].as_array().unwrap().len(), emails_before);

    let forced = app
        .admin_post(
            &token,
            &format!("/admin/v1/licenses/{key}/resend"),
            json!({"force": true}),
        )
        .await;
    let cli_forced = app.cli(&["license", "resend", &key, "--force"]);

    assert_eq!(forced.status(), 202);
    assert!(cli_forced.status.success(), "{}", stderr(&cli_forced));
    let detail = license(&app, &token, &key).await;
    assert_eq!(
        detail["emails"].as_array().unwrap().len(),
        emails_before + 2
    );
    let resends: Vec<&Value> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "resent")
        .collect();
    assert_eq!(resends.len(), 2);
    for r in resends {
        assert!(r["reason"].as_str().unwrap().contains("revoked"), "{r}");
    }
}

// Item 9: manual order ids.

async fn manual_order_ids_never_duplicate_a_sale_or_hide_a_difference(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    let sold = gumroad_key(&app, &sale_form("FIRST-SALE")).await;

    let api = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "datatools-core", "email": "jane@example.com", "order_id": "FIRST-SALE"}),
        )
        .await;
    let cli = app.cli(&[
        "license",
        "mint",
        "--product",
        "datatools-core",
        "--email",
        "jane@example.com",
        "--order-id",
        "FIRST-SALE",
    ]);

    let body = assert_error(api, 409, "order_id_taken").await;
    assert!(body["error"].as_str().unwrap().contains(&sold), "{body}");
    assert!(!cli.status.success());
    assert_eq!(app.licenses_for("FIRST-SALE").await, 1);

    let order = json!({"product": "datatools-core", "email": "a@example.com", "order_id": "INV-9"});
    let first = app
        .admin_post(&token, "/admin/v1/licenses", order.clone())
        .await;
    let same = app.admin_post(&token, "/admin/v1/licenses", order).await;
    let other_email = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "datatools-core", "email": "b@example.com", "order_id": "INV-9"}),
        )
        .await;
    let other_product = app
        .admin_post(
            &token,
            "/admin/v1/licenses",
            json!({"product": "datatools-pro", "email": "a@example.com", "order_id": "INV-9"}),
        )
        .await;

    assert_eq!(first.status(), 201);
    let key = first.json::<Value>().await.unwrap()["license"]["key"].clone();
    assert_eq!(same.status(), 200);
    assert_eq!(same.json::<Value>().await.unwrap()["license"]["key"], key);
    let email = assert_error(other_email, 409, "order_id_conflict").await;
    assert!(
        email["error"].as_str().unwrap().contains("email"),
        "{email}"
    );
    let product = assert_error(other_product, 409, "order_id_conflict").await;
    assert!(
        product["error"].as_str().unwrap().contains("product"),
        "{product}"
    );
    assert_eq!(app.licenses_for("INV-9").await, 1);
}

// Item 7: key rotation.

/// The kid the CLI lists as signing.
fn signing_kid(app: &TestApp) -> String {
    let out = app.cli(&["keys", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("signing key: "))
        .unwrap_or_else(|| panic!("no signing key listed: {}", stdout(&out)))
        .trim()
        .to_string()
}

async fn published(app: &TestApp) -> Vec<Value> {
    let keys: Value = app
        .client
        .get(app.url("/v1/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    keys["keys"].as_array().unwrap().clone()
}

fn public_key_of(keys: &[Value], kid: &str) -> String {
    keys.iter().find(|k| k["kid"] == kid).unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn keys_rotate_while_the_server_runs(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops");
    let old_key = gumroad_key(&app, &sale_form("GUM-ROT-1")).await;
    let old = license(&app, &token, &old_key).await["license"].clone();
    let old_kid = old["kid"].as_str().unwrap().to_string();
    assert_eq!(signing_kid(&app), old_kid);

    let refused = app.cli(&["keys", "retire", &old_kid]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("signing key"),
        "{}",
        stderr(&refused)
    );

    let generated = app.cli(&["keys", "generate", "--activate"]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let new_kid = signing_kid(&app);
    assert_ne!(new_kid, old_kid);

    // The running server signs with the new key without a restart.
    let served_key = gumroad_key(&app, &sale_form("GUM-ROT-2")).await;
    let served = license(&app, &token, &served_key).await["license"].clone();
    let cli = app.cli(&[
        "license",
        "mint",
        "--product",
        "datatools-core",
        "--email",
        "rot@example.com",
    ]);
    assert!(cli.status.success(), "{}", stderr(&cli));
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();

    assert_eq!(served["kid"], new_kid.as_str());
    assert_eq!(cli["kid"], new_kid.as_str());
    let keys = published(&app).await;
    assert_eq!(keys.len(), 2, "no command made a third key: {keys:?}");
    let new_only = KeySet::from_paserks([public_key_of(&keys, &new_kid).as_str()]).unwrap();
    for t in [&served["token"], &cli["token"]] {
        new_only
            .verify(t.as_str().unwrap())
            .expect("signed by the new key");
    }
    let old_token = old["token"].as_str().unwrap();
    assert!(
        app.cli(&["license", "verify", old_token]).status.success(),
        "old tokens verify until their key is retired"
    );

    let retired = app.cli(&["keys", "retire", &old_kid]);
    assert!(retired.status.success(), "{}", stderr(&retired));
    assert!(!app.cli(&["license", "verify", old_token]).status.success());
    let after = gumroad_key(&app, &sale_form("GUM-ROT-3")).await;
    assert_eq!(
        license(&app, &token, &after).await["license"]["kid"],
        new_kid.as_str()
    );
}

async fn the_cli_never_creates_a_signing_key(db: Db) {
    let dir = std::env::temp_dir().join(format!("keymint-test-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(database) = TestDb::create(db, &dir, None).await else {
        return;
    };
    let config = write_config(&dir, &database.url, "http://127.0.0.1:9");
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("KEYMINT_LOG", "warn")
            .output()
            .unwrap()
    };

    let mint = cli(&[
        "license",
        "mint",
        "--product",
        "datatools-core",
        "--email",
        "first@example.com",
    ]);
    let list = cli(&["keys", "list"]);

    assert!(!mint.status.success());
    assert!(
        stderr(&mint).contains("no signing key"),
        "{}",
        stderr(&mint)
    );
    assert!(
        stdout(&list).contains("no signing key yet"),
        "{}",
        stdout(&list)
    );
    let key_files = std::fs::read_dir(dir.join("data/keys"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(key_files, 0);
    let store = database.store().await;
    let mut conn = store.conn().await.unwrap();
    assert!(
        keymint::store::signing_keys::list(&mut conn)
            .await
            .unwrap()
            .is_empty()
    );
    drop(conn);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn a_configured_secret_key_signs_and_cannot_be_switched_by_the_cli(db: Db) {
    let dir = std::env::temp_dir().join(format!("keymint-test-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(database) = TestDb::create(db, &dir, None).await else {
        return;
    };
    let config = write_config(&dir, &database.url, "http://127.0.0.1:9");
    let key = keymint_license::SigningKey::generate();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[signing]\nsecret_key = \"{}\"\n",
        key.secret_paserk()
    ));
    std::fs::write(&config, text).unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("KEYMINT_LOG", "warn")
            .output()
            .unwrap()
    };

    let minted = cli(&[
        "license",
        "mint",
        "--product",
        "datatools-core",
        "--email",
        "configured@example.com",
    ]);
    let generate = cli(&["keys", "generate", "--activate"]);
    let activate = cli(&["keys", "activate", key.kid()]);
    let list = cli(&["keys", "list"]);

    assert!(minted.status.success(), "{}", stderr(&minted));
    let license: Value = serde_json::from_slice(&minted.stdout).unwrap();
    assert_eq!(license["kid"], key.kid());
    assert!(!generate.status.success());
    assert!(
        stderr(&generate).contains("secret_key"),
        "{}",
        stderr(&generate)
    );
    assert!(!activate.status.success());
    assert!(
        stdout(&list).contains(&format!("signing key: {}", key.kid())),
        "{}",
        stdout(&list)
    );
    let key_files = std::fs::read_dir(dir.join("data/keys"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(key_files, 0, "no key file was written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reconcile_help_mentions_subscriptions() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
        .args(["reconcile", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("subscriptions"), "{}", stdout(&out));
}

// Item 22: `keymint webhook send` and the documented payloads.

async fn webhook_send_fails_unless_the_event_took_effect(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let send = |endpoint: &str, file: &std::path::Path| {
        app.cli(&[
            "webhook",
            "send",
            endpoint,
            file.to_str().unwrap(),
            "--url",
            &app.base,
        ])
    };
    let unmapped = app.dir.join("unmapped.form");
    std::fs::write(
        &unmapped,
        serde_urlencoded::to_string(with(sale_form("GUM-UNMAPPED"), "product_id", "nope")).unwrap(),
    )
    .unwrap();
    let template = app.dir.join("template.json");
    std::fs::write(&template, r#"{"id": "{{EVENT}}", "created": {{T}}}"#).unwrap();

    let no_mint = send("gumroad", &unmapped);
    let not_json = send("stripe", &template);

    assert!(!no_mint.status.success());
    assert!(
        stdout(&no_mint).contains("logged-no-mint"),
        "{}",
        stdout(&no_mint)
    );
    assert!(!not_json.status.success());
    assert!(
        stderr(&not_json).contains("not JSON"),
        "{}",
        stderr(&not_json)
    );

    // Every payload the provider docs point at is real JSON that mints.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/providers/examples");
    for kind in crate::providers::SIGNED {
        let file = std::path::Path::new(examples).join(format!("{kind}-sale.json"));
        let out = send(kind, &file);
        assert!(
            out.status.success(),
            "{kind}: {} {}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains(r#""status":"ok""#),
            "{kind}: {}",
            stdout(&out)
        );
    }
}

// Item 23: `license show`.

async fn license_show_prints_emails_and_rfc3339_times(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let key = gumroad_key(&app, &sale_form("GUM-SHOW")).await;

    let out = app.cli(&["license", "show", &key]);

    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["license"]["key"], key.as_str());
    let emails = shown["emails"].as_array().expect("emails are listed");
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["kind"], "license_issued");
    let at = shown["history"][0]["at"].as_str().expect("a time string");
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
}

both_databases!(
    control_characters_are_refused_in_ids_and_cleaned_in_free_text,
    license_search_matches_parts_and_refuses_bad_filters,
    the_cli_exits_non_zero_on_a_bad_delivery_filter,
    admin_errors_are_json_with_a_code,
    admin_token_names_are_unique_among_live_tokens,
    the_migration_renames_live_tokens_that_share_a_name,
    resend_is_refused_for_a_revoked_license_unless_forced,
    manual_order_ids_never_duplicate_a_sale_or_hide_a_difference,
    keys_rotate_while_the_server_runs,
    the_cli_never_creates_a_signing_key,
    a_configured_secret_key_signs_and_cannot_be_switched_by_the_cli,
    webhook_send_fails_unless_the_event_took_effect,
    license_show_prints_emails_and_rfc3339_times,
);
