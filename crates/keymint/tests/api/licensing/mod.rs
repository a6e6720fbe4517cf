//! The licensing API as a buyer's program uses it (docs/licensing-api.md):
//! validation codes with signed receipts, idempotent activation with
//! machine files, seat limits under concurrency, the deactivation budget,
//! the operators' machine routes and CLI, and the per-address limits.

use crate::both_databases;
use crate::client::{expect_error, expect_json};
use crate::helpers::{Db, TestApp, sale_form, spawn_app, spawn_app_with, stderr, stdout, with};
use crate::providers::{self, Ids, now_secs};
use crate::views::{LicenseDetailExt, LicenseOne};
use keymint::views::licensing::{
    ActivationOut, LicensingErrorBody, MachinesOut, ResetOut, ValidationOut,
};
use keymint_license::{KeySet, LicenseKey, TokenError};
use serde_json::{Value, json};
use time::OffsetDateTime;

mod machines;
mod operators;
mod standing;
mod validate;

/// A buyer's program talking to one server.
pub struct Program {
    base: String,
    http: reqwest::Client,
    pub keys: KeySet,
}

impl Program {
    pub async fn new(app: &TestApp) -> Self {
        let published = app.api().published_keys().await;
        let keys = KeySet::from_paserks(published.keys.iter().map(|k| k.public_key.as_str()))
            .expect("published keys parse");
        Self {
            base: app.base.clone(),
            http: app.client.clone(),
            keys,
        }
    }

    pub async fn validate_raw(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/licenses/validate", self.base))
            .json(&body)
            .send()
            .await
            .expect("validate answers")
    }

    /// Validates with a fresh nonce and checks the receipt before reading
    /// the answer, as a careful program does.
    pub async fn validate(&self, mut body: Value) -> ValidationOut {
        let nonce = format!("nonce-{}", rand::random::<u64>());
        body["nonce"] = json!(nonce);
        let out: ValidationOut = expect_json(self.validate_raw(body.clone()).await, 200).await;
        let now = OffsetDateTime::now_utc();
        let receipt = self
            .keys
            .verify_receipt(&out.receipt, &nonce, now)
            .expect("the receipt verifies with this request's nonce");
        assert_eq!(receipt.valid, out.valid);
        assert_eq!(receipt.code, out.code.as_str());
        assert_eq!(receipt.fingerprint.as_deref(), body["fingerprint"].as_str());
        // The rest of the answer is signed too.
        assert_eq!(receipt.missing_entitlements, out.missing_entitlements);
        let warnings: Vec<&str> = out.warnings.iter().map(|w| w.as_str()).collect();
        assert_eq!(receipt.warnings, warnings);
        let until = out.access_until.as_deref().map(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
        });
        assert_eq!(receipt.access_until, until);
        assert_eq!(out.valid, out.code.as_str() == "VALID", "{out:?}");
        // Replayed to a program that sent another nonce, it is refused.
        assert_eq!(
            self.keys
                .verify_receipt(&out.receipt, "another-nonce", now)
                .unwrap_err(),
            TokenError::NonceMismatch
        );
        out
    }

    pub async fn code(&self, body: Value) -> String {
        self.validate(body).await.code.as_str().to_string()
    }

    pub fn machine_url(&self, key: &str, fingerprint: &str) -> String {
        format!("{}/v1/licenses/{key}/machines/{fingerprint}", self.base)
    }

    pub async fn activate_raw(
        &self,
        key: &str,
        fingerprint: &str,
        body: Value,
    ) -> reqwest::Response {
        self.http
            .put(self.machine_url(key, fingerprint))
            .json(&body)
            .send()
            .await
            .expect("activate answers")
    }

    /// Activates and checks the machine file offline; the answer.
    pub async fn activate(
        &self,
        key: &LicenseKey,
        fingerprint: &str,
        status: u16,
    ) -> ActivationOut {
        let out: ActivationOut = expect_json(
            self.activate_raw(key.as_str(), fingerprint, json!({}))
                .await,
            status,
        )
        .await;
        let claims = self
            .keys
            .verify_machine_file(&out.machine_file, fingerprint, OffsetDateTime::now_utc())
            .expect("the machine file verifies for this fingerprint");
        assert_eq!(claims.key, key.as_str());
        assert_eq!(claims.machine, out.machine.id.as_str());
        out
    }

    pub async fn deactivate(&self, key: &str, fingerprint: &str) -> reqwest::Response {
        self.http
            .delete(self.machine_url(key, fingerprint))
            .send()
            .await
            .expect("deactivate answers")
    }

    pub async fn machines(&self, key: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/licenses/{key}/machines", self.base))
            .send()
            .await
            .expect("machines answers")
    }
}

/// Asserts a licensing error answer; returns its body.
async fn refused(resp: reqwest::Response, status: u16, code: &str) -> LicensingErrorBody {
    let body: LicensingErrorBody = expect_json(resp, status).await;
    assert_eq!(body.code, code, "{body:?}");
    body
}

/// A Gumroad sale of `datatools-core` (3 seats, 365 days); its key.
async fn sold(app: &TestApp) -> LicenseKey {
    let order = format!("LIC-{}", rand::random::<u32>());
    app.gumroad_sale(&sale_form(&order)).await
}
