//! `/admin/v1/orders`: the orders keymint's checkout started, and one
//! order with its history (docs/checkout.md).

use super::Admin;
use super::params::{Paging, filter_text, status_filter};
use crate::admin::scope;
use crate::app::AppState;
use crate::domain::{OrderId, OrderStatus};
use crate::http::ApiError;
use crate::http::error::{ApiQuery, ErrorBody};
use crate::store::orders;
use crate::views::{OrderDetail, OrderOut, OrderPage};
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders))
        .routes(routes!(show_order))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct OrderQuery {
    /// pending_payment, paid, failed or expired.
    status: Option<String>,
    /// Catalog product id.
    product: Option<String>,
    /// Buyer email, case-insensitive.
    email: Option<String>,
    before: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// List orders, newest first.
#[utoipa::path(get, path = "/admin/v1/orders", tag = "orders", security(("bearer" = [])),
    params(OrderQuery),
    responses((status = 200, body = OrderPage), (status = 400, body = ErrorBody)))]
async fn list_orders(
    admin: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<OrderQuery>,
) -> Result<Json<OrderPage>, ApiError> {
    admin.require(scope::LICENSES_READ)?;
    let status = status_filter(q.status, OrderStatus::ALL, OrderStatus::as_str)?;
    let page = Paging::parse(OrderId::PREFIX, q.before, q.limit)?;
    let filter = orders::Filter {
        status,
        product: filter_text("product", q.product)?,
        email: filter_text("email", q.email)?,
        before: page.before.clone(),
        limit: page.limit,
    };
    let mut conn = state.store.conn().await?;
    let rows = orders::search(&mut conn, &filter).await?;
    let next_before = page.next(&rows, |o| o.id.as_str());
    let mut out = Vec::with_capacity(rows.len());
    for o in rows {
        out.push(OrderOut::load(&mut conn, o).await?);
    }
    Ok(Json(OrderPage {
        orders: out,
        next_before,
    }))
}

/// One order with its history: created, the provider's checkout, and how
/// it ended (with the delivery that settled it).
#[utoipa::path(get, path = "/admin/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = OrderDetail), (status = 404, body = ErrorBody)))]
async fn show_order(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderDetail>, ApiError> {
    admin.require(scope::LICENSES_READ)?;
    let id = OrderId::parse(&id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut conn = state.store.conn().await?;
    let order = orders::get(&mut conn, &id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    let history = orders::history(&mut conn, &id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(OrderDetail {
        order: OrderOut::load(&mut conn, order).await?,
        history,
    }))
}
