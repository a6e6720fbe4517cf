//! The public checkout routes (docs/checkout.md): `POST /v1/checkout`
//! starts a payment, `GET /v1/checkout/{order_id}` reports it (and resumes
//! it), `POST /v1/licenses/{key}/billing-portal` opens Stripe's customer
//! portal. Called from sellers' web pages, so they answer CORS requests
//! from the hosts `[checkout] allowed_redirect_hosts` lists. Every route is
//! rate limited per client address.

use crate::app::AppState;
use crate::checkout::{self, CheckoutError, Consent};
use crate::domain::{Email, OrderId};
use crate::http::ApiError;
use crate::http::error::{ApiJson, ErrorBody};
use crate::views::{CheckoutErrorBody, CheckoutOut, PortalOut};
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keymint_license::LicenseKey;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A checkout request is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_checkout))
        .routes(routes!(show_checkout))
        .routes(routes!(billing_portal))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(crate::http::error::json_errors))
        .layer(axum::middleware::from_fn(no_store))
}

/// Checkout answers carry credentials (a checkout URL, a client secret, a
/// license key): no cache keeps them.
async fn no_store(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// CORS for the checkout routes: a seller's page on an allowed host may
/// call them from the buyer's browser. Every other route answers no
/// origin but its own.
pub fn cors(cfg: &crate::config::CheckoutConfig) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let cfg = cfg.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, parts| {
            let path = parts.uri.path();
            let checkout = path == "/v1/checkout"
                || path.starts_with("/v1/checkout/")
                || (path.starts_with("/v1/licenses/") && path.ends_with("/billing-portal"));
            checkout
                && origin
                    .to_str()
                    .ok()
                    .and_then(|o| reqwest::Url::parse(o).ok())
                    .is_some_and(|u| {
                        let host = u.host_str().unwrap_or_default();
                        let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
                        (u.scheme() == "https" || (u.scheme() == "http" && loopback))
                            && cfg.allows_host(host)
                    })
        }))
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

/// The buyer's consent to the product's terms.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    accepted: bool,
    /// The version of the terms the buyer was shown.
    terms_version: String,
}

/// What a seller's "Buy" button sends.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// The catalog product id.
    product: String,
    /// The buyer's email (optional where the provider collects it).
    email: Option<String>,
    /// Where the provider sends the buyer after paying (required for
    /// Stripe); `{ORDER_ID}` in it is replaced by the order's id.
    success_url: Option<String>,
    /// Where the provider sends a buyer who gives up.
    cancel_url: Option<String>,
    /// Required for products with `consent = "required"`.
    consent: Option<ConsentBody>,
}

/// Whether the catalog gives this product a trial.
fn trial_offered(state: &AppState, product: &str) -> bool {
    state
        .catalog
        .product(product)
        .is_some_and(|p| p.trial_days.is_some_and(|d| d > 0))
}

fn refuse(status: StatusCode, code: &'static str, message: String) -> Response {
    ApiError::coded(status, code, message).into_response()
}

fn rate_limited(wait: std::time::Duration) -> Response {
    metrics::counter!("keymint_checkout_rate_limited_total").increment(1);
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests from this address; retry after the given seconds".into(),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

impl IntoResponse for CheckoutError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            Self::UnknownProduct(_) => refuse(StatusCode::NOT_FOUND, "product_not_found", message),
            Self::NotConfigured(_) => {
                refuse(StatusCode::CONFLICT, "checkout_not_configured", message)
            }
            Self::RedirectNotAllowed(_) => refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "redirect_not_allowed",
                message,
            ),
            Self::Invalid(_) => refuse(StatusCode::BAD_REQUEST, "bad_request", message),
            Self::Unprocessable(_) => {
                refuse(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
            }
            Self::ConsentRequired(_) => refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "consent_required",
                message,
            ),
            Self::KeyReused => refuse(StatusCode::CONFLICT, "idempotency_key_reused", message),
            Self::InProgress => {
                let mut resp = refuse(StatusCode::CONFLICT, "checkout_in_progress", message);
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                resp
            }
            Self::ProviderFailed { order, .. } => (
                StatusCode::BAD_GATEWAY,
                Json(CheckoutErrorBody {
                    code: "provider_failed".into(),
                    error: message,
                    order_id: Some(order.id),
                }),
            )
                .into_response(),
            Self::Database(e) => ApiError::from(e).into_response(),
        }
    }
}

/// The caller's address, admitted by the checkout limits: each request
/// calls a provider's API (`[checkout] per_minute`).
struct Caller(String);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let who = crate::http::caller_address(parts, state).await?;
        state.checkout_limits.admit(&who).map_err(rate_limited)?;
        Ok(Self(who))
    }
}

/// The caller of a status read, admitted by the licensing API's request
/// budget (`[licensing.rate_limit] per_minute`) rather than the checkout's:
/// a thanks page polls while the webhook is on its way.
struct Reader(Caller);

impl FromRequestParts<AppState> for Reader {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let who = crate::http::caller_address(parts, state).await?;
        state.checkout_limits.shut_out(&who).map_err(rate_limited)?;
        state.limits.admit(&who).map_err(rate_limited)?;
        Ok(Self(Caller(who)))
    }
}

impl Caller {
    /// A 404 for a lookup that found nothing, spent from the address's
    /// not-found budget (a 429 once it is spent: guessing learns nothing).
    fn not_found(&self, state: &AppState, code: &'static str, what: &str) -> Response {
        if let Err(wait) = state.checkout_limits.missed(&self.0) {
            return rate_limited(wait);
        }
        refuse(StatusCode::NOT_FOUND, code, format!("no such {what}"))
    }
}

/// Start a checkout: an order is recorded `pending_payment`, then the
/// product's provider creates the payment (idempotency key = the order's
/// id). Send an `Idempotency-Key` header to make retries safe: the same
/// key answers the same order.
#[utoipa::path(post, path = "/v1/checkout", tag = "checkout",
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key answers the same order, never a second checkout")),
    request_body = CheckoutBody,
    responses((status = 201, body = CheckoutOut, description = "a new order and its checkout"),
              (status = 200, body = CheckoutOut, description = "the order this key (or this pending request) already made"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "`product_not_found`"),
              (status = 409, body = ErrorBody, description = "`checkout_not_configured`, `idempotency_key_reused`, `checkout_in_progress`"),
              (status = 422, body = ErrorBody, description = "`redirect_not_allowed`, `consent_required`, `invalid_email`"),
              (status = 429, body = ErrorBody), (status = 502, body = CheckoutErrorBody, description = "`provider_failed`: the order is failed, nothing was charged"),
              (status = 503, body = ErrorBody)))]
async fn start_checkout(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<Response, Response> {
    if headers.get_all("idempotency-key").iter().count() > 1 {
        return Err(
            CheckoutError::Invalid("send one Idempotency-Key header, not several".into())
                .into_response(),
        );
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| CheckoutError::Invalid("Idempotency-Key is not ASCII".into()))
                .and_then(checkout::check_idempotency_key)
        })
        .transpose()
        .map_err(IntoResponse::into_response)?;
    let email = body
        .email
        .as_deref()
        .filter(|e| !e.trim().is_empty())
        .map(Email::parse)
        .transpose()
        .map_err(|e| {
            refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_email",
                e.to_string(),
            )
        })?;
    if body.product.chars().any(char::is_control) {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "control_character",
            "product contains a control character".into(),
        ));
    }
    if !crate::config::valid_name(&body.product) {
        return Err(CheckoutError::UnknownProduct(body.product).into_response());
    }
    let req = checkout::Request {
        product: body.product,
        email,
        success_url: body.success_url,
        cancel_url: body.cancel_url,
        consent: body.consent.map(|c| Consent {
            accepted: c.accepted,
            terms_version: c.terms_version,
        }),
        idempotency_key,
        source_ip: who,
    };
    let started = checkout::start(&state, req)
        .await
        .map_err(IntoResponse::into_response)?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    // Never the license key: that is for whoever holds the order id
    // (`GET /v1/checkout/{order_id}`), not for whoever repeats a request.
    let trial = trial_offered(&state, &started.order.product);
    Ok((status, Json(CheckoutOut::of(started.order, None, trial))).into_response())
}

/// An order's status: while `pending_payment`, the same checkout URL or
/// client secret (to resume a stalled payment); once paid, the license
/// key. The order id is the credential.
#[utoipa::path(get, path = "/v1/checkout/{order_id}", tag = "checkout",
    params(("order_id" = String, Path)),
    responses((status = 200, body = CheckoutOut), (status = 404, body = ErrorBody, description = "`order_not_found`"),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn show_checkout(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(order_id): Path<String>,
) -> Result<Json<CheckoutOut>, Response> {
    let not_found = |state: &AppState| caller.not_found(state, "order_not_found", "order");
    let Ok(id) = OrderId::parse(&order_id) else {
        return Err(not_found(&state));
    };
    match checkout::status(&state, &id)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
    {
        Some((order, key)) => {
            let trial = trial_offered(&state, &order.product);
            Ok(Json(CheckoutOut::of(order, key, trial)))
        }
        None => Err(not_found(&state)),
    }
}

/// Where a billing-portal session sends the buyer back to.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PortalBody {
    return_url: Option<String>,
}

/// Open Stripe's customer portal for a subscription license's customer
/// (manage payment method, cancel, invoices). The license key is the
/// credential.
#[utoipa::path(post, path = "/v1/licenses/{key}/billing-portal", tag = "checkout",
    params(("key" = String, Path)), request_body = PortalBody,
    responses((status = 200, body = PortalOut), (status = 404, body = ErrorBody, description = "`license_not_found`"),
              (status = 409, body = ErrorBody, description = "`billing_portal_not_available`"),
              (status = 422, body = ErrorBody, description = "`redirect_not_allowed`"),
              (status = 429, body = ErrorBody), (status = 502, body = ErrorBody, description = "`provider_failed`")))]
async fn billing_portal(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<PortalOut>, Response> {
    let req: PortalBody = if body.iter().all(u8::is_ascii_whitespace) {
        PortalBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                format!("the body is not the expected JSON: {e}"),
            ),
            _ => refuse(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not JSON: {e}"),
            ),
        })?
    };
    let return_url = req
        .return_url
        .as_deref()
        .map(|u| checkout::check_redirect(&state.config.checkout, "return_url", u))
        .transpose()
        .map_err(IntoResponse::into_response)?;
    let not_found = || caller.not_found(&state, "license_not_found", "license");
    let Ok(key) = key.parse::<LicenseKey>() else {
        return Err(not_found());
    };
    let license = {
        let mut conn = state
            .store
            .conn()
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        crate::store::licenses::by_key(&mut conn, &key)
            .await
            .map_err(|e| ApiError::from(e).into_response())?
    };
    let Some(license) = license else {
        return Err(not_found());
    };
    use crate::provider_api::{BillingPortalError, license_billing_portal};
    match license_billing_portal(
        &state.store,
        &state.http,
        &state.config,
        &license,
        return_url.as_deref(),
    )
    .await
    {
        Ok(url) => Ok(Json(PortalOut { url })),
        Err(BillingPortalError::NotAvailable(why)) => Err(refuse(
            StatusCode::CONFLICT,
            "billing_portal_not_available",
            why,
        )),
        Err(e @ BillingPortalError::Provider(_)) => Err(refuse(
            StatusCode::BAD_GATEWAY,
            "provider_failed",
            e.to_string(),
        )),
        Err(BillingPortalError::Database(e)) => Err(ApiError::from(e).into_response()),
    }
}
