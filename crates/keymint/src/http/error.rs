//! The HTTP error type. Only variants meant for the client say anything;
//! everything else is logged and answered as an opaque 500. A database
//! outage is a 503, never a 4xx, so senders retry.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

pub use crate::views::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing, wrong or revoked credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// 403: the token lacks a scope.
    #[error("this token lacks the `{0}` scope")]
    Forbidden(&'static str),
    /// 404 with a JSON body naming what was not found.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 415: the body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but not acceptable.
    #[error("{0}")]
    Unprocessable(String),
    /// 503: the database cannot be reached; retry later. The only 503: a
    /// missing setting is permanent until an operator acts, so it is a
    /// 4xx with its own code (`refunds_not_configured`), never an answer
    /// that invites retries (docs/architecture.md, "Rules").
    #[error("service temporarily unavailable")]
    Unavailable,
    /// 500: logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// A client error with its own status and a code more precise than
    /// the status gives (`license_revoked`, `order_id_conflict`, ...).
    #[error("{message}")]
    Coded {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn coded(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::Coded {
            status,
            code,
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with (the console's pages
    /// answer an admin refusal with the same one).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Coded { status, .. } => *status,
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unprocessable(_) => "unprocessable",
            Self::Unavailable => "unavailable",
            Self::Internal(_) => "internal",
            Self::Coded { code, .. } => code,
        }
    }
}

/// The generic code for an error status, for answers made outside the
/// handlers (a method not allowed, a body over the limit).
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::store::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<crate::views::Corrupt> for ApiError {
    fn from(e: crate::views::Corrupt) -> Self {
        Self::Internal(e.into())
    }
}

impl From<crate::views::LoadError> for ApiError {
    fn from(e: crate::views::LoadError) -> Self {
        match e {
            crate::views::LoadError::Database(e) => e.into(),
            crate::views::LoadError::Corrupt(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(e) = &self {
            tracing::error!(error = ?e, "internal error");
        }
        let status = self.status();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
                code: self.code().to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        // Only the admin API's bearer tokens: a webhook's 401 is about its
        // signature, which no `WWW-Authenticate` scheme describes.
        if matches!(self, Self::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Turns an error answer that is not JSON (a method not allowed, a path
/// or body the framework refused) into the JSON error shape, keeping its
/// status and headers such as `Allow`.
pub(crate) async fn json_errors(req: Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        // A content type that is not text is not JSON either.
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        // An unreadable framework message falls back to the status's name.
        .unwrap_or_default();
    let error = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut out = (
        status,
        Json(ErrorBody {
            error,
            code: code_for_status(status).to_string(),
        }),
    )
        .into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// `Query<T>` whose rejections (an unknown parameter when `T` denies
/// them, a value of the wrong type) answer 400 in the JSON error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// `Json<T>` whose rejections (bad syntax, wrong shape, wrong content type)
/// answer in the same JSON error shape as every other error.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::from_request(req, state)
            .await
            .map_err(json_rejection)?;
        Ok(Self(v))
    }
}

/// A JSON body's rejection as the error every other answer uses.
fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::Unprocessable(e.body_text()),
        JsonRejection::MissingJsonContentType(e) => ApiError::UnsupportedMediaType(e.body_text()),
        // The body limit (`server.max_body_bytes`) is a 413, as the
        // framework itself answers it elsewhere.
        e if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::coded(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the body is over server.max_body_bytes",
        ),
        e => ApiError::BadRequest(e.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_database_is_a_retryable_503() {
        let down = ApiError::Unavailable.into_response();
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(down.headers().contains_key(header::RETRY_AFTER));
        let missing = ApiError::from(crate::admin::AdminError::RefundsNotConfigured(
            "refunds not configured for gumroad".into(),
        ));
        assert_eq!(missing.code(), "refunds_not_configured");
        let resp = missing.into_response();
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        assert!(!resp.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn only_bearer_failures_name_the_bearer_scheme() {
        let admin = ApiError::Unauthorized.into_response();
        assert_eq!(admin.headers()[header::WWW_AUTHENTICATE], "Bearer");
        // A webhook's 401 is about its signature.
        let webhook = ApiError::coded(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized")
            .into_response();
        assert!(!webhook.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
