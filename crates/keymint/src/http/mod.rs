//! HTTP: the router and its handlers. Handlers parse requests into types,
//! call into the dispatcher or the store, and map results to responses.

pub mod admin;
pub mod checkout;
pub mod console;
pub mod error;
pub mod licensing;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod portal;
pub mod public;
pub mod webhooks;

use crate::app::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use error::ApiError;

/// The client's address: the peer, or behind `server.trust_forwarded_for`
/// the last `X-Forwarded-For` entry. The last is the one our proxy
/// appended (the peer it saw); the ones before it are whatever the client
/// sent, so taking the first would let a client choose its own address
/// and dodge the per-address limits.
pub(crate) fn client_ip(
    server: &crate::config::ServerConfig,
    headers: &axum::http::HeaderMap,
    peer: std::net::SocketAddr,
) -> String {
    let forwarded = server.trust_forwarded_for.then(|| {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
    });
    forwarded
        .flatten()
        .map_or_else(|| peer.ip().to_string(), |ip| ip.to_string())
}

/// The caller's address of a request's parts (see [`client_ip`]), for the
/// public routes' per-address limits.
pub(crate) async fn caller_address(
    parts: &mut axum::http::request::Parts,
    state: &AppState,
) -> Result<String, axum::response::Response> {
    use axum::extract::{ConnectInfo, FromRequestParts};
    let ConnectInfo(peer) = ConnectInfo::<std::net::SocketAddr>::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(client_ip(&state.config.server, &parts.headers, peer))
}

/// Request ids are ULIDs unless the caller sent `x-request-id`.
#[derive(Clone, Copy, Default)]
struct UlidRequestId;

impl MakeRequestId for UlidRequestId {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        // A ULID is always a valid header value; the trait asks for an Option.
        HeaderValue::from_str(&ulid::Ulid::generate().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// Every route with its OpenAPI description: served and documented from
/// one registration, so the two cannot drift apart.
pub fn api() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    utoipa_axum::router::OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(webhooks::routes())
        .merge(public::routes())
        .merge(licensing::routes())
        .merge(checkout::routes())
        .merge(admin::routes())
        .merge(ops::routes())
        .merge(openapi::routes())
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.server.max_body_bytes;
    let timeout = state.config.server.request_timeout;
    let (routes, _) = api().split_for_parts();
    routes
        .merge(console::routes(state.config.console.enabled))
        .merge(portal::routes(state.config.portal.enabled))
        .fallback(no_such_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        // Only the checkout routes answer other origins (a seller's page).
        .layer(checkout::cors(&state.config.checkout))
        .layer(middleware::from_fn(record_metrics))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(middleware::from_fn(timeout_json))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    // The id is set by the layer below; a span without one
                    // still logs the request.
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                // The route's template, never the path: paths carry license
                // keys and machine fingerprints, query strings secrets.
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                tracing::info_span!("request", method = %req.method(), route = %route, request_id = %id)
            })
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(UlidRequestId))
        .with_state(state)
}

/// Any path no route serves: a JSON 404 with a code, like every error.
async fn no_such_route() -> ApiError {
    ApiError::coded(
        axum::http::StatusCode::NOT_FOUND,
        "no_such_route",
        "no such route (see /openapi.json)",
    )
}

/// The timeout layer answers an empty 408; give it the JSON error shape
/// and its code like every other error (docs/admin-api.md, "Errors").
async fn timeout_json(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() != axum::http::StatusCode::REQUEST_TIMEOUT
        || resp
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
    {
        return resp;
    }
    ApiError::coded(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        "timeout",
        "the request took longer than server.request_timeout",
    )
    .into_response()
}

/// A known path asked with a method it does not serve.
async fn method_not_allowed() -> ApiError {
    ApiError::coded(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method (see /openapi.json)",
    )
}

/// A method as a metric label: the known methods by name, anything made up
/// as `other`, so a client cannot grow the label set (every label comes
/// from a fixed set; the route is the matched template, never the path).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    metrics::histogram!(
        "keymint_http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => resp.status().as_u16().to_string()
    )
    .record(start.elapsed().as_secs_f64());
    resp
}
