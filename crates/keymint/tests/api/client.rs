//! A typed HTTP client for tests: each call checks the answer's status
//! (printing the body when it differs) and reads the body into the type
//! the caller names, so tests assert on fields, not on `Value` indexing.
//!
//! [`Api`] speaks to one server, with an admin token or without one;
//! `TestApp::admin()` and `TestApp::api()` hand one out.
#![allow(dead_code)]

use crate::views::{
    DeliveryOut, DeliveryPage, ErrorBody, LicenseDetail, LicenseOne, LicensePage, PublishedKeys,
    SubscriptionDetail, SubscriptionPage, WebhookAnswer,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Display;

/// Reads `resp` as a `T` after checking its status is `status`.
pub async fn expect_json<T: DeserializeOwned>(resp: reqwest::Response, status: u16) -> T {
    let got = resp.status().as_u16();
    let url = resp.url().to_string();
    let text = resp.text().await.expect("an answer body");
    assert_eq!(got, status, "{url} answered {got}: {text}");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{url}: not a {}: {e}: {text}", std::any::type_name::<T>()))
}

/// Asserts a JSON error answer with this status and a non-empty error
/// text under this code; returns the body.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> ErrorBody {
    let body: ErrorBody = expect_json(resp, status).await;
    assert_eq!(body.code, code, "{body:?}");
    assert!(!body.error.is_empty(), "{body:?}");
    body
}

/// A client for one server, with or without an admin token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str, token: Option<String>) -> Self {
        Self {
            http,
            base: base.to_string(),
            token,
        }
    }

    /// The admin token this client sends.
    pub fn token(&self) -> &str {
        self.token.as_deref().expect("a client with a token")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the token, for what the other methods do not cover.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post(&self, path: &str, body: &impl Serialize) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// GET, expecting 200 and a `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> T {
        expect_json(self.get(path).await, 200).await
    }

    /// POST a JSON body, expecting `status` and a `T`.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        status: u16,
    ) -> T {
        expect_json(self.post(path, body).await, status).await
    }

    /// GET, expecting 200; the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        let resp = self.get(path).await;
        let status = resp.status();
        let text = resp.text().await.expect("an answer body");
        assert_eq!(status, 200, "{path}: {text}");
        text
    }

    // The admin API's resources.

    /// `GET /admin/v1/licenses/{key}`.
    pub async fn license(&self, key: impl Display) -> LicenseDetail {
        self.get_json(&format!("/admin/v1/licenses/{key}")).await
    }

    /// `GET /admin/v1/licenses?{query}`.
    pub async fn licenses(&self, query: &str) -> LicensePage {
        self.get_json(&format!("/admin/v1/licenses?{query}")).await
    }

    /// `POST /admin/v1/licenses` (a manual mint) with `body`; the raw answer.
    pub async fn mint(&self, body: serde_json::Value) -> reqwest::Response {
        self.post("/admin/v1/licenses", &body).await
    }

    /// `POST /admin/v1/licenses/{key}/{action}` (revoke, reinstate, refund,
    /// resend) with `body`; the raw answer.
    pub async fn act(
        &self,
        key: impl Display,
        action: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.post(&format!("/admin/v1/licenses/{key}/{action}"), &body)
            .await
    }

    /// Revokes a license, expecting 200.
    pub async fn revoke(&self, key: impl Display, reason: &str) -> LicenseOne {
        let resp = self
            .act(key, "revoke", serde_json::json!({ "reason": reason }))
            .await;
        expect_json(resp, 200).await
    }

    /// `GET /admin/v1/deliveries?{query}`.
    pub async fn deliveries(&self, query: &str) -> DeliveryPage {
        self.get_json(&format!("/admin/v1/deliveries?{query}"))
            .await
    }

    /// `GET /admin/v1/deliveries/{id}`.
    pub async fn delivery(&self, id: impl Display) -> DeliveryOut {
        self.get_json(&format!("/admin/v1/deliveries/{id}")).await
    }

    /// `POST /admin/v1/deliveries/{id}/replay`; the raw answer.
    pub async fn replay(&self, id: impl Display) -> reqwest::Response {
        self.post(
            &format!("/admin/v1/deliveries/{id}/replay"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Replays a delivery, expecting 200; the webhook answer it gives.
    pub async fn replayed(&self, id: impl Display) -> WebhookAnswer {
        expect_json(self.replay(id).await, 200).await
    }

    /// `GET /admin/v1/subscriptions/{id}`.
    pub async fn subscription(&self, id: &str) -> SubscriptionDetail {
        self.get_json(&format!("/admin/v1/subscriptions/{id}"))
            .await
    }

    /// `GET /admin/v1/subscriptions{query}` (query with its `?`).
    pub async fn subscriptions(&self, query: &str) -> SubscriptionPage {
        self.get_json(&format!("/admin/v1/subscriptions{query}"))
            .await
    }

    // The public API.

    /// `GET /v1/keys`.
    pub async fn published_keys(&self) -> PublishedKeys {
        self.get_json("/v1/keys").await
    }
}
