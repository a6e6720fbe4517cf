//! Validation as a program sees it: every code with a receipt that echoes
//! its nonce, bad requests, the `last_seen_at` throttle, key guessing.

use super::*;

both_databases!(
    every_code_comes_with_a_receipt_that_echoes_the_nonce,
    bad_requests_are_400_and_say_nothing_about_the_license,
    validation_records_last_seen_at_most_once_a_minute,
    key_guessing_spends_a_small_budget_then_every_request_waits,
);

async fn every_code_comes_with_a_receipt_that_echoes_the_nonce(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let k = key.as_str();

    let out = p.validate(json!({"key": k})).await;
    assert_eq!(out.code.as_str(), "VALID");
    let license = out.license.expect("the license");
    assert_eq!(
        (
            license.product.as_str(),
            license.max_machines,
            license.machines_active
        ),
        ("datatools-core", Some(3), 0)
    );
    assert_eq!(license.entitlements, vec!["export".to_string()]);
    assert!(out.access_until.is_some(), "a 365-day license ends");
    assert!(out.warnings.is_empty() && out.machine.is_none());

    // The forgiving parse: lower case, O for 0, I for 1.
    let (head, groups) = k.split_at(9);
    let sloppy = format!(
        " {}{} ",
        head.to_lowercase(),
        groups.to_lowercase().replace('0', "o").replace('1', "i")
    );
    assert_eq!(p.code(json!({"key": sloppy})).await, "VALID");

    // Unknown and malformed keys: the same answer, license and machine null.
    let unknown = LicenseKey::generate("DT1", "CORE").unwrap();
    for missing in [
        unknown.as_str(),
        "not-a-key",
        "DT1-CORE-?????-00000-00000-00000",
    ] {
        let out = p
            .validate(json!({"key": missing, "fingerprint": "machine-aaaa"}))
            .await;
        assert_eq!(out.code.as_str(), "NOT_FOUND", "{missing}");
        assert!(out.license.is_none() && out.machine.is_none() && out.access_until.is_none());
    }

    assert_eq!(
        p.code(json!({"key": k, "product": "datatools-pro"})).await,
        "PRODUCT_MISMATCH"
    );
    assert_eq!(
        p.code(json!({"key": k, "product": "datatools-core"})).await,
        "VALID"
    );
    let out = p
        .validate(json!({"key": k, "entitlements": ["export", "sync", "cloud"]}))
        .await;
    assert_eq!(out.code.as_str(), "ENTITLEMENTS_MISSING");
    assert_eq!(
        out.missing_entitlements,
        vec!["sync".to_string(), "cloud".into()]
    );
    assert_eq!(
        p.code(json!({"key": k, "entitlements": ["export"]})).await,
        "VALID"
    );

    assert_eq!(
        p.code(json!({"key": k, "fingerprint": "machine-0001"}))
            .await,
        "NOT_ACTIVATED"
    );
    p.activate(&key, "machine-0001", 201).await;
    let out = p
        .validate(json!({"key": k, "fingerprint": "machine-0001"}))
        .await;
    assert_eq!(out.code.as_str(), "VALID");
    assert!(out.machine.is_some());
    assert_eq!(out.license.unwrap().machines_active, 1);

    // A receipt lasts `licensing.receipt_ttl` (24 h by default).
    let before = OffsetDateTime::now_utc();
    let nonce = "a-fresh-nonce-1";
    let out: ValidationOut =
        expect_json(p.validate_raw(json!({"key": k, "nonce": nonce})).await, 200).await;
    let receipt = p.keys.verify_receipt(&out.receipt, nonce, before).unwrap();
    let ttl = receipt.exp - receipt.iat;
    assert_eq!(ttl, time::Duration::hours(24));
    assert!(receipt.iat >= before.replace_nanosecond(0).unwrap());
    // It is a receipt: not a license, not a machine file.
    assert!(matches!(
        p.keys.verify(&out.receipt),
        Err(TokenError::WrongKind { .. })
    ));
    assert!(matches!(
        p.keys
            .verify_machine_file(&out.receipt, "machine-0001", before),
        Err(TokenError::WrongKind { .. })
    ));
    // After its exp, it is refused offline.
    assert!(matches!(
        p.keys.verify_receipt(&out.receipt, nonce, receipt.exp),
        Err(TokenError::Expired(_))
    ));
    // Without a nonce there is nothing to echo: a program that sent one
    // must not accept it.
    let out: ValidationOut = expect_json(p.validate_raw(json!({"key": k})).await, 200).await;
    assert_eq!(
        p.keys
            .verify_receipt(&out.receipt, nonce, before)
            .unwrap_err(),
        TokenError::NonceMismatch
    );
}

async fn bad_requests_are_400_and_say_nothing_about_the_license(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let k = key.as_str();
    let validate_url = format!("{}/v1/licenses/validate", app.base);
    let raw = |body: &'static str| {
        app.client
            .post(&validate_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["not json", "[1,2]", "{\"key\": 5}", ""] {
        let resp = raw(body).await.unwrap();
        refused(resp, 400, "bad_request").await;
    }
    for body in [
        json!({"fingerprint": "machine-0001"}),
        json!({"key": "K".repeat(65)}),
        json!({"key": k, "nonce": "short"}),
        json!({"key": k, "nonce": "n".repeat(129)}),
        json!({"key": k, "nonce": "tab\there-ok?"}),
        json!({"key": k, "fingerprint": "short"}),
        json!({"key": k, "fingerprint": "f".repeat(256)}),
        json!({"key": k, "unknown": true}),
        json!({"key": k, "entitlements": vec!["e"; 65]}),
    ] {
        let resp = p.validate_raw(body.clone()).await;
        let err = refused(resp, 400, "bad_request").await;
        let text = serde_json::to_string(&err).unwrap();
        assert!(
            !text.contains("datatools") && !text.contains("active"),
            "{body}: {text}"
        );
    }
    // Activation: a bad fingerprint, bad metadata or a bad nonce.
    refused(
        p.activate_raw(k, "short", json!({})).await,
        400,
        "bad_request",
    )
    .await;
    refused(
        p.activate_raw(k, &"f".repeat(256), json!({})).await,
        400,
        "bad_request",
    )
    .await;
    refused(
        p.activate_raw(k, "machine-0001", json!({"name": "a\u{7}b"}))
            .await,
        400,
        "bad_request",
    )
    .await;
    refused(
        p.activate_raw(k, "machine-0001", json!({"nonce": "x"}))
            .await,
        400,
        "bad_request",
    )
    .await;
    refused(
        p.activate_raw(k, "machine-0001", json!({"color": "red"}))
            .await,
        400,
        "bad_request",
    )
    .await;
    // What the framework refuses is answered in the same JSON shape: a
    // body over 16 KiB, a path that is not UTF-8.
    let big = json!({"key": k, "product": "x".repeat(20 * 1024)});
    refused(p.validate_raw(big).await, 413, "body_too_large").await;
    let not_utf8 = app.url(&format!("/v1/licenses/{k}/machines/abcdefgh%FF%FE"));
    refused(
        app.client.put(&not_utf8).send().await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    // A NUL is a key that does not parse, on PostgreSQL too.
    let out = p
        .validate(json!({"key": "DT1-CORE-\u{0}0000-00000-00000-00000"}))
        .await;
    assert_eq!(out.code.as_str(), "NOT_FOUND");
    // Surrounding spaces do not count towards the 64 characters.
    let padded = format!("{}{k}{}", " ".repeat(20), " ".repeat(20));
    assert_eq!(p.code(json!({"key": padded})).await, "VALID");
    // Nothing was activated by any of them.
    let listed: MachinesOut = expect_json(p.machines(k).await, 200).await;
    assert_eq!(listed.machines_active, 0);
}

async fn validation_records_last_seen_at_most_once_a_minute(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let activated = p.activate(&key, "seen-machine-1", 201).await;
    let body = json!({"key": key.as_str(), "fingerprint": "seen-machine-1"});
    let id = activated.machine.id.to_string();
    let stored = || app.scalar("SELECT last_seen_at FROM machines WHERE id = $1", &id);
    let at_activation = stored().await;
    // Within the minute: answered, nothing written.
    let out = p.validate(body.clone()).await;
    assert_eq!(
        out.machine.unwrap().last_seen_at,
        activated.machine.last_seen_at
    );
    assert_eq!(stored().await, at_activation);
    // Seen two minutes ago: the next validation records now.
    let two_minutes_ago = at_activation - 120_000;
    let store = app.database.store().await;
    sqlx::query("UPDATE machines SET last_seen_at = $1 WHERE id = $2")
        .bind(two_minutes_ago)
        .bind(&id)
        .execute(store.pool())
        .await
        .unwrap();
    let before = keymint::domain::Millis::now().as_i64();
    p.validate(body.clone()).await;
    let after_first = stored().await;
    assert!(after_first >= before, "{after_first} < {before}");
    p.validate(body).await;
    assert_eq!(stored().await, after_first);
}

async fn key_guessing_spends_a_small_budget_then_every_request_waits(db: Db) {
    let Some(app) = spawn_app_with(
        db,
        &[
            ("KEYMINT_LICENSING__RATE_LIMIT__NOT_FOUND_PER_MINUTE", "3"),
            ("KEYMINT_LICENSING__RATE_LIMIT__PER_MINUTE", "1000"),
        ],
    )
    .await
    else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    // Found keys do not spend the small budget.
    for _ in 0..10 {
        assert_eq!(p.code(json!({"key": key.as_str()})).await, "VALID");
    }
    for _ in 0..3 {
        let guess = LicenseKey::generate("DT1", "CORE").unwrap();
        assert_eq!(p.code(json!({"key": guess.as_str()})).await, "NOT_FOUND");
    }
    // Past it, a real key waits too: a guesser learns nothing more.
    let resp = p.validate_raw(json!({"key": key.as_str()})).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let err = refused(resp, 429, "rate_limited").await;
    assert_eq!(err.retry_after, Some(retry));
    assert!((1..=20).contains(&retry), "{retry}");
    refused(
        p.activate_raw(key.as_str(), "machine-0001", json!({}))
            .await,
        429,
        "rate_limited",
    )
    .await;
    // Other routes are not licensing routes.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
