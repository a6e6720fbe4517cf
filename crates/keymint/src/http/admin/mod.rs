//! Admin API under `/admin/v1`, authenticated by bearer tokens that are
//! stored hashed and carry scopes. Every answer that is an error is JSON
//! with a `code`, whoever made it (a handler, an extractor, the router);
//! input text follows one rule on both databases (docs/architecture.md,
//! "Input text"). This file holds what every resource shares: the router,
//! the caller's authentication and the JSON error shape; each resource's
//! handlers live in their own file, the answers they give in `crate::views`.

mod database;
mod deliveries;
mod licenses;
mod machines;
mod orders;
pub(crate) mod params;
mod refunds;
mod subscriptions;

pub use params::parse_time;

use crate::admin::{self, AdminError, scope};
use crate::app::AppState;
use crate::http::ApiError;
use crate::store::{self, admin_tokens};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware;
use axum::routing::any;
use utoipa_axum::router::OpenApiRouter;

/// The admin routes; each is registered with its OpenAPI description, so
/// `/openapi.json` lists exactly what is served.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(licenses::routes())
        .merge(machines::routes())
        .merge(refunds::routes())
        .merge(orders::routes())
        .merge(deliveries::routes())
        .merge(subscriptions::routes())
        .merge(database::routes())
        // Not an API route: any other path under /admin answers a JSON 404.
        .route("/admin", any(no_such_route))
        .route("/admin/{*rest}", any(no_such_route))
        .layer(middleware::from_fn(crate::http::error::json_errors))
}

async fn no_such_route() -> ApiError {
    ApiError::coded(
        StatusCode::NOT_FOUND,
        "no_such_route",
        "no such admin route (see docs/admin-api.md)",
    )
}

/// The authenticated caller.
pub struct Admin {
    pub name: String,
    scopes: Vec<String>,
}

impl Admin {
    fn require(&self, needed: &'static str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == needed || s == scope::ADMIN) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(needed))
        }
    }

    fn actor(&self) -> String {
        format!("admin:{}", self.name)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            // A header that is not text holds no token of ours: 401.
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let mut conn = state.store.conn().await?;
        let row = admin_tokens::find_live(&mut conn, &admin::hash_token(token))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let now = store::now_ms();
        // Note use at most once a minute, so reads don't write.
        if row.last_used_at.is_none_or(|t| t.as_i64() < now - 60_000) {
            drop(conn);
            admin_tokens::touch(&mut *state.store.writer().await?, &row.id, now).await?;
        }
        Ok(Self {
            name: row.name,
            scopes: row.scopes.split_whitespace().map(str::to_string).collect(),
        })
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let code = e.code();
        match e {
            AdminError::UnknownProduct(_) | AdminError::Invalid { .. } => {
                ApiError::coded(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
            }
            AdminError::NotFound => {
                ApiError::coded(StatusCode::NOT_FOUND, code, "license not found")
            }
            AdminError::Conflict { code, message } => {
                ApiError::coded(StatusCode::CONFLICT, code, message)
            }
            // The only provider setting an admin action needs today is the
            // refund API key; a missing one is the operator's to fix, not a
            // reason to retry, so 409 rather than 503.
            AdminError::RefundsNotConfigured(m) => ApiError::coded(StatusCode::CONFLICT, code, m),
            AdminError::Database(e)
            | AdminError::Mint(crate::fulfilment::MintError::Database(e)) => e.into(),
            AdminError::Mint(e) => ApiError::Internal(e.into()),
        }
    }
}
