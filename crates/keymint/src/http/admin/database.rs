//! `/admin/v1/database`: the durability settings in force, read from the
//! connection that commits writes (docs/operations.md, "Durability").

use super::Admin;
use crate::admin::scope;
use crate::app::AppState;
use crate::http::ApiError;
use crate::http::error::{ApiQuery, ErrorBody};
use crate::store::Durability;
use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show_database))
}

/// This endpoint takes no query parameters: one is a mistake worth a 400.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

/// The database's durability settings as it reports them, and what the
/// group committer has done since start.
#[utoipa::path(get, path = "/admin/v1/database", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = Durability), (status = 400, body = ErrorBody)))]
async fn show_database(
    admin: Admin,
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<Json<Durability>, ApiError> {
    admin.require(scope::ADMIN)?;
    Ok(Json(state.store.durability().await?))
}
