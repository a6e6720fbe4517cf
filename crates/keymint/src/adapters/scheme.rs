//! How each provider proves a delivery authentic: its adapter declares a
//! [`Scheme`] and it is checked here, in one place, on the raw bytes and in
//! constant time before anything is parsed (docs/architecture.md,
//! "Authenticate on the raw bytes"). The provider files hold only what is
//! specific to the provider.

use super::signatures::{self, BodyHex, SigError, StandardKeyMode, Timestamped};
use super::{AuthError, RawRequest, ct_eq};
use crate::config::EndpointConfig;

/// A provider's way of proving a delivery authentic.
#[derive(Debug, Clone, Copy)]
pub enum Scheme {
    /// A shared secret in this URL query parameter, for a provider that
    /// does not sign (Gumroad); wrong or missing answers 404, so a prober
    /// learns nothing.
    UrlSecret(&'static str),
    /// A timestamp and hex HMACs in one header (Stripe, Paddle).
    Timestamped(&'static Timestamped),
    /// A hex HMAC of the body alone, no timestamp (Lemon Squeezy,
    /// Hyperswitch).
    BodyHex(&'static BodyHex),
    /// Standard Webhooks headers, `whsec_` secrets base64-decoded.
    Standard,
    /// Standard Webhooks with secrets used as Polar's SDKs use them: a
    /// `whsec_` one decoded, any other (every one with `legacy_secret`) as
    /// its raw text.
    Polar,
}

impl Scheme {
    /// Checks `req` against the endpoint's secrets (any may match, for
    /// rotation) at `now` (Unix seconds).
    pub fn authenticate(
        self,
        req: &RawRequest<'_>,
        endpoint: &EndpointConfig,
        now: i64,
    ) -> Result<(), AuthError> {
        let secrets: Vec<&str> = endpoint.secrets.iter().map(|s| s.expose()).collect();
        let tolerance = i64::try_from(endpoint.tolerance.as_secs()).unwrap_or(i64::MAX);
        match self {
            Self::UrlSecret(param) => url_secret(req, param, &secrets),
            Self::Timestamped(scheme) => scheme
                .verify(
                    req.header(scheme.request_header()),
                    req.body,
                    &secrets,
                    now,
                    tolerance,
                )
                .map_err(unauthorized),
            Self::BodyHex(scheme) => scheme
                .verify(req.header(scheme.request_header()), req.body, &secrets)
                .map_err(unauthorized),
            Self::Standard => standard(req, &secrets, StandardKeyMode::Standard, now, tolerance),
            Self::Polar => polar(req, endpoint, now, tolerance),
        }
    }
}

fn url_secret(req: &RawRequest<'_>, param: &str, secrets: &[&str]) -> Result<(), AuthError> {
    let given = req
        .query
        .and_then(|q| {
            // A query that does not parse carries no secret.
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == param)
                .map(|(_, v)| v)
        })
        .ok_or(AuthError::Hidden("missing secret"))?;
    // Compare against every configured secret without stopping early.
    let mut ok = false;
    for s in secrets {
        ok |= ct_eq(given.as_bytes(), s.as_bytes());
    }
    if ok {
        Ok(())
    } else {
        Err(AuthError::Hidden("wrong secret"))
    }
}

fn standard(
    req: &RawRequest<'_>,
    secrets: &[&str],
    mode: StandardKeyMode,
    now: i64,
    tolerance: i64,
) -> Result<(), AuthError> {
    signatures::verify_standard(
        req.header("webhook-id"),
        req.header("webhook-timestamp"),
        req.header("webhook-signature"),
        req.body,
        secrets,
        mode,
        now,
        tolerance,
    )
    .map_err(unauthorized)
}

/// Each group of secrets is checked in its own mode; the first to match
/// wins, and the delivery row keeps the most telling reason.
fn polar(
    req: &RawRequest<'_>,
    endpoint: &EndpointConfig,
    now: i64,
    tolerance: i64,
) -> Result<(), AuthError> {
    let (decoded, raw): (Vec<&str>, Vec<&str>) = endpoint
        .secrets
        .iter()
        .map(|s| s.expose())
        .partition(|s| !endpoint.legacy_secret && s.starts_with("whsec_"));
    let mut result = Err(AuthError::Unauthorized("no usable secret configured"));
    for (secrets, mode) in [
        (decoded, StandardKeyMode::Standard),
        (raw, StandardKeyMode::LegacyRawString),
    ] {
        if secrets.is_empty() {
            continue;
        }
        match standard(req, &secrets, mode, now, tolerance) {
            Ok(()) => return Ok(()),
            Err(e) => {
                if result
                    .as_ref()
                    .err()
                    .is_none_or(|r| r.reason() == "no usable secret configured")
                {
                    result = Err(e);
                }
            }
        }
    }
    result
}

/// A signature failure as the delivery row records it (the sender only
/// ever sees a bare 401).
fn unauthorized(e: SigError) -> AuthError {
    AuthError::Unauthorized(match e {
        SigError::Missing(_) => "missing signature header",
        SigError::Malformed(_) => "malformed signature header",
        SigError::Stale => "timestamp outside the replay window",
        SigError::Mismatch => "no signature matches",
        SigError::NoSecret => "no usable secret configured",
        SigError::TooLarge(_) => "signature header too large",
    })
}
