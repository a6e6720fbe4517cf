//! Licenses as the admin API and `keymint license` show them: the license,
//! its history and its emails.

use crate::store::{self, licenses, licenses::License, licenses::LicenseEvent, outbox};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A license as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LicenseOut {
    pub id: String,
    pub key: String,
    pub product: String,
    pub tier: String,
    pub status: String,
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

impl From<License> for LicenseOut {
    fn from(l: License) -> Self {
        Self {
            entitlements: serde_json::from_str(&l.entitlements).unwrap_or_default(),
            issued_at: store::format_ms(l.issued_at),
            expires_at: l.expires_at.map(store::format_ms),
            test: l.test != 0,
            id: l.id.to_string(),
            key: l.key.to_string(),
            product: l.product,
            tier: l.tier,
            status: l.status.to_string(),
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
        }
    }
}

/// One change in a license's life.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryOut {
    pub at: String,
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub actor: String,
    pub delivery_id: Option<String>,
}

impl From<LicenseEvent> for HistoryOut {
    fn from(e: LicenseEvent) -> Self {
        Self {
            at: store::format_ms(e.at),
            action: e.action,
            from_status: e.from_status.map(|s| s.to_string()),
            to_status: e.to_status.to_string(),
            reason: e.reason,
            actor: e.actor,
            delivery_id: e.delivery_id,
        }
    }
}

/// An email about a license.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmailOut {
    pub id: String,
    pub kind: String,
    pub to: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
}

impl From<outbox::OutboxRow> for EmailOut {
    fn from(r: outbox::OutboxRow) -> Self {
        Self {
            id: r.id.to_string(),
            kind: r.kind.to_string(),
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

/// A license with its history and emails.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LicenseDetail {
    pub license: LicenseOut,
    pub history: Vec<HistoryOut>,
    pub emails: Vec<EmailOut>,
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

impl Queued {
    pub fn new() -> Self {
        Self {
            status: "queued".into(),
        }
    }
}

impl Default for Queued {
    fn default() -> Self {
        Self::new()
    }
}

/// A license with its history and emails, as the API and
/// `keymint license show` give it; None when no license has that key.
pub async fn license_detail(
    store: &store::Store,
    key: &keymint_license::LicenseKey,
) -> Result<Option<LicenseDetail>, sqlx::Error> {
    let mut conn = store.conn().await?;
    let Some(license) = licenses::by_key(&mut conn, key).await? else {
        return Ok(None);
    };
    let history: Vec<HistoryOut> = licenses::history(&mut conn, &license.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let emails: Vec<EmailOut> = outbox::for_license(&mut conn, &license.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Some(LicenseDetail {
        license: license.into(),
        history,
        emails,
    }))
}
