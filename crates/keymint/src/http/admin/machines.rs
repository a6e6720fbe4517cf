//! `/admin/v1/licenses/{key}/machines` and the seat limit: an operator
//! lists, deactivates (never budgeted) and resets a license's machines
//! ("I reinstalled my computer"), and sets one license's `max_machines`.
//! Each change is in the license's history with the operator as actor.

use super::Admin;
use super::params::{KeyPath, optional_json, parse_key, path_id};
use crate::admin::scope;
use crate::app::AppState;
use crate::domain::MachineId;
use crate::http::ApiError;
use crate::http::error::{ApiJson, ApiQuery, ErrorBody};
use crate::licensing::LicensingError;
use crate::views::LicenseOne;
use crate::views::licensing::{MachinesOut, ResetOut};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list_machines))
        .routes(routes!(admin_deactivate_machine))
        .routes(routes!(admin_reset_machines))
        .routes(routes!(admin_set_max_machines))
}

impl From<LicensingError> for ApiError {
    fn from(e: LicensingError) -> Self {
        match e {
            LicensingError::NotFound => ApiError::coded(
                StatusCode::NOT_FOUND,
                "license_not_found",
                "no license has this key",
            ),
            LicensingError::NotActivated => ApiError::coded(
                StatusCode::NOT_FOUND,
                "machine_not_found",
                "the license has no machine with this id",
            ),
            LicensingError::Invalid(m) => {
                ApiError::coded(StatusCode::UNPROCESSABLE_ENTITY, "invalid_max_machines", m)
            }
            LicensingError::Database(e) => e.into(),
            other => ApiError::Internal(other.into()),
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct MachineIdPath {
    /// The license key.
    key: String,
    /// The machine's id (`mch_...`).
    id: String,
}

/// No query parameters, no body fields: anything sent is a mistake the
/// caller hears about, as on every admin route.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

/// A license's machines.
#[utoipa::path(get, path = "/admin/v1/licenses/{key}/machines", tag = "licenses", security(("bearer" = [])),
    params(KeyPath),
    responses((status = 200, body = MachinesOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn admin_list_machines(
    admin: Admin,
    State(state): State<AppState>,
    Path(KeyPath { key }): Path<KeyPath>,
    ApiQuery(Nothing {}): ApiQuery<Nothing>,
) -> Result<Json<MachinesOut>, ApiError> {
    admin.require(scope::LICENSES_READ)?;
    let key = parse_key(&key)?;
    let (license, list) = state.licensing.machines(&key).await?;
    Ok(Json(MachinesOut::new(&license, &list)))
}

/// Deactivate one machine (not counted against the buyer's budget).
#[utoipa::path(delete, path = "/admin/v1/licenses/{key}/machines/{id}", tag = "licenses", security(("bearer" = [])),
    params(MachineIdPath),
    responses((status = 204, description = "deactivated"), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "`license_not_found` or `machine_not_found`")))]
async fn admin_deactivate_machine(
    admin: Admin,
    State(state): State<AppState>,
    Path(MachineIdPath { key, id }): Path<MachineIdPath>,
) -> Result<StatusCode, ApiError> {
    admin.require(scope::LICENSES_WRITE)?;
    let key = parse_key(&key)?;
    // A control character is the 400 every admin path gives it; an id
    // that is not a machine id names no machine.
    let id: MachineId = path_id("machine", &id).map_err(|e| match e {
        ApiError::NotFound(_) => LicensingError::NotActivated.into(),
        other => other,
    })?;
    state
        .licensing
        .operator_deactivate(&key, &id, &admin.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivate every machine of a license.
#[utoipa::path(post, path = "/admin/v1/licenses/{key}/machines/reset", tag = "licenses", security(("bearer" = [])),
    params(KeyPath),
    responses((status = 200, body = ResetOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn admin_reset_machines(
    admin: Admin,
    State(state): State<AppState>,
    Path(KeyPath { key }): Path<KeyPath>,
    body: axum::body::Bytes,
) -> Result<Json<ResetOut>, ApiError> {
    admin.require(scope::LICENSES_WRITE)?;
    let Nothing {} = optional_json(&body)?;
    let key = parse_key(&key)?;
    let deactivated = state.licensing.reset(&key, &admin.actor()).await?;
    Ok(Json(ResetOut { deactivated }))
}

/// One license's seat limit.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxMachinesBody {
    /// At least 1, or `null` for unlimited.
    #[serde(deserialize_with = "present")]
    max_machines: Option<u32>,
}

/// `max_machines` must be given, even as `null`: a missing field is not
/// "unlimited".
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<u32>::deserialize(d)
}

/// Set one license's seat limit (its token is signed again to say so).
#[utoipa::path(put, path = "/admin/v1/licenses/{key}/max-machines", tag = "licenses", security(("bearer" = [])),
    params(KeyPath), request_body = MaxMachinesBody,
    responses((status = 200, body = LicenseOne), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn admin_set_max_machines(
    admin: Admin,
    State(state): State<AppState>,
    Path(KeyPath { key }): Path<KeyPath>,
    ApiJson(body): ApiJson<MaxMachinesBody>,
) -> Result<Json<LicenseOne>, ApiError> {
    admin.require(scope::LICENSES_WRITE)?;
    let key = parse_key(&key)?;
    let mut conn = state.store.conn().await?;
    let product = crate::store::licenses::by_key(&mut conn, &key)
        .await?
        .and_then(|l| state.catalog.product(&l.product).cloned());
    drop(conn);
    let include_email = product.is_some_and(|p| p.include_email);
    let license = state
        .licensing
        .set_max_machines(&key, body.max_machines, include_email, &admin.actor())
        .await?;
    Ok(Json(LicenseOne {
        license: license.try_into()?,
    }))
}
