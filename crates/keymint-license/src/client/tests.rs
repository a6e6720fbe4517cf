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

// The tests, by what the program asks.
mod machines;
mod validate;
