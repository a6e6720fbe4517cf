//! License tokens: published keys, offline verification, the CLI.

use crate::both_databases;
use crate::helpers::{Db, sale_form, spawn_app, with};
use keymint_license::{KeySet, SigningKey};
use serde_json::Value;

async fn minted_token(app: &crate::helpers::TestApp, form: &[(String, String)]) -> String {
    let key = app.post_gumroad(form).await.json::<Value>().await.unwrap()["license_key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut conn = app.state.store.conn().await.unwrap();
    keymint::store::licenses::by_key(&mut conn, &key.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .token
}

async fn published_keys(app: &crate::helpers::TestApp) -> Value {
    app.client
        .get(app.url("/v1/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn token_verifies_with_the_published_key_only(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = minted_token(&app, &sale_form("GUM-TOK")).await;
    let keys = published_keys(&app).await;
    let key = &keys["keys"][0];
    assert_eq!(key["status"], "active");
    assert!(key["kid"].as_str().unwrap().starts_with("k4.pid."));
    let public = key["public_key"].as_str().unwrap();
    assert!(public.starts_with("k4.public."));
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key["public_key_raw"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        raw,
        keymint_license::PublicKey::from_paserk(public)
            .unwrap()
            .as_bytes()
    );
    assert!(
        key["public_key_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );

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
    assert_eq!(footer["kid"], key["kid"]);

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
    let public = published_keys(&app).await["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
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
    let public = published_keys(&app).await["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();

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

    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
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
    let minted = app.cli(&[
        "license",
        "mint",
        "--product",
        "datatools-core",
        "--email",
        "cli@example.com",
        "--name",
        "Cli User",
    ]);
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let license: Value = serde_json::from_slice(&minted.stdout).unwrap();
    let key = license["key"].as_str().unwrap();

    let shown = app.cli(&["license", "show", key]);
    assert!(shown.status.success());
    let revoked = app.cli(&["license", "revoke", key, "--reason", "test"]);
    assert!(revoked.status.success());
    assert!(
        String::from_utf8(revoked.stdout)
            .unwrap()
            .contains("revoked")
    );
    let missing = app.cli(&["license", "show", "DT1-CORE-00000-00000-00000-00000"]);
    assert!(!missing.status.success());
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM licenses WHERE status = $1", "revoked")
            .await,
        1
    );
}

async fn cli_lists_and_shows_deliveries(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let body: Value = app
        .post_gumroad(&sale_form("GUM-LIST"))
        .await
        .json()
        .await
        .unwrap();
    let id = body["delivery_id"].as_str().unwrap();

    let list = app.cli(&["deliveries", "list", "--status", "processed"]);
    let show = app.cli(&["deliveries", "show", id]);

    assert!(String::from_utf8(list.stdout).unwrap().contains(id));
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
    let first = published_keys(&app).await["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let token = minted_token(&app, &sale_form("GUM-KEYS")).await;

    let listed = String::from_utf8(app.cli(&["keys", "list"]).stdout).unwrap();
    let generated = app.cli(&["keys", "generate"]);

    assert!(listed.contains(&first), "{listed}");
    assert!(generated.status.success());
    let keys = published_keys(&app).await;
    let all = keys["keys"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    let second = all
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .find(|k| *k != first)
        .unwrap()
        .to_string();
    // The old key still verifies what it signed.
    assert!(app.cli(&["license", "verify", &token]).status.success());

    // The first key still signs: it cannot be retired before another signs.
    assert!(!app.cli(&["keys", "retire", &first]).status.success());
    assert!(app.cli(&["keys", "activate", &second]).status.success());

    let retired = app.cli(&["keys", "retire", &first]);

    assert!(retired.status.success());
    let keys = published_keys(&app).await;
    let status_of = |kid: &str| {
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()["status"]
            .clone()
    };
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
    let public = keys["keys"][0]["public_key"].as_str().unwrap();

    let Some(verified) = pyseto_verify(public, &token) else {
        return;
    };

    let verified = verified.expect("pyseto accepts the token");
    let pem = keys["keys"][0]["public_key_pem"].as_str().unwrap();
    let by_pem = pyseto_verify(pem, &token)
        .unwrap()
        .expect("pyseto accepts the token with the PEM key");
    assert_eq!(by_pem["claims"], verified["claims"]);
    assert_eq!(verified["claims"]["product"], "datatools-core");
    assert_eq!(
        verified["kid"], keys["keys"][0]["kid"],
        "footer kid is the key's PASERK id"
    );
    assert_eq!(
        verified["pid"], keys["keys"][0]["kid"],
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
