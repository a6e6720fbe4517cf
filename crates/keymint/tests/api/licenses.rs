//! License tokens: published keys, offline verification, the CLI.

use crate::both_databases;
use crate::helpers::{
    Db, TestApp, assert_contains, mint_args, sale_form, spawn_app, stderr, stdout, with,
};
use crate::views::{LicenseOut, PublishedKeys};
use keymint_license::{KeySet, SigningKey};
use serde_json::Value;

/// Mints through a Gumroad sale; the license's token as stored.
async fn minted_token(app: &TestApp, form: &[(String, String)]) -> String {
    let key = app.gumroad_sale(form).await;
    app.stored_license(&key).await.token
}

/// The published verification keys (`GET /v1/keys`).
async fn published_keys(app: &TestApp) -> PublishedKeys {
    app.api().published_keys().await
}

async fn token_verifies_with_the_published_key_only(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = minted_token(&app, &sale_form("GUM-TOK")).await;
    let keys = published_keys(&app).await;
    let key = &keys.keys[0];
    assert_eq!(key.status, "active");
    assert!(key.kid.starts_with("k4.pid."));
    let public = key.public_key.as_str();
    assert!(public.starts_with("k4.public."));
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&key.public_key_raw)
        .unwrap();
    assert_eq!(
        raw,
        keymint_license::PublicKey::from_paserk(public)
            .unwrap()
            .as_bytes()
    );
    assert!(key.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));

    let set = KeySet::from_paserks([public]).unwrap();
    let claims = set.verify(&token).unwrap();
    assert_eq!(claims.product, "datatools-core");
    assert_eq!(claims.tier, "core");
    assert_eq!(claims.entitlements, ["export"]);
    assert_eq!(claims.max_machines, Some(3));
    assert_eq!(claims.name, "Jane Doe");
    assert_eq!(claims.email, None, "email only when the catalog asks");
    assert!(claims.key.starts_with("DT1-CORE-"));
    assert_eq!((claims.exp.unwrap() - claims.iat).whole_days(), 365);
    // The footer names the key.
    let footer = token.rsplit('.').next().unwrap();
    let footer: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(footer)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(footer["kid"], key.kid.as_str());

    let other = SigningKey::generate();
    assert!(
        KeySet::from_paserks([other.public_paserk().as_str()])
            .unwrap()
            .verify(&token)
            .is_err()
    );
    let mut bytes = token.clone().into_bytes();
    let i = "v4.public.".len() + 10;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    assert!(set.verify(&String::from_utf8(bytes).unwrap()).is_err());
}

async fn perpetual_products_have_no_expiry(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = minted_token(&app, &with(sale_form("GUM-PERP"), "product_id", "dt-pro")).await;
    let public = published_keys(&app).await.keys[0].public_key.clone();
    let claims = KeySet::from_paserks([public.as_str()])
        .unwrap()
        .verify(&token)
        .unwrap();
    assert!(claims.exp.is_none());
    assert_eq!(claims.max_machines, None);
}

async fn cli_verify_accepts_good_tokens_and_rejects_bad_ones(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = minted_token(&app, &sale_form("GUM-CLI")).await;
    let public = published_keys(&app).await.keys[0].public_key.clone();

    let local = app.cli(&["license", "verify", &token]);
    let explicit = app.cli(&["license", "verify", &token, "--public-key", &public]);
    let other = app.cli(&[
        "license",
        "verify",
        &token,
        "--public-key",
        &SigningKey::generate().public_paserk(),
    ]);
    let mut bytes = token.clone().into_bytes();
    let i = "v4.public.".len() + 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = app.cli(&["license", "verify", &String::from_utf8(bytes).unwrap()]);
    let garbage = app.cli(&["license", "verify", "hello"]);

    assert!(local.status.success(), "{}", stderr(&local));
    let claims: Value = serde_json::from_slice(&local.stdout).unwrap();
    assert_eq!(claims["product"], "datatools-core");
    assert!(explicit.status.success());
    assert!(!other.status.success());
    assert!(!garbage.status.success());
    assert!(!tampered.status.success());
}

async fn cli_mints_shows_and_revokes(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let minted = app.cli(&mint_args("cli@example.com", &["--name", "Cli User"]));
    assert!(minted.status.success(), "{}", stderr(&minted));
    let license: LicenseOut = serde_json::from_slice(&minted.stdout).unwrap();
    let key = license.key.as_str();

    let shown = app.cli(&["license", "show", key]);
    assert!(shown.status.success());
    let revoked = app.cli(&["license", "revoke", key, "--reason", "test"]);
    assert!(revoked.status.success());
    assert!(stdout(&revoked).contains("revoked"));
    let missing = app.cli(&["license", "show", "DT1-CORE-00000-00000-00000-00000"]);
    assert!(!missing.status.success());
    assert_eq!(app.count("licenses", "status", "revoked").await, 1);
}

async fn cli_lists_and_shows_deliveries(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let id = app.gumroad(&sale_form("GUM-LIST")).await.delivery_id;
    let id = id.as_str();

    let list = app.cli(&["deliveries", "list", "--status", "processed"]);
    let show = app.cli(&["deliveries", "show", id]);

    assert!(stdout(&list).contains(id));
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["order_id"], "GUM-LIST");
}

both_databases!(
    token_verifies_with_the_published_key_only,
    perpetual_products_have_no_expiry,
    cli_verify_accepts_good_tokens_and_rejects_bad_ones,
    cli_mints_shows_and_revokes,
    cli_lists_and_shows_deliveries,
);

async fn keys_can_be_listed_generated_and_retired(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let first = published_keys(&app).await.keys[0].kid.clone();
    let token = minted_token(&app, &sale_form("GUM-KEYS")).await;

    let listed = stdout(&app.cli(&["keys", "list"]));
    let generated = app.cli(&["keys", "generate"]);

    assert_contains(&listed, &first);
    assert!(generated.status.success());
    let keys = published_keys(&app).await;
    assert_eq!(keys.keys.len(), 2);
    let second = keys
        .keys
        .iter()
        .map(|k| k.kid.clone())
        .find(|k| *k != first)
        .unwrap();
    // The old key still verifies what it signed.
    assert!(app.cli(&["license", "verify", &token]).status.success());

    // The first key still signs: it cannot be retired before another signs.
    assert!(!app.cli(&["keys", "retire", &first]).status.success());
    assert!(app.cli(&["keys", "activate", &second]).status.success());

    let retired = app.cli(&["keys", "retire", &first]);

    assert!(retired.status.success());
    let keys = published_keys(&app).await;
    let status_of = |kid: &str| keys.by_kid(kid).status.clone();
    assert_eq!(status_of(&first), "retired");
    assert_eq!(status_of(&second), "active");
    assert!(
        !app.cli(&["license", "verify", &token]).status.success(),
        "a retired key no longer verifies"
    );
    assert!(
        !app.cli(&["keys", "retire", &first]).status.success(),
        "retiring twice is an error"
    );
}

mod keys {
    use super::*;
    crate::both_databases!(keys_can_be_listed_generated_and_retired);
}

/// Verifies `token` with pyseto (an independent PASETO implementation);
/// None when Python or pyseto is missing and not required.
fn pyseto_verify(public_key: &str, token: &str) -> Option<Result<Value, String>> {
    const SCRIPT: &str = r#"
import json, sys, pyseto
from pyseto import Key
key = Key.from_paserk(sys.argv[1]) if sys.argv[1].startswith("k4.") else Key.new(version=4, purpose="public", key=sys.argv[1].encode())
try:
    t = pyseto.decode(key, sys.argv[2])
except Exception as e:
    print(json.dumps({"error": type(e).__name__}))
    sys.exit(0)
footer = json.loads(t.footer)
pid = key.to_paserk_id() if sys.argv[1].startswith("k4.") else None
print(json.dumps({"claims": json.loads(t.payload), "kid": footer["kid"], "pid": pid}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT, public_key, token])
        .output();
    let available = matches!(&out, Ok(o) if o.status.success());
    if !available {
        if std::env::var("KEYMINT_TEST_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
            panic!("python3 with pyseto is required (KEYMINT_TEST_REQUIRE_INTEROP=1): {out:?}");
        }
        eprintln!(
            "NOTICE: skipping the pyseto interoperability check (pip install pyseto to run it)"
        );
        return None;
    }
    let v: Value = serde_json::from_slice(&out.unwrap().stdout).unwrap();
    Some(match v.get("error") {
        Some(e) => Err(e.to_string()),
        None => Ok(v),
    })
}

async fn tokens_verify_with_an_independent_paseto_library(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = minted_token(&app, &sale_form("GUM-PYSETO")).await;
    let keys = published_keys(&app).await;
    let public = keys.keys[0].public_key.as_str();

    let Some(verified) = pyseto_verify(public, &token) else {
        return;
    };

    let verified = verified.expect("pyseto accepts the token");
    let pem = keys.keys[0].public_key_pem.as_str();
    let by_pem = pyseto_verify(pem, &token)
        .unwrap()
        .expect("pyseto accepts the token with the PEM key");
    assert_eq!(by_pem["claims"], verified["claims"]);
    assert_eq!(verified["claims"]["product"], "datatools-core");
    assert_eq!(
        verified["kid"],
        keys.keys[0].kid.as_str(),
        "footer kid is the key's PASERK id"
    );
    assert_eq!(
        verified["pid"],
        keys.keys[0].kid.as_str(),
        "pyseto computes the same PASERK id"
    );
    let mut bytes = token.into_bytes();
    let i = "v4.public.".len() + 20;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(
        pyseto_verify(public, &tampered).unwrap().is_err(),
        "pyseto rejects a changed token"
    );
    let other = SigningKey::generate();
    let token = minted_token(&app, &sale_form("GUM-PYSETO-2")).await;
    assert!(
        pyseto_verify(&other.public_paserk(), &token)
            .unwrap()
            .is_err()
    );
}

mod interop {
    use super::*;
    crate::both_databases!(tokens_verify_with_an_independent_paseto_library);
}
