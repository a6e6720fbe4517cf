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
        if now < self.nbf {
            return Err(TokenError::NotYetValid(format_time(self.nbf)));
        }
        match self.exp {
            Some(exp) if now >= exp => Err(TokenError::Expired(format_time(exp))),
            _ => Ok(()),
        }
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

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

mod rfc3339 {
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

mod rfc3339_opt {
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
        let untrusted = UntrustedToken::<Public, V4>::try_from(token.trim())
            .map_err(|_| TokenError::Malformed)?;
        let key = self.key_for(untrusted.untrusted_footer())?;
        let trusted = PublicToken::verify(&key.key, &untrusted, None, None)
            .map_err(|_| TokenError::BadSignature)?;
        serde_json::from_str(trusted.payload()).map_err(|e| TokenError::Claims(e.to_string()))
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
