//! A blocking HTTP client for keymint's license API (the `client` cargo
//! feature): validate a license, activate and deactivate machines, list a
//! license's machines.
//!
//! Every answer that decides something comes signed: [`Client::validate`]
//! sends a fresh random nonce and accepts the answer only when its
//! `receipt` verifies with the [`KeySet`] and echoes that nonce;
//! [`Client::activate`] does the same with the `machine_file`, which must
//! also name the fingerprint it was asked for. The unsigned JSON around
//! them is returned too, but its `valid` and `code` are checked against the
//! signed receipt first. So neither a forged server, a replayed old answer
//! nor a proxy that rewrites bodies can turn "refunded" into "valid".
//!
//! ```no_run
//! use keymint_license::KeySet;
//! use keymint_license::client::{Client, MachineMeta, ValidateRequest};
//!
//! let keys = KeySet::from_paserks(["k4.public.(your server's key)"])?;
//! let client = Client::new("https://licenses.example.com", keys);
//!
//! let machine = client.activate(
//!     "DT1-CORE-00000-00000-00000-00000",
//!     "this-machine's-fingerprint",
//!     &MachineMeta::default(),
//! )?;
//! std::fs::write("machine-file", &machine.machine_file)?;
//!
//! let answer = client.validate(
//!     &ValidateRequest::new("DT1-CORE-00000-00000-00000-00000")
//!         .fingerprint("this-machine's-fingerprint"),
//! )?;
//! if !answer.is_valid() {
//!     eprintln!("license not valid: {} ({})", answer.receipt.code, answer.answer.detail);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::token::{rfc3339, rfc3339_opt};
use crate::{KeySet, LicenseKey, MachineFileClaims, ReceiptClaims, TokenError};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// The length of the nonce sent with each validation and activation.
pub const NONCE_LEN: usize = 32;

/// How long one request may take, connecting and reading included, unless
/// [`Client::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How far this machine's clock may lag behind the server's before a
/// just-issued receipt or machine file reads as "not yet valid", unless
/// [`Client::with_clock_skew`] says otherwise.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// What a path segment keeps unescaped: RFC 3986 unreserved characters
/// except `.` (so no key or fingerprint can become a `.` or `..` segment).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// Why a request to the license server did not give a trustworthy answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached, or the exchange broke off
    /// (connect, TLS, timeout, reading the body).
    #[error("cannot talk to the license server: {0}")]
    Http(#[source] ureq::Error),
    /// The server answered with an error status and keymint's error body
    /// `{"code", "error", "retry_after"?}`: for example 409
    /// `TOO_MANY_MACHINES`, 403 with the license's code such as
    /// `REFUNDED`, 404 `NOT_FOUND`, 429 `DEACTIVATION_LIMIT` or
    /// `rate_limited`. `retry_after` (seconds) comes from the body or else
    /// the `Retry-After` header.
    #[error("the license server refused (HTTP {status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        retry_after: Option<u64>,
    },
    /// The receipt or machine file did not verify: not signed by a trusted
    /// key, altered, expired, for another machine, or not echoing this
    /// request's nonce (a replayed answer).
    #[error("the license server's signed answer does not verify: {0}")]
    Token(#[from] TokenError),
    /// The unsigned body disagrees with the signed receipt or machine file
    /// it carries: forged or altered on the way.
    #[error("the answer disagrees with its signed token ({0}): forged or altered")]
    Tampered(String),
    /// A body that is not the answer keymint gives.
    #[error("unexpected answer from the license server: {0}")]
    Protocol(String),
}

/// A validation request (`POST /v1/licenses/validate`); the client adds
/// the nonce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidateRequest {
    /// The license key.
    pub key: String,
    /// This machine's fingerprint: asks the server whether this machine is
    /// activated (`NOT_ACTIVATED` when not).
    pub fingerprint: Option<String>,
    /// The product the program is (`PRODUCT_MISMATCH` for another).
    pub product: Option<String>,
    /// Entitlements the program needs (`ENTITLEMENTS_MISSING` when not all
    /// are granted). Not sent when empty.
    pub entitlements: Vec<String>,
}

impl ValidateRequest {
    /// A request for `key` alone.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            ..Self::default()
        }
    }

    /// Also asks about this machine.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// Also checks the product.
    pub fn product(mut self, product: impl Into<String>) -> Self {
        self.product = Some(product.into());
        self
    }

    /// Also requires an entitlement.
    pub fn entitlement(mut self, entitlement: impl Into<String>) -> Self {
        self.entitlements.push(entitlement.into());
        self
    }
}

#[derive(Serialize)]
struct ValidateBody<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    entitlements: &'a [String],
    nonce: &'a str,
}

/// What a program says about the machine it activates; all optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MachineMeta {
    /// A name the licensee recognises ("Jane's laptop").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For example `linux-x86_64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The program's own version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

#[derive(Serialize)]
struct ActivateBody<'a> {
    #[serde(flatten)]
    meta: &'a MachineMeta,
    nonce: &'a str,
}

/// A license as the server describes it in its answers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LicenseInfo {
    pub key: String,
    pub product: String,
    pub tier: String,
    /// `active`, `suspended`, `revoked` or `expired`; the answer's `code` says why (`REFUNDED`, `DISPUTE_LOST`, ...).
    pub status: String,
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// Absent for a perpetual license.
    #[serde(default, with = "rfc3339_opt")]
    pub expires_at: Option<OffsetDateTime>,
    /// Absent: unlimited.
    #[serde(default)]
    pub max_machines: Option<u32>,
    #[serde(default)]
    pub machines_active: u32,
}

/// An activated machine as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Machine {
    /// `mch_...`
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub app_version: Option<String>,
    #[serde(with = "rfc3339")]
    pub activated_at: OffsetDateTime,
    #[serde(default, with = "rfc3339_opt")]
    pub last_seen_at: Option<OffsetDateTime>,
}

/// The body of a validation answer. Only [`Validation::receipt`] is
/// signed; [`Client::validate`] has checked that `valid` and `code` here
/// agree with it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ValidateAnswer {
    pub valid: bool,
    /// `VALID`, `NOT_FOUND`, `NOT_ACTIVATED`, `SUSPENDED`, `REFUNDED`,
    /// `DISPUTE_LOST`, `REVOKED`, `EXPIRED`, `PRODUCT_MISMATCH` or
    /// `ENTITLEMENTS_MISSING`.
    pub code: String,
    /// Human-readable text about the code.
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub license: Option<LicenseInfo>,
    /// The machine, when a fingerprint was sent and it is activated.
    #[serde(default)]
    pub machine: Option<Machine>,
    /// Until when the license gives access (the end of the paid period).
    #[serde(default, with = "rfc3339_opt")]
    pub access_until: Option<OffsetDateTime>,
    /// `PAST_DUE`, `CANCELS_AT_PERIOD_END`.
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub missing_entitlements: Vec<String>,
    /// The signed receipt (`v4.public...`), as received.
    pub receipt: String,
}

/// A verified validation answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    /// The receipt's claims, verified: signed by a trusted key, echoing
    /// this request's nonce, not expired.
    pub receipt: ReceiptClaims,
    /// The whole answer body.
    pub answer: ValidateAnswer,
}

impl Validation {
    /// True when the signed receipt says the license is valid.
    pub fn is_valid(&self) -> bool {
        self.receipt.valid
    }
}

#[derive(Deserialize)]
struct ActivateAnswer {
    created: bool,
    machine: Machine,
    machine_file: String,
    license: LicenseInfo,
}

/// A verified activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// The machine file's claims, verified: signed by a trusted key, for
    /// this fingerprint, echoing this request's nonce, valid now.
    pub claims: MachineFileClaims,
    /// The machine file itself (`v4.public...`), to store on disk and
    /// verify offline later with [`KeySet::verify_machine_file`].
    pub machine_file: String,
    /// True when this request activated the machine (HTTP 201), false when
    /// it was already active (HTTP 200; the machine file is fresh anyway).
    pub created: bool,
    pub machine: Machine,
    pub license: LicenseInfo,
}

/// A license's machines (`GET /v1/licenses/{key}/machines`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct MachineList {
    pub machines: Vec<Machine>,
    /// Absent: unlimited.
    #[serde(default)]
    pub max_machines: Option<u32>,
    #[serde(default)]
    pub machines_active: u32,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    retry_after: Option<u64>,
}

/// A blocking client for one keymint server. Cheap to clone; clones share
/// a connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    keys: KeySet,
    agent: ureq::Agent,
    timeout: Duration,
    clock_skew: Duration,
}

impl Client {
    /// A client for the server at `base_url` (for example
    /// `https://licenses.example.com`; a trailing `/` is ignored) that
    /// trusts answers signed by `keys`.
    pub fn new(base_url: &str, keys: KeySet) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_string(),
            keys,
            agent: agent(DEFAULT_TIMEOUT),
            timeout: DEFAULT_TIMEOUT,
            clock_skew: DEFAULT_CLOCK_SKEW,
        }
    }

    /// Sets how long one request may take in all (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.agent = agent(timeout);
        self
    }

    /// Sets how far this machine's clock may lag behind the server's
    /// (default [`DEFAULT_CLOCK_SKEW`]): a receipt or machine file whose
    /// `nbf`/`iat` is at most this far in the future is accepted. Expiry is
    /// never stretched.
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The keys answers must be signed with.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `POST /v1/licenses/validate` with a fresh nonce. The answer counts
    /// only once its receipt verifies, echoes the nonce, and agrees with
    /// the body on `valid` and `code`, the key and the fingerprint. A
    /// license that is not valid is an `Ok` whose
    /// [`is_valid`](Validation::is_valid) is false; its code says why.
    pub fn validate(&self, req: &ValidateRequest) -> Result<Validation, ClientError> {
        let nonce = fresh_nonce();
        let body = ValidateBody {
            key: &req.key,
            fingerprint: req.fingerprint.as_deref(),
            product: req.product.as_deref(),
            entitlements: &req.entitlements,
            nonce: &nonce,
        };
        let url = format!("{}/v1/licenses/validate", self.base);
        let (_, text) = self.exchange(self.agent.post(&url).send_json(&body))?;
        let answer: ValidateAnswer = parse(&text, "validate")?;

        let receipt =
            self.verify_now(|now| self.keys.verify_receipt(&answer.receipt, &nonce, now))?;
        if receipt.valid != answer.valid || receipt.code != answer.code {
            return Err(ClientError::Tampered(format!(
                "body says valid={} code={}, receipt says valid={} code={}",
                answer.valid, answer.code, receipt.valid, receipt.code
            )));
        }
        if !same_key(&receipt.key, &req.key) {
            return Err(ClientError::Tampered(format!(
                "receipt is for key {}",
                receipt.key
            )));
        }
        if receipt.fingerprint != req.fingerprint {
            return Err(ClientError::Tampered(
                "receipt is for another fingerprint".into(),
            ));
        }
        if receipt.access_until != answer.access_until
            || receipt.warnings != answer.warnings
            || receipt.missing_entitlements != answer.missing_entitlements
        {
            return Err(ClientError::Tampered(
                "the body's access_until, warnings or missing_entitlements differ from the receipt's"
                    .into(),
            ));
        }
        Ok(Validation { receipt, answer })
    }

    /// `PUT /v1/licenses/{key}/machines/{fingerprint}` with a fresh nonce:
    /// activates this machine (201) or confirms it is active (200) and
    /// returns a fresh machine file, verified for `fingerprint` and the
    /// nonce. A full license is [`ClientError::Refused`] with code
    /// `TOO_MANY_MACHINES`.
    pub fn activate(
        &self,
        key: &str,
        fingerprint: &str,
        meta: &MachineMeta,
    ) -> Result<Activation, ClientError> {
        let nonce = fresh_nonce();
        let body = ActivateBody {
            meta,
            nonce: &nonce,
        };
        let url = self.machine_url(key, fingerprint);
        let (status, text) = self.exchange(self.agent.put(&url).send_json(&body))?;
        let answer: ActivateAnswer = parse(&text, "activate")?;

        let claims = self.verify_now(|now| {
            self.keys
                .verify_machine_file(&answer.machine_file, fingerprint, now)
        })?;
        if claims.nonce.as_deref() != Some(nonce.as_str()) {
            return Err(ClientError::Token(TokenError::NonceMismatch));
        }
        if !same_key(&claims.key, key) {
            return Err(ClientError::Tampered(format!(
                "machine file is for key {}",
                claims.key
            )));
        }
        if claims.machine != answer.machine.id {
            return Err(ClientError::Tampered(format!(
                "body names machine {}, machine file {}",
                answer.machine.id, claims.machine
            )));
        }
        let created = status == 201;
        if created != answer.created {
            return Err(ClientError::Protocol(format!(
                "HTTP {status} with \"created\": {}",
                answer.created
            )));
        }
        Ok(Activation {
            claims,
            machine_file: answer.machine_file,
            created,
            machine: answer.machine,
            license: answer.license,
        })
    }

    /// `DELETE /v1/licenses/{key}/machines/{fingerprint}`: frees this
    /// machine's seat. A server that limits deactivations answers
    /// [`ClientError::Refused`] with status 429 and code
    /// `DEACTIVATION_LIMIT`.
    pub fn deactivate(&self, key: &str, fingerprint: &str) -> Result<(), ClientError> {
        let url = self.machine_url(key, fingerprint);
        self.exchange(self.agent.delete(&url).call())?;
        Ok(())
    }

    /// `GET /v1/licenses/{key}/machines`. Not signed: informational.
    pub fn machines(&self, key: &str) -> Result<MachineList, ClientError> {
        let url = format!("{}/v1/licenses/{}/machines", self.base, segment(key));
        let (_, text) = self.exchange(self.agent.get(&url).call())?;
        parse(&text, "machines")
    }

    fn machine_url(&self, key: &str, fingerprint: &str) -> String {
        format!(
            "{}/v1/licenses/{}/machines/{}",
            self.base,
            segment(key),
            segment(fingerprint)
        )
    }

    /// Runs `check` at the current time, and once more up to the allowed
    /// clock skew later when the token reads as not valid yet.
    fn verify_now<T>(
        &self,
        check: impl Fn(OffsetDateTime) -> Result<T, TokenError>,
    ) -> Result<T, TokenError> {
        let now = OffsetDateTime::now_utc();
        match check(now) {
            Err(TokenError::NotYetValid(_)) if !self.clock_skew.is_zero() => {
                check(now + self.clock_skew)
            }
            other => other,
        }
    }

    /// The status and body of a 2xx answer; any other status is
    /// [`ClientError::Refused`] (or [`ClientError::Protocol`] when its body
    /// is not keymint's error shape).
    fn exchange(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), ClientError> {
        let mut response = sent.map_err(ClientError::Http)?;
        let status = response.status().as_u16();
        let retry_header = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(ClientError::Http)?;
        if (200..300).contains(&status) {
            return Ok((status, text));
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(error) => Err(ClientError::Refused {
                status,
                code: error.code,
                message: error.error,
                retry_after: error.retry_after.or(retry_header),
            }),
            Err(_) => Err(ClientError::Protocol(format!(
                "HTTP {status}: {}",
                excerpt(&text)
            ))),
        }
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        // Error statuses carry keymint's JSON error body: read it.
        .http_status_as_error(false)
        .user_agent(concat!("keymint-license/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// [`NONCE_LEN`] ASCII letters and digits from the thread CSPRNG
/// (ChaCha seeded and reseeded from the operating system).
fn fresh_nonce() -> String {
    const ALPHANUMERIC: &[u8; 62] =
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..NONCE_LEN)
        .map(|_| char::from(ALPHANUMERIC[rand::random_range(0..ALPHANUMERIC.len())]))
        .collect()
}

fn segment(text: &str) -> String {
    utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

/// The same license key, comparing canonical forms when both parse (the
/// server echoes the canonical form of what it was sent).
fn same_key(a: &str, b: &str) -> bool {
    match (a.parse::<LicenseKey>(), b.parse::<LicenseKey>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.trim() == b.trim(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, ClientError> {
    serde_json::from_str(text)
        .map_err(|e| ClientError::Protocol(format!("{what} answer: {e}: {}", excerpt(text))))
}

/// The start of a body, for an error message.
fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
