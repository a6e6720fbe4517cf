//! `[checkout]` and each product's checkout settings: keymint starting the
//! payment itself (docs/checkout.md).

use super::{Config, EndpointKind, ProductConfig};
use serde::Deserialize;

/// `[checkout]`: what `POST /v1/checkout` accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CheckoutConfig {
    /// How long an unpaid order stays `pending_payment` before the
    /// reconciler expires it, when its provider does not expire checkouts
    /// itself (Paddle, Lemon Squeezy) or still shows it open.
    #[serde(with = "super::humantime_serde_compat")]
    pub expire_after: std::time::Duration,
    /// Hosts a `success_url` / `cancel_url` may point at (exact host names,
    /// or `*.example.com` for its subdomains), so keymint is no open
    /// redirect. Empty: every redirect URL is refused.
    pub allowed_redirect_hosts: Vec<String>,
    /// Checkouts started per client address and minute (each one calls the
    /// provider's API); 0 turns the limit off.
    pub per_minute: u32,
    /// Order lookups (`GET /v1/checkout/{id}`) that found nothing, per
    /// address and minute (guessing ids).
    pub not_found_per_minute: u32,
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        Self {
            allowed_redirect_hosts: Vec::new(),
            expire_after: std::time::Duration::from_secs(24 * 3600),
            per_minute: 30,
            not_found_per_minute: 10,
        }
    }
}

impl CheckoutConfig {
    /// Whether `host` is one a redirect may go to.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed_redirect_hosts.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            match allowed.strip_prefix("*.") {
                Some(parent) => host
                    .strip_suffix(parent)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => host == allowed,
            }
        })
    }
}

/// `[products.checkout]`: which provider takes a product's payment, and
/// what it charges.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductCheckout {
    /// The endpoint whose provider takes the payment (a stripe,
    /// hyperswitch, polar, paddle or lemonsqueezy endpoint); it needs an
    /// `api_key`.
    pub endpoint: String,
    /// What is sold at the provider: a Stripe or Paddle price id, a Polar
    /// product id, a Lemon Squeezy variant id (default: the first such id
    /// in the product's map for that endpoint).
    #[serde(default)]
    pub price: Option<String>,
    /// Hyperswitch: the amount in minor units, and its currency.
    #[serde(default)]
    pub amount_cents: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// Who gets a product's trial.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TrialPolicy {
    /// Only a buyer email with no earlier trial or license of the product.
    #[default]
    FirstTime,
    /// Every checkout.
    Always,
}

/// Whether a checkout must carry the buyer's express consent.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConsentPolicy {
    #[default]
    None,
    /// `consent: {accepted: true, terms_version}` is required, and recorded
    /// on the order.
    Required,
}

impl Config {
    /// A product's checkout settings: a provider keymint can start a
    /// payment with, something to charge, and trials only where the
    /// provider gives them (docs/checkout.md).
    pub(super) fn check_product_checkout(
        &self,
        at: &str,
        p: &ProductConfig,
        problems: &mut Vec<String>,
    ) {
        let trial = p.trial_days.is_some_and(|d| d > 0);
        if p.trial_days == Some(0) {
            problems.push(format!(
                "{at}.trial_days: 0 gives no trial; omit it instead"
            ));
        }
        match (&p.terms_version, p.consent) {
            (Some(v), ConsentPolicy::Required)
                if v.trim().is_empty() || v.len() > 64 || v.chars().any(char::is_control) =>
            {
                problems.push(format!(
                    "{at}.terms_version: must be 1-64 characters without control characters"
                ));
            }
            (Some(_), ConsentPolicy::Required) => {}
            (None, ConsentPolicy::Required) => problems.push(format!(
                "{at}.terms_version: consent = \"required\" needs the version of the terms the buyer accepts"
            )),
            (Some(_), ConsentPolicy::None) => problems.push(format!(
                "{at}.terms_version: only read with consent = \"required\""
            )),
            (None, ConsentPolicy::None) => {}
        }
        let Some(c) = &p.checkout else {
            if trial {
                problems.push(format!(
                    "{at}.trial_days: trials are given by keymint's checkout; add [products.checkout]"
                ));
            }
            return;
        };
        let Some(ep) = self.endpoint(&c.endpoint) else {
            problems.push(format!(
                "{at}.checkout.endpoint: endpoint {:?} is not defined",
                c.endpoint
            ));
            return;
        };
        let name = ep.kind.as_str();
        if ep.kind == EndpointKind::Hyperswitch {
            if c.amount_cents.is_none_or(|a| a <= 0) {
                problems.push(format!(
                    "{at}.checkout.amount_cents: a positive amount in minor units is required for Hyperswitch"
                ));
            }
            if !c
                .currency
                .as_deref()
                .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                problems.push(format!(
                    "{at}.checkout.currency: a three-letter currency code is required for Hyperswitch"
                ));
            }
            if c.price.is_some() {
                problems.push(format!(
                    "{at}.checkout.price: Hyperswitch charges amount_cents; price is for the other providers"
                ));
            }
            if p.subscription {
                problems.push(format!(
                    "{at}.checkout: a Hyperswitch payment is one-off; a subscription product cannot be sold through it"
                ));
            }
        } else if matches!(
            ep.kind,
            EndpointKind::Stripe
                | EndpointKind::Polar
                | EndpointKind::Paddle
                | EndpointKind::Lemonsqueezy
        ) {
            let what = match ep.kind {
                EndpointKind::Stripe => "Stripe price (a price_ id)",
                EndpointKind::Paddle => "Paddle price (a pri_ id)",
                EndpointKind::Polar => "Polar product id (a UUID)",
                _ => "Lemon Squeezy variant id (digits)",
            };
            match p.checkout_item(ep.kind) {
                None => problems.push(format!(
                    "{at}.checkout.price: no {what} to sell (set price, or map one under map.{})",
                    c.endpoint
                )),
                Some(item) if !sold_item_shape(ep.kind, item) => {
                    problems.push(format!("{at}.checkout.price: {item:?} is not a {what}"))
                }
                Some(_) => {}
            }
            if c.amount_cents.is_some() || c.currency.is_some() {
                problems.push(format!(
                    "{at}.checkout: amount_cents and currency are Hyperswitch settings; {name} charges the price's amount"
                ));
            }
            if ep.kind == EndpointKind::Lemonsqueezy && ep.store_id.is_none() {
                problems.push(format!(
                    "{at}.checkout.endpoint: Lemon Squeezy checkouts need the endpoint's store_id"
                ));
            }
        } else {
            problems.push(format!(
                "{at}.checkout.endpoint: keymint's checkout starts payments with stripe, polar, paddle, lemonsqueezy or hyperswitch endpoints, not {name}"
            ));
        }
        if trial {
            match ep.kind {
                EndpointKind::Stripe | EndpointKind::Polar if !p.subscription => {
                    problems.push(format!(
                        "{at}.trial_days: {name} gives trials to subscriptions only (set subscription = true)"
                    ));
                }
                EndpointKind::Stripe | EndpointKind::Polar => {}
                EndpointKind::Paddle | EndpointKind::Lemonsqueezy => problems.push(format!(
                    "{at}.trial_days: {name} takes a trial from the price or variant itself; set it there (keymint passes no trial length)"
                )),
                _ => problems.push(format!("{at}.trial_days: a {name} payment has no trial")),
            }
        }
    }
}

/// Whether `id` has the shape of what the provider sells.
fn sold_item_shape(kind: EndpointKind, id: &str) -> bool {
    let rest_ok = |rest: &str| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    match kind {
        EndpointKind::Stripe => id
            .strip_prefix("price_")
            .or_else(|| id.strip_prefix("plan_"))
            .is_some_and(rest_ok),
        EndpointKind::Paddle => id.strip_prefix("pri_").is_some_and(rest_ok),
        EndpointKind::Polar => {
            let parts: Vec<&str> = id.split('-').collect();
            parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
                && parts
                    .iter()
                    .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        }
        _ => !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && id != "0",
    }
}
