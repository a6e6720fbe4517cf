//! Operators' machines: the admin routes and the `keymint machines` CLI.

use super::*;

both_databases!(
    operators_list_deactivate_reset_and_raise_the_limit,
    the_cli_checks_out_a_machine_file_for_an_air_gapped_machine,
);

async fn operators_list_deactivate_reset_and_raise_the_limit(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let admin = app.admin().await;
    let key = sold(&app).await;
    let k = key.as_str();
    for i in 0..3 {
        p.activate(&key, &format!("office-{i}-machine"), 201).await;
    }
    let put_max = |body: Value| {
        admin
            .request(
                reqwest::Method::PUT,
                &format!("/admin/v1/licenses/{k}/max-machines"),
            )
            .json(&body)
            .send()
    };
    // Four seats for this license: a fourth machine fits, a fifth not.
    let one: LicenseOne =
        expect_json(put_max(json!({"max_machines": 4})).await.unwrap(), 200).await;
    assert_eq!(one.license.max_machines, Some(4));
    let token = p
        .keys
        .verify(&one.license.token)
        .expect("the re-signed token verifies");
    assert_eq!(token.max_machines, Some(4));
    p.activate(&key, "office-3-machine", 201).await;
    refused(
        p.activate_raw(k, "office-4-machine", json!({})).await,
        409,
        "TOO_MANY_MACHINES",
    )
    .await;
    expect_error(
        put_max(json!({"max_machines": 0})).await.unwrap(),
        422,
        "invalid_max_machines",
    )
    .await;
    expect_error(put_max(json!({})).await.unwrap(), 422, "unprocessable").await;
    let one: LicenseOne =
        expect_json(put_max(json!({"max_machines": null})).await.unwrap(), 200).await;
    assert_eq!(one.license.max_machines, None);
    p.activate(&key, "office-4-machine", 201).await;

    let listed: MachinesOut = admin
        .get_json(&format!("/admin/v1/licenses/{k}/machines"))
        .await;
    assert_eq!((listed.machines_active, listed.max_machines), (5, None));
    let bogus = format!("/admin/v1/licenses/{k}/machines/mch_01JUNKJUNKJUNKJUNKJUNKJUNK");
    let resp = admin
        .request(reqwest::Method::DELETE, &bogus)
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "machine_not_found").await;

    let reset: ResetOut = expect_json(
        admin
            .post(
                &format!("/admin/v1/licenses/{k}/machines/reset"),
                &json!({}),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(reset.deactivated, 5);
    let listed: MachinesOut = expect_json(p.machines(k).await, 200).await;
    assert_eq!(listed.machines_active, 0);

    let detail = admin.license(&key).await;
    let actions = detail.actions();
    assert!(
        actions.contains(&"max_machines_set") && actions.contains(&"machines_reset"),
        "{actions:?}"
    );
    let reset_by = detail
        .history
        .iter()
        .find(|h| h.action == "machines_reset")
        .unwrap();
    assert_eq!(reset_by.actor, "admin:ops");
    let set = detail
        .history
        .iter()
        .find(|h| h.action == "max_machines_set")
        .unwrap();
    assert_eq!(set.reason.as_deref(), Some("3 -> 4"));
    // Reading needs licenses:read, writing licenses:write.
    let reader = app
        .scoped_token("reader", keymint::admin::scope::LICENSES_READ)
        .await;
    let reader = app.admin_with(&reader);
    let resp = reader
        .post(
            &format!("/admin/v1/licenses/{k}/machines/reset"),
            &json!({}),
        )
        .await;
    expect_error(resp, 403, "forbidden").await;
}

async fn the_cli_checks_out_a_machine_file_for_an_air_gapped_machine(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let p = Program::new(&app).await;
    let admin = app.admin().await;
    let key = sold(&app).await;
    let k = key.as_str();
    let file = app.dir.join("air-gapped.machine");
    let out = app.cli(&[
        "machines",
        "checkout",
        k,
        "air-gapped-0001",
        "--ttl",
        "90d",
        "--out",
        file.to_str().unwrap(),
        "--name",
        "lab",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let claims = p
        .keys
        .verify_machine_file(text.trim(), "air-gapped-0001", OffsetDateTime::now_utc())
        .unwrap();
    assert_eq!(claims.exp - claims.iat, time::Duration::days(90));
    // A checkout printed to stdout, verified for its fingerprint.
    let checkout = |fingerprint: &str, extra: &[&str]| {
        let mut args = vec!["machines", "checkout", k, fingerprint];
        args.extend_from_slice(extra);
        let out = app.cli(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        p.keys
            .verify_machine_file(stdout(&out).trim(), fingerprint, OffsetDateTime::now_utc())
            .unwrap()
    };
    // Longer than the license lasts: capped at its expiry.
    let long = checkout("air-gapped-0002", &["--ttl", "1000d"]);
    let detail = admin.license(&key).await;
    let expires = time::OffsetDateTime::parse(
        detail.license.expires_at.as_deref().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(long.exp, expires);

    // A file that cannot be written, or a lifetime under a minute, is
    // refused before a seat is taken.
    let nowhere = app.dir.join("no-such-dir/x.machine");
    let out = app.cli(&[
        "machines",
        "checkout",
        k,
        "air-gapped-0009",
        "--out",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-dir"), "{}", stderr(&out));
    let out = app.cli(&["machines", "checkout", k, "air-gapped-0009", "--ttl", "0s"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("shorter than a minute"),
        "{}",
        stderr(&out)
    );

    let out = app.cli(&["machines", "list", k]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: MachinesOut = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.machines_active, 2);
    assert_eq!(listed.machines[0].name.as_deref(), Some("lab"));
    // Without --ttl, `[licensing] machine_file_ttl` (30 days here).
    let out = app.cli(&["machines", "reset", k]);
    assert!(out.status.success(), "{}", stderr(&out));
    let default = checkout("air-gapped-0001", &["--name", "lab"]);
    assert_eq!(default.exp - default.iat, time::Duration::days(30));
    checkout("air-gapped-0002", &["--ttl", "1000d"]);
    // It counts against the seats like any activation.
    p.activate(&key, "online-machine", 201).await;
    let out = app.cli(&["machines", "checkout", k, "air-gapped-0003"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));

    let out = app.cli(&["machines", "list", k]);
    let listed: MachinesOut = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.machines_active, 3);
    let id = listed.machines[0].id.to_string();
    let out = app.cli(&["machines", "deactivate", k, &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = app.cli(&["machines", "reset", k]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reset: ResetOut = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(reset.deactivated, 2);
    let detail = admin.license(&key).await;
    let by_cli = detail.history.iter().filter(|h| h.actor == "cli").count();
    // Activated 0001 and 0002, reset, activated them again, deactivated
    // one, reset.
    assert_eq!(by_cli, 7, "{:?}", detail.actions());
    let out = app.cli(&["machines", "list", "DT1-CORE-00000-00000-00000-00000"]);
    assert!(!out.status.success());
}
