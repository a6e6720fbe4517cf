//! Webhook signature schemes of the signed providers, checked on the raw
//! body bytes in constant time, before any parsing (docs/architecture.md,
//! "Authenticate on the raw bytes").
//!
//! Each function takes every configured secret (rotation) and accepts when
//! any secret matches any signature in the header. Timestamped schemes
//! reject a timestamp more than `tolerance` seconds away from `now`, in
//! either direction. The provider adapters call these; they know nothing
//! about HTTP.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Why a signature check failed. Only for the delivery row and the log;
/// the sender gets a bare 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("timestamp outside the replay window")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
    #[error("no usable secret configured")]
    NoSecret,
    #[error(
        "{0} is longer than {MAX_HEADER_BYTES} bytes or has more than {MAX_SIGNATURES} signatures"
    )]
    TooLarge(&'static str),
}

/// Default replay window, seconds.
pub const DEFAULT_TOLERANCE: i64 = 300;

/// The most signatures one header may carry. A provider sends one per
/// active secret (two during a rotation); more is an attack on the
/// verifier's time, refused before any MAC is computed.
pub const MAX_SIGNATURES: usize = 8;

/// The longest signature header accepted, bytes: room for
/// [`MAX_SIGNATURES`] Ed25519 signatures in base64 and their separators.
pub const MAX_HEADER_BYTES: usize = 1024;

/// Refuses a signature header too long to be honest.
fn check_header_size(name: &'static str, header: &str) -> Result<(), SigError> {
    if header.len() > MAX_HEADER_BYTES {
        Err(SigError::TooLarge(name))
    } else {
        Ok(())
    }
}

/// Accepts `ts` when it is at most `tolerance` seconds from `now` in either
/// direction. The difference is taken without overflow: a timestamp near
/// `i64::MIN` or `i64::MAX` is simply far away.
fn check_window(ts: i64, now: i64, tolerance: i64) -> Result<(), SigError> {
    let tolerance = u64::try_from(tolerance).unwrap_or(0);
    if now.abs_diff(ts) > tolerance {
        Err(SigError::Stale)
    } else {
        Ok(())
    }
}

/// HMAC-SHA256 of the concatenated `parts`, ready to verify or finalize.
fn hmac256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac
}

/// True when `mac` equals any of `candidates`. Every candidate is compared
/// in constant time and none stops the loop early, so the time taken says
/// nothing about which (if any) matched; the MAC itself is computed once
/// per secret by the caller, never once per candidate.
fn matches_any(mac: &[u8], candidates: &[Vec<u8>]) -> bool {
    let mut ok = subtle::Choice::from(0);
    for candidate in candidates {
        ok |= mac.ct_eq(candidate);
    }
    ok.into()
}

pub(crate) fn hmac256_bytes(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    hmac256(key, parts).finalize().into_bytes().to_vec()
}

fn hmac512_bytes(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The shape Stripe and Paddle share: a timestamp and one or more hex
/// signatures in one header, each scheme with its own separators and names.
#[derive(Debug)]
pub struct Timestamped {
    header: &'static str,
    /// The header's name as requests carry it (lower case).
    request_header: &'static str,
    item_sep: char,
    ts_key: &'static str,
    sig_key: &'static str,
    /// Between the timestamp and the body in the signed message.
    message_sep: &'static [u8],
}

/// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>][,v0=...]`,
/// HMAC-SHA256 keyed with the whole `whsec_...` string over `{t}.{body}`.
pub const STRIPE: Timestamped = Timestamped {
    header: "Stripe-Signature",
    request_header: "stripe-signature",
    item_sep: ',',
    ts_key: "t",
    sig_key: "v1",
    message_sep: b".",
};

/// Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>]`,
/// HMAC-SHA256 keyed with the secret's bytes over `{ts}:{body}`.
pub const PADDLE: Timestamped = Timestamped {
    header: "Paddle-Signature",
    request_header: "paddle-signature",
    item_sep: ';',
    ts_key: "ts",
    sig_key: "h1",
    message_sep: b":",
};

impl Timestamped {
    /// The header carrying the signature, as requests carry its name.
    pub fn request_header(&self) -> &'static str {
        self.request_header
    }

    /// The timestamp and every signature of this scheme's kind (other
    /// schemes, such as Stripe's `v0`, are ignored as the SDKs do).
    pub fn parse(&self, header: &str) -> Result<(i64, Vec<Vec<u8>>), SigError> {
        check_header_size(self.header, header)?;
        let mut ts = None;
        let mut sigs = Vec::new();
        for item in header.split(self.item_sep) {
            let Some((k, v)) = item.trim().split_once('=') else {
                continue;
            };
            if k == self.ts_key {
                ts = Some(
                    v.parse::<i64>()
                        .map_err(|_| SigError::Malformed(self.header))?,
                );
            } else if k == self.sig_key
                && let Ok(bytes) = hex::decode(v)
            {
                if sigs.len() == MAX_SIGNATURES {
                    return Err(SigError::TooLarge(self.header));
                }
                sigs.push(bytes);
            }
        }
        let ts = ts.ok_or(SigError::Malformed(self.header))?;
        if sigs.is_empty() {
            return Err(SigError::Malformed(self.header));
        }
        Ok((ts, sigs))
    }

    /// HMAC-SHA256 keyed with the secret's bytes over `{ts}{sep}{body}`;
    /// any signature may match any secret.
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        secrets: &[&str],
        now: i64,
        tolerance: i64,
    ) -> Result<(), SigError> {
        let (ts, sigs) = self.parse(header.ok_or(SigError::Missing(self.header))?)?;
        let mut ok = false;
        for secret in secrets {
            ok |= matches_any(&self.mac(secret, body, ts), &sigs);
        }
        if !ok {
            return Err(SigError::Mismatch);
        }
        check_window(ts, now, tolerance)
    }

    /// The header (lower-case name, value) the provider would send.
    fn sign(&self, secret: &str, body: &[u8], ts: i64) -> (&'static str, String) {
        let (ts_key, sep, sig_key) = (self.ts_key, self.item_sep, self.sig_key);
        let sig = hex::encode(self.mac(secret, body, ts));
        (
            self.request_header,
            format!("{ts_key}={ts}{sep}{sig_key}={sig}"),
        )
    }

    fn mac(&self, secret: &str, body: &[u8], ts: i64) -> Vec<u8> {
        let t = ts.to_string();
        hmac256_bytes(secret.as_bytes(), &[t.as_bytes(), self.message_sep, body])
    }
}

/// The shape Lemon Squeezy and Hyperswitch share: a hex HMAC of the body
/// alone in one header, no timestamp.
#[derive(Debug)]
pub struct BodyHex {
    header: &'static str,
    /// The header's name as requests carry it (lower case).
    request_header: &'static str,
    mac: fn(&[u8], &[&[u8]]) -> Vec<u8>,
}

/// Lemon Squeezy: `X-Signature` = hex HMAC-SHA256 of the body.
pub const LEMONSQUEEZY: BodyHex = BodyHex {
    header: "X-Signature",
    request_header: "x-signature",
    mac: hmac256_bytes,
};

/// Hyperswitch: `X-Webhook-Signature-512` = hex HMAC-SHA512 of the body,
/// keyed with the profile's payment response hash key.
pub const HYPERSWITCH: BodyHex = BodyHex {
    header: "X-Webhook-Signature-512",
    request_header: "x-webhook-signature-512",
    mac: hmac512_bytes,
};

impl BodyHex {
    /// The header carrying the signature, as requests carry its name.
    pub fn request_header(&self) -> &'static str {
        self.request_header
    }

    /// Checks the header's HMAC against every secret.
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        secrets: &[&str],
    ) -> Result<(), SigError> {
        let name = self.header;
        let header = header.ok_or(SigError::Missing(name))?;
        check_header_size(name, header)?;
        let sig = hex::decode(header.trim()).map_err(|_| SigError::Malformed(name))?;
        let sigs = [sig];
        let mut ok = false;
        for secret in secrets {
            ok |= matches_any(&(self.mac)(secret.as_bytes(), &[body]), &sigs);
        }
        if ok { Ok(()) } else { Err(SigError::Mismatch) }
    }

    /// The header (lower-case name, value) the provider would send.
    fn sign(&self, secret: &str, body: &[u8]) -> (&'static str, String) {
        let sig = (self.mac)(secret.as_bytes(), &[body]);
        (self.request_header, hex::encode(sig))
    }
}

/// How a Standard Webhooks secret is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardKeyMode {
    /// `whsec_<base64>`: the HMAC key is the decoded bytes (the standard).
    Standard,
    /// Polar's legacy secrets: the HMAC key is the whole string's bytes.
    LegacyRawString,
}

/// Checks a Standard Webhooks secret at start-up: `whsec_<base64>` (or bare
/// base64) for HMAC, `whpk_<base64 of 32 bytes>` for Ed25519.
pub fn check_standard_secret(secret: &str) -> Result<(), String> {
    if let Some(public) = secret.strip_prefix("whpk_") {
        return match B64.decode(public) {
            Ok(raw) if ed25519_compact::PublicKey::from_slice(&raw).is_ok() => Ok(()),
            _ => Err("a whpk_ secret must be whpk_ followed by a base64 Ed25519 public key".into()),
        };
    }
    match B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)) {
        Ok(k) if !k.is_empty() => Ok(()),
        _ => Err(
            "a Standard Webhooks secret must be whsec_ followed by base64 (a secret used as raw text needs kind = \"polar\" with legacy_secret = true)"
                .into(),
        ),
    }
}

/// The `webhook-signature` header: space-separated `v1,<base64>` (HMAC) and
/// `v1a,<base64>` (Ed25519) entries; unknown versions are skipped. More
/// than [`MAX_SIGNATURES`] entries, or a header over [`MAX_HEADER_BYTES`],
/// is refused.
pub fn parse_standard_signatures(header: &str) -> Result<Vec<(&str, Vec<u8>)>, SigError> {
    check_header_size("webhook-signature", header)?;
    let mut sigs = Vec::new();
    for entry in header.split_whitespace() {
        if sigs.len() == MAX_SIGNATURES {
            return Err(SigError::TooLarge("webhook-signature"));
        }
        let Some((version, sig)) = entry.split_once(',') else {
            continue;
        };
        if let Ok(bytes) = B64.decode(sig)
            && matches!(version, "v1" | "v1a")
        {
            sigs.push((version, bytes));
        }
    }
    Ok(sigs)
}

/// Standard Webhooks (and Polar): `v1` = base64 HMAC-SHA256 over
/// `{id}.{ts}.{body}`; `v1a` = Ed25519 over the same with a `whpk_` key.
#[allow(clippy::too_many_arguments)]
pub fn verify_standard(
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    secrets: &[&str],
    mode: StandardKeyMode,
    now: i64,
    tolerance: i64,
) -> Result<(), SigError> {
    let id = id.ok_or(SigError::Missing("webhook-id"))?;
    let ts_text = timestamp.ok_or(SigError::Missing("webhook-timestamp"))?;
    let header = signature.ok_or(SigError::Missing("webhook-signature"))?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| SigError::Malformed("webhook-timestamp"))?;
    let sigs = parse_standard_signatures(header)?;
    if sigs.is_empty() {
        return Err(SigError::Malformed("webhook-signature"));
    }
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.trim().as_bytes(), b".", body];
    let mut usable = false;
    let mut ok = false;
    for secret in secrets {
        if let Some(public) = secret.strip_prefix("whpk_") {
            let Ok(raw) = B64.decode(public) else {
                continue;
            };
            let Ok(pk) = ed25519_compact::PublicKey::from_slice(&raw) else {
                continue;
            };
            usable = true;
            let message = parts.concat();
            for (version, sig) in &sigs {
                if *version == "v1a"
                    && let Ok(sig) = ed25519_compact::Signature::from_slice(sig)
                {
                    ok |= pk.verify(&message, &sig).is_ok();
                }
            }
        } else {
            let key = match mode {
                StandardKeyMode::Standard => {
                    match B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)) {
                        Ok(k) => k,
                        Err(_) => continue,
                    }
                }
                StandardKeyMode::LegacyRawString => secret.as_bytes().to_vec(),
            };
            usable = true;
            let hmacs: Vec<Vec<u8>> = sigs
                .iter()
                .filter(|(version, _)| *version == "v1")
                .map(|(_, sig)| sig.clone())
                .collect();
            ok |= matches_any(&hmac256_bytes(&key, &parts), &hmacs);
        }
    }
    if !usable {
        return Err(SigError::NoSecret);
    }
    if !ok {
        return Err(SigError::Mismatch);
    }
    check_window(ts, now, tolerance)
}

/// Signs `body` the way provider `kind` does, with `secret`, at `ts`
/// (Unix seconds); `msg_id` is the Standard Webhooks message id. For
/// `keymint webhook send`, which lets an operator test an endpoint
/// without the provider. Returns the headers to send.
pub fn sign(
    kind: crate::config::EndpointKind,
    secret: &str,
    legacy_secret: bool,
    body: &[u8],
    ts: i64,
    msg_id: &str,
) -> Result<Vec<(&'static str, String)>, String> {
    use crate::config::EndpointKind as K;
    let mac256 = |key: &[u8], parts: &[&[u8]]| hmac256(key, parts).finalize().into_bytes();
    Ok(match kind {
        K::Gumroad => Vec::new(),
        K::Stripe => vec![STRIPE.sign(secret, body, ts)],
        K::Paddle => vec![PADDLE.sign(secret, body, ts)],
        K::Lemonsqueezy => vec![LEMONSQUEEZY.sign(secret, body)],
        K::Hyperswitch => vec![HYPERSWITCH.sign(secret, body)],
        K::Standard | K::Polar => {
            if secret.starts_with("whpk_") {
                return Err("a whpk_ public key can verify but not sign; configure a whsec_ secret to send a test event".into());
            }
            let key = if kind == K::Standard || (secret.starts_with("whsec_") && !legacy_secret) {
                B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret))
                    .map_err(|_| "the secret is not whsec_ followed by base64".to_string())?
            } else {
                secret.as_bytes().to_vec()
            };
            let ts_text = ts.to_string();
            let sig = mac256(
                &key,
                &[msg_id.as_bytes(), b".", ts_text.as_bytes(), b".", body],
            );
            vec![
                ("webhook-id", msg_id.to_string()),
                ("webhook-timestamp", ts_text),
                ("webhook-signature", format!("v1,{}", B64.encode(sig))),
            ]
        }
    })
}

#[cfg(test)]
mod tests;
