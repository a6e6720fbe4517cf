//! `[checkout]` and each product's checkout settings: keymint starting the
//! payment itself (docs/checkout.md).

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
