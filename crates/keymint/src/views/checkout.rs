//! Checkout's JSON shapes: an order as the buyer's page and the admin API
//! see it, its history, and the billing-portal link.

use super::*;

/// An order keymint's checkout started, as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderOut {
    pub id: crate::domain::OrderId,
    pub status: crate::domain::OrderStatus,
    pub product: String,
    pub endpoint: String,
    pub email: Option<String>,
    /// The Checkout Session or payment id at the provider.
    pub provider_ref: Option<String>,
    pub checkout_url: Option<String>,
    pub trial_days: Option<i64>,
    /// The buyer's recorded consent, when the checkout carried one.
    pub consent: Option<ConsentOut>,
    pub license_id: Option<crate::domain::LicenseId>,
    pub license_key: Option<String>,
    pub error: Option<String>,
    pub source_ip: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// What a buyer accepted, when and from where.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsentOut {
    pub terms_version: String,
    pub accepted_at: String,
    pub ip: Option<String>,
}

impl OrderOut {
    /// An order and its license's key, when it has one.
    pub async fn load(
        conn: &mut crate::store::Conn,
        o: crate::store::orders::Order,
    ) -> Result<Self, sqlx::Error> {
        let key = match &o.license_id {
            Some(l) => crate::store::licenses::by_id(conn, l)
                .await?
                .map(|l| l.key.to_string()),
            None => None,
        };
        Ok(Self::of(o, key))
    }

    pub fn of(o: crate::store::orders::Order, license_key: Option<String>) -> Self {
        Self {
            consent: o.consent_terms.map(|terms_version| ConsentOut {
                terms_version,
                accepted_at: o.consent_at.map(store::format_ms).unwrap_or_default(),
                ip: o.consent_ip,
            }),
            id: o.id,
            status: o.status,
            product: o.product,
            endpoint: o.endpoint,
            email: o.email,
            provider_ref: o.provider_ref,
            checkout_url: o.checkout_url,
            trial_days: o.trial_days,
            license_id: o.license_id,
            license_key,
            error: o.error,
            source_ip: o.source_ip,
            created_at: store::format_ms(o.created_at),
            updated_at: store::format_ms(o.updated_at),
        }
    }
}

/// One step of an order's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderEventOut {
    pub at: String,
    pub from_status: Option<crate::domain::OrderStatus>,
    pub to_status: crate::domain::OrderStatus,
    /// created, checkout_created, provider_failed, paid, failed, expired.
    pub cause: String,
    pub actor: String,
    pub delivery_id: Option<String>,
    pub detail: Option<String>,
}

impl From<crate::store::orders::OrderEvent> for OrderEventOut {
    fn from(e: crate::store::orders::OrderEvent) -> Self {
        Self {
            at: store::format_ms(e.at),
            from_status: e.from_status,
            to_status: e.to_status,
            cause: e.cause,
            actor: e.actor,
            delivery_id: e.delivery_id,
            detail: e.detail,
        }
    }
}

/// A page of orders, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderOut>,
    /// Pass as `before` for the next page; absent on the last.
    pub next_before: Option<String>,
}

/// An order with its history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderDetail {
    pub order: OrderOut,
    pub history: Vec<OrderEventOut>,
}

/// An order, as its buyer's page sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckoutOut {
    pub order_id: crate::domain::OrderId,
    /// pending_payment, paid, failed or expired.
    pub status: crate::domain::OrderStatus,
    pub product: String,
    /// Stripe: the hosted checkout page, while the order is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Hyperswitch: what the page confirms the payment with, while the
    /// order is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Once paid: the license's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub license_key: Option<LicenseKey>,
    /// Trial days this checkout gives (Stripe and Polar subscriptions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_days: Option<i64>,
    /// `first_time`: the product has a trial, but this checkout gives none
    /// (the email had a trial or a license of the product, or has a
    /// checkout with a trial still pending, or no email was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_withheld: Option<String>,
    /// For the buyer, why the order failed or expired (the provider's own
    /// words are in the admin API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CheckoutOut {
    /// The buyer's view of an order; `trial_offered`: the product has a
    /// trial.
    pub fn of(
        o: crate::store::orders::Order,
        license_key: Option<LicenseKey>,
        trial_offered: bool,
    ) -> Self {
        use crate::domain::OrderStatus;
        let pending = o.status == OrderStatus::PendingPayment;
        Self {
            order_id: o.id,
            status: o.status,
            product: o.product,
            url: o.checkout_url.filter(|_| pending),
            client_secret: o.client_secret.filter(|_| pending),
            license_key,
            trial_withheld: (trial_offered && o.trial_days.is_none())
                .then(|| "first_time".to_string()),
            trial_days: o.trial_days,
            error: match o.status {
                OrderStatus::Failed => Some("the payment did not go through".into()),
                OrderStatus::Expired => Some("the checkout closed before it was paid".into()),
                OrderStatus::PendingPayment | OrderStatus::Paid => None,
            },
        }
    }
}

/// A provider failure: the failed order's id beside the error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckoutErrorBody {
    pub code: String,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<crate::domain::OrderId>,
}

/// A billing-portal session's page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PortalOut {
    pub url: String,
}
