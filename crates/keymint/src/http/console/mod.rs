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
use minijinja::{Value, context};
use serde::Deserialize;

mod delivery_pages;
mod license_actions;
mod license_pages;
mod session_pages;
mod subscription_pages;

use delivery_pages::*;
use license_actions::*;
use license_pages::*;
use session_pages::*;
use subscription_pages::*;

/// Licenses per page of a search.
const PAGE_SIZE: i64 = 50;

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
        .route("/console/{*rest}", axum::routing::any(no_such_page))
        // Every console answer: not cached, not framed, no referrer.
        .layer(axum::middleware::map_response(
            |mut resp: Response| async move {
                crate::http::pages::guard(&mut resp, crate::http::pages::CONSOLE_CSP);
                resp
            },
        ))
}

/// A rendered page.
fn render(state: &AppState, status: StatusCode, name: &str, ctx: Value) -> Response {
    crate::http::pages::render(&state.pages.console, "console", status, name, ctx)
}

fn error_page(
    state: &AppState,
    op: Option<&Operator>,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    render(
        state,
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
fn failed(state: &AppState, op: Option<&Operator>, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console request failed");
    error_page(
        state,
        op,
        StatusCode::SERVICE_UNAVAILABLE,
        "Something went wrong",
        "keymint could not answer (is the database reachable?). Try again in a moment.",
    )
}

/// The value of cookie `name` in the request, if sent.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether `sent` is the one-time form value in cookie `name` (constant
/// time); a form posted from anywhere else lacks the cookie.
pub(super) fn form_cookie_matches(headers: &HeaderMap, name: &str, sent: &str) -> bool {
    let expected = cookie(headers, name).unwrap_or_default();
    !expected.is_empty() && console::same(expected, sent)
}

/// Whether the browser reached keymint over HTTPS (through a reverse proxy
/// that says so, when `server.trust_forwarded_for` trusts it).
pub(super) fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.server.trust_forwarded_for
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A console cookie: HttpOnly, SameSite=Strict, for `/console` only,
/// Secure over HTTPS; `max_age` 0 deletes it.
fn set_cookie(secure: bool, name: &str, value: &str, max_age: u64) -> HeaderValue {
    cookie_at("/console", secure, name, value, max_age)
}

/// A cookie for pages under `path`: HttpOnly, SameSite=Strict, Secure
/// over HTTPS; `max_age` 0 deletes it.
pub(super) fn cookie_at(
    path: &str,
    secure: bool,
    name: &str,
    value: &str,
    max_age: u64,
) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
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
            Err(e) => Err(failed(state, None, e)),
        }
    }
}

/// Any other path under `/console`: a page, not the API's JSON.
async fn no_such_page(State(state): State<AppState>) -> Response {
    error_page(
        &state,
        None,
        StatusCode::NOT_FOUND,
        "No such page",
        "There is no console page at this address.",
    )
}

async fn stylesheet(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        state.pages.console_css.clone(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A form without this session's CSRF token.
fn forged(state: &AppState, op: &Operator) -> Response {
    error_page(
        state,
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
        Err(e) => return failed(&state, Some(&op), e),
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
        &state,
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

/// The page for filters that name nothing (a status, endpoint, product or
/// page that does not exist), from `(field, value as sent, known)`; `None`
/// when every filter sent is known. A list is never shown unfiltered for a
/// filter it could not apply.
fn unknown_filters(
    state: &AppState,
    op: &Operator,
    filters: &[(&str, &str, bool)],
) -> Option<Response> {
    let unknown: Vec<String> = filters
        .iter()
        .filter(|(_, value, known)| !value.is_empty() && !known)
        .map(|(field, value, _)| format!("{field} {value:?}"))
        .collect();
    if unknown.is_empty() {
        return None;
    }
    let what = unknown.join(", ");
    Some(error_page(
        state,
        Some(op),
        StatusCode::BAD_REQUEST,
        "Unknown filter",
        &format!(
            "keymint knows no {what}, so nothing is listed. Go back and choose from the lists."
        ),
    ))
}

/// The refusal for the first of `needed` the operator lacks.
fn lacks(state: &AppState, op: &Operator, needed: &[&str]) -> Option<Response> {
    needed
        .iter()
        .find(|s| !op.may(s))
        .map(|s| no_scope(state, op, s))
}

fn no_scope(state: &AppState, op: &Operator, needed: &str) -> Response {
    error_page(
        state,
        Some(op),
        StatusCode::FORBIDDEN,
        "Not allowed",
        &format!("This token lacks the `{needed}` scope."),
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
        let pages = crate::http::pages::Pages::load(None).unwrap();
        let html = pages
            .console
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
