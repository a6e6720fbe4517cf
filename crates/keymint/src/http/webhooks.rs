//! `POST /webhooks/{endpoint}`: hands the raw request to ingest and maps
//! the result onto the response contract (docs/architecture.md, "Rules":
//! once authentic, always 2xx; only an unreachable database is a 503).
//! Errors go through `ApiError` like every other route's.

use crate::app::AppState;
use crate::http::ApiError;
use crate::http::error::ErrorBody;
use crate::ingest::{self, Incoming, IngestResult};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use crate::views::WebhookResponse;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// Receive a webhook delivery from a storefront or payment provider.
#[utoipa::path(post, path = "/webhooks/{endpoint}", tag = "webhooks",
    params(("endpoint" = String, Path, description = "the endpoint name from the config")),
    request_body(content = String, description = "the provider's raw body", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = WebhookResponse, description = "authenticated; see `status`"),
        (status = 401, body = ErrorBody, description = "bad signature, missing headers or stale timestamp (`unauthorized`)"),
        (status = 404, description = "unknown endpoint, or wrong URL secret: an empty body, the same for both"),
        (status = 413, body = ErrorBody, description = "body over the cap (`payload_too_large`)"),
        (status = 503, body = ErrorBody, description = "could not record or apply; retry (`unavailable`)")))]
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if state.config.endpoint(&endpoint).is_none() {
        return no_endpoint();
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            // `payload_too_large`, not the admin API's `body_too_large`:
            // senders have seen this code since the first release.
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "bad_request"
            };
            return ApiError::coded(status, code, rejection.body_text()).into_response();
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
    let incoming = Incoming {
        endpoint,
        request_id: map.get("x-request-id").cloned(),
        source_ip: Some(crate::http::client_ip(&state.config.server, &headers, peer)),
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
        IngestResult::NotFound => no_endpoint(),
        // The same bare answer whatever failed: nothing for a prober.
        IngestResult::Unauthorized => {
            ApiError::coded(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized")
                .into_response()
        }
        IngestResult::Unavailable => ApiError::coded(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "temporarily unavailable; retry",
        )
        .into_response(),
        IngestResult::Done {
            delivery_id,
            applied,
        } => {
            let body = WebhookResponse {
                status: applied.response_status().to_string(),
                license_key: applied.license_key().cloned(),
                delivery_id,
            };
            (StatusCode::OK, Json(body)).into_response()
        }
    }
}

/// An unknown endpoint and a wrong URL secret answer alike, with an empty
/// 404: nothing tells a prober which endpoints exist, or that a Gumroad
/// URL secret was checked at all. The one webhook error without a JSON
/// body, on purpose.
fn no_endpoint() -> Response {
    StatusCode::NOT_FOUND.into_response()
}
