//! The shapes keymint answers with: every JSON document the admin API
//! returns and the CLI prints (licenses, deliveries, subscriptions,
//! refunds, errors), in one place so the two cannot drift apart and the
//! test suite can deserialize answers into the server's own types.
//! Nothing here knows HTTP or reads the store; `http/` wraps these in
//! responses and `admin/` loads them.

use crate::domain::{
    DeliveryId, DeliveryStatus, EmailId, EmailKind, EmailStatus, LicenseId, LicenseStatus, Millis,
    RefundId, RefundStatus, SubscriptionId,
};
use crate::store::deliveries::Delivery;
use crate::store::licenses::{License, LicenseEvent};
use crate::store::refunds::Refund;
use crate::store::subscriptions::{Listed, SubscriptionEvent};
use crate::store::{self, outbox};
use keymint_license::LicenseKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod codes;
pub mod licensing;

/// The body of every error answer: a message for people and a stable
/// `code` for programs (docs/admin-api.md, "Errors", lists them).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs: stable, lower_snake_case
    /// (`not_found`, `refunds_not_configured`, ...). It comes first, as
    /// webhook senders have always seen it.
    #[schema(schema_with = codes::schema)]
    pub code: String,
    /// What went wrong, for people; its wording may change.
    pub error: String,
}

/// A stored value keymint wrote but cannot read back. It is shown as an
/// error (a logged 500, a failed command), never replaced by a default
/// that would show a different record (docs/architecture.md, rule 8).
#[derive(Debug, thiserror::Error)]
#[error("{what} {id}: the stored {field} cannot be read: {reason}")]
pub struct Corrupt {
    /// The kind of record (`license`, `delivery`).
    pub what: &'static str,
    pub id: String,
    /// The column that cannot be read.
    pub field: &'static str,
    pub reason: String,
}

/// Why a view could not be built from the store.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// A license as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LicenseOut {
    pub id: LicenseId,
    #[schema(value_type = String, example = "DT1-CORE-XXXXX-XXXXX-XXXXX-XXXXX")]
    pub key: LicenseKey,
    pub product: String,
    pub tier: String,
    pub status: LicenseStatus,
    pub status_reason: Option<String>,
    pub source: String,
    pub order_id: Option<String>,
    pub name: String,
    pub email: String,
    pub token: String,
    pub kid: String,
    pub issued_at: String,
    pub expires_at: Option<String>,
    pub max_machines: Option<i64>,
    pub entitlements: Vec<String>,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub test: bool,
    pub notes: Option<String>,
}

impl TryFrom<License> for LicenseOut {
    type Error = Corrupt;

    /// Fails when the stored entitlements are not a JSON list of strings:
    /// showing none would misstate what the signed token grants.
    fn try_from(l: License) -> Result<Self, Corrupt> {
        let entitlements = serde_json::from_str(&l.entitlements).map_err(|e| Corrupt {
            what: "license",
            id: l.id.to_string(),
            field: "entitlements",
            reason: e.to_string(),
        })?;
        Ok(Self {
            entitlements,
            issued_at: store::format_ms(l.issued_at),
            expires_at: l.expires_at.map(store::format_ms),
            test: l.test != 0,
            id: l.id,
            key: l.key,
            product: l.product,
            tier: l.tier,
            status: l.status,
            status_reason: l.status_reason,
            source: l.source,
            order_id: l.order_id,
            name: l.name,
            email: l.email,
            token: l.token,
            kid: l.kid,
            max_machines: l.max_machines,
            amount_cents: l.amount_cents,
            currency: l.currency,
            notes: l.notes,
        })
    }
}

/// One change in a license's life.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryOut {
    pub at: String,
    pub action: String,
    pub from_status: Option<LicenseStatus>,
    pub to_status: LicenseStatus,
    pub reason: Option<String>,
    pub actor: String,
    pub delivery_id: Option<String>,
}

impl From<LicenseEvent> for HistoryOut {
    fn from(e: LicenseEvent) -> Self {
        Self {
            at: store::format_ms(e.at),
            action: e.action,
            from_status: e.from_status,
            to_status: e.to_status,
            reason: e.reason,
            actor: e.actor,
            delivery_id: e.delivery_id,
        }
    }
}

/// An email about a license.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmailOut {
    pub id: EmailId,
    pub kind: EmailKind,
    pub to: String,
    pub status: EmailStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
}

impl From<outbox::OutboxRow> for EmailOut {
    fn from(r: outbox::OutboxRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            to: r.to_email,
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error,
            sent_at: r.sent_at.map(store::format_ms),
        }
    }
}

/// `{"created", "license"}` from a manual mint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MintedOut {
    pub created: bool,
    pub license: LicenseOut,
}

/// A license with its history, emails and machines.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LicenseDetail {
    pub license: LicenseOut,
    pub history: Vec<HistoryOut>,
    pub emails: Vec<EmailOut>,
    /// The machines it is activated on (docs/licensing-api.md).
    pub machines: Vec<licensing::MachineOut>,
}

/// A page of licenses; pass `next_before` as `before` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LicensePage {
    pub licenses: Vec<LicenseOut>,
    pub next_before: Option<String>,
}

/// One license.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LicenseOne {
    pub license: LicenseOut,
}

/// `{"status": "queued"}`: an email was queued; the outbox sends it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Queued {
    pub status: String,
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryOut {
    pub id: DeliveryId,
    pub endpoint: String,
    pub kind: String,
    pub received_at: String,
    pub status: DeliveryStatus,
    pub signature_valid: Option<bool>,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub order_id: Option<String>,
    pub error: Option<String>,
    pub license_id: Option<LicenseId>,
    pub attempts: i64,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Size in bytes of the whole body as received.
    pub body_size: Option<i64>,
    /// SHA-256 (hex) of the whole body as received.
    pub body_sha256: Option<String>,
    /// True when `body` holds only the start of the body (a delivery that
    /// failed authentication keeps its first 4 KiB).
    pub body_truncated: bool,
}

impl DeliveryOut {
    /// A delivery as a list shows it: without its path, headers and body.
    pub fn summary(d: Delivery) -> Self {
        Self::build(d, None)
    }

    /// One delivery in full, with its path, headers and body. Fails when
    /// the stored headers are not JSON: showing none would hide what the
    /// sender sent.
    pub fn full(d: Delivery) -> Result<Self, Corrupt> {
        let headers = serde_json::from_str(&d.headers).map_err(|e| Corrupt {
            what: "delivery",
            id: d.id.to_string(),
            field: "headers",
            reason: e.to_string(),
        })?;
        Ok(Self::build(d, Some(headers)))
    }

    /// `headers` is given for a full view only, which adds the path and body.
    fn build(d: Delivery, headers: Option<serde_json::Value>) -> Self {
        let full = headers.is_some();
        Self {
            received_at: store::format_ms(d.received_at),
            signature_valid: d.signature_valid.map(|v| v != 0),
            path: full.then(|| d.path.clone()),
            headers,
            // Lossy on purpose: a view for people; `body_sha256` names the
            // exact bytes, which a replay uses untouched.
            body: full.then(|| String::from_utf8_lossy(&d.body).into_owned()),
            body_truncated: d.body_size.is_some_and(|n| n > d.body.len() as i64),
            body_size: d.body_size,
            body_sha256: d.body_sha256.clone(),
            id: d.id,
            endpoint: d.endpoint,
            kind: d.kind,
            status: d.status,
            event_type: d.event_type,
            event_id: d.event_id,
            order_id: d.order_id,
            error: d.error,
            license_id: d.license_id,
            attempts: d.attempts,
            source_ip: d.source_ip,
            user_agent: d.user_agent,
            request_id: d.request_id,
        }
    }
}

/// A page of deliveries; pass `next_before` as `before` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryOut>,
    pub next_before: Option<String>,
}

/// The answer to an authenticated delivery (docs/architecture.md, rule 3:
/// once authentic, always 2xx; `status` says how it went).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookResponse {
    /// ok, duplicate, ignored, logged-no-mint or error.
    pub status: String,
    pub delivery_id: DeliveryId,
    /// Only when a license was minted or found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub license_key: Option<LicenseKey>,
}

/// As its JSON, which is what a sender (and a failing test) sees.
impl std::fmt::Display for WebhookResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => f.write_str(&json),
            Err(_) => write!(f, "{self:?}"),
        }
    }
}

/// A subscription as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionOut {
    /// keymint's id (`sub_...`).
    pub id: SubscriptionId,
    pub endpoint: String,
    /// The provider's subscription id.
    pub subscription_id: String,
    pub status: String,
    pub trial_end: Option<String>,
    pub current_period_end: Option<String>,
    pub cancel_at_period_end: bool,
    /// The provider's time of the last event applied.
    pub last_event_at: String,
    pub product: Option<String>,
    pub email: Option<String>,
    pub customer_ref: Option<String>,
    pub license_key: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Listed> for SubscriptionOut {
    fn from(l: Listed) -> Self {
        let s = l.subscription;
        Self {
            id: s.id,
            endpoint: s.source,
            subscription_id: s.subscription_id,
            status: s.status.as_str().to_string(),
            trial_end: s.trial_end.map(|ms| store::format_ms(Millis(ms))),
            current_period_end: s.current_period_end.map(|ms| store::format_ms(Millis(ms))),
            cancel_at_period_end: s.cancel_at_period_end != 0,
            last_event_at: store::format_ms(s.last_event_at),
            product: s.product,
            email: l.email,
            customer_ref: s.customer_ref,
            license_key: l.license_key,
            created_at: store::format_ms(s.created_at),
            updated_at: store::format_ms(s.updated_at),
        }
    }
}

/// One event in a subscription's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionEventOut {
    /// The provider's time for the event.
    pub at: String,
    pub received_at: String,
    pub event_type: String,
    /// `applied`, `stale` (older than the last applied event: changed
    /// nothing) or `ignored` (not applicable in that state).
    pub result: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub period_end: Option<String>,
    pub actor: String,
    pub delivery_id: Option<String>,
}

impl From<SubscriptionEvent> for SubscriptionEventOut {
    fn from(e: SubscriptionEvent) -> Self {
        Self {
            at: store::format_ms(e.at),
            received_at: store::format_ms(e.received_at),
            event_type: e.event_type,
            result: e.result,
            from_status: e.from_status.map(|s| s.as_str().to_string()),
            to_status: e.to_status.as_str().to_string(),
            period_end: e.period_end.map(|ms| store::format_ms(Millis(ms))),
            actor: e.actor,
            delivery_id: e.delivery_id,
        }
    }
}

/// A page of subscriptions; pass `next_before` as `before` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionPage {
    pub subscriptions: Vec<SubscriptionOut>,
    pub next_before: Option<String>,
}

/// A subscription with its event history and its license's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionDetail {
    pub subscription: SubscriptionOut,
    pub events: Vec<SubscriptionEventOut>,
    pub license_history: Vec<HistoryOut>,
}

/// A refund as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefundOut {
    pub id: RefundId,
    pub status: RefundStatus,
    pub endpoint: String,
    pub payment_ref: String,
    pub amount_cents: Option<i64>,
    pub provider_refund_id: Option<String>,
    pub error: Option<String>,
    pub requested_by: String,
    pub created_at: String,
}

impl From<Refund> for RefundOut {
    fn from(r: Refund) -> Self {
        Self {
            id: r.id,
            status: r.status,
            endpoint: r.endpoint,
            payment_ref: r.payment_ref,
            amount_cents: r.amount_cents,
            provider_refund_id: r.provider_refund_id,
            error: r.error,
            requested_by: r.requested_by,
            created_at: store::format_ms(r.created_at),
        }
    }
}

mod checkout;

pub use checkout::*;

#[cfg(test)]
mod tests;
