//! Seats: idempotent activation with machine files, racing activations,
//! the deactivation budget, licenses from before machines existed.

use super::*;

both_databases!(
    activation_is_idempotent_and_returns_a_machine_file,
    thirty_racing_activations_fill_exactly_three_seats,
    twenty_racing_activations_of_one_machine_make_one,
    deactivation_frees_a_seat_within_a_budget_operators_do_not_have,
    a_license_minted_before_machines_existed_activates,
);

async fn activation_is_idempotent_and_returns_a_machine_file(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let body = json!({"name": "Jane's laptop", "platform": "linux", "hostname": "jane-l",
                      "app_version": "2.1.0", "nonce": "activation-nonce"});
    let first: ActivationOut =
        expect_json(p.activate_raw(key.as_str(), "fp-laptop-1", body).await, 201).await;
    assert!(first.created);
    assert_eq!(first.machine.name.as_deref(), Some("Jane's laptop"));
    assert_eq!(first.license.machines_active, 1);
    let now = OffsetDateTime::now_utc();
    let claims = p
        .keys
        .verify_machine_file(&first.machine_file, "fp-laptop-1", now)
        .unwrap();
    assert_eq!(claims.nonce.as_deref(), Some("activation-nonce"));
    assert_eq!(
        (claims.product.as_str(), claims.tier.as_str()),
        ("datatools-core", "core")
    );
    assert_eq!(claims.entitlements, vec!["export".to_string()]);
    // 30 days by default, well inside the license's 365.
    assert_eq!(claims.exp - claims.iat, time::Duration::days(30));
    assert_eq!(
        p.keys
            .verify_machine_file(&first.machine_file, "fp-desktop-2", now)
            .unwrap_err(),
        TokenError::FingerprintMismatch
    );
    assert!(matches!(
        p.keys
            .verify_machine_file(&first.machine_file, "fp-laptop-1", claims.exp),
        Err(TokenError::Expired(_))
    ));

    // The same device asking again: 200, the same machine, a fresh file.
    let again = p.activate(&key, "fp-laptop-1", 200).await;
    assert!(!again.created);
    assert_eq!(again.machine.id, first.machine.id);
    assert_eq!(again.machine.name.as_deref(), Some("Jane's laptop"));
    assert_eq!(again.license.machines_active, 1);

    let listed: MachinesOut = expect_json(p.machines(key.as_str()).await, 200).await;
    assert_eq!((listed.machines_active, listed.max_machines), (1, Some(3)));
    assert_eq!(listed.machines[0].app_version.as_deref(), Some("2.1.0"));
    // The fingerprint is nowhere in the listing, nor in the database.
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains("fp-laptop-1"), "{text}");
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM machines WHERE fingerprint_hash LIKE '%' || $1 || '%' OR name = $1",
            "fp-laptop-1"
        )
        .await,
        0
    );
    let detail = app.admin().await.license(&key).await;
    assert_eq!(
        detail
            .actions()
            .iter()
            .filter(|a| **a == "machine_activated")
            .count(),
        1
    );
    assert_eq!(detail.machines.len(), 1);

    // Unknown keys: 404 NOT_FOUND, for activation, listing and deactivation.
    let unknown = LicenseKey::generate("DT1", "CORE").unwrap();
    refused(
        p.activate_raw(unknown.as_str(), "fp-laptop-1", json!({}))
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    refused(
        p.activate_raw("nonsense", "fp-laptop-1", json!({})).await,
        404,
        "NOT_FOUND",
    )
    .await;
    refused(p.machines(unknown.as_str()).await, 404, "NOT_FOUND").await;
    refused(
        p.deactivate(unknown.as_str(), "fp-laptop-1").await,
        404,
        "NOT_FOUND",
    )
    .await;
    refused(
        p.deactivate(key.as_str(), "fp-never-seen").await,
        404,
        "NOT_ACTIVATED",
    )
    .await;
}

async fn thirty_racing_activations_fill_exactly_three_seats(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let machines: Vec<String> = (0..30).map(|i| format!("racing-machine-{i:02}")).collect();
    let token = app.admin_token("commits").await;
    let database = async || -> Value {
        expect_json(app.admin_get(&token, "/admin/v1/database").await, 200).await
    };
    let before = database().await;
    let answers = futures::future::join_all(
        machines
            .iter()
            .map(|m| p.activate_raw(key.as_str(), m, json!({}))),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        27,
        "{statuses:?}"
    );
    for resp in answers.into_iter().filter(|r| r.status() == 409) {
        refused(resp, 409, "TOO_MANY_MACHINES").await;
    }
    // On SQLite each activation, refused or not, was a piece of a group
    // commit (the second read of the settings is one more); on PostgreSQL
    // each is a transaction of its own.
    let after = database().await;
    let count = |body: &Value, field: &str| body[field].as_u64().expect(field);
    let pieces = count(&after, "group_commit_pieces") - count(&before, "group_commit_pieces");
    match db {
        Db::Sqlite => assert!(pieces >= 31, "{pieces} pieces for 30 activations"),
        Db::Postgres => assert!(pieces < 31, "{pieces} pieces for 30 activations"),
    }
    let listed: MachinesOut = expect_json(p.machines(key.as_str()).await, 200).await;
    assert_eq!(listed.machines_active, 3);
    let detail = app.admin().await.license(&key).await;
    assert_eq!(
        detail
            .actions()
            .iter()
            .filter(|a| **a == "machine_activated")
            .count(),
        3
    );
}

async fn twenty_racing_activations_of_one_machine_make_one(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let answers = futures::future::join_all(
        (0..20).map(|_| p.activate_raw(key.as_str(), "the-same-machine", json!({}))),
    )
    .await;
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for resp in answers {
        let status = resp.status().as_u16();
        let out: ActivationOut = expect_json(resp, status).await;
        assert_eq!(status, if out.created { 201 } else { 200 });
        created += usize::from(out.created);
        ids.insert(out.machine.id.to_string());
    }
    assert_eq!((created, ids.len()), (1, 1));
    let listed: MachinesOut = expect_json(p.machines(key.as_str()).await, 200).await;
    assert_eq!(listed.machines_active, 1);
}

async fn deactivation_frees_a_seat_within_a_budget_operators_do_not_have(db: Db) {
    let Some(app) = spawn_app_with(db, &[("KEYMINT_LICENSING__DEACTIVATIONS_PER_30D", "2")]).await
    else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    let k = key.as_str();
    for i in 0..3 {
        p.activate(&key, &format!("seat-{i}-machine"), 201).await;
    }
    refused(
        p.activate_raw(k, "seat-3-machine", json!({})).await,
        409,
        "TOO_MANY_MACHINES",
    )
    .await;
    // Two moves within the budget.
    for i in 0..2 {
        let resp = p.deactivate(k, &format!("seat-{i}-machine")).await;
        assert_eq!(resp.status(), 204);
        refused(
            p.deactivate(k, &format!("seat-{i}-machine")).await,
            404,
            "NOT_ACTIVATED",
        )
        .await;
        p.activate(&key, &format!("moved-{i}-machine"), 201).await;
    }
    assert_eq!(
        p.code(json!({"key": k, "fingerprint": "seat-0-machine"}))
            .await,
        "NOT_ACTIVATED"
    );
    // The third is over the budget: 429 with when to retry, nothing freed.
    let resp = p.deactivate(k, "seat-2-machine").await;
    let retry_header: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let err = refused(resp, 429, "DEACTIVATION_LIMIT").await;
    let retry = err.retry_after.expect("retry_after");
    assert_eq!(retry, retry_header);
    assert!(retry > 29 * 86_400 && retry <= 30 * 86_400, "{retry}");
    assert_eq!(
        p.code(json!({"key": k, "fingerprint": "seat-2-machine"}))
            .await,
        "VALID"
    );
    // An operator is never budgeted.
    let admin = app.admin().await;
    let listed: MachinesOut = admin
        .get_json(&format!("/admin/v1/licenses/{k}/machines"))
        .await;
    let id = listed.machines[0].id.clone();
    let resp = admin
        .request(
            reqwest::Method::DELETE,
            &format!("/admin/v1/licenses/{k}/machines/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let listed: MachinesOut = expect_json(p.machines(k).await, 200).await;
    assert_eq!(listed.machines_active, 2);
}

async fn a_license_minted_before_machines_existed_activates(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let key = sold(&app).await;
    // As a license from before the licensing API: minted with no seat
    // limit recorded and nothing in the machines table.
    let store = app.database.store().await;
    sqlx::query("UPDATE licenses SET max_machines = NULL WHERE key = $1")
        .bind(key.as_str())
        .execute(store.pool())
        .await
        .unwrap();
    let detail = app.admin().await.license(&key).await;
    p.keys
        .verify(&detail.license.token)
        .expect("its token still verifies");
    for i in 0..5 {
        p.activate(&key, &format!("legacy-machine-{i}"), 201).await;
    }
    assert_eq!(
        p.code(json!({"key": key.as_str(), "fingerprint": "legacy-machine-4"}))
            .await,
        "VALID"
    );
}
