//! Admin API under `/admin/v1`, authenticated by bearer tokens that are
//! stored hashed and carry scopes. Every answer that is an error is JSON
//! with a `code`, whoever made it (a handler, an extractor, the router);
//! input text follows one rule on both databases (docs/architecture.md,
//! "Input text").

use crate::admin::{self, AdminError, ManualMint, scope};
use crate::app::AppState;
use crate::http::ApiError;
use crate::http::error::{ApiJson, ApiQuery, ErrorBody, code_for_status};
use crate::http::webhooks::respond;
use crate::ingest::{self, ReplayError};
use crate::store::deliveries::{self, Delivery};
use crate::store::licenses::{self, License, LicenseEvent};
use crate::store::{self, admin_tokens, outbox};
use axum::Json;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// `{"created", "license"}` from a manual mint.
#[derive(Serialize, ToSchema)]
pub struct MintedOut {
    pub created: bool,
    pub license: LicenseOut,
}

/// A license with its history and emails.
#[derive(Serialize, ToSchema)]
pub struct LicenseDetail {
    pub license: LicenseOut,
    pub history: Vec<HistoryOut>,
    pub emails: Vec<EmailOut>,
}

/// A page of licenses; pass `next_before` as `before` for the next page.
#[derive(Serialize, ToSchema)]
pub struct LicensePage {
    pub licenses: Vec<LicenseOut>,
    pub next_before: Option<String>,
}

/// One license.
#[derive(Serialize, ToSchema)]
pub struct LicenseOne {
    pub license: LicenseOut,
}

/// A page of deliveries; pass `next_before` as `before` for the next page.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryOut>,
    pub next_before: Option<String>,
}

/// The admin routes; each is registered with its OpenAPI description, so
/// `/openapi.json` lists exactly what is served.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(mint, search))
        .routes(routes!(show))
        .routes(routes!(revoke))
        .routes(routes!(reinstate))
        .routes(routes!(resend))
        .routes(routes!(refund))
        .routes(routes!(list_deliveries))
        .routes(routes!(show_delivery))
        .routes(routes!(replay))
        .routes(routes!(replay_failed))
        .routes(routes!(list_subscriptions))
        .routes(routes!(show_subscription))
        // Not an API route: any other path under /admin answers a JSON 404.
        .route("/admin", any(no_such_route))
        .route("/admin/{*rest}", any(no_such_route))
        .layer(middleware::from_fn(json_errors))
}

async fn no_such_route() -> ApiError {
    ApiError::coded(
        StatusCode::NOT_FOUND,
        "no_such_route",
        "no such admin route (see docs/admin-api.md)",
    )
}

/// Turns an error answer that is not JSON (a method not allowed, a path
/// or body the framework refused) into the JSON error shape, keeping its
/// status and headers such as `Allow`.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
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

/// A present filter or id value: not empty, and without control
/// characters (which PostgreSQL would refuse and SQLite would store).
fn filter_text(field: &'static str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "empty_filter",
            format!("{field} must not be empty; leave it out to match everything"),
        ));
    }
    check_text(field, value)?;
    Ok(Some(value.to_string()))
}

/// Refuses an identifier with a control character (400).
fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    crate::text::check_identifier(field, value)
        .map_err(|e| ApiError::coded(StatusCode::BAD_REQUEST, "control_character", e.to_string()))
}

/// A paging cursor: an id of the listed kind (`lic_...`), as a previous
/// page's `next_before` gave it.
fn cursor(field: &str, prefix: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let valid = value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|ulid| ulid::Ulid::from_string(ulid).is_ok());
    if !valid {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "bad_cursor",
            format!("{field} must be a {prefix}_... id as a previous answer gave it"),
        ));
    }
    Ok(Some(value))
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
        if row.last_used_at.is_none_or(|t| t < now - 60_000) {
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
            AdminError::NotConfigured(m) => ApiError::NotConfigured(m),
            AdminError::Database(e)
            | AdminError::Mint(crate::fulfilment::MintError::Database(e)) => e.into(),
            AdminError::Mint(e) => ApiError::Internal(e.into()),
        }
    }
}

/// A license as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct LicenseOut {
    pub id: String,
    pub key: String,
    pub product: String,
    pub tier: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub source: String,
    pub order_id: Option<String>,
    pub name: String,
    pub email: String,
    pub token: String,
    pub kid: String,
    pub issued_at: String,
    pub expires_at: Option<String>,
    pub max_machines: Option<i64>,
    pub entitlements: Vec<String>,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub test: bool,
    pub notes: Option<String>,
}

impl From<License> for LicenseOut {
    fn from(l: License) -> Self {
        Self {
            entitlements: serde_json::from_str(&l.entitlements).unwrap_or_default(),
            issued_at: store::format_ms(l.issued_at),
            expires_at: l.expires_at.map(store::format_ms),
            test: l.test != 0,
            id: l.id,
            key: l.key,
            product: l.product,
            tier: l.tier,
            status: l.status.to_string(),
            status_reason: l.status_reason,
            source: l.source,
            order_id: l.order_id,
            name: l.name,
            email: l.email,
            token: l.token,
            kid: l.kid,
            max_machines: l.max_machines,
            amount_cents: l.amount_cents,
            currency: l.currency,
            notes: l.notes,
        }
    }
}

/// One change in a license's life.
#[derive(Serialize, ToSchema)]
pub struct HistoryOut {
    at: String,
    action: String,
    from_status: Option<String>,
    to_status: String,
    reason: Option<String>,
    actor: String,
    delivery_id: Option<String>,
}

impl From<LicenseEvent> for HistoryOut {
    fn from(e: LicenseEvent) -> Self {
        Self {
            at: store::format_ms(e.at),
            action: e.action,
            from_status: e.from_status.map(|s| s.to_string()),
            to_status: e.to_status.to_string(),
            reason: e.reason,
            actor: e.actor,
            delivery_id: e.delivery_id,
        }
    }
}

/// An email about a license.
#[derive(Serialize, ToSchema)]
pub struct EmailOut {
    id: String,
    kind: String,
    to: String,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    sent_at: Option<String>,
}

impl From<outbox::OutboxRow> for EmailOut {
    fn from(r: outbox::OutboxRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            to: r.to_email,
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error,
            sent_at: r.sent_at.map(store::format_ms),
        }
    }
}

fn parse_key(key: &str) -> Result<String, ApiError> {
    key.parse::<keymint_license::LicenseKey>()
        .map(|k| k.to_string())
        .map_err(|e| ApiError::coded(StatusCode::BAD_REQUEST, "bad_license_key", e.to_string()))
}

/// A license with its history and emails, as the API and
/// `keymint license show` give it; None when no license has that key.
pub async fn license_detail(
    store: &store::Store,
    key: &str,
) -> Result<Option<LicenseDetail>, sqlx::Error> {
    let mut conn = store.conn().await?;
    let Some(license) = licenses::by_key(&mut conn, key).await? else {
        return Ok(None);
    };
    let history: Vec<HistoryOut> = licenses::history(&mut conn, &license.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let emails: Vec<EmailOut> = outbox::for_license(&mut conn, &license.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Some(LicenseDetail {
        license: license.into(),
        history,
        emails,
    }))
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
        license: license.into(),
    };
    Ok((status, Json(body)).into_response())
}

/// A license with its history and emails.
#[utoipa::path(get, path = "/admin/v1/licenses/{key}", tag = "licenses", security(("bearer" = [])),
    params(("key" = String, Path, description = "license key PREFIX-TIER-XXXXX-XXXXX-XXXXX-XXXXX (prefix and tier 1-16 letters or digits, then four groups of five Crockford base32 characters; any case, O reads as 0, I and L as 1)")),
    responses((status = 200, body = LicenseDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show(
    admin: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
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

fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit {n} must be between 1 and 500"),
        )),
    }
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
    let status = filter_text("status", q.status)?;
    if let Some(s) = &status
        && !licenses::status::ALL.contains(&s.as_str())
    {
        return Err(bad_status(licenses::status::ALL));
    }
    let filter = licenses::Filter {
        email: filter_text("email", q.email)?.map(|e| e.to_lowercase()),
        order_id: filter_text("order_id", q.order_id)?,
        q: filter_text("q", q.q)?.map(|t| t.to_lowercase()),
        product: filter_text("product", q.product)?,
        status,
        before: cursor("before", "lic", q.before)?,
        limit: page_limit(q.limit)?,
    };
    let mut conn = state.store.conn().await?;
    let rows = licenses::search(&mut conn, &filter).await?;
    let next = (rows.len() as i64 == filter.limit)
        .then(|| rows.last().map(|l| l.id.clone()))
        .flatten();
    let licenses = rows.into_iter().map(Into::into).collect();
    Ok(Json(LicensePage {
        licenses,
        next_before: next,
    }))
}

fn bad_status(all: &[&str]) -> ApiError {
    ApiError::coded(
        StatusCode::BAD_REQUEST,
        "bad_status",
        format!("status must be one of {}", all.join(", ")),
    )
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
        license: license.into(),
    }))
}

/// Revoke a license.
#[utoipa::path(post, path = "/admin/v1/licenses/{key}/revoke", tag = "licenses", security(("bearer" = [])),
    params(("key" = String, Path, description = "license key PREFIX-TIER-XXXXX-XXXXX-XXXXX-XXXXX (prefix and tier 1-16 letters or digits, then four groups of five Crockford base32 characters; any case, O reads as 0, I and L as 1)")), request_body = ReasonBody,
    responses((status = 200, body = LicenseOne), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn revoke(
    admin: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<LicenseOne>, ApiError> {
    change_status(admin, state, key, body, true).await
}

/// Reinstate a revoked or suspended license.
#[utoipa::path(post, path = "/admin/v1/licenses/{key}/reinstate", tag = "licenses", security(("bearer" = [])),
    params(("key" = String, Path, description = "license key PREFIX-TIER-XXXXX-XXXXX-XXXXX-XXXXX (prefix and tier 1-16 letters or digits, then four groups of five Crockford base32 characters; any case, O reads as 0, I and L as 1)")), request_body = ReasonBody,
    responses((status = 200, body = LicenseOne), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reinstate(
    admin: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
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

/// A JSON body that may be left out (no body, or only whitespace, means
/// every field's default), whatever the content type says then.
fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &axum::body::Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Unprocessable(format!("invalid body: {e}")),
        _ => ApiError::BadRequest(format!("invalid JSON body: {e}")),
    })
}

/// Queue the license email again; a revoked license only with `force`.
#[utoipa::path(post, path = "/admin/v1/licenses/{key}/resend", tag = "licenses", security(("bearer" = [])),
    params(("key" = String, Path, description = "license key PREFIX-TIER-XXXXX-XXXXX-XXXXX-XXXXX (prefix and tier 1-16 letters or digits, then four groups of five Crockford base32 characters; any case, O reads as 0, I and L as 1)")), request_body(content = ResendBody, description = "optional"),
    responses((status = 202, description = "queued"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the license is revoked")))]
async fn resend(
    admin: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    admin.require(scope::LICENSES_WRITE)?;
    let key = parse_key(&key)?;
    let req: ResendBody = optional_json(&body)?;
    admin::resend(&state.store, &key, req.force, &admin.actor()).await?;
    state.outbox_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "queued" }))).into_response())
}

/// A delivery as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    pub endpoint: String,
    pub kind: String,
    pub received_at: String,
    pub status: String,
    pub signature_valid: Option<bool>,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub order_id: Option<String>,
    pub error: Option<String>,
    pub license_id: Option<String>,
    pub attempts: i64,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Size in bytes of the whole body as received.
    pub body_size: Option<i64>,
    /// SHA-256 (hex) of the whole body as received.
    pub body_sha256: Option<String>,
    /// True when `body` holds only the start of the body (a delivery that
    /// failed authentication keeps its first 4 KiB).
    pub body_truncated: bool,
}

impl DeliveryOut {
    pub fn new(d: Delivery, full: bool) -> Self {
        Self {
            received_at: store::format_ms(d.received_at),
            signature_valid: d.signature_valid.map(|v| v != 0),
            path: full.then(|| d.path.clone()),
            headers: full.then(|| serde_json::from_str(&d.headers).unwrap_or_default()),
            body: full.then(|| String::from_utf8_lossy(&d.body).into_owned()),
            body_truncated: d.body_size.is_some_and(|n| n > d.body.len() as i64),
            body_size: d.body_size,
            body_sha256: d.body_sha256.clone(),
            id: d.id,
            endpoint: d.endpoint,
            kind: d.kind,
            status: d.status,
            event_type: d.event_type,
            event_id: d.event_id,
            order_id: d.order_id,
            error: d.error,
            license_id: d.license_id,
            attempts: d.attempts,
            source_ip: d.source_ip,
            user_agent: d.user_agent,
            request_id: d.request_id,
        }
    }
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

/// Parses RFC 3339 or a relative age like `24h` (meaning that long ago).
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    humantime::parse_duration(text)
        .map(|d| store::now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor an age like 24h"))
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
    let status = filter_text("status", q.status)?;
    if let Some(s) = &status
        && !deliveries::status::ALL.contains(&s.as_str())
    {
        return Err(bad_status(deliveries::status::ALL));
    }
    let filter = deliveries::Filter {
        endpoint: filter_text("endpoint", q.endpoint)?,
        status,
        since: q
            .since
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(ApiError::BadRequest)?,
        until: q
            .until
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(ApiError::BadRequest)?,
        before: cursor("before", "dlv", q.before)?,
        limit: page_limit(q.limit)?,
    };
    let mut conn = state.store.conn().await?;
    let rows = deliveries::list(&mut conn, &filter).await?;
    let next = (rows.len() as i64 == filter.limit)
        .then(|| rows.last().map(|d| d.id.clone()))
        .flatten();
    let deliveries = rows
        .into_iter()
        .map(|d| DeliveryOut::new(d, false))
        .collect();
    Ok(Json(DeliveryPage {
        deliveries,
        next_before: next,
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
    check_text("id", &id)?;
    let mut conn = state.store.conn().await?;
    let d = deliveries::get(&mut conn, &id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    Ok(Json(DeliveryOut::new(d, true)))
}

/// Re-run a stored delivery through the current code and catalog.
#[utoipa::path(post, path = "/admin/v1/deliveries/{id}/replay", tag = "deliveries", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::http::webhooks::WebhookResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn replay(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin.require(scope::DELIVERIES_WRITE)?;
    check_text("id", &id)?;
    match ingest::replay(&state, &id).await {
        Ok(result) => Ok(respond(result)),
        Err(ReplayError::NotFound) => Err(ApiError::NotFound("delivery")),
        Err(e @ (ReplayError::NotAuthentic(_) | ReplayError::UnknownEndpoint(_))) => {
            Err(ApiError::Conflict(e.to_string()))
        }
        Err(ReplayError::Database(e)) => Err(e.into()),
    }
}

/// A subscription as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionOut {
    /// keymint's id (`sub_...`).
    pub id: String,
    pub endpoint: String,
    /// The provider's subscription id.
    pub subscription_id: String,
    pub status: String,
    pub trial_end: Option<String>,
    pub current_period_end: Option<String>,
    pub cancel_at_period_end: bool,
    /// The provider's time of the last event applied.
    pub last_event_at: String,
    pub product: Option<String>,
    pub email: Option<String>,
    pub customer_ref: Option<String>,
    pub license_key: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<store::subscriptions::Listed> for SubscriptionOut {
    fn from(l: store::subscriptions::Listed) -> Self {
        let s = l.subscription;
        Self {
            id: s.id,
            endpoint: s.source,
            subscription_id: s.subscription_id,
            status: s.status,
            trial_end: s.trial_end.map(store::format_ms),
            current_period_end: s.current_period_end.map(store::format_ms),
            cancel_at_period_end: s.cancel_at_period_end != 0,
            last_event_at: store::format_ms(s.last_event_at),
            product: s.product,
            email: l.email,
            customer_ref: s.customer_ref,
            license_key: l.license_key,
            created_at: store::format_ms(s.created_at),
            updated_at: store::format_ms(s.updated_at),
        }
    }
}

/// One event in a subscription's history.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionEventOut {
    /// The provider's time for the event.
    pub at: String,
    pub received_at: String,
    pub event_type: String,
    /// `applied`, `stale` (older than the last applied event: changed
    /// nothing) or `ignored` (not applicable in that state).
    pub result: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub period_end: Option<String>,
    pub actor: String,
    pub delivery_id: Option<String>,
}

impl From<store::subscriptions::SubscriptionEvent> for SubscriptionEventOut {
    fn from(e: store::subscriptions::SubscriptionEvent) -> Self {
        Self {
            at: store::format_ms(e.at),
            received_at: store::format_ms(e.received_at),
            event_type: e.event_type,
            result: e.result,
            from_status: e.from_status,
            to_status: e.to_status,
            period_end: e.period_end.map(store::format_ms),
            actor: e.actor,
            delivery_id: e.delivery_id,
        }
    }
}

/// A page of subscriptions; pass `next_before` as `before` for the next page.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionPage {
    pub subscriptions: Vec<SubscriptionOut>,
    pub next_before: Option<String>,
}

/// A subscription with its event history and its license's history.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionDetail {
    pub subscription: SubscriptionOut,
    pub events: Vec<SubscriptionEventOut>,
    pub license_history: Vec<HistoryOut>,
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
    let status = filter_text("status", q.status)?;
    if let Some(s) = &status
        && crate::subscriptions::Status::parse(s).is_none()
    {
        return Err(bad_status(
            &crate::subscriptions::Status::ALL.map(|s| s.as_str()),
        ));
    }
    let filter = store::subscriptions::Filter {
        status,
        endpoint: filter_text("endpoint", q.endpoint)?,
        email: filter_text("email", q.email)?.map(|e| e.to_lowercase()),
        before: cursor("before", "sub", q.before)?,
        limit: page_limit(q.limit)?,
    };
    let mut conn = state.store.conn().await?;
    let rows = store::subscriptions::search(&mut conn, &filter).await?;
    let next = (rows.len() as i64 == filter.limit)
        .then(|| rows.last().map(|s| s.subscription.id.clone()))
        .flatten();
    Ok(Json(SubscriptionPage {
        subscriptions: rows.into_iter().map(Into::into).collect(),
        next_before: next,
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
    responses((status = 200, body = crate::ingest::ReplaySummary), (status = 400, body = ErrorBody)))]
async fn replay_failed(
    admin: Admin,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<crate::ingest::ReplaySummary>, ApiError> {
    admin.require(scope::DELIVERIES_WRITE)?;
    let req: BulkReplay = optional_json(&body)?;
    let limit = req.limit.unwrap_or(500);
    if !(1..=5000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit {limit} must be between 1 and 5000"
        )));
    }
    let filter = ingest::ReplayFilter {
        endpoint: filter_text("endpoint", req.endpoint)?,
        since: req
            .since
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(ApiError::BadRequest)?,
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

/// An operator's refund request.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// Minor units; absent for a full refund.
    amount_cents: Option<i64>,
    reason: Option<String>,
}

/// A refund as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct RefundOut {
    pub id: String,
    pub status: String,
    pub endpoint: String,
    pub payment_ref: String,
    pub amount_cents: Option<i64>,
    pub provider_refund_id: Option<String>,
    pub error: Option<String>,
    pub requested_by: String,
    pub created_at: String,
}

impl From<store::refunds::Refund> for RefundOut {
    fn from(r: store::refunds::Refund) -> Self {
        Self {
            id: r.id,
            status: r.status,
            endpoint: r.endpoint,
            payment_ref: r.payment_ref,
            amount_cents: r.amount_cents,
            provider_refund_id: r.provider_refund_id,
            error: r.error,
            requested_by: r.requested_by,
            created_at: store::format_ms(r.created_at),
        }
    }
}

/// Refund the license's payment through its provider. The refund stays
/// `pending` (license suspended) until the provider's webhook or the
/// reconciler settles it.
#[utoipa::path(post, path = "/admin/v1/licenses/{key}/refund", tag = "licenses", security(("bearer" = [])),
    params(("key" = String, Path, description = "license key PREFIX-TIER-XXXXX-XXXXX-XXXXX-XXXXX (prefix and tier 1-16 letters or digits, then four groups of five Crockford base32 characters; any case, O reads as 0, I and L as 1)")), request_body = RefundBody,
    responses((status = 202, body = RefundOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
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
