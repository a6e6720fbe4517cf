//! The client against a fake keymint: a real HTTP/1.1 server on loopback
//! (a `TcpListener` and one thread answering a fixed number of requests)
//! that signs receipts and machine files with a fresh key.

use super::*;
use crate::{MACHINE_FILE, RECEIPT, SigningKey};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

const KEY: &str = "DT1-CORE-ABCDE-FGHJK-MNPQR-STVWX";
const FINGERPRINT: &str = "0f1e2d3c4b5a";

/// A request as the fake server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

/// An answer: status, extra headers, body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

struct Fake {
    base: String,
    signing: Arc<SigningKey>,
    server: JoinHandle<Vec<Seen>>,
}

impl Fake {
    /// Serves `requests` requests, each answered by `handler` (which signs
    /// with the fake's key), then stops.
    fn serve(
        requests: usize,
        handler: impl Fn(&SigningKey, &Seen) -> Reply + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let signing = Arc::new(SigningKey::generate());
        let key = Arc::clone(&signing);
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..requests {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let request = read_request(&mut reader);
                let answer = handler(&key, &request);
                let mut head = format!(
                    "HTTP/1.1 {} Fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    answer.status,
                    answer.body.len()
                );
                for (name, value) in &answer.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let mut stream = stream;
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(answer.body.as_bytes()).unwrap();
                stream.flush().unwrap();
                seen.push(request);
            }
            seen
        });
        Self {
            base,
            signing,
            server,
        }
    }

    fn client(&self) -> Client {
        let keys = KeySet::from_paserks([self.signing.public_paserk().as_str()]).unwrap();
        Client::new(&format!("{}/", self.base), keys).with_timeout(Duration::from_secs(10))
    }

    /// The requests served, once all were.
    fn seen(self) -> Vec<Seen> {
        self.server.join().unwrap()
    }
}

fn read_request(reader: &mut impl BufRead) -> Seen {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap().to_string();
    let path = parts.next().unwrap().to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    Seen { method, path, body }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

fn receipt(
    signing: &SigningKey,
    valid: bool,
    code: &str,
    key: &str,
    fingerprint: Option<&str>,
    nonce: &str,
) -> String {
    let now = now();
    signing
        .sign_receipt(&ReceiptClaims {
            typ: RECEIPT.into(),
            iss: "keymint".into(),
            valid,
            code: code.into(),
            key: key.into(),
            fingerprint: fingerprint.map(Into::into),
            nonce: Some(nonce.into()),
            // As `validate_answer`'s body says.
            access_until: Some(
                OffsetDateTime::parse(
                    "2030-01-01T00:00:00Z",
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap(),
            ),
            warnings: vec!["PAST_DUE".into()],
            missing_entitlements: Vec::new(),
            iat: now,
            exp: now + time::Duration::hours(1),
        })
        .unwrap()
}

fn machine_file(signing: &SigningKey, fingerprint: &str, nonce: Option<&str>) -> String {
    let now = now();
    signing
        .sign_machine_file(&MachineFileClaims {
            typ: MACHINE_FILE.into(),
            iss: "keymint".into(),
            license: "lic_1".into(),
            machine: "mch_1".into(),
            key: KEY.into(),
            fingerprint: fingerprint.into(),
            product: "datatools-core".into(),
            tier: "core".into(),
            entitlements: vec!["export".into()],
            nonce: nonce.map(Into::into),
            iat: now,
            nbf: now,
            exp: now + time::Duration::days(7),
        })
        .unwrap()
}

fn license_json() -> Value {
    json!({
        "key": KEY, "product": "datatools-core", "tier": "core", "status": "active",
        "entitlements": ["export"], "expires_at": null, "max_machines": 3, "machines_active": 1,
        "some_future_field": true
    })
}

fn machine_json() -> Value {
    json!({
        "id": "mch_1", "name": "laptop", "platform": "linux-x86_64", "hostname": "box",
        "app_version": "1.2.3", "activated_at": "2025-01-02T03:04:05Z", "last_seen_at": null
    })
}

/// A validation answer whose body says `valid`/`code` and whose receipt
/// says `signed_valid`/`signed_code` with `nonce` (`None`: the request's).
fn validate_answer(
    signing: &SigningKey,
    request: &Seen,
    (valid, code): (bool, &str),
    (signed_valid, signed_code): (bool, &str),
    nonce: Option<&str>,
) -> Reply {
    let sent_nonce = request.body["nonce"].as_str().unwrap();
    let fingerprint = request.body["fingerprint"].as_str();
    let key = request.body["key"].as_str().unwrap();
    reply(
        200,
        json!({
            "valid": valid, "code": code, "detail": "text",
            "license": license_json(), "machine": machine_json(),
            "access_until": "2030-01-01T00:00:00Z", "warnings": ["PAST_DUE"],
            "missing_entitlements": [],
            "receipt": receipt(signing, signed_valid, signed_code, key, fingerprint, nonce.unwrap_or(sent_nonce)),
        }),
    )
}

#[test]
fn a_body_whose_warnings_differ_from_the_receipt_is_tampered() {
    let fake = Fake::serve(1, |signing, request| {
        let mut reply = validate_answer(signing, request, (true, "VALID"), (true, "VALID"), None);
        let mut body: Value = serde_json::from_str(&reply.body).unwrap();
        body["warnings"] = json!([]);
        reply.body = body.to_string();
        reply
    });
    let err = fake
        .client()
        .validate(&ValidateRequest::new(KEY).fingerprint(FINGERPRINT))
        .unwrap_err();
    assert!(matches!(err, ClientError::Tampered(_)), "{err:?}");
}

#[test]
fn a_valid_signed_answer_is_accepted() {
    let fake = Fake::serve(1, |signing, request| {
        validate_answer(signing, request, (true, "VALID"), (true, "VALID"), None)
    });
    let request = ValidateRequest::new(KEY.to_lowercase())
        .fingerprint(FINGERPRINT)
        .product("datatools-core")
        .entitlement("export");

    let validation = fake.client().validate(&request).unwrap();

    assert!(validation.is_valid());
    assert_eq!(validation.receipt.code, "VALID");
    assert_eq!(validation.answer.warnings, ["PAST_DUE"]);
    assert_eq!(
        validation.answer.license.as_ref().unwrap().max_machines,
        Some(3)
    );
    assert_eq!(
        validation.answer.access_until,
        Some(
            OffsetDateTime::parse(
                "2030-01-01T00:00:00Z",
                &time::format_description::well_known::Rfc3339
            )
            .unwrap()
        )
    );
    let seen = fake.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/licenses/validate");
    let body = &seen[0].body;
    assert_eq!(body["key"], KEY.to_lowercase());
    assert_eq!(body["fingerprint"], FINGERPRINT);
    assert_eq!(body["product"], "datatools-core");
    assert_eq!(body["entitlements"], json!(["export"]));
    let nonce = body["nonce"].as_str().unwrap();
    assert_eq!(nonce.len(), NONCE_LEN);
    assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()), "{nonce}");
}

#[test]
fn an_invalid_license_is_an_answer_not_an_error() {
    let fake = Fake::serve(1, |signing, request| {
        validate_answer(
            signing,
            request,
            (false, "REFUNDED"),
            (false, "REFUNDED"),
            None,
        )
    });
    let validation = fake.client().validate(&ValidateRequest::new(KEY)).unwrap();
    assert!(!validation.is_valid());
    assert_eq!(validation.receipt.code, "REFUNDED");
    // Optional fields absent from the request are not sent.
    let body = &fake.seen()[0].body;
    for absent in ["fingerprint", "product", "entitlements"] {
        assert!(body.get(absent).is_none(), "{absent}: {body}");
    }
}

#[test]
fn each_request_sends_a_fresh_nonce() {
    let fake = Fake::serve(2, |signing, request| {
        validate_answer(signing, request, (true, "VALID"), (true, "VALID"), None)
    });
    let client = fake.client();
    client.validate(&ValidateRequest::new(KEY)).unwrap();
    client.validate(&ValidateRequest::new(KEY)).unwrap();
    let seen = fake.seen();
    assert_ne!(seen[0].body["nonce"], seen[1].body["nonce"]);
}

#[test]
fn a_receipt_echoing_another_nonce_is_rejected_as_replayed() {
    let fake = Fake::serve(1, |signing, request| {
        validate_answer(
            signing,
            request,
            (true, "VALID"),
            (true, "VALID"),
            Some("RecordedEarlierRecordedEarlier00"),
        )
    });
    let err = fake
        .client()
        .validate(&ValidateRequest::new(KEY))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Token(TokenError::NonceMismatch)),
        "{err:?}"
    );
}

#[test]
fn a_body_whose_valid_disagrees_with_the_receipt_is_rejected() {
    let fake = Fake::serve(1, |signing, request| {
        validate_answer(signing, request, (true, "VALID"), (false, "REFUNDED"), None)
    });
    let err = fake
        .client()
        .validate(&ValidateRequest::new(KEY))
        .unwrap_err();
    assert!(matches!(err, ClientError::Tampered(_)), "{err:?}");
}

#[test]
fn a_receipt_for_another_fingerprint_is_rejected() {
    let fake = Fake::serve(1, |signing, request| {
        let nonce = request.body["nonce"].as_str().unwrap();
        let mut answer = validate_answer(signing, request, (true, "VALID"), (true, "VALID"), None);
        let mut body: Value = serde_json::from_str(&answer.body).unwrap();
        body["receipt"] = receipt(signing, true, "VALID", KEY, Some("other-machine"), nonce).into();
        answer.body = body.to_string();
        answer
    });
    let request = ValidateRequest::new(KEY).fingerprint(FINGERPRINT);
    let err = fake.client().validate(&request).unwrap_err();
    assert!(matches!(err, ClientError::Tampered(_)), "{err:?}");
}

#[test]
fn a_receipt_signed_by_an_untrusted_key_is_rejected() {
    let fake = Fake::serve(1, |_, request| {
        let forger = SigningKey::generate();
        validate_answer(&forger, request, (true, "VALID"), (true, "VALID"), None)
    });
    let err = fake
        .client()
        .validate(&ValidateRequest::new(KEY))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Token(TokenError::UnknownKey)),
        "{err:?}"
    );
}

#[test]
fn an_answer_that_is_not_keymints_is_a_protocol_error() {
    let fake = Fake::serve(2, |_, request| {
        if request.path.ends_with("validate") {
            reply(200, json!({"hello": "world"}))
        } else {
            Reply {
                status: 502,
                headers: Vec::new(),
                body: "<html>Bad gateway</html>".into(),
            }
        }
    });
    let client = fake.client();
    let err = client.validate(&ValidateRequest::new(KEY)).unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    let err = client.machines(KEY).unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol(m) if m.contains("502")),
        "{err:?}"
    );
}

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
