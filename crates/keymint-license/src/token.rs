//! License tokens: PASETO `v4.public` (Ed25519) with JSON claims and a
//! `{"kid":"k4.pid..."}` footer naming the signing key.

use pasetors::Public;
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a token did not verify. The variants say enough for a program to
/// decide what to tell its user, and nothing about key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a PASETO v4.public token")]
    Malformed,
    #[error("the token was signed by a key that is not in this key set")]
    UnknownKey,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token's claims are not a keymint license: {0}")]
    Claims(String),
    #[error("the license expired at {0}")]
    Expired(String),
    #[error("the license is not valid before {0}")]
    NotYetValid(String),
    #[error("invalid key: {0}")]
    Key(String),
    /// A receipt, machine file or license given where another kind was
    /// expected (the `typ` claim says which it is).
    #[error("this token is a {found}, not a {expected}")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    /// A machine file made for another machine.
    #[error("the machine file was issued for another machine (fingerprint mismatch)")]
    FingerprintMismatch,
    /// A receipt that does not echo the nonce this program sent: a replayed
    /// or forged answer.
    #[error("the receipt does not echo this request's nonce (replayed or forged answer)")]
    NonceMismatch,
}

/// The claims of a license token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseClaims {
    /// Issuer (the keymint instance's configured issuer name).
    pub iss: String,
    /// Subject: the license id.
    pub sub: String,
    /// The human-typable license key.
    pub key: String,
    /// Catalog product id.
    pub product: String,
    /// Catalog tier.
    pub tier: String,
    /// Features this license unlocks.
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// Issued at.
    #[serde(with = "rfc3339")]
    pub iat: OffsetDateTime,
    /// Not valid before.
    #[serde(with = "rfc3339")]
    pub nbf: OffsetDateTime,
    /// Expiry; absent for a perpetual license.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    pub exp: Option<OffsetDateTime>,
    /// How many machines may activate this license (absent: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_machines: Option<u32>,
    /// The licensee's name.
    pub name: String,
    /// The licensee's email, only when the catalog asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl LicenseClaims {
    /// True when the license never expires.
    pub fn is_perpetual(&self) -> bool {
        self.exp.is_none()
    }

    /// True when `name` is among the entitlements.
    pub fn has_entitlement(&self, name: &str) -> bool {
        self.entitlements.iter().any(|e| e == name)
    }

    /// Checks `nbf` and `exp` against `now`.
    pub fn check_time(&self, now: OffsetDateTime) -> Result<(), TokenError> {
        check_window(self.nbf, self.exp, now)
    }

    /// A fixed sample, for documentation and tests.
    #[doc(hidden)]
    pub fn example() -> Self {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 ns is valid");
        Self {
            iss: "keymint".into(),
            sub: "lic_example".into(),
            key: "DT1-CORE-00000-00000-00000-00000".into(),
            product: "datatools-core".into(),
            tier: "core".into(),
            entitlements: vec!["export".into()],
            iat: now,
            nbf: now,
            exp: None,
            max_machines: Some(3),
            name: "Jane Doe".into(),
            email: None,
        }
    }
}

/// The `typ` of a validation receipt.
pub const RECEIPT: &str = "receipt";
/// The `typ` of a machine file.
pub const MACHINE_FILE: &str = "machine";

/// The claims of a validation receipt: the answer of
/// `POST /v1/licenses/validate` itself, signed, with the caller's nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptClaims {
    /// Always [`RECEIPT`].
    pub typ: String,
    /// Issuer (the keymint instance's configured issuer name).
    pub iss: String,
    /// True only with `code` `VALID`.
    pub valid: bool,
    /// The answer's code (`VALID`, `NOT_FOUND`, `REFUNDED`, ...).
    pub code: String,
    /// The key as the caller sent it (canonical when it parsed).
    pub key: String,
    /// The fingerprint the caller sent, if any.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The caller's nonce, echoed exactly.
    #[serde(default)]
    pub nonce: Option<String>,
    /// The answer's `access_until` (when access ends as far as the server
    /// knows), or `None`.
    #[serde(default, with = "rfc3339_opt")]
    pub access_until: Option<OffsetDateTime>,
    /// The answer's `warnings` (`PAST_DUE`, `CANCELS_AT_PERIOD_END`).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The answer's `missing_entitlements`.
    #[serde(default)]
    pub missing_entitlements: Vec<String>,
    /// When the answer was given.
    #[serde(with = "rfc3339")]
    pub iat: OffsetDateTime,
    /// Until when the answer may be relied on offline.
    #[serde(with = "rfc3339")]
    pub exp: OffsetDateTime,
}

/// The claims of a machine file: one license activated on one machine,
/// for a program to run offline until `exp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineFileClaims {
    /// Always [`MACHINE_FILE`].
    pub typ: String,
    /// Issuer (the keymint instance's configured issuer name).
    pub iss: String,
    /// The license id.
    pub license: String,
    /// The machine id (`mch_...`).
    pub machine: String,
    /// The license key.
    pub key: String,
    /// The fingerprint the program sent when it activated.
    pub fingerprint: String,
    /// Catalog product id.
    pub product: String,
    /// Catalog tier.
    pub tier: String,
    /// Features the license unlocks.
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// The nonce the program sent with its activation, echoed exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Issued at.
    #[serde(with = "rfc3339")]
    pub iat: OffsetDateTime,
    /// Not valid before.
    #[serde(with = "rfc3339")]
    pub nbf: OffsetDateTime,
    /// The earlier of the license's own expiry and the issue time plus the
    /// server's machine-file lifetime: always present.
    #[serde(with = "rfc3339")]
    pub exp: OffsetDateTime,
}

impl MachineFileClaims {
    /// True when `name` is among the entitlements.
    pub fn has_entitlement(&self, name: &str) -> bool {
        self.entitlements.iter().any(|e| e == name)
    }
}

/// The `typ` claim of a verified payload, if it has one (licenses have
/// none).
fn kind_of(payload: &str) -> Result<Option<String>, TokenError> {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        typ: Option<String>,
    }
    serde_json::from_str::<Kind>(payload)
        .map(|k| k.typ)
        .map_err(|e| TokenError::Claims(e.to_string()))
}

/// Checks `now` against a `[nbf, exp)` window.
fn check_window(
    nbf: OffsetDateTime,
    exp: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), TokenError> {
    if now < nbf {
        return Err(TokenError::NotYetValid(format_time(nbf)));
    }
    match exp {
        Some(exp) if now >= exp => Err(TokenError::Expired(format_time(exp))),
        _ => Ok(()),
    }
}

/// Compares in constant time (`subtle`), so the time taken says nothing
/// about where two values first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapper(#[serde(with = "super::rfc3339")] OffsetDateTime);
        Ok(Option::<Wrapper>::deserialize(d)?.map(|w| w.0))
    }
}

#[derive(Serialize, Deserialize)]
struct Footer {
    kid: String,
}

/// An Ed25519 signing key. Its `Debug` output never shows the secret.
pub struct SigningKey {
    secret: AsymmetricSecretKey<V4>,
    public: PublicKey,
}

impl SigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        let pair = AsymmetricKeyPair::<V4>::generate().expect("the OS RNG is available");
        Self::from_parts(pair.secret, pair.public)
    }

    /// Loads a key from its PASERK `k4.secret...` form.
    pub fn from_paserk(paserk: &str) -> Result<Self, TokenError> {
        let secret = AsymmetricSecretKey::<V4>::try_from(paserk.trim())
            .map_err(|_| TokenError::Key("not a PASERK k4.secret key".into()))?;
        let public = AsymmetricPublicKey::<V4>::try_from(&secret)
            .map_err(|_| TokenError::Key("cannot derive the public key".into()))?;
        Ok(Self::from_parts(secret, public))
    }

    fn from_parts(secret: AsymmetricSecretKey<V4>, public: AsymmetricPublicKey<V4>) -> Self {
        Self {
            secret,
            public: PublicKey::new(public),
        }
    }

    /// The PASERK `k4.secret...` form, for writing to a key file.
    pub fn secret_paserk(&self) -> String {
        let mut out = String::new();
        self.secret.fmt(&mut out).expect("writing to a String");
        out
    }

    /// The PASERK `k4.public...` form of the public half.
    pub fn public_paserk(&self) -> String {
        self.public.paserk().to_string()
    }

    /// The key id (PASERK `k4.pid...`).
    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `claims` into a `v4.public` token with the `kid` footer.
    pub fn mint(&self, claims: &LicenseClaims) -> Result<String, TokenError> {
        self.sign_claims(claims)
    }

    /// Signs a validation receipt (see [`ReceiptClaims`]).
    pub fn sign_receipt(&self, claims: &ReceiptClaims) -> Result<String, TokenError> {
        self.sign_claims(claims)
    }

    /// Signs a machine file (see [`MachineFileClaims`]).
    pub fn sign_machine_file(&self, claims: &MachineFileClaims) -> Result<String, TokenError> {
        self.sign_claims(claims)
    }

    fn sign_claims(&self, claims: &impl Serialize) -> Result<String, TokenError> {
        let payload = serde_json::to_vec(claims).map_err(|e| TokenError::Claims(e.to_string()))?;
        let footer = serde_json::to_vec(&Footer {
            kid: self.kid().to_string(),
        })
        .map_err(|e| TokenError::Claims(e.to_string()))?;
        PublicToken::sign(&self.secret, &payload, Some(&footer), None)
            .map_err(|e| TokenError::Key(e.to_string()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid())
            .field("secret", &"***")
            .finish()
    }
}

/// A public verification key with its PASERK forms.
#[derive(Clone)]
pub struct PublicKey {
    key: AsymmetricPublicKey<V4>,
    paserk: String,
    kid: String,
}

impl PublicKey {
    fn new(key: AsymmetricPublicKey<V4>) -> Self {
        let mut paserk = String::new();
        key.fmt(&mut paserk).expect("writing to a String");
        let mut kid = String::new();
        Id::from(&key).fmt(&mut kid).expect("writing to a String");
        Self { key, paserk, kid }
    }

    /// Parses a PASERK `k4.public...` string.
    pub fn from_paserk(paserk: &str) -> Result<Self, TokenError> {
        let key = AsymmetricPublicKey::<V4>::try_from(paserk.trim())
            .map_err(|_| TokenError::Key("not a PASERK k4.public key".into()))?;
        Ok(Self::new(key))
    }

    /// PASERK `k4.public...`.
    pub fn paserk(&self) -> &str {
        &self.paserk
    }

    /// PASERK `k4.pid...`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn as_bytes(&self) -> &[u8] {
        self.key.as_bytes()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).finish()
    }
}

/// The public keys a program trusts. Verification picks the key named by
/// the token's `kid` footer, so old keys keep verifying after rotation.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from PASERK `k4.public...` strings.
    pub fn from_paserks<'a>(
        paserks: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, TokenError> {
        let keys = paserks
            .into_iter()
            .map(PublicKey::from_paserk)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// Adds a key.
    pub fn insert(&mut self, key: PublicKey) {
        if !self.keys.iter().any(|k| k.kid == key.kid) {
            self.keys.push(key);
        }
    }

    /// The keys in the set.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Verifies the signature and the validity period at the current time.
    pub fn verify(&self, token: &str) -> Result<LicenseClaims, TokenError> {
        self.verify_at(token, OffsetDateTime::now_utc())
    }

    /// Verifies the signature and the validity period at `now`.
    pub fn verify_at(&self, token: &str, now: OffsetDateTime) -> Result<LicenseClaims, TokenError> {
        let claims = self.verify_signature(token)?;
        claims.check_time(now)?;
        Ok(claims)
    }

    /// Verifies only the signature and returns the claims, however old;
    /// for tools that show an expired license.
    pub fn verify_signature(&self, token: &str) -> Result<LicenseClaims, TokenError> {
        let payload = self.verified_payload(token)?;
        if let Some(found) = kind_of(&payload)? {
            return Err(TokenError::WrongKind {
                expected: "license",
                found,
            });
        }
        serde_json::from_str(&payload).map_err(|e| TokenError::Claims(e.to_string()))
    }

    /// Verifies a machine file offline: the signature, that it is a
    /// machine file, that it was issued for `fingerprint` (this machine's
    /// own), and its validity period at `now`.
    pub fn verify_machine_file(
        &self,
        file: &str,
        fingerprint: &str,
        now: OffsetDateTime,
    ) -> Result<MachineFileClaims, TokenError> {
        let claims: MachineFileClaims = self.verify_kind(file, MACHINE_FILE)?;
        if !constant_time_eq(claims.fingerprint.as_bytes(), fingerprint.as_bytes()) {
            return Err(TokenError::FingerprintMismatch);
        }
        check_window(claims.nbf, Some(claims.exp), now)?;
        Ok(claims)
    }

    /// Verifies a validation receipt: the signature, that it is a receipt,
    /// that it echoes `nonce` (the one this program sent with the request
    /// it answers), and that it has not expired at `now`. Only then may the
    /// program trust the answer's `valid` and `code`.
    pub fn verify_receipt(
        &self,
        receipt: &str,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<ReceiptClaims, TokenError> {
        let claims: ReceiptClaims = self.verify_kind(receipt, RECEIPT)?;
        let echoed = claims.nonce.as_deref().unwrap_or_default();
        if !constant_time_eq(echoed.as_bytes(), nonce.as_bytes()) {
            return Err(TokenError::NonceMismatch);
        }
        check_window(claims.iat, Some(claims.exp), now)?;
        Ok(claims)
    }

    fn verify_kind<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        expected: &'static str,
    ) -> Result<T, TokenError> {
        let payload = self.verified_payload(token)?;
        let found = kind_of(&payload)?;
        if found.as_deref() != Some(expected) {
            return Err(TokenError::WrongKind {
                expected,
                found: found.unwrap_or_else(|| "license".into()),
            });
        }
        serde_json::from_str(&payload).map_err(|e| TokenError::Claims(e.to_string()))
    }

    /// The payload of a token whose signature verifies with the key its
    /// footer names.
    fn verified_payload(&self, token: &str) -> Result<String, TokenError> {
        let untrusted = UntrustedToken::<Public, V4>::try_from(token.trim())
            .map_err(|_| TokenError::Malformed)?;
        let key = self.key_for(untrusted.untrusted_footer())?;
        let trusted = PublicToken::verify(&key.key, &untrusted, None, None)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(trusted.payload().to_string())
    }

    fn key_for(&self, footer: &[u8]) -> Result<&PublicKey, TokenError> {
        // The footer is authenticated by the signature checked next, so
        // trusting its kid only to choose a key is safe.
        let footer: Footer = serde_json::from_slice(footer).map_err(|_| TokenError::Malformed)?;
        self.keys
            .iter()
            .find(|k| k.kid == footer.kid)
            .ok_or(TokenError::UnknownKey)
    }
}

#[cfg(test)]
mod tests;
