//! `Client::activate`, `deactivate` and `machines` against the loopback
//! fake, and the client's small rules (nonces, key comparison).

use super::*;

fn activate_answer(
    signing: &SigningKey,
    request: &Seen,
    status: u16,
    fingerprint: &str,
    nonce: Option<&str>,
) -> Reply {
    let sent_nonce = request.body["nonce"].as_str().unwrap();
    reply(
        status,
        json!({
            "created": status == 201,
            "machine": machine_json(),
            "machine_file": machine_file(signing, fingerprint, Some(nonce.unwrap_or(sent_nonce))),
            "license": license_json(),
        }),
    )
}

#[test]
fn activation_returns_a_verified_machine_file() {
    let fingerprint = "ab/c d";
    let fake = Fake::serve(2, move |signing, request| {
        let status = if request.body.get("name").is_some() {
            201
        } else {
            200
        };
        activate_answer(signing, request, status, fingerprint, None)
    });
    let client = fake.client();
    let meta = MachineMeta {
        name: Some("laptop".into()),
        platform: Some("linux-x86_64".into()),
        ..MachineMeta::default()
    };

    let first = client.activate(KEY, fingerprint, &meta).unwrap();
    let again = client
        .activate(KEY, fingerprint, &MachineMeta::default())
        .unwrap();

    assert!(first.created);
    assert!(!again.created);
    assert_eq!(first.claims.fingerprint, fingerprint);
    assert_eq!(first.machine.id, "mch_1");
    assert_eq!(first.license.max_machines, Some(3));
    // The stored file verifies offline later.
    let now = OffsetDateTime::now_utc();
    assert!(
        client
            .keys()
            .verify_machine_file(&first.machine_file, fingerprint, now)
            .is_ok()
    );
    let seen = fake.seen();
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(
        seen[0].path,
        format!("/v1/licenses/{KEY}/machines/ab%2Fc%20d")
    );
    assert_eq!(seen[0].body["name"], "laptop");
    assert_eq!(seen[0].body["platform"], "linux-x86_64");
    assert!(seen[0].body.get("hostname").is_none());
    assert_eq!(seen[0].body["nonce"].as_str().unwrap().len(), NONCE_LEN);
    assert_ne!(seen[0].body["nonce"], seen[1].body["nonce"]);
}

#[test]
fn a_machine_file_for_another_machine_or_nonce_is_rejected() {
    let fake = Fake::serve(3, |signing, request| match request.body["name"].as_str() {
        Some("other-machine") => {
            activate_answer(signing, request, 201, "another-fingerprint", None)
        }
        Some("replayed") => activate_answer(
            signing,
            request,
            201,
            FINGERPRINT,
            Some("OldNonceOldNonceOldNonceOldNonce"),
        ),
        _ => {
            // A machine file without any nonce.
            let mut answer = activate_answer(signing, request, 201, FINGERPRINT, None);
            let mut body: Value = serde_json::from_str(&answer.body).unwrap();
            body["machine_file"] = machine_file(signing, FINGERPRINT, None).into();
            answer.body = body.to_string();
            answer
        }
    });
    let client = fake.client();
    let named = |name: &str| MachineMeta {
        name: Some(name.into()),
        ..MachineMeta::default()
    };

    let err = client
        .activate(KEY, FINGERPRINT, &named("other-machine"))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Token(TokenError::FingerprintMismatch)),
        "{err:?}"
    );
    let err = client
        .activate(KEY, FINGERPRINT, &named("replayed"))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Token(TokenError::NonceMismatch)),
        "{err:?}"
    );
    let err = client
        .activate(KEY, FINGERPRINT, &named("no-nonce"))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Token(TokenError::NonceMismatch)),
        "{err:?}"
    );
}

#[test]
fn too_many_machines_is_refused_with_its_code() {
    let fake = Fake::serve(1, |_, _| {
        reply(
            409,
            json!({"code": "TOO_MANY_MACHINES", "error": "this license is active on 3 of 3 machines"}),
        )
    });
    let err = fake
        .client()
        .activate(KEY, FINGERPRINT, &MachineMeta::default())
        .unwrap_err();
    match err {
        ClientError::Refused {
            status,
            code,
            message,
            retry_after,
        } => {
            assert_eq!(status, 409);
            assert_eq!(code, "TOO_MANY_MACHINES");
            assert!(message.contains("3 of 3"), "{message}");
            assert_eq!(retry_after, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deactivation_succeeds_on_204_and_is_refused_with_retry_after_on_429() {
    let fake = Fake::serve(3, |_, request| {
        assert_eq!(request.method, "DELETE");
        match request.path.rsplit('/').next().unwrap() {
            "first" => Reply {
                status: 204,
                headers: Vec::new(),
                body: String::new(),
            },
            "second" => reply(
                429,
                json!({"code": "DEACTIVATION_LIMIT", "error": "too many", "retry_after": 3600}),
            ),
            _ => Reply {
                status: 429,
                headers: vec![("Retry-After", "7".into())],
                body: json!({"code": "rate_limited", "error": "slow down"}).to_string(),
            },
        }
    });
    let client = fake.client();

    client.deactivate(KEY, "first").unwrap();
    let err = client.deactivate(KEY, "second").unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { status: 429, code, retry_after: Some(3600), .. } if code == "DEACTIVATION_LIMIT"),
        "{err:?}"
    );
    let err = client.deactivate(KEY, "third").unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { status: 429, code, retry_after: Some(7), .. } if code == "rate_limited"),
        "{err:?}"
    );
    assert_eq!(
        fake.seen()[0].path,
        format!("/v1/licenses/{KEY}/machines/first")
    );
}

#[test]
fn machines_are_listed() {
    let fake = Fake::serve(1, |_, request| {
        assert_eq!(request.method, "GET");
        reply(
            200,
            json!({"machines": [machine_json()], "max_machines": null, "machines_active": 1}),
        )
    });
    let list = fake.client().machines(KEY).unwrap();
    assert_eq!(list.machines.len(), 1);
    assert_eq!(list.machines[0].hostname.as_deref(), Some("box"));
    assert_eq!(list.max_machines, None);
    assert_eq!(list.machines_active, 1);
    assert_eq!(fake.seen()[0].path, format!("/v1/licenses/{KEY}/machines"));
}

#[test]
fn an_unreachable_server_is_a_transport_error() {
    // Bind then drop: nothing listens on the port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}"), KeySet::new())
        .with_timeout(Duration::from_secs(5));
    let err = client.machines(KEY).unwrap_err();
    assert!(matches!(err, ClientError::Http(_)), "{err:?}");
}

#[test]
fn nonces_are_alphanumeric_and_distinct() {
    let a = fresh_nonce();
    let b = fresh_nonce();
    assert_eq!(a.len(), NONCE_LEN);
    assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a, b);
}

#[test]
fn keys_compare_in_canonical_form() {
    assert!(same_key(KEY, &KEY.to_lowercase()));
    assert!(!same_key(KEY, "DT1-CORE-ABCDE-FGHJK-MNPQR-STVW0"));
    assert!(same_key("not a key", " not a key "));
}
