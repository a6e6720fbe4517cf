//! `/admin/v1/subscriptions`: listing subscriptions and one subscription
//! with its history.

use super::Admin;
use super::params::{Paging, check_text, filter_text, status_filter};
use crate::admin::scope;
use crate::app::AppState;
use crate::http::ApiError;
use crate::http::error::{ApiQuery, ErrorBody};
use crate::store::{self, licenses};
use crate::subscriptions::Status;
use crate::views::{SubscriptionDetail, SubscriptionPage};
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_subscriptions))
        .routes(routes!(show_subscription))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SubscriptionQuery {
    status: Option<String>,
    endpoint: Option<String>,
    /// Buyer email, case-insensitive.
    email: Option<String>,
    before: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// List subscriptions, newest first.
#[utoipa::path(get, path = "/admin/v1/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    params(SubscriptionQuery),
    responses((status = 200, body = SubscriptionPage), (status = 400, body = ErrorBody)))]
async fn list_subscriptions(
    admin: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SubscriptionQuery>,
) -> Result<Json<SubscriptionPage>, ApiError> {
    admin.require(scope::LICENSES_READ)?;
    let status = status_filter(q.status, &Status::ALL, Status::as_str)?;
    let endpoint = filter_text("endpoint", q.endpoint)?;
    let email = filter_text("email", q.email)?.map(|e| e.to_lowercase());
    let page = Paging::parse("sub", q.before, q.limit)?;
    let filter = store::subscriptions::Filter {
        status,
        endpoint,
        email,
        before: page.before.clone(),
        limit: page.limit,
    };
    let mut conn = state.store.conn().await?;
    let rows = store::subscriptions::search(&mut conn, &filter).await?;
    let next_before = page.next(&rows, |s| s.subscription.id.as_str());
    Ok(Json(SubscriptionPage {
        subscriptions: rows.into_iter().map(Into::into).collect(),
        next_before,
    }))
}

/// One subscription (by keymint id or the provider's id) with its history.
#[utoipa::path(get, path = "/admin/v1/subscriptions/{id}", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SubscriptionDetail), (status = 404, body = ErrorBody)))]
async fn show_subscription(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionDetail>, ApiError> {
    admin.require(scope::LICENSES_READ)?;
    check_text("id", &id)?;
    let mut conn = state.store.conn().await?;
    let row = store::subscriptions::get(&mut conn, &id)
        .await?
        .ok_or(ApiError::NotFound("subscription"))?;
    let events = store::subscriptions::history(&mut conn, &row.subscription.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let license_history = match &row.subscription.license_id {
        Some(l) => licenses::history(&mut conn, l)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(SubscriptionDetail {
        subscription: row.into(),
        events,
        license_history,
    }))
}
