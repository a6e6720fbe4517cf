//! Webhook deliveries as the admin API and `keymint deliveries` show them,
//! and the answer a sender (or a replay) gets for one.

use crate::store::{self, deliveries::Delivery};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    pub endpoint: String,
    pub kind: String,
    pub received_at: String,
    pub status: String,
    pub signature_valid: Option<bool>,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub order_id: Option<String>,
    pub error: Option<String>,
    pub license_id: Option<String>,
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
    /// `full` adds the path, headers and body (one delivery's page, not a
    /// list's).
    pub fn new(d: Delivery, full: bool) -> Self {
        Self {
            received_at: store::format_ms(d.received_at),
            signature_valid: d.signature_valid.map(|v| v != 0),
            path: full.then(|| d.path.clone()),
            headers: full.then(|| serde_json::from_str(&d.headers).unwrap_or_default()),
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
            license_id: d.license_id.map(|id| id.to_string()),
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
    pub delivery_id: String,
    /// Only when a license was minted or found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_key: Option<String>,
}
