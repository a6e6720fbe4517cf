//! The server's JSON answers as the tests read them: the server's own view
//! types (`keymint::views`), so an assertion names a field instead of
//! indexing a `serde_json::Value`, and an answer of the wrong shape fails
//! where it is read.
//!
//! A mirror remains only where the server has no readable type: `GET /v1/keys`
//! (http/public.rs keeps its fields private).
#![allow(dead_code, unused_imports)]

use keymint_license::LicenseKey;
use serde::Deserialize;
use std::fmt;

pub use keymint::views::{
    CheckoutErrorBody, CheckoutOut, DeliveryOut, DeliveryPage, EmailOut, ErrorBody, HistoryOut,
    LicenseDetail, LicenseOne, LicenseOut, LicensePage, MintedOut, OrderDetail, OrderPage,
    PortalOut, RefundOut, SubscriptionDetail, SubscriptionEventOut, SubscriptionOut,
    SubscriptionPage, WebhookResponse as WebhookAnswer,
};

/// What tests ask of a license's detail beyond its fields.
pub trait LicenseDetailExt {
    /// The history's actions, oldest first.
    fn actions(&self) -> Vec<&str>;
}

impl LicenseDetailExt for LicenseDetail {
    fn actions(&self) -> Vec<&str> {
        self.history.iter().map(|h| h.action.as_str()).collect()
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
