//! `/admin/v1/deliveries`: the webhook delivery log, one delivery in full,
//! and replays (one, or every failed one).

use super::Admin;
use super::params::{
    Paging, cursor, filter_text, optional_json, optional_time, path_id, status_filter,
};
use crate::admin::scope;
use crate::app::AppState;
use crate::domain::{DeliveryId, DeliveryStatus};
use crate::http::ApiError;
use crate::http::error::{ApiQuery, ErrorBody};
use crate::http::webhooks::respond;
use crate::ingest::{self, ReplayError, ReplaySummary};
use crate::store::deliveries;
use crate::views::{DeliveryOut, DeliveryPage, WebhookResponse};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .routes(routes!(show_delivery))
        .routes(routes!(replay))
        .routes(routes!(replay_failed))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    endpoint: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// List deliveries, newest first. `since`/`until`: RFC 3339 or an age like `24h`.
#[utoipa::path(get, path = "/admin/v1/deliveries", tag = "deliveries", security(("bearer" = [])),
    params(DeliveryQuery),
    responses((status = 200, body = DeliveryPage), (status = 400, body = ErrorBody)))]
async fn list_deliveries(
    admin: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    admin.require(scope::DELIVERIES_READ)?;
    let status = status_filter(q.status, DeliveryStatus::ALL, DeliveryStatus::as_str)?;
    let endpoint = filter_text("endpoint", q.endpoint)?;
    let since = optional_time(q.since.as_deref())?;
    let until = optional_time(q.until.as_deref())?;
    let page = Paging::parse("dlv", q.before, q.limit)?;
    let filter = deliveries::Filter {
        endpoint,
        status,
        since,
        until,
        before: page.before.clone(),
        limit: page.limit,
    };
    let mut conn = state.store.conn().await?;
    let rows = deliveries::list(&mut conn, &filter).await?;
    let next_before = page.next(&rows, |d| d.id.as_str());
    Ok(Json(DeliveryPage {
        deliveries: rows.into_iter().map(DeliveryOut::summary).collect(),
        next_before,
    }))
}

/// One delivery with its path, headers (secrets redacted) and body.
#[utoipa::path(get, path = "/admin/v1/deliveries/{id}", tag = "deliveries", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = DeliveryOut), (status = 404, body = ErrorBody)))]
async fn show_delivery(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryOut>, ApiError> {
    admin.require(scope::DELIVERIES_READ)?;
    let id: DeliveryId = path_id("delivery", &id)?;
    let mut conn = state.store.conn().await?;
    let d = deliveries::get(&mut conn, &id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    Ok(Json(DeliveryOut::full(d)?))
}

/// Re-run a stored delivery through the current code and catalog.
#[utoipa::path(post, path = "/admin/v1/deliveries/{id}/replay", tag = "deliveries", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = WebhookResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn replay(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin.require(scope::DELIVERIES_WRITE)?;
    let id: DeliveryId = path_id("delivery", &id)?;
    match ingest::replay(&state, &id).await {
        Ok(result) => Ok(respond(result)),
        Err(ReplayError::NotFound) => Err(ApiError::NotFound("delivery")),
        Err(e @ (ReplayError::NotAuthentic(_) | ReplayError::UnknownEndpoint(_))) => {
            Err(ApiError::Conflict(e.to_string()))
        }
        Err(ReplayError::Database(e)) => Err(e.into()),
    }
}

/// Which failed deliveries to replay.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct BulkReplay {
    /// Only this endpoint's.
    endpoint: Option<String>,
    /// Received since: RFC 3339 or an age such as `24h`.
    since: Option<String>,
    /// Continue after this delivery id (a previous answer's `next_after`).
    after: Option<String>,
    /// At most this many (default 500, at most 5000).
    #[schema(minimum = 1, maximum = 5000)]
    limit: Option<usize>,
}

/// Replay every failed, authentic delivery (oldest first) through the
/// current code and catalog; answers how each ended. The body is optional.
#[utoipa::path(post, path = "/admin/v1/deliveries/replay", tag = "deliveries", security(("bearer" = [])),
    request_body(content = BulkReplay, description = "optional: every field has a default"),
    responses((status = 200, body = ReplaySummary), (status = 400, body = ErrorBody)))]
async fn replay_failed(
    admin: Admin,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<ReplaySummary>, ApiError> {
    admin.require(scope::DELIVERIES_WRITE)?;
    let req: BulkReplay = optional_json(&body)?;
    // The documented default (docs/admin-api.md), not a hidden one.
    let limit = req.limit.unwrap_or(500);
    if !(1..=5000).contains(&limit) {
        return Err(ApiError::coded(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit {limit} must be between 1 and 5000"),
        ));
    }
    let filter = ingest::ReplayFilter {
        endpoint: filter_text("endpoint", req.endpoint)?,
        since: optional_time(req.since.as_deref())?,
        after: cursor("after", "dlv", req.after)?,
        limit: Some(limit),
    };
    match ingest::replay_failed(&state, &filter, |_, _| {}).await {
        Ok(summary) => {
            state.outbox_wake.notify_one();
            Ok(Json(summary))
        }
        Err(ReplayError::Database(e)) => Err(e.into()),
        Err(e) => Err(ApiError::Conflict(e.to_string())),
    }
}
