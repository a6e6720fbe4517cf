//! `POST /webhooks/{endpoint}`: hands the raw request to ingest and maps
//! the result onto the response contract of DESIGN section 4.

use crate::app::AppState;
use crate::ingest::{self, Incoming, IngestResult};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The answer to an authenticated delivery (DESIGN section 4).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WebhookResponse {
    /// ok, duplicate, ignored, logged-no-mint or error.
    pub status: String,
    pub delivery_id: String,
    /// Only when a license was minted or found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_key: Option<String>,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// Receive a webhook delivery from a storefront or payment provider.
#[utoipa::path(post, path = "/webhooks/{endpoint}", tag = "webhooks",
    params(("endpoint" = String, Path, description = "the endpoint name from the config")),
    request_body(content = String, description = "the provider's raw body", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = WebhookResponse, description = "authenticated; see `status`"),
        (status = 401, description = "bad signature, missing headers or stale timestamp"),
        (status = 404, description = "unknown endpoint, or wrong URL secret"),
        (status = 413, description = "body over the cap"),
        (status = 503, description = "could not record or apply; retry")))]
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if state.config.endpoint(&endpoint).is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "bad_request"
            };
            return (
                status,
                Json(json!({ "error": rejection.body_text(), "code": code })),
            )
                .into_response();
        }
    };
    let mut map = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_string())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let forwarded = state
        .config
        .server
        .trust_forwarded_for
        .then(|| {
            map.get("x-forwarded-for")
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_string())
        })
        .flatten();
    let incoming = Incoming {
        endpoint,
        request_id: map.get("x-request-id").cloned(),
        source_ip: forwarded.or_else(|| Some(peer.ip().to_string())),
        headers: map,
        query: uri.query().map(str::to_string),
        path: uri.path().to_string(),
        body: body.to_vec(),
    };
    respond(ingest::ingest(&state, incoming).await)
}

/// Maps an ingest result onto the response contract.
pub fn respond(result: IngestResult) -> Response {
    match result {
        IngestResult::NotFound => StatusCode::NOT_FOUND.into_response(),
        IngestResult::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "unauthorized", "code": "unauthorized" })),
        )
            .into_response(),
        IngestResult::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "5")],
            Json(json!({ "error": "temporarily unavailable; retry", "code": "unavailable" })),
        )
            .into_response(),
        IngestResult::Done {
            delivery_id,
            applied,
        } => {
            let body = WebhookResponse {
                status: applied.response_status().to_string(),
                license_key: applied.license_key().map(str::to_string),
                delivery_id,
            };
            (StatusCode::OK, Json(body)).into_response()
        }
    }
}
