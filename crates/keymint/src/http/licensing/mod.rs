//! The public licensing API that buyers' programs call
//! (docs/licensing-api.md): validate, activate, deactivate, list. Every
//! business outcome of a validation is a 200 with a `code`; the machine
//! routes answer with statuses and the same codes. The license key is
//! the credential; every route is rate limited per client address.

mod limits;

pub use limits::LicensingLimits;

use crate::app::AppState;
use crate::domain::{Fingerprint, Nonce, machine_text};
use crate::licensing::LicensingError;
use crate::licensing::service::{MachineMeta, Validate};
use crate::licensing::verdict::Code;
use crate::views::licensing::{
    ActivationOut, LicensingErrorBody, MachineOut, MachinesOut, ValidationOut,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keymint_license::LicenseKey;
use serde::Deserialize;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The longest key accepted at all (a canonical key is 32 characters).
const MAX_KEY: usize = 64;
/// Limits on a validation's optional lists.
const MAX_ENTITLEMENTS: usize = 64;
const MAX_NAME: usize = 64;

/// The largest body a licensing request may have: a validation or an
/// activation is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(validate_license))
        .routes(routes!(activate_machine, deactivate_machine))
        .routes(routes!(list_machines))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        // What the framework refuses (a body over the limit, a path that
        // is not UTF-8) is answered in the JSON error shape too.
        .layer(axum::middleware::from_fn(crate::http::error::json_errors))
}

/// A licensing answer that is not a 200.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn rate_limited(wait: Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this address; retry after the given seconds",
            )
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let secs = self
            .retry_after
            .map(|d| d.as_secs_f64().ceil().max(1.0) as u64);
        let mut resp = (
            self.status,
            Json(LicensingErrorBody {
                code: self.code.to_string(),
                error: self.message,
                retry_after: secs,
            }),
        )
            .into_response();
        if let Some(secs) = secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

impl From<LicensingError> for Refusal {
    fn from(e: LicensingError) -> Self {
        let message = e.to_string();
        match e {
            LicensingError::NotFound => {
                Self::new(StatusCode::NOT_FOUND, Code::NotFound.as_str(), message)
            }
            LicensingError::Refused(code) => {
                Self::new(StatusCode::FORBIDDEN, code.as_str(), message)
            }
            LicensingError::TooManyMachines { .. } => {
                Self::new(StatusCode::CONFLICT, "TOO_MANY_MACHINES", message)
            }
            LicensingError::NotActivated => {
                Self::new(StatusCode::NOT_FOUND, Code::NotActivated.as_str(), message)
            }
            LicensingError::DeactivationLimit {
                retry_after_secs, ..
            } => Self {
                retry_after: Some(Duration::from_secs(retry_after_secs)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "DEACTIVATION_LIMIT", message)
            },
            LicensingError::Invalid(m) => Self::bad_request(m),
            LicensingError::Database(e) if crate::store::is_unavailable(&e) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "service temporarily unavailable",
                )
            }
            other => {
                tracing::error!(error = %other, "licensing API internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

/// The caller's address (`http::client_ip`), admitted by the
/// per-address limits: every licensing handler takes it first.
struct Caller(String);

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let who = crate::http::caller_address(parts, state).await?;
        admit(state, &who).map_err(IntoResponse::into_response)?;
        Ok(Self(who))
    }
}

fn admit(state: &AppState, who: &str) -> Result<(), Refusal> {
    state.limits.admit(who).map_err(|wait| {
        metrics::counter!("keymint_licensing_rate_limited_total").increment(1);
        Refusal::rate_limited(wait)
    })
}

/// An answer that found no license spends from the not-found budget; the
/// one that spends its last cell past the budget is refused too.
fn missed(state: &AppState, who: &str) -> Result<(), Refusal> {
    state.limits.missed(who).map_err(|wait| {
        metrics::counter!("keymint_licensing_rate_limited_total").increment(1);
        Refusal::rate_limited(wait)
    })
}

/// Parses a JSON body (whatever its content type: programs are not all
/// careful) into `T`; anything else is a 400 that says why.
fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Refusal::bad_request(format!("the body is not the expected JSON: {e}")))
}

/// A key from a path or body: over [`MAX_KEY`] characters is a 400; one
/// that does not parse is `None` (answered as `NOT_FOUND`).
fn key_text(text: &str) -> Result<Option<LicenseKey>, Refusal> {
    // Surrounding spaces are ignored, as the key's parse ignores them.
    if text.trim().chars().count() > MAX_KEY {
        return Err(Refusal::bad_request(format!(
            "key: must be at most {MAX_KEY} characters"
        )));
    }
    Ok(text.parse().ok())
}

fn fingerprint(text: &str) -> Result<Fingerprint, Refusal> {
    Fingerprint::parse(text).map_err(|e| Refusal::bad_request(e.to_string()))
}

fn nonce(text: Option<&str>) -> Result<Option<Nonce>, Refusal> {
    text.map(Nonce::parse)
        .transpose()
        .map_err(|e| Refusal::bad_request(e.to_string()))
}

/// A validation request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// The license key (the forgiving parse applies: case, `O`/`0`, `I`/`1`).
    #[serde(default)]
    key: Option<String>,
    /// The machine this program runs on (8 to 255 characters).
    fingerprint: Option<String>,
    /// The program's product id: a key of another product answers
    /// `PRODUCT_MISMATCH`.
    product: Option<String>,
    /// Entitlements the program needs.
    entitlements: Option<Vec<String>>,
    /// 8 to 128 printable ASCII characters, fresh for each request: echoed
    /// in the signed receipt.
    nonce: Option<String>,
}

fn validate_request(body: ValidateBody) -> Result<Validate, Refusal> {
    let Some(key) = body.key else {
        return Err(Refusal::bad_request("key: required"));
    };
    key_text(&key)?;
    let product = body.product.filter(|p| !p.is_empty());
    if product
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_NAME)
    {
        return Err(Refusal::bad_request(format!(
            "product: must be at most {MAX_NAME} characters"
        )));
    }
    let entitlements = body.entitlements.unwrap_or_default();
    if entitlements.len() > MAX_ENTITLEMENTS
        || entitlements.iter().any(|e| e.chars().count() > MAX_NAME)
    {
        return Err(Refusal::bad_request(format!(
            "entitlements: at most {MAX_ENTITLEMENTS} names of at most {MAX_NAME} characters"
        )));
    }
    Ok(Validate {
        key,
        fingerprint: body.fingerprint.as_deref().map(fingerprint).transpose()?,
        product,
        entitlements,
        nonce: nonce(body.nonce.as_deref())?,
    })
}

/// Validate a license key, optionally for a machine, a product and
/// entitlements. Every business outcome is a 200 with a `code`.
#[utoipa::path(post, path = "/v1/licenses/validate", tag = "licensing",
    request_body = ValidateBody,
    responses((status = 200, body = ValidationOut, description = "the answer, whatever it is; `valid` is true with `VALID` only"),
              (status = 400, body = LicensingErrorBody, description = "malformed request (nothing about any license is revealed)"),
              (status = 429, body = LicensingErrorBody, description = "`rate_limited`; see `Retry-After`"),
              (status = 503, body = LicensingErrorBody)))]
async fn validate_license(
    State(state): State<AppState>,
    Caller(who): Caller,
    body: Bytes,
) -> Response {
    let answer = async {
        let req = validate_request(parse_body(&body)?)?;
        let v = state.licensing.validate(&req).await?;
        if v.verdict.code == Code::NotFound {
            missed(&state, &who)?;
        }
        metrics::counter!("keymint_validations_total", "code" => v.verdict.code.as_str())
            .increment(1);
        Ok::<_, Refusal>(Json(ValidationOut {
            valid: v.verdict.code == Code::Valid,
            code: v.verdict.code,
            detail: v.verdict.code.detail().to_string(),
            license: v.license,
            machine: v.machine,
            access_until: v.verdict.access_until.map(crate::store::format_ms),
            warnings: v.verdict.warnings,
            missing_entitlements: v.verdict.missing,
            receipt: v.receipt,
        }))
    };
    answer.await.into_response()
}

/// What a program may say about the machine it activates.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    name: Option<String>,
    platform: Option<String>,
    hostname: Option<String>,
    app_version: Option<String>,
    /// Echoed in the machine file's `nonce` claim.
    nonce: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MachinePath {
    /// The license key.
    key: String,
    /// The machine's fingerprint, 8 to 255 characters (percent-encoded).
    fingerprint: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyOnlyPath {
    /// The license key.
    key: String,
}

/// A path's key, or the not-found answer (which spends the budget).
fn path_key(state: &AppState, who: &str, text: &str) -> Result<LicenseKey, Refusal> {
    match key_text(text)? {
        Some(key) => Ok(key),
        None => {
            missed(state, who)?;
            Err(LicensingError::NotFound.into())
        }
    }
}

/// The refusal for an error, spending the not-found budget when the key
/// found no license.
fn refusal(state: &AppState, who: &str, e: LicensingError) -> Refusal {
    if matches!(e, LicensingError::NotFound)
        && let Err(limited) = missed(state, who)
    {
        return limited;
    }
    e.into()
}

/// Activate a machine (idempotent): 201 when added, 200 when that
/// fingerprint is already active. Returns a signed machine file.
#[utoipa::path(put, path = "/v1/licenses/{key}/machines/{fingerprint}", tag = "licensing",
    params(MachinePath), request_body(content = ActivateBody, description = "optional"),
    responses((status = 201, body = ActivationOut, description = "activated"),
              (status = 200, body = ActivationOut, description = "already active on this machine"),
              (status = 400, body = LicensingErrorBody),
              (status = 403, body = LicensingErrorBody, description = "the license does not stand: `SUSPENDED`, `REFUNDED`, `DISPUTE_LOST`, `REVOKED` or `EXPIRED`"),
              (status = 404, body = LicensingErrorBody, description = "`NOT_FOUND`"),
              (status = 409, body = LicensingErrorBody, description = "`TOO_MANY_MACHINES`"),
              (status = 429, body = LicensingErrorBody), (status = 503, body = LicensingErrorBody)))]
async fn activate_machine(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(MachinePath {
        key,
        fingerprint: fp,
    }): Path<MachinePath>,
    body: Bytes,
) -> Response {
    let answer = async {
        let fp = fingerprint(&fp)?;
        let body: ActivateBody = parse_body(&body)?;
        let meta = machine_meta(&body).map_err(Refusal::bad_request)?;
        let nonce = nonce(body.nonce.as_deref())?;
        let key = path_key(&state, &who, &key)?;
        let done = state
            .licensing
            .activate(
                &key,
                &fp,
                meta,
                nonce.as_ref(),
                None,
                crate::store::machines::PUBLIC_ACTOR,
            )
            .await
            .map_err(|e| refusal(&state, &who, e))?;
        let status = if done.created {
            metrics::counter!("keymint_machines_activated_total").increment(1);
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok::<_, Refusal>((
            status,
            Json(ActivationOut {
                created: done.created,
                machine: MachineOut::from(&done.machine),
                machine_file: done.machine_file,
                license: done.license,
            }),
        ))
    };
    answer.await.into_response()
}

/// A machine's descriptive fields, checked.
pub fn machine_meta(body: &ActivateBody) -> Result<MachineMeta, String> {
    let text =
        |field, v: &Option<String>| machine_text(field, v.as_deref()).map_err(|e| e.to_string());
    Ok(MachineMeta {
        name: text("name", &body.name)?,
        platform: text("platform", &body.platform)?,
        hostname: text("hostname", &body.hostname)?,
        app_version: text("app_version", &body.app_version)?,
    })
}

/// Deactivate a machine and free its seat, within the license's
/// deactivation budget.
#[utoipa::path(delete, path = "/v1/licenses/{key}/machines/{fingerprint}", tag = "licensing",
    params(MachinePath),
    responses((status = 204, description = "deactivated"),
              (status = 400, body = LicensingErrorBody),
              (status = 404, body = LicensingErrorBody, description = "`NOT_FOUND` (no such key) or `NOT_ACTIVATED` (this fingerprint is not active)"),
              (status = 429, body = LicensingErrorBody, description = "`DEACTIVATION_LIMIT` (with `retry_after`) or `rate_limited`"),
              (status = 503, body = LicensingErrorBody)))]
async fn deactivate_machine(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(MachinePath {
        key,
        fingerprint: fp,
    }): Path<MachinePath>,
) -> Response {
    let answer = async {
        let fp = fingerprint(&fp)?;
        let key = path_key(&state, &who, &key)?;
        state
            .licensing
            .deactivate(&key, &fp)
            .await
            .map_err(|e| refusal(&state, &who, e))?;
        metrics::counter!("keymint_machines_deactivated_total").increment(1);
        Ok::<_, Refusal>(StatusCode::NO_CONTENT)
    };
    answer.await.into_response()
}

/// The machines a license is activated on (never their fingerprints).
#[utoipa::path(get, path = "/v1/licenses/{key}/machines", tag = "licensing",
    params(KeyOnlyPath),
    responses((status = 200, body = MachinesOut),
              (status = 400, body = LicensingErrorBody),
              (status = 404, body = LicensingErrorBody, description = "`NOT_FOUND`"),
              (status = 429, body = LicensingErrorBody), (status = 503, body = LicensingErrorBody)))]
async fn list_machines(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(KeyOnlyPath { key }): Path<KeyOnlyPath>,
) -> Response {
    let answer = async {
        let key = path_key(&state, &who, &key)?;
        let (license, list) = state
            .licensing
            .machines(&key)
            .await
            .map_err(|e| refusal(&state, &who, e))?;
        Ok::<_, Refusal>(Json(MachinesOut::new(&license, &list)))
    };
    answer.await.into_response()
}
