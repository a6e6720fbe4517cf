//! The buyer portal at `/portal` (docs/portal.md): a buyer asks for a
//! sign-in link by email, opens it, and sees and looks after every license
//! of that email. Server-rendered pages like the console's (same cookies,
//! same CSRF scheme, same headers), no JavaScript. Every action goes
//! through the same functions as the admin API and the licensing API,
//! scoped to the signed-in email. Served only with `[portal] enabled`.

use super::console::{cookie, cookie_at, form_cookie_matches, over_https};
use crate::app::AppState;
use crate::domain::Email;
use crate::portal::{self, Buyer, FORM_COOKIE, LinkRequest, SESSION_COOKIE};
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::{Value, context};
use serde::Deserialize;
use std::net::SocketAddr;

mod holdings_pages;

use holdings_pages::*;

/// The portal's routes; none unless `[portal] enabled`.
pub fn routes(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/portal", get(home))
        .route("/portal/", get(|| async { Redirect::to("/portal") }))
        .route("/portal/sign-in", post(ask_for_link))
        .route("/portal/sent", get(sent_page))
        .route("/portal/sign-in/{token}", get(link_page).post(use_link))
        .route("/portal/sign-out", post(sign_out))
        .route("/portal/licenses/{key}/license.txt", get(license_file))
        .route("/portal/licenses/{key}/resend", post(resend))
        .route("/portal/licenses/{key}/manage", post(manage))
        .route(
            "/portal/licenses/{key}/machines/{id}/deactivate",
            post(deactivate),
        )
        .route("/portal/static/portal.css", get(stylesheet))
        .route("/portal/{*rest}", axum::routing::any(no_such_page))
        // Every portal answer: the console's headers, its own CSP.
        .layer(axum::middleware::map_response(
            |mut resp: Response| async move {
                crate::http::pages::guard(&mut resp, crate::http::pages::PORTAL_CSP);
                resp
            },
        ))
}

/// A rendered portal page: the seller's name and support address are in
/// every page's context.
fn render(state: &AppState, status: StatusCode, name: &str, ctx: Value) -> Response {
    let cfg = &state.config.portal;
    let ctx = context! {
        seller => cfg.seller_name.clone(),
        support => cfg.support_email.clone(),
        ..ctx
    };
    crate::http::pages::render(&state.pages.portal, "portal", status, name, ctx)
}

fn error_page(
    state: &AppState,
    buyer: Option<&Buyer>,
    status: StatusCode,
    title: &str,
    message: &str,
    again: bool,
) -> Response {
    render(
        state,
        status,
        "error.html",
        context! {
            buyer => buyer.map(|b| b.email.clone()),
            csrf => buyer.map(|b| b.csrf.clone()),
            title, message, again,
        },
    )
}

/// A failure the buyer cannot fix by trying again at once.
fn failed(state: &AppState, buyer: Option<&Buyer>, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "portal request failed");
    error_page(
        state,
        buyer,
        StatusCode::SERVICE_UNAVAILABLE,
        "Something went wrong",
        "We could not answer just now. Try again in a moment.",
        false,
    )
}

/// A form without its CSRF token.
fn forged(state: &AppState, buyer: Option<&Buyer>) -> Response {
    error_page(
        state,
        buyer,
        StatusCode::FORBIDDEN,
        "Refused",
        "The form did not come from this page, or it is too old. Nothing was done; go back and try again.",
        false,
    )
}

fn portal_cookie(secure: bool, name: &str, value: &str, max_age: u64) -> axum::http::HeaderValue {
    cookie_at("/portal", secure, name, value, max_age)
}

/// Sets a fresh one-time form value in a cookie beside `page` (a form
/// posted from anywhere else lacks the cookie) and renders it.
fn with_form_cookie(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    name: &str,
    ctx: Value,
) -> Response {
    let value = crate::console::random_secret();
    let mut resp = render(
        state,
        status,
        name,
        context! { form_csrf => value.clone(), ..ctx },
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        portal_cookie(over_https(state, headers), FORM_COOKIE, &value, 3600),
    );
    resp
}

/// Spends one of the client's requests; the page saying to wait when
/// over the limit.
fn over_limit(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Option<Response> {
    let ip = super::client_ip(&state.config.server, headers, peer);
    state.portal_limits.admit(&ip).err().map(|wait| {
        metrics::counter!("keymint_portal_rate_limited_total").increment(1);
        let mut resp = error_page(
            state,
            None,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "Too many sign-in attempts from your network. Wait a minute and try again.",
            false,
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from(wait.as_secs().max(1)),
        );
        resp
    })
}

/// The signed-in buyer, if any.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<Buyer>, Response> {
    let Some(secret) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    portal::buyer(&state.store, secret)
        .await
        .map_err(|e| failed(state, None, e))
}

/// A signed-in buyer; anyone else is sent to the sign-in page.
struct Signed(Buyer);

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        match signed_in(state, &parts.headers).await? {
            Some(buyer) => Ok(Self(buyer)),
            None => Err(Redirect::to("/portal").into_response()),
        }
    }
}

/// Any other path under `/portal`: a page, not the API's JSON.
async fn no_such_page(State(state): State<AppState>) -> Response {
    error_page(
        &state,
        None,
        StatusCode::NOT_FOUND,
        "No such page",
        "There is no page at this address.",
        false,
    )
}

async fn stylesheet(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        format!("{}\n{}", state.pages.console_css, state.pages.portal_css),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct HomeQuery {
    /// What the action that redirected here did.
    #[serde(default)]
    done: String,
}

/// `/portal`: the buyer's licenses, or the sign-in form.
async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HomeQuery>,
) -> Response {
    match signed_in(&state, &headers).await {
        Ok(Some(buyer)) => {
            let notice = Done::parse(&q.done).map(|d| d.notice(&buyer));
            licenses_page(&state, &buyer, notice.as_deref(), None).await
        }
        Ok(None) => with_form_cookie(
            &state,
            &headers,
            StatusCode::OK,
            "sign_in.html",
            context! {},
        ),
        Err(resp) => resp,
    }
}

/// The least time a request for a link takes to answer, whatever it
/// found (a few milliseconds of work at most, unless the database is
/// slow).
const ANSWER_FLOOR: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Deserialize)]
struct AskForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    csrf: String,
}

/// Asks for a sign-in link. The answer is the same page whether or not
/// the address holds a license, or was sent too many links this hour.
async fn ask_for_link(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<AskForm>,
) -> Response {
    if let Some(resp) = over_limit(&state, &headers, peer) {
        return resp;
    }
    if !form_cookie_matches(&headers, FORM_COOKIE, &form.csrf) {
        return with_form_cookie(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            "sign_in.html",
            context! { problem => "The form expired or did not come from this page; try again." },
        );
    }
    let email = match Email::parse(&form.email) {
        Ok(email) => email,
        Err(_) => {
            return with_form_cookie(
                &state,
                &headers,
                StatusCode::UNPROCESSABLE_ENTITY,
                "sign_in.html",
                context! {
                    problem => "That is not an email address.",
                    email => form.email.chars().take(254).collect::<String>(),
                },
            );
        }
    };
    let cfg = &state.config.portal;
    // The answer leaves no sooner than ANSWER_FLOOR after the request
    // came: queuing a link takes a little longer than finding none, and
    // the time must not tell which happened.
    let floor = tokio::time::Instant::now() + ANSWER_FLOOR;
    let outcome = portal::request_link(&state.store, &state.keyring, cfg, &email).await;
    tokio::time::sleep_until(floor).await;
    match outcome {
        Ok(outcome) => {
            // Counted without the outcome: `/metrics` must not tell
            // whether an address bought.
            metrics::counter!("keymint_portal_link_requests_total").increment(1);
            if outcome == LinkRequest::Queued {
                state.outbox_wake.notify_one();
            }
            // To the page that says so, which a reload does not post
            // again; the address rides along in a short-lived cookie.
            let asked = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                email.as_str(),
            );
            let mut resp = Redirect::to("/portal/sent").into_response();
            resp.headers_mut().append(
                header::SET_COOKIE,
                portal_cookie(over_https(&state, &headers), ASKED_COOKIE, &asked, 600),
            );
            resp
        }
        Err(e) => failed(&state, None, e),
    }
}

/// The cookie that carries the address a link was asked for, to the page
/// after the request.
const ASKED_COOKIE: &str = "km_portal_asked";

/// "Check your email", after a request for a link.
async fn sent_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let email = cookie(&headers, ASKED_COOKIE)
        .and_then(|v| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v).ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| Email::parse(&text).ok());
    render(
        &state,
        StatusCode::OK,
        "sent.html",
        context! {
            email => email.map(Email::into_string),
            minutes => state.config.portal.link_ttl.as_secs() / 60,
        },
    )
}

fn link_refused(state: &AppState) -> Response {
    error_page(
        state,
        None,
        StatusCode::GONE,
        "This link no longer works",
        "Sign-in links work once, for a short time. This one was used already or has expired.",
        true,
    )
}

/// The page an emailed link opens: it asks before signing in, so a mail
/// scanner that follows links does not use the link up.
async fn link_page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    if let Some(resp) = over_limit(&state, &headers, peer) {
        return resp;
    }
    match portal::link_email(&state.store, &token).await {
        Ok(Some(email)) => with_form_cookie(
            &state,
            &headers,
            StatusCode::OK,
            "link.html",
            context! { email, token },
        ),
        Ok(None) => link_refused(&state),
        Err(e) => failed(&state, None, e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Uses the link (once) and signs in.
async fn use_link(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(resp) = over_limit(&state, &headers, peer) {
        return resp;
    }
    if !form_cookie_matches(&headers, FORM_COOKIE, &form.csrf) {
        return forged(&state, None);
    }
    let ttl = state.config.portal.session_ttl;
    match portal::sign_in(&state.store, &token, ttl).await {
        Ok(Some(secret)) => {
            metrics::counter!("keymint_portal_sign_ins_total").increment(1);
            let secure = over_https(&state, &headers);
            let mut resp = Redirect::to("/portal").into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                portal_cookie(secure, SESSION_COOKIE, &secret, ttl.as_secs()),
            );
            h.append(
                header::SET_COOKIE,
                portal_cookie(secure, FORM_COOKIE, "", 0),
            );
            resp
        }
        Ok(None) => link_refused(&state),
        Err(e) => failed(&state, None, e),
    }
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Signed(buyer): Signed,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !buyer.csrf_matches(&form.csrf) {
        return forged(&state, Some(&buyer));
    }
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = portal::sign_out(&state.store, secret).await
    {
        return failed(&state, Some(&buyer), e);
    }
    let mut resp = Redirect::to("/portal").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        portal_cookie(over_https(&state, &headers), SESSION_COOKIE, "", 0),
    );
    resp
}
