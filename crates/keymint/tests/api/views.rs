//! The server's JSON answers as the tests read them: one struct per shape,
//! so an assertion names a field instead of indexing a `serde_json::Value`,
//! and an answer of the wrong shape fails where it is read.
//!
//! Each holds only the fields tests read (serde ignores the rest); the
//! names are the server's view types', so once those live in
//! `keymint::views` with `Deserialize`, these can become re-exports of them.
#![allow(dead_code)]

use keymint_license::LicenseKey;
use serde::Deserialize;
use std::fmt;

/// The answer to an authenticated webhook delivery.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct WebhookAnswer {
    /// ok, duplicate, ignored, logged-no-mint or error.
    pub status: String,
    pub delivery_id: String,
    pub license_key: Option<LicenseKey>,
}

impl fmt::Display for WebhookAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A JSON error body: a stable code and the human text.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub error: String,
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A license as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct LicenseOut {
    pub key: LicenseKey,
    pub status: String,
    pub source: String,
    pub name: String,
    pub email: String,
    pub token: String,
    pub kid: String,
    pub expires_at: Option<String>,
    pub notes: Option<String>,
}

/// One change in a license's life.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryOut {
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub actor: String,
    pub delivery_id: Option<String>,
}

/// An email about a license.
#[derive(Debug, Clone, Deserialize)]
pub struct EmailOut {
    pub kind: String,
    pub status: String,
}

/// A license with its history and emails.
#[derive(Debug, Clone, Deserialize)]
pub struct LicenseDetail {
    pub license: LicenseOut,
    pub history: Vec<HistoryOut>,
    pub emails: Vec<EmailOut>,
}

impl LicenseDetail {
    /// The history's actions, oldest first.
    pub fn actions(&self) -> Vec<&str> {
        self.history.iter().map(|h| h.action.as_str()).collect()
    }
}

/// One license (revoke, reinstate).
#[derive(Debug, Clone, Deserialize)]
pub struct LicenseOne {
    pub license: LicenseOut,
}

/// A manual mint's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct MintedOut {
    pub license: LicenseOut,
}

/// A page of licenses.
#[derive(Debug, Clone, Deserialize)]
pub struct LicensePage {
    pub licenses: Vec<LicenseOut>,
}

/// A delivery as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryOut {
    pub id: String,
    pub status: String,
    pub order_id: Option<String>,
    pub signature_valid: Option<bool>,
    pub path: Option<String>,
    pub body: Option<String>,
    pub body_size: Option<i64>,
    pub body_sha256: Option<String>,
    pub body_truncated: bool,
}

/// A page of deliveries.
#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryOut>,
    pub next_before: Option<String>,
}

/// A subscription as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionOut {
    pub subscription_id: String,
    pub status: String,
    pub license_key: Option<LicenseKey>,
}

/// One event in a subscription's history.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionEventOut {
    pub event_type: String,
    pub result: String,
}

/// A page of subscriptions.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionPage {
    pub subscriptions: Vec<SubscriptionOut>,
}

/// A subscription with its events and its license's history.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionDetail {
    pub subscription: SubscriptionOut,
    pub events: Vec<SubscriptionEventOut>,
}

/// A refund as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundOut {
    pub id: String,
    pub status: String,
    pub provider_refund_id: Option<String>,
    pub error: Option<String>,
}

impl fmt::Display for RefundOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A published signing key (`GET /v1/keys`).
#[derive(Debug, Clone, Deserialize)]
pub struct PublishedKey {
    pub kid: String,
    pub status: String,
    pub public_key: String,
    pub public_key_raw: String,
    pub public_key_pem: String,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, Deserialize)]
pub struct PublishedKeys {
    pub keys: Vec<PublishedKey>,
}

impl PublishedKeys {
    pub fn by_kid(&self, kid: &str) -> &PublishedKey {
        self.keys
            .iter()
            .find(|k| k.kid == kid)
            .unwrap_or_else(|| panic!("no key {kid} in {self:?}"))
    }
}
