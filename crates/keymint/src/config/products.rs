//! `[[products]]`: the catalog: what each product's license says and which
//! provider product ids sell it.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
pub struct ProductConfig {
    pub id: String,
    pub name: String,
    pub tier: String,
    pub key_prefix: String,
    /// `perpetual` or a duration such as `365d`, parsed at load.
    #[serde(default)]
    pub duration: Validity,
    /// Absent: unlimited machines.
    #[serde(default)]
    pub max_machines: Option<u32>,
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// Put the buyer's email in the token's claims.
    #[serde(default)]
    pub include_email: bool,
    /// Revoke on a partial refund too (default: only a full refund revokes).
    #[serde(default)]
    pub revoke_on_partial_refund: bool,
    /// Sold as a subscription: its license comes from subscription events
    /// only, and a plain order of it (such as Lemon Squeezy's
    /// `order_created` for a subscription's first payment) mints nothing.
    #[serde(default)]
    pub subscription: bool,
    /// Endpoint name -> that provider's product ids.
    #[serde(default)]
    pub map: BTreeMap<String, Vec<String>>,
    /// How `POST /v1/checkout` sells it (absent: not sold through keymint's
    /// checkout).
    #[serde(default)]
    pub checkout: Option<super::ProductCheckout>,
    /// Free trial days of a subscription bought through keymint's checkout.
    #[serde(default)]
    pub trial_days: Option<u32>,
    /// Who gets the trial: `first_time` (default) or `always`.
    #[serde(default)]
    pub trial: super::TrialPolicy,
    /// `required`: a checkout must carry the buyer's express consent.
    #[serde(default)]
    pub consent: super::ConsentPolicy,
    /// The terms version a consent must name, when set (a page showing
    /// older terms is refused).
    #[serde(default)]
    pub terms_version: Option<String>,
}

impl ProductConfig {
    /// What a checkout of this product sells at its provider: the
    /// configured `price`, else the first id mapped for the checkout's
    /// endpoint that names a price there (Stripe `price_`, Paddle `pri_`;
    /// Polar products and Lemon Squeezy variants have no prefix).
    pub fn checkout_item(&self, kind: super::EndpointKind) -> Option<&str> {
        let c = self.checkout.as_ref()?;
        let prefix = match kind {
            super::EndpointKind::Stripe => "price_",
            super::EndpointKind::Paddle => "pri_",
            _ => "",
        };
        c.price.as_deref().or_else(|| {
            self.map
                .get(&c.endpoint)?
                .iter()
                .find(|id| id.starts_with(prefix))
                .map(String::as_str)
        })
    }
}

/// How long a product's licenses last: parsed once when the configuration
/// loads, so nothing downstream can read a bad duration as perpetual.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Validity {
    #[default]
    Perpetual,
    For(Duration),
}

impl Validity {
    /// `None` for perpetual.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Self::Perpetual => None,
            Self::For(d) => Some(d),
        }
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match parse_validity(&text).map_err(serde::de::Error::custom)? {
            None => Ok(Self::Perpetual),
            Some(d) => Ok(Self::For(d)),
        }
    }
}

/// Parses `perpetual` or a humantime duration (`365d`, `12h`).
pub fn parse_validity(text: &str) -> Result<Option<Duration>, String> {
    if text.eq_ignore_ascii_case("perpetual") {
        return Ok(None);
    }
    match humantime::parse_duration(text) {
        Ok(d) if d.as_secs() > 0 => Ok(Some(d)),
        Ok(_) => Err(format!("duration {text:?} must be longer than a second")),
        Err(e) => Err(format!(
            "duration {text:?} is neither \"perpetual\" nor a duration like \"365d\": {e}"
        )),
    }
}
