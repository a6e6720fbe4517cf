//! What an operator and a hostile admin client can do: input text, search,
//! error shapes, token names, resends, manual order ids, key rotation and
//! the CLI's exit codes.

use crate::both_databases;
use crate::client::{Api, expect_error, expect_json};
use crate::helpers::{
    Db, TestApp, assert_contains, keymint_cli, mint_args, sale_form, spawn_app, stderr, stdout,
    unstarted, with,
};
use crate::views::{LicenseOut, MintedOut};
use keymint_license::KeySet;
use reqwest::Method;
use serde_json::{Value, json};

/// The keys of the licenses a search finds, sorted.
async fn licenses_found(admin: &Api, query: &str) -> Vec<String> {
    let mut keys: Vec<String> = admin
        .licenses(query)
        .await
        .licenses
        .into_iter()
        .map(|l| l.key.to_string())
        .collect();
    keys.sort();
    keys
}

// Item 5: control characters in admin input.

async fn control_characters_are_refused_in_ids_and_cleaned_in_free_text(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;

    let minted = admin
        .mint(
            json!({"product": "datatools-core", "email": "nul@example.com",
                   "name": "Ja\u{0}ne\r\nBcc: x@y.z", "notes": "line one\u{0}\r\nline\u{1b} two"}),
        )
        .await;
    let nul_email = admin
        .mint(json!({"product": "datatools-core", "email": "a\u{0}b@example.com"}))
        .await;
    let nul_order = admin
        .mint(
            json!({"product": "datatools-core", "email": "c@example.com", "order_id": "INV\u{0}1"}),
        )
        .await;
    let nul_query = admin.get("/admin/v1/licenses?email=a%00b").await;
    let nul_delivery = admin.get("/admin/v1/deliveries/dlv%00x").await;
    let nul_subscription = admin.get("/admin/v1/subscriptions/sub%00x").await;

    let minted: MintedOut = expect_json(minted, 201).await;
    // Names are one line, notes keep their line breaks (docs/admin-api.md).
    assert_eq!(minted.license.name, "Ja ne Bcc: x@y.z");
    assert_eq!(minted.license.notes.as_deref(), Some("line one\nline two"));
    expect_error(nul_email, 422, "control_character").await;
    expect_error(nul_order, 422, "control_character").await;
    expect_error(nul_query, 400, "control_character").await;
    expect_error(nul_delivery, 400, "control_character").await;
    expect_error(nul_subscription, 400, "control_character").await;

    let key = &minted.license.key;
    admin.revoke(key, "chargeback\u{0}\nforged line").await;
    let detail = admin.license(key).await;
    assert_eq!(
        detail.history[1].reason.as_deref(),
        Some("chargeback forged line")
    );
}

// Item 19: search.

async fn license_search_matches_parts_and_refuses_bad_filters(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    let jane = app
        .gumroad_sale(&with(
            sale_form("GUM-SRCH-1"),
            "email",
            "Jane.Doe@Example.COM",
        ))
        .await
        .to_string();
    let bob = app
        .gumroad_sale(&with(
            with(sale_form("GUM-SRCH-2"), "email", "bob@other.org"),
            "full_name",
            "Bob Stone",
        ))
        .await
        .to_string();
    let key_part = jane[9..20].to_lowercase();

    let by_key_part = format!("q={key_part}");
    for (query, found) in [
        ("email=DOE@example", &jane),
        ("order_id=GUM-SRCH-2", &bob),
        ("q=stone", &bob),
        (by_key_part.as_str(), &jane),
        ("q=srch-1", &jane),
        ("q=OTHER.ORG", &bob),
    ] {
        assert_eq!(
            licenses_found(&admin, query).await,
            std::slice::from_ref(found),
            "{query}"
        );
    }
    assert!(licenses_found(&admin, "order_id=GUM-SRCH").await.is_empty());
    assert!(
        licenses_found(&admin, "q=%25").await.is_empty(),
        "% is not a wildcard"
    );
    assert_eq!(licenses_found(&admin, "q=gum-srch").await.len(), 2);

    for (query, code) in [
        ("q=", "empty_filter"),
        ("order_id=", "empty_filter"),
        ("email=", "empty_filter"),
        ("emial=jane", "bad_request"),
        ("status=nope", "bad_status"),
        ("limit=abc", "bad_request"),
        ("before=yesterday", "bad_cursor"),
    ] {
        let resp = admin.get(&format!("/admin/v1/licenses?{query}")).await;
        expect_error(resp, 400, code).await;
    }
    let deliveries = admin.get("/admin/v1/deliveries?stauts=failed").await;
    expect_error(deliveries, 400, "bad_request").await;
    let subscriptions = admin.get("/admin/v1/subscriptions?q=x").await;
    expect_error(subscriptions, 400, "bad_request").await;
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
    assert_contains(&stderr(&bogus), "bogus");
    assert!(!zero.status.success());
    assert!(good.status.success());
    assert!(stdout(&good).contains("processed"));
}

// Item 20: every admin error is JSON; bulk replay takes no body.

async fn admin_errors_are_json_with_a_code(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;

    let no_body = admin
        .request(Method::POST, "/admin/v1/deliveries/replay")
        .send()
        .await
        .unwrap();
    let unknown_route = admin.get("/admin/v1/nothing-here").await;
    let wrong_method = admin.get("/admin/v1/deliveries/replay").await;
    let bad_limit = admin.get("/admin/v1/deliveries?limit=abc").await;
    let no_token = app.api().get("/admin/v1/licenses").await;
    let bad_field = admin
        .post("/admin/v1/deliveries/replay", &json!({"limt": 5}))
        .await;
    let bulk_limit = admin
        .post("/admin/v1/deliveries/replay", &json!({"limit": 6000}))
        .await;

    assert_eq!(expect_json::<Value>(no_body, 200).await["replayed"], 0);
    expect_error(unknown_route, 404, "no_such_route").await;
    assert!(wrong_method.headers().contains_key("allow"));
    expect_error(wrong_method, 405, "method_not_allowed").await;
    expect_error(bad_limit, 400, "bad_request").await;
    expect_error(no_token, 401, "unauthorized").await;
    expect_error(bad_field, 422, "unprocessable").await;
    // Out of range is the same code wherever a limit is taken.
    expect_error(bulk_limit, 400, "bad_limit").await;
}

// Item 21: token names.

async fn admin_token_names_are_unique_among_live_tokens(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let mine = app.admin_token_via_cli("me");
    let other = app.admin_token_via_cli("other");

    let twice = app.cli(&["admin-token", "create", "--name", "me"]);
    let id_like = app.cli(&["admin-token", "create", "--name", "tok_me"]);

    assert!(!twice.status.success());
    assert_contains(&stderr(&twice), "me");
    assert!(!id_like.status.success());
    assert_eq!(app.count("admin_tokens", "name", "me").await, 1);

    let revoked = app.cli(&["admin-token", "revoke", "me"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert_eq!(
        app.admin_with(&mine)
            .get("/admin/v1/licenses")
            .await
            .status(),
        401
    );
    assert_eq!(
        app.admin_with(&other)
            .get("/admin/v1/licenses")
            .await
            .status(),
        200
    );
    // The name is free again once its token is revoked.
    let again = app.admin_token_via_cli("me");
    assert_eq!(
        app.admin_with(&again)
            .get("/admin/v1/licenses")
            .await
            .status(),
        200
    );
}

/// Live tokens that shared a name before names were unique keep working
/// after `keymint migrate`; all but the oldest get their id in their name.
async fn the_migration_renames_live_tokens_that_share_a_name(db: Db) {
    let Some((dir, database, config)) = unstarted(db, "test").await else {
        return;
    };
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
    // The two databases' connections are different types; the steps are
    // the same.
    macro_rules! migrate_to_5_and_insert {
        ($conn:expr) => {{
            let conn = $conn;
            migrator.run_to(5, &mut *conn).await.unwrap();
            for (id, at, revoked) in rows {
                sqlx::query(insert)
                    .bind(id)
                    .bind(format!("hash-{id}"))
                    .bind(at)
                    .bind(revoked)
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
        }};
    }
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
            migrate_to_5_and_insert!(&mut conn);
        }
        Db::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
            migrate_to_5_and_insert!(&mut conn);
        }
    }
    let cli = |args: &[&str]| keymint_cli(&config, args, &[]);

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
    let admin = app.admin().await;
    let key = app.gumroad_sale(&sale_form("GUM-RESEND-REVOKED")).await;
    admin.revoke(&key, "chargeback").await;
    let emails_before = admin.license(&key).await.emails.len();
    let key = key.as_str();

    let refused = admin
        .request(Method::POST, &format!("/admin/v1/licenses/{key}/resend"))
        .send()
        .await
        .unwrap();
    let cli_refused = app.cli(&["license", "resend", key]);

    let body = expect_error(refused, 409, "license_revoked").await;
    assert!(body.error.contains("chargeback"), "{body:?}");
    assert!(!cli_refused.status.success());
    assert_contains(&stderr(&cli_refused), "--force");
    let detail = admin.license(key).await;
    assert_eq!(detail.emails.len(), emails_before);

    let forced = admin.act(key, "resend", json!({"force": true})).await;
    let cli_forced = app.cli(&["license", "resend", key, "--force"]);

    assert_eq!(forced.status(), 202);
    assert!(cli_forced.status.success(), "{}", stderr(&cli_forced));
    let detail = admin.license(key).await;
    assert_eq!(detail.emails.len(), emails_before + 2);
    let resends: Vec<_> = detail
        .history
        .iter()
        .filter(|h| h.action == "resent")
        .collect();
    assert_eq!(resends.len(), 2);
    for r in resends {
        assert!(r.reason.as_deref().unwrap().contains("revoked"), "{r:?}");
    }
}

// Item 9: manual order ids.

async fn manual_order_ids_never_duplicate_a_sale_or_hide_a_difference(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    let sold = app.gumroad_sale(&sale_form("FIRST-SALE")).await;

    let api = admin
        .mint(json!({"product": "datatools-core", "email": "jane@example.com", "order_id": "FIRST-SALE"}))
        .await;
    let cli = app.cli(&mint_args(
        "jane@example.com",
        &["--order-id", "FIRST-SALE"],
    ));

    let body = expect_error(api, 409, "order_id_taken").await;
    assert!(body.error.contains(sold.as_str()), "{body:?}");
    assert!(!cli.status.success());
    assert_eq!(app.licenses_for("FIRST-SALE").await, 1);

    let order = json!({"product": "datatools-core", "email": "a@example.com", "order_id": "INV-9"});
    let first = admin.mint(order.clone()).await;
    let same = admin.mint(order).await;
    let other_email = admin
        .mint(json!({"product": "datatools-core", "email": "b@example.com", "order_id": "INV-9"}))
        .await;
    let other_product = admin
        .mint(json!({"product": "datatools-pro", "email": "a@example.com", "order_id": "INV-9"}))
        .await;

    let key = expect_json::<MintedOut>(first, 201).await.license.key;
    assert_eq!(expect_json::<MintedOut>(same, 200).await.license.key, key);
    let email = expect_error(other_email, 409, "order_id_conflict").await;
    assert!(email.error.contains("email"), "{email:?}");
    let product = expect_error(other_product, 409, "order_id_conflict").await;
    assert!(product.error.contains("product"), "{product:?}");
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

async fn keys_rotate_while_the_server_runs(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let admin = app.admin().await;
    let minted_license = |order: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let key = app.gumroad_sale(&sale_form(order)).await;
            admin.license(&key).await.license
        }
    };
    let old: LicenseOut = minted_license("GUM-ROT-1").await;
    let old_kid = old.kid.clone();
    assert_eq!(signing_kid(&app), old_kid);

    let refused = app.cli(&["keys", "retire", &old_kid]);
    assert!(!refused.status.success());
    assert_contains(&stderr(&refused), "signing key");

    let generated = app.cli(&["keys", "generate", "--activate"]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let new_kid = signing_kid(&app);
    assert_ne!(new_kid, old_kid);

    // The running server signs with the new key without a restart.
    let served = minted_license("GUM-ROT-2").await;
    let cli = app.cli(&mint_args("rot@example.com", &[]));
    assert!(cli.status.success(), "{}", stderr(&cli));
    let cli: LicenseOut = serde_json::from_slice(&cli.stdout).unwrap();

    assert_eq!(served.kid, new_kid);
    assert_eq!(cli.kid, new_kid);
    let keys = app.api().published_keys().await;
    assert_eq!(keys.keys.len(), 2, "no command made a third key: {keys:?}");
    let new_only = KeySet::from_paserks([keys.by_kid(&new_kid).public_key.as_str()]).unwrap();
    for t in [&served.token, &cli.token] {
        new_only.verify(t).expect("signed by the new key");
    }
    let old_token = old.token.as_str();
    assert!(
        app.cli(&["license", "verify", old_token]).status.success(),
        "old tokens verify until their key is retired"
    );

    let retired = app.cli(&["keys", "retire", &old_kid]);
    assert!(retired.status.success(), "{}", stderr(&retired));
    assert!(!app.cli(&["license", "verify", old_token]).status.success());
    assert_eq!(minted_license("GUM-ROT-3").await.kid, new_kid);
}

async fn the_cli_never_creates_a_signing_key(db: Db) {
    let Some((dir, database, config)) = unstarted(db, "test").await else {
        return;
    };
    let cli = |args: &[&str]| keymint_cli(&config, args, &[]);

    let mint = cli(&mint_args("first@example.com", &[]));
    let list = cli(&["keys", "list"]);

    assert!(!mint.status.success());
    assert_contains(&stderr(&mint), "no signing key");
    assert_contains(&stdout(&list), "no signing key yet");
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
    let Some((dir, _database, config)) = unstarted(db, "test").await else {
        return;
    };
    let key = keymint_license::SigningKey::generate();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[signing]\nsecret_key = \"{}\"\n",
        key.secret_paserk()
    ));
    std::fs::write(&config, text).unwrap();
    let cli = |args: &[&str]| keymint_cli(&config, args, &[]);

    let minted = cli(&mint_args("configured@example.com", &[]));
    let generate = cli(&["keys", "generate", "--activate"]);
    let activate = cli(&["keys", "activate", key.kid()]);
    let list = cli(&["keys", "list"]);

    assert!(minted.status.success(), "{}", stderr(&minted));
    let license: LicenseOut = serde_json::from_slice(&minted.stdout).unwrap();
    assert_eq!(license.kid, key.kid());
    assert!(!generate.status.success());
    assert_contains(&stderr(&generate), "secret_key");
    assert!(!activate.status.success());
    assert_contains(&stdout(&list), &format!("signing key: {}", key.kid()));
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
    assert_contains(&stdout(&out), "subscriptions");
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
    assert_contains(&stdout(&no_mint), "logged-no-mint");
    assert!(!not_json.status.success());
    assert_contains(&stderr(&not_json), "not JSON");

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
    let key = app.gumroad_sale(&sale_form("GUM-SHOW")).await;

    let out = app.cli(&["license", "show", key.as_str()]);

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
