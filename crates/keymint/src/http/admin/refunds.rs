//! `POST /admin/v1/licenses/{key}/refund`: operator refunds through the
//! license's provider.

use super::Admin;
use super::params::{optional_json, parse_key};
use crate::admin::{self, scope};
use crate::app::AppState;
use crate::http::ApiError;
use crate::http::error::ErrorBody;
use crate::views::RefundOut;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(refund))
}

/// An operator's refund request.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// Minor units; absent for a full refund.
    amount_cents: Option<i64>,
    reason: Option<String>,
}

/// Refund the license's payment through its provider. The refund stays
/// `pending` (license suspended) until the provider's webhook or the
/// reconciler settles it.
#[utoipa::path(post, path = "/admin/v1/licenses/{key}/refund", tag = "licenses", security(("bearer" = [])),
    params(("key" = String, Path, description = "license key PREFIX-TIER-XXXXX-XXXXX-XXXXX-XXXXX (prefix and tier 1-16 letters or digits, then four groups of five Crockford base32 characters; any case, O reads as 0, I and L as 1)")), request_body = RefundBody,
    responses((status = 202, body = RefundOut), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the license is already revoked (`license_revoked`), or its endpoint has no refund API configured (`refunds_not_configured`)"),
              (status = 422, body = ErrorBody, description = "the amount is not positive (`invalid_amount`)")))]
async fn refund(
    admin: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RefundOut>), ApiError> {
    admin.require(scope::LICENSES_WRITE)?;
    let key = parse_key(&key)?;
    // An empty body is a full refund.
    let req: RefundBody = optional_json(&body)?;
    let r = admin::request_refund(
        &state,
        &key,
        req.amount_cents,
        req.reason.as_deref(),
        &admin.actor(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(r.into())))
}
