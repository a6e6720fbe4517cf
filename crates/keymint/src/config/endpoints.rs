//! `[[endpoints]]`: one webhook endpoint per provider account, with its
//! kind, secrets and replay window.

use super::{Secret, humantime_serde_compat};
use serde::Deserialize;
use std::time::Duration;

/// Provider kinds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    Gumroad,
    Stripe,
    Standard,
    Polar,
    Lemonsqueezy,
    Paddle,
    Hyperswitch,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gumroad => "gumroad",
            Self::Stripe => "stripe",
            Self::Standard => "standard",
            Self::Polar => "polar",
            Self::Lemonsqueezy => "lemonsqueezy",
            Self::Paddle => "paddle",
            Self::Hyperswitch => "hyperswitch",
        }
    }
}

// Unknown keys in an endpoint or a product are reported by the loader with
// their path (`endpoints[1].secret`), like everywhere else in the file.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointConfig {
    /// Served at `POST /webhooks/{name}`.
    pub name: String,
    pub kind: EndpointKind,
    /// Accepted secrets; several allow rotation without downtime.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Replay window for providers that sign a timestamp (stripe, standard,
    /// polar, paddle): deliveries further than this from now, in either
    /// direction, are rejected.
    #[serde(default = "default_tolerance", with = "humantime_serde_compat")]
    pub tolerance: Duration,
    /// Polar only: the secret is a legacy one, used as raw UTF-8 bytes
    /// instead of base64-decoded.
    #[serde(default)]
    pub legacy_secret: bool,
    /// The provider's API key (Stripe: a restricted key with read access to
    /// Checkout Sessions, used to fetch line items).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// The provider's API base URL (default: the provider's public API).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Lemon Squeezy only: the store keymint's checkout sells from (a
    /// number, written as one or as text).
    #[serde(default, deserialize_with = "number_or_text")]
    pub store_id: Option<String>,
    /// A fixed customer-portal address the buyer portal links to as
    /// "manage subscription" for this endpoint's subscriptions (Stripe
    /// endpoints with an `api_key` open a billing-portal session instead).
    #[serde(default)]
    pub customer_portal_url: Option<String>,
}

impl EndpointConfig {
    /// An endpoint with defaults, for tests and tools.
    pub fn for_test(name: &str, kind: EndpointKind, secrets: &[&str]) -> Self {
        Self {
            name: name.into(),
            kind,
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance: default_tolerance(),
            legacy_secret: false,
            api_key: None,
            api_url: None,
            store_id: None,
            customer_portal_url: None,
        }
    }
}

/// An id the provider shows as a number: `7` or `"7"`.
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    Ok(Some(match Id::deserialize(d)? {
        Id::Number(0) => return Err(serde::de::Error::custom("0 is not a store id")),
        Id::Number(n) => n.to_string(),
        Id::Text(t)
            if !t.trim().is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && t != "0" =>
        {
            t
        }
        Id::Text(t) => {
            return Err(serde::de::Error::custom(format!(
                "{t:?} is not a store id (digits)"
            )));
        }
    }))
}

pub(super) fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}
