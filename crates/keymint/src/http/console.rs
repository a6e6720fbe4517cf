//! The operator console at `/console` (docs/console.md): server-rendered
//! pages (minijinja templates compiled into the binary, HTML-escaped),
//! plain forms, one stylesheet, no JavaScript. A pasted admin token is
//! exchanged for a session cookie (`console/`); every form carries the
//! session's CSRF token; every action goes through the same service
//! functions as the admin API and the CLI, under the token's scopes.

use crate::admin::{self, AdminError, scope};
use crate::app::AppState;
use crate::console::{self, Operator, SESSION_COOKIE, SIGN_IN_COOKIE};
use crate::store::{self, licenses, overview};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use keymint_license::LicenseKey;
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use serde::Deserialize;
use std::sync::OnceLock;

const PAGES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../templates/console/base.html"),
    ),
    (
        "sign_in.html",
        include_str!("../../templates/console/sign_in.html"),
    ),
    (
        "overview.html",
        include_str!("../../templates/console/overview.html"),
    ),
    (
        "licenses.html",
        include_str!("../../templates/console/licenses.html"),
    ),
    (
        "license.html",
        include_str!("../../templates/console/license.html"),
    ),
    (
        "error.html",
        include_str!("../../templates/console/error.html"),
    ),
    (
        "deliveries.html",
        include_str!("../../templates/console/deliveries.html"),
    ),
    (
        "delivery.html",
        include_str!("../../templates/console/delivery.html"),
    ),
    (
        "subscriptions.html",
        include_str!("../../templates/console/subscriptions.html"),
    ),
    (
        "subscription.html",
        include_str!("../../templates/console/subscription.html"),
    ),
    (
        "settings.html",
        include_str!("../../templates/console/settings.html"),
    ),
];
const STYLESHEET: &str = include_str!("../../templates/console/console.css");
/// Licenses per page of a search.
const PAGE_SIZE: i64 = 50;

fn pages() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in PAGES {
            // The templates are part of the binary: one that does not
            // parse is a bug the tests catch.
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("console template {name}: {e}"));
        }
        env
    })
}

/// The console's routes; none when `[console] enabled = false`.
pub fn routes(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/console", get(overview_page))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/licenses", get(licenses_page))
        .route("/console/licenses/{key}", get(license_page))
        .route("/console/licenses/{key}/status", post(change_status))
        .route("/console/licenses/mint", post(mint))
        .route("/console/licenses/{key}/resend", post(resend))
        .route("/console/licenses/{key}/refund", post(refund))
        .route(
            "/console/licenses/{key}/machines/reset",
            post(reset_machines),
        )
        .route(
            "/console/licenses/{key}/machines/{id}/deactivate",
            post(deactivate_machine),
        )
        .route("/console/subscriptions", get(subscriptions_page))
        .route("/console/subscriptions/{id}", get(subscription_page))
        .route("/console/settings", get(settings_page))
        .route("/console/deliveries", get(deliveries_page))
        .route("/console/deliveries/replay-failed", post(replay_failed))
        .route("/console/deliveries/{id}", get(delivery_page))
        .route("/console/deliveries/{id}/replay", post(replay_one))
        .route("/console/static/console.css", get(stylesheet))
        .layer(axum::middleware::from_fn(page_headers))
}

/// Every console answer: not cached, not framed, no referrer.
async fn page_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// A rendered page.
fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    match pages().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn error_page(op: Option<&Operator>, status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        "error.html",
        context! {
            operator => op.map(|o| o.name.clone()),
            csrf => op.map(|o| o.csrf.clone()),
            title, message,
        },
    )
}

/// A page for a failure the operator cannot fix by retrying the form.
fn failed(op: Option<&Operator>, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console request failed");
    error_page(
        op,
        StatusCode::SERVICE_UNAVAILABLE,
        "Something went wrong",
        "keymint could not answer (is the database reachable?). Try again in a moment.",
    )
}

/// The value of cookie `name` in the request, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached keymint over HTTPS (through a reverse proxy
/// that says so, when `server.trust_forwarded_for` trusts it).
fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.server.trust_forwarded_for
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A console cookie: HttpOnly, SameSite=Strict, for `/console` only,
/// Secure over HTTPS; `max_age` 0 deletes it.
fn set_cookie(secure: bool, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are base64url")
}

/// A signed-in operator; anyone else is sent to the sign-in page.
struct Signed(Operator);

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/console/sign-in").into_response());
        };
        match console::operator(&state.store, secret).await {
            Ok(Some(op)) => Ok(Self(op)),
            Ok(None) => Err(Redirect::to("/console/sign-in").into_response()),
            Err(e) => Err(failed(None, e)),
        }
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    sign_in_form(&state, &headers, StatusCode::OK, None)
}

/// The sign-in form with a fresh one-time CSRF value in a cookie beside it
/// (a form posted from anywhere else lacks the cookie).
fn sign_in_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let value = console::random_secret();
    let mut resp = render(
        status,
        "sign_in.html",
        context! { sign_in_csrf => value.clone(), problem },
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(over_https(state, headers), SIGN_IN_COOKIE, &value, 600),
    );
    resp
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
    csrf: String,
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !console::same(expected, &form.csrf) {
        return sign_in_form(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The form expired or did not come from this page; sign in again."),
        );
    }
    match console::sign_in(&state.store, &form.token, state.config.console.session_ttl).await {
        Ok(Some(secret)) => {
            let secure = over_https(&state, &headers);
            let mut resp = Redirect::to("/console").into_response();
            let ttl = state.config.console.session_ttl.as_secs();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(secure, SESSION_COOKIE, &secret, ttl),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(secure, SIGN_IN_COOKIE, "", 0),
            );
            resp
        }
        Ok(None) => sign_in_form(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("That is not a live admin token."),
        ),
        Err(e) => failed(None, e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Signed(op): Signed,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !op.csrf_matches(&form.csrf) {
        return forged(&op);
    }
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = console::sign_out(&state.store, secret).await
    {
        return failed(Some(&op), e);
    }
    let mut resp = Redirect::to("/console/sign-in").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(over_https(&state, &headers), SESSION_COOKIE, "", 0),
    );
    resp
}

/// A form without this session's CSRF token.
fn forged(op: &Operator) -> Response {
    error_page(
        Some(op),
        StatusCode::FORBIDDEN,
        "Refused",
        "The form did not carry this session's token (it came from another page, or the session changed). Nothing was done.",
    )
}

async fn overview_page(State(state): State<AppState>, Signed(op): Signed) -> Response {
    const DAY: i64 = 86_400_000;
    let now = store::now_ms();
    let today = now / DAY;
    let first_day = today - 29;
    let counts = async {
        let mut conn = state.store.conn().await?;
        Ok::<_, sqlx::Error>((
            overview::licenses(&mut conn).await?,
            overview::deliveries(&mut conn, now - DAY).await?,
            overview::emails(&mut conn).await?,
            overview::subscriptions(&mut conn).await?,
            overview::minted_per_day(&mut conn, first_day * DAY).await?,
            store::signing_keys::list(&mut conn).await?,
        ))
    };
    let (licenses, deliveries, emails, subscriptions, minted, keys) = match counts.await {
        Ok(counts) => counts,
        Err(e) => return failed(Some(&op), e),
    };
    let mut days = vec![
        console::chart::Day {
            sales: 0,
            manual: 0
        };
        30
    ];
    for (day, all, manual) in minted {
        if let Some(slot) = usize::try_from(day - first_day)
            .ok()
            .and_then(|i| days.get_mut(i))
        {
            *slot = console::chart::Day {
                sales: all - manual,
                manual,
            };
        }
    }
    let date = |day: i64| {
        time::OffsetDateTime::from_unix_timestamp(day * 86_400)
            .map(|t| t.date().to_string())
            .unwrap_or_default()
    };
    let chart = console::chart::svg(&days, &date(first_day), &date(today));
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            context! {
                kid => k.kid.clone(), status => k.status.as_str(), signing => k.signing == 1,
                created_at => store::format_ms(k.created_at),
            }
        })
        .collect();
    render(
        StatusCode::OK,
        "overview.html",
        context! {
            operator => op.name, csrf => op.csrf, page => "overview",
            licenses => Serde(&licenses),
            deliveries => Serde(&deliveries),
            emails => Serde(&emails),
            subscriptions => Serde(&subscriptions),
            chart => Value::from_safe_string(chart),
            keys,
        },
    )
}

#[derive(Deserialize, Default)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    before: String,
}

async fn licenses_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Query(q): Query<SearchQuery>,
) -> Response {
    if !op.may(scope::LICENSES_READ) {
        return no_scope(&op, scope::LICENSES_READ);
    }
    let text = q.q.trim().to_lowercase();
    let status = q.status.parse::<licenses::LicenseStatus>().ok();
    let before = Some(q.before.trim())
        .filter(|b| crate::domain::LicenseId::parse(b).is_ok())
        .map(str::to_string);
    let filter = licenses::Filter {
        email: None,
        order_id: None,
        q: Some(text.clone()).filter(|t| !t.is_empty() && !t.chars().any(char::is_control)),
        product: None,
        status,
        before,
        limit: PAGE_SIZE,
    };
    let rows = async {
        let mut conn = state.store.conn().await?;
        licenses::search(&mut conn, &filter).await
    };
    let rows = match rows.await {
        Ok(rows) => rows,
        Err(e) => return failed(Some(&op), e),
    };
    let next = next_page(
        "/console/licenses",
        rows.len(),
        rows.last().map(|l| l.id.as_str()),
        &[("q", &text), ("status", status.map_or("", |s| s.as_str()))],
    );
    let list: Vec<Value> = rows
        .iter()
        .map(|l| {
            context! {
                key => l.key.to_string(), product => l.product.clone(),
                status => l.status.as_str(), email => l.email.clone(),
                issued_at => store::format_ms(l.issued_at),
            }
        })
        .collect();
    let may_write = op.may(scope::LICENSES_WRITE);
    render(
        StatusCode::OK,
        "licenses.html",
        context! {
            operator => op.name, csrf => op.csrf, page => "licenses",
            licenses => list, q => q.q, status => status.map(|s| s.as_str()),
            statuses => licenses::LicenseStatus::names(), next,
            may_write,
            products => state.config.products.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        },
    )
}

/// The link to the next page of a list when this one is full: `path`
/// with the same filters and `before` = the last row's id.
fn next_page(
    path: &str,
    rows: usize,
    last_id: Option<&str>,
    filters: &[(&str, &str)],
) -> Option<String> {
    let last = last_id.filter(|_| rows as i64 == PAGE_SIZE)?;
    let mut query: Vec<(&str, &str)> = filters.to_vec();
    query.push(("before", last));
    Some(format!(
        "{path}?{}",
        serde_urlencoded::to_string(query).expect("strings encode")
    ))
}

fn no_scope(op: &Operator, needed: &str) -> Response {
    error_page(
        Some(op),
        StatusCode::FORBIDDEN,
        "Not allowed",
        &format!("This token lacks the `{needed}` scope."),
    )
}

/// The license page, with a notice or a problem above it.
async fn show_license(
    state: &AppState,
    op: &Operator,
    key: &str,
    status: StatusCode,
    notice: Option<&str>,
    problem: Option<&str>,
) -> Response {
    if !op.may(scope::LICENSES_READ) {
        return no_scope(op, scope::LICENSES_READ);
    }
    let not_found = || {
        error_page(
            Some(op),
            StatusCode::NOT_FOUND,
            "No such license",
            "No license has that key.",
        )
    };
    let Ok(key) = key.parse::<LicenseKey>() else {
        return not_found();
    };
    match admin::license_detail(&state.store, &key).await {
        Ok(Some(d)) => render(
            status,
            "license.html",
            context! {
                operator => op.name.clone(), csrf => op.csrf.clone(), page => "licenses",
                may_write => op.may(scope::LICENSES_WRITE),
                l => Serde(&d.license),
                history => Serde(&d.history),
                emails => Serde(&d.emails),
                machines => Serde(&d.machines), notice, problem,
            },
        ),
        Ok(None) => not_found(),
        Err(e) => failed(Some(op), e),
    }
}

async fn license_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
) -> Response {
    show_license(&state, &op, &key, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
struct StatusForm {
    csrf: String,
    action: String,
    #[serde(default)]
    reason: String,
}

async fn change_status(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
    Form(form): Form<StatusForm>,
) -> Response {
    if !op.csrf_matches(&form.csrf) {
        return forged(&op);
    }
    if !op.may(scope::LICENSES_WRITE) {
        return no_scope(&op, scope::LICENSES_WRITE);
    }
    let revoke = match form.action.as_str() {
        "revoke" => true,
        "reinstate" => false,
        _ => {
            return show_license(
                &state,
                &op,
                &key,
                StatusCode::BAD_REQUEST,
                None,
                Some("Unknown action."),
            )
            .await;
        }
    };
    let Ok(parsed) = key.parse::<LicenseKey>() else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    match admin::set_status(&state.store, &parsed, revoke, &form.reason, &op.actor()).await {
        Ok(_) => {
            let done = if revoke { "Revoked." } else { "Reinstated." };
            show_license(&state, &op, &key, StatusCode::OK, Some(done), None).await
        }
        Err(AdminError::NotFound) => {
            show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await
        }
        Err(e @ (AdminError::Invalid { .. } | AdminError::Conflict { .. })) => {
            let status = if matches!(e, AdminError::Invalid { .. }) {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::CONFLICT
            };
            show_license(&state, &op, &key, status, None, Some(&e.to_string())).await
        }
        Err(e) => failed(Some(&op), e),
    }
}

#[derive(Deserialize, Default)]
struct DeliveryQuery {
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    before: String,
}

async fn deliveries_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Query(q): Query<DeliveryQuery>,
) -> Response {
    deliveries_view(&state, &op, &q, StatusCode::OK, None).await
}

/// The deliveries list, with a notice above it.
async fn deliveries_view(
    state: &AppState,
    op: &Operator,
    q: &DeliveryQuery,
    status_code: StatusCode,
    notice: Option<&str>,
) -> Response {
    use crate::domain::{DeliveryId, DeliveryStatus};
    if !op.may(scope::DELIVERIES_READ) {
        return no_scope(op, scope::DELIVERIES_READ);
    }
    let endpoint = state
        .config
        .endpoint(q.endpoint.trim())
        .map(|e| e.name.clone());
    let status = q.status.parse::<DeliveryStatus>().ok();
    let before = Some(q.before.trim())
        .filter(|b| DeliveryId::parse(b).is_ok())
        .map(str::to_string);
    let filter = store::deliveries::Filter {
        endpoint: endpoint.clone(),
        status,
        since: None,
        until: None,
        before,
        limit: PAGE_SIZE,
    };
    let rows = async {
        let mut conn = state.store.conn().await?;
        store::deliveries::list(&mut conn, &filter).await
    };
    let rows = match rows.await {
        Ok(rows) => rows,
        Err(e) => return failed(Some(op), e),
    };
    let next = next_page(
        "/console/deliveries",
        rows.len(),
        rows.last().map(|d| d.id.as_str()),
        &[
            ("endpoint", endpoint.as_deref().unwrap_or("")),
            ("status", status.map_or("", |s| s.as_str())),
        ],
    );
    let list: Vec<crate::views::DeliveryOut> = rows
        .into_iter()
        .map(crate::views::DeliveryOut::summary)
        .collect();
    let endpoints: Vec<String> = state
        .config
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    render(
        status_code,
        "deliveries.html",
        context! {
            operator => op.name.clone(), csrf => op.csrf.clone(), page => "deliveries",
            may_write => op.may(scope::DELIVERIES_WRITE),
            deliveries => Serde(&list), endpoints, statuses => DeliveryStatus::names(),
            endpoint, status => status.map(|s| s.as_str()), next, notice,
        },
    )
}

/// The delivery page, with a notice above it.
async fn delivery_view(
    state: &AppState,
    op: &Operator,
    id: &str,
    notice: Option<&str>,
) -> Response {
    if !op.may(scope::DELIVERIES_READ) {
        return no_scope(op, scope::DELIVERIES_READ);
    }
    let not_found = || {
        error_page(
            Some(op),
            StatusCode::NOT_FOUND,
            "No such delivery",
            "No delivery has that id.",
        )
    };
    let Ok(id) = crate::domain::DeliveryId::parse(id) else {
        return not_found();
    };
    let found = async {
        let mut conn = state.store.conn().await?;
        let Some(d) = store::deliveries::get(&mut conn, &id).await? else {
            return Ok(None);
        };
        let key = match &d.license_id {
            Some(l) => licenses::by_id(&mut conn, l)
                .await?
                .map(|l| l.key.to_string()),
            None => None,
        };
        Ok::<_, sqlx::Error>(Some((d, key)))
    };
    let (d, license_key) = match found.await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return failed(Some(op), e),
    };
    let d = match crate::views::DeliveryOut::full(d) {
        Ok(d) => d,
        Err(e) => return failed(Some(op), e),
    };
    let headers: Vec<(String, String)> = d
        .headers
        .as_ref()
        .and_then(|h| h.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // A JSON body pretty-printed; anything else as it came.
    let body = d
        .body
        .as_deref()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| b.to_string())
        })
        .unwrap_or_default();
    let may_replay = op.may(scope::DELIVERIES_WRITE)
        && d.status != crate::domain::DeliveryStatus::Rejected
        && d.signature_valid != Some(false);
    render(
        StatusCode::OK,
        "delivery.html",
        context! {
            operator => op.name.clone(), csrf => op.csrf.clone(), page => "deliveries",
            d => Serde(&d), headers, body, license_key, may_replay, notice,
        },
    )
}

async fn delivery_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(id): Path<String>,
) -> Response {
    delivery_view(&state, &op, &id, None).await
}

async fn replay_one(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    use crate::ingest::{IngestResult, ReplayError};
    if !op.csrf_matches(&form.csrf) {
        return forged(&op);
    }
    if !op.may(scope::DELIVERIES_WRITE) {
        return no_scope(&op, scope::DELIVERIES_WRITE);
    }
    let Ok(parsed) = crate::domain::DeliveryId::parse(&id) else {
        return delivery_view(&state, &op, &id, None).await;
    };
    let notice = match crate::ingest::replay(&state, &parsed).await {
        Ok(IngestResult::Done { applied, .. }) => {
            state.outbox_wake.notify_one();
            match applied.reason() {
                Some(why) => format!("Replayed: {} ({why}).", applied.response_status()),
                None => format!("Replayed: {}.", applied.response_status()),
            }
        }
        Ok(_) => "The replay could not be applied now; try again.".to_string(),
        Err(ReplayError::NotFound) => return delivery_view(&state, &op, &id, None).await,
        Err(ReplayError::Database(e)) => return failed(Some(&op), e),
        Err(e) => format!("Not replayed: {e}."),
    };
    delivery_view(&state, &op, &id, Some(&notice)).await
}

#[derive(Deserialize)]
struct ReplayFailedForm {
    csrf: String,
    #[serde(default)]
    endpoint: String,
}

async fn replay_failed(
    State(state): State<AppState>,
    Signed(op): Signed,
    Form(form): Form<ReplayFailedForm>,
) -> Response {
    if !op.csrf_matches(&form.csrf) {
        return forged(&op);
    }
    if !op.may(scope::DELIVERIES_WRITE) {
        return no_scope(&op, scope::DELIVERIES_WRITE);
    }
    let endpoint = state
        .config
        .endpoint(form.endpoint.trim())
        .map(|e| e.name.clone());
    let filter = crate::ingest::ReplayFilter {
        endpoint: endpoint.clone(),
        since: None,
        after: None,
        limit: Some(500),
    };
    let notice = match crate::ingest::replay_failed(&state, &filter, |_, _| {}).await {
        Ok(s) => {
            state.outbox_wake.notify_one();
            format!(
                "Replayed {}: {} ok, {} duplicate, {} ignored, {} not mapped, {} failed again, {} not applied (database unavailable){}.",
                s.replayed,
                s.ok,
                s.duplicate,
                s.ignored,
                s.no_mint,
                s.error,
                s.unavailable,
                if s.next_after.is_some() {
                    "; more remain: replay again"
                } else {
                    ""
                }
            )
        }
        Err(crate::ingest::ReplayError::Database(e)) => return failed(Some(&op), e),
        Err(e) => format!("Not replayed: {e}."),
    };
    let q = DeliveryQuery {
        endpoint: endpoint.unwrap_or_default(),
        ..DeliveryQuery::default()
    };
    deliveries_view(&state, &op, &q, StatusCode::OK, Some(&notice)).await
}

/// Checks an action's form: the session's CSRF token and `licenses:write`;
/// the refusal when either is missing.
fn refused(op: &Operator, csrf: &str) -> Option<Response> {
    if !op.csrf_matches(csrf) {
        return Some(forged(op));
    }
    if !op.may(scope::LICENSES_WRITE) {
        return Some(no_scope(op, scope::LICENSES_WRITE));
    }
    None
}

async fn resend(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = refused(&op, &form.csrf) {
        return refusal;
    }
    let Ok(parsed) = key.parse::<LicenseKey>() else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    match admin::resend(&state.store, &parsed, false, &op.actor()).await {
        Ok(_) => {
            state.outbox_wake.notify_one();
            show_license(
                &state,
                &op,
                &key,
                StatusCode::OK,
                Some("The email is queued."),
                None,
            )
            .await
        }
        Err(AdminError::NotFound) => {
            show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await
        }
        Err(e @ AdminError::Conflict { .. }) => {
            show_license(
                &state,
                &op,
                &key,
                StatusCode::CONFLICT,
                None,
                Some(&e.to_string()),
            )
            .await
        }
        Err(e) => failed(Some(&op), e),
    }
}

#[derive(Deserialize)]
struct RefundForm {
    csrf: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

async fn refund(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
    Form(form): Form<RefundForm>,
) -> Response {
    if let Some(refusal) = refused(&op, &form.csrf) {
        return refusal;
    }
    let Ok(parsed) = key.parse::<LicenseKey>() else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    let amount = match form.amount.trim() {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(cents) => Some(cents),
            Err(_) => {
                return show_license(
                    &state,
                    &op,
                    &key,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    None,
                    Some("The amount is a whole number of cents."),
                )
                .await;
            }
        },
    };
    let reason = Some(form.reason.trim()).filter(|r| !r.is_empty());
    match admin::request_refund(&state, &parsed, amount, reason, &op.actor()).await {
        Ok(r) => {
            let notice = match &r.error {
                Some(e) => format!(
                    "Refund {} is pending; the provider has not taken it yet ({e}): the reconciler will settle it.",
                    r.id
                ),
                None => format!(
                    "Refund {} is pending until the provider's webhook settles it.",
                    r.id
                ),
            };
            show_license(&state, &op, &key, StatusCode::ACCEPTED, Some(&notice), None).await
        }
        Err(AdminError::NotFound) => {
            show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await
        }
        Err(
            e @ (AdminError::Invalid { .. }
            | AdminError::Conflict { .. }
            | AdminError::RefundsNotConfigured(_)),
        ) => {
            let status = if matches!(e, AdminError::Invalid { .. }) {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::CONFLICT
            };
            show_license(&state, &op, &key, status, None, Some(&e.to_string())).await
        }
        Err(e) => failed(Some(&op), e),
    }
}

#[derive(Deserialize)]
struct MintForm {
    csrf: String,
    product: String,
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    notes: String,
}

async fn mint(
    State(state): State<AppState>,
    Signed(op): Signed,
    Form(form): Form<MintForm>,
) -> Response {
    if let Some(refusal) = refused(&op, &form.csrf) {
        return refusal;
    }
    let optional = |t: &str| Some(t.trim().to_string()).filter(|t| !t.is_empty());
    let req = admin::ManualMint {
        product: form.product.trim().to_string(),
        email: form.email.trim().to_string(),
        name: optional(&form.name),
        order_id: None,
        notes: optional(&form.notes),
    };
    match admin::mint_manual(&state, &req, &op.actor()).await {
        Ok((license, _)) => {
            state.outbox_wake.notify_one();
            let key = license.key.to_string();
            show_license(
                &state,
                &op,
                &key,
                StatusCode::CREATED,
                Some("Minted, and the email is queued."),
                None,
            )
            .await
        }
        Err(
            e @ (AdminError::Invalid { .. }
            | AdminError::UnknownProduct(_)
            | AdminError::Conflict { .. }),
        ) => error_page(
            Some(&op),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not minted",
            &e.to_string(),
        ),
        Err(e) => failed(Some(&op), e),
    }
}

/// A machine change's outcome on the license page.
async fn after_machines(
    state: &AppState,
    op: &Operator,
    key: &str,
    done: Result<String, crate::licensing::LicensingError>,
) -> Response {
    use crate::licensing::LicensingError;
    match done {
        Ok(notice) => show_license(state, op, key, StatusCode::OK, Some(&notice), None).await,
        Err(LicensingError::NotFound) => {
            show_license(state, op, key, StatusCode::NOT_FOUND, None, None).await
        }
        Err(e @ LicensingError::NotActivated) => {
            show_license(
                state,
                op,
                key,
                StatusCode::NOT_FOUND,
                None,
                Some(&e.to_string()),
            )
            .await
        }
        Err(e) => failed(Some(op), e),
    }
}

async fn reset_machines(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = refused(&op, &form.csrf) {
        return refusal;
    }
    let Ok(parsed) = key.parse::<LicenseKey>() else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    let done = state
        .licensing
        .reset(&parsed, &op.actor())
        .await
        .map(|n| format!("{n} machine(s) deactivated."));
    after_machines(&state, &op, &key, done).await
}

async fn deactivate_machine(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path((key, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = refused(&op, &form.csrf) {
        return refusal;
    }
    let (Ok(parsed), Ok(id)) = (
        key.parse::<LicenseKey>(),
        crate::domain::MachineId::parse(&id),
    ) else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    let done = state
        .licensing
        .operator_deactivate(&parsed, &id, &op.actor())
        .await
        .map(|()| "The machine is deactivated.".to_string());
    after_machines(&state, &op, &key, done).await
}

#[derive(Deserialize, Default)]
struct SubscriptionQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    before: String,
}

async fn subscriptions_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Query(q): Query<SubscriptionQuery>,
) -> Response {
    use crate::subscriptions::Status;
    if !op.may(scope::LICENSES_READ) {
        return no_scope(&op, scope::LICENSES_READ);
    }
    let status = Status::ALL.iter().copied().find(|s| s.as_str() == q.status);
    let before = Some(q.before.trim())
        .filter(|b| crate::domain::SubscriptionId::parse(b).is_ok())
        .map(str::to_string);
    let filter = store::subscriptions::Filter {
        status,
        endpoint: None,
        email: None,
        before,
        limit: PAGE_SIZE,
    };
    let rows = async {
        let mut conn = state.store.conn().await?;
        store::subscriptions::search(&mut conn, &filter).await
    };
    let rows = match rows.await {
        Ok(rows) => rows,
        Err(e) => return failed(Some(&op), e),
    };
    let next = next_page(
        "/console/subscriptions",
        rows.len(),
        rows.last().map(|s| s.subscription.id.as_str()),
        &[("status", status.map_or("", |s| s.as_str()))],
    );
    let list: Vec<crate::views::SubscriptionOut> = rows.into_iter().map(Into::into).collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    render(
        StatusCode::OK,
        "subscriptions.html",
        context! {
            operator => op.name, csrf => op.csrf, page => "subscriptions",
            subscriptions => Serde(&list), statuses, status => status.map(|s| s.as_str()), next,
        },
    )
}

async fn subscription_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(id): Path<String>,
) -> Response {
    if !op.may(scope::LICENSES_READ) {
        return no_scope(&op, scope::LICENSES_READ);
    }
    let found = async {
        let mut conn = state.store.conn().await?;
        let Some(row) = store::subscriptions::get(&mut conn, &id).await? else {
            return Ok(None);
        };
        let events = store::subscriptions::history(&mut conn, &row.subscription.id).await?;
        Ok::<_, sqlx::Error>(Some((row, events)))
    };
    match found.await {
        Ok(Some((row, events))) => {
            let s: crate::views::SubscriptionOut = row.into();
            let events: Vec<crate::views::SubscriptionEventOut> =
                events.into_iter().map(Into::into).collect();
            render(
                StatusCode::OK,
                "subscription.html",
                context! {
                    operator => op.name, csrf => op.csrf, page => "subscriptions",
                    s => Serde(&s), events => Serde(&events),
                },
            )
        }
        Ok(None) => error_page(
            Some(&op),
            StatusCode::NOT_FOUND,
            "No such subscription",
            "No subscription has that id.",
        ),
        Err(e) => failed(Some(&op), e),
    }
}

/// Where this keymint is reached, as the browser reached it.
fn origin(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("YOUR-HOST");
    let scheme = if over_https(state, headers) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

async fn settings_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    headers: HeaderMap,
) -> Response {
    if !op.may(scope::LICENSES_READ) {
        return no_scope(&op, scope::LICENSES_READ);
    }
    let base = origin(&state, &headers);
    let cfg = &state.config;
    let endpoints: Vec<Value> = cfg
        .endpoints
        .iter()
        .map(|e| {
            let gumroad = e.kind == crate::config::EndpointKind::Gumroad;
            context! {
                name => e.name.clone(), kind => e.kind.as_str(),
                url => format!(
                    "{base}/webhooks/{}{}",
                    e.name,
                    if gumroad { "?secret=<one of its secrets>" } else { "" }
                ),
                secrets => e.secrets.len(), api_key => e.api_key.is_some(),
            }
        })
        .collect();
    let products: Vec<Value> = cfg
        .products
        .iter()
        .map(|p| {
            let map: Vec<String> = p
                .map
                .iter()
                .map(|(endpoint, ids)| format!("{endpoint}: {}", ids.join(", ")))
                .collect();
            context! {
                id => p.id.clone(), name => p.name.clone(), tier => p.tier.to_uppercase(),
                prefix => p.key_prefix.to_uppercase(),
                lasts => if p.subscription {
                    "the paid period".to_string()
                } else {
                    match p.duration.duration() {
                        Some(d) if d.as_secs() % 86_400 == 0 => {
                            format!("{} days", d.as_secs() / 86_400)
                        }
                        Some(d) => humantime::format_duration(d).to_string(),
                        None => "forever".to_string(),
                    }
                },
                machines => p.max_machines.map_or("unlimited".to_string(), |m| m.to_string()),
                map,
            }
        })
        .collect();
    let provider = match cfg.email.provider {
        crate::config::EmailProvider::Log => "log (emails are written to the log)",
        crate::config::EmailProvider::Postmark => "postmark",
        crate::config::EmailProvider::Smtp => "smtp",
    };
    render(
        StatusCode::OK,
        "settings.html",
        context! {
            operator => op.name, csrf => op.csrf, page => "settings",
            endpoints, products,
            email => context! { provider, from => cfg.email.from.clone() },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_links_to_the_next_with_the_same_filters() {
        let full = usize::try_from(PAGE_SIZE).unwrap();
        assert_eq!(
            next_page(
                "/console/licenses",
                full,
                Some("lic_01J"),
                &[("q", "a b&c")]
            )
            .as_deref(),
            Some("/console/licenses?q=a+b%26c&before=lic_01J")
        );
        assert_eq!(
            next_page("/console/licenses", full - 1, Some("lic_01J"), &[]),
            None
        );
        assert_eq!(next_page("/console/licenses", 0, None, &[]), None);
    }

    /// Every page renders from a context shaped like the handlers' (with
    /// the fields the views give), and escapes what it shows.
    #[test]
    fn every_page_renders_and_escapes() {
        let license = serde_json::json!({
            "key": "DT1-CORE-AAAAA-BBBBB-CCCCC-DDDDD", "status": "active", "status_reason": null,
            "product": "datatools-core", "tier": "core", "name": "<b>Jane</b>",
            "email": "jane@example.com", "source": "gumroad", "order_id": "S-1",
            "issued_at": "2026-11-29T10:00:00Z", "expires_at": null, "max_machines": 3,
            "token": "v4.public.x",
        });
        let history = serde_json::json!([{"at": "t", "action": "minted", "from_status": null,
            "to_status": "active", "actor": "webhook:gumroad", "reason": "<i>r</i>"}]);
        let ctx = context! {
            operator => "ops", csrf => "c", page => "licenses", may_write => true,
            l => Serde(&license), history => Serde(&history), emails => Serde(&serde_json::json!([])),
            machines => Serde(&serde_json::json!([])), notice => "done", problem => Value::UNDEFINED,
        };
        let html = pages()
            .get_template("license.html")
            .unwrap()
            .render(ctx)
            .unwrap();
        // minijinja escapes `/` too (`&#x2f;`).
        assert!(html.contains("&lt;b&gt;Jane&lt;&#x2f;b&gt;"), "{html}");
        assert!(html.contains("&lt;i&gt;r&lt;&#x2f;i&gt;"));
        assert!(!html.contains("<b>Jane"));
    }
}
