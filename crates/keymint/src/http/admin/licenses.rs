//! `/admin/v1/licenses`: manual mints, search, one license's detail,
//! revocation, reinstatement and email resends.

use super::Admin;
use super::params::{KeyPath, Paging, filter_text, optional_json, parse_key, status_filter};
use crate::admin::license_detail;
use crate::admin::{self, AdminError, ManualMint, scope};
use crate::app::AppState;
use crate::http::ApiError;
use crate::http::error::{ApiJson, ApiQuery, ErrorBody};
use crate::store::licenses;
use crate::views::{LicenseDetail, LicenseOne, LicenseOut, LicensePage, MintedOut, Queued};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(mint, search))
        .routes(routes!(show))
        .routes(routes!(revoke))
        .routes(routes!(reinstate))
        .routes(routes!(resend))
}

/// Mint a license by hand and queue its email.
#[utoipa::path(post, path = "/admin/v1/licenses", tag = "licenses", security(("bearer" = [])),
    request_body = ManualMint,
    responses((status = 201, body = MintedOut, description = "minted"),
              (status = 200, body = MintedOut, description = "already minted for this order_id"),
              (status = 409, body = ErrorBody, description = "the order id was minted by another source (`order_id_taken`), or with other details (`order_id_conflict`)"),
              (status = 401), (status = 403), (status = 422, body = ErrorBody)))]
async fn mint(
    admin: Admin,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ManualMint>,
) -> Result<Response, ApiError> {
    admin.require(scope::LICENSES_WRITE)?;
    let (license, created) = admin::mint_manual(&state, &req, &admin.actor()).await?;
    if created {
        state.outbox_wake.notify_one();
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = MintedOut {
        created,
        license: license.try_into()?,
    };
    Ok((status, Json(body)).into_response())
}

/// A license with its history and emails.
#[utoipa::path(get, path = "/admin/v1/licenses/{key}", tag = "licenses", security(("bearer" = [])),
    params(KeyPath),
    responses((status = 200, body = LicenseDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show(
    admin: Admin,
    State(state): State<AppState>,
    Path(KeyPath { key }): Path<KeyPath>,
) -> Result<Json<LicenseDetail>, ApiError> {
    admin.require(scope::LICENSES_READ)?;
    let key = parse_key(&key)?;
    license_detail(&state.store, &key)
        .await?
        .map(Json)
        .ok_or_else(|| AdminError::NotFound.into())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    /// Part of the buyer's email, case-insensitive.
    email: Option<String>,
    /// The order id, exactly.
    order_id: Option<String>,
    /// Free text: part of the key, email, order id or name, case-insensitive.
    q: Option<String>,
    product: Option<String>,
    status: Option<String>,
    /// A previous page's `next_before`.
    before: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Search licenses, newest first.
#[utoipa::path(get, path = "/admin/v1/licenses", tag = "licenses", security(("bearer" = [])),
    params(SearchQuery),
    responses((status = 200, body = LicensePage), (status = 400, body = ErrorBody)))]
async fn search(
    admin: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<LicensePage>, ApiError> {
    admin.require(scope::LICENSES_READ)?;
    let status = status_filter(
        q.status,
        licenses::LicenseStatus::ALL,
        licenses::LicenseStatus::as_str,
    )?;
    let email = filter_text("email", q.email)?.map(|e| e.to_lowercase());
    let order_id = filter_text("order_id", q.order_id)?;
    let text = filter_text("q", q.q)?.map(|t| t.to_lowercase());
    let product = filter_text("product", q.product)?;
    let page = Paging::parse("lic", q.before, q.limit)?;
    let filter = licenses::Filter {
        email,
        order_id,
        q: text,
        product,
        status,
        before: page.before.clone(),
        limit: page.limit,
    };
    let mut conn = state.store.conn().await?;
    let rows = licenses::search(&mut conn, &filter).await?;
    let next_before = page.next(&rows, |l| l.id.as_str());
    let licenses = rows
        .into_iter()
        .map(LicenseOut::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Json(LicensePage {
        licenses,
        next_before,
    }))
}

/// Why a license changes state.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: String,
}

async fn change_status(
    admin: Admin,
    state: AppState,
    key: String,
    body: ReasonBody,
    revoke: bool,
) -> Result<Json<LicenseOne>, ApiError> {
    admin.require(scope::LICENSES_WRITE)?;
    let key = parse_key(&key)?;
    let license =
        admin::set_status(&state.store, &key, revoke, &body.reason, &admin.actor()).await?;
    Ok(Json(LicenseOne {
        license: license.try_into()?,
    }))
}

/// Revoke a license.
#[utoipa::path(post, path = "/admin/v1/licenses/{key}/revoke", tag = "licenses", security(("bearer" = [])),
    params(KeyPath), request_body = ReasonBody,
    responses((status = 200, body = LicenseOne), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn revoke(
    admin: Admin,
    State(state): State<AppState>,
    Path(KeyPath { key }): Path<KeyPath>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<LicenseOne>, ApiError> {
    change_status(admin, state, key, body, true).await
}

/// Reinstate a revoked or suspended license.
#[utoipa::path(post, path = "/admin/v1/licenses/{key}/reinstate", tag = "licenses", security(("bearer" = [])),
    params(KeyPath), request_body = ReasonBody,
    responses((status = 200, body = LicenseOne), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reinstate(
    admin: Admin,
    State(state): State<AppState>,
    Path(KeyPath { key }): Path<KeyPath>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<LicenseOne>, ApiError> {
    change_status(admin, state, key, body, false).await
}

/// Options of a resend.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ResendBody {
    /// Send even though the license is revoked (recorded in its history).
    #[serde(default)]
    force: bool,
}

/// Queue the license email again; a revoked license only with `force`.
#[utoipa::path(post, path = "/admin/v1/licenses/{key}/resend", tag = "licenses", security(("bearer" = [])),
    params(KeyPath), request_body(content = ResendBody, description = "optional"),
    responses((status = 202, body = Queued, description = "queued"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the license is revoked")))]
async fn resend(
    admin: Admin,
    State(state): State<AppState>,
    Path(KeyPath { key }): Path<KeyPath>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    admin.require(scope::LICENSES_WRITE)?;
    let key = parse_key(&key)?;
    let req: ResendBody = optional_json(&body)?;
    admin::resend(&state.store, &key, req.force, &admin.actor()).await?;
    state.outbox_wake.notify_one();
    let queued = Queued {
        status: "queued".into(),
    };
    Ok((StatusCode::ACCEPTED, Json(queued)))
}
