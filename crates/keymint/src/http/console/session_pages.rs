//! Signing in to the console and out of it.

use super::*;

pub(super) async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
        state,
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
pub(super) struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

pub(super) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if !form_cookie_matches(&headers, SIGN_IN_COOKIE, &form.csrf) {
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
        Ok(None) => {
            metrics::counter!("keymint_console_sign_in_failures_total").increment(1);
            tracing::warn!("console sign-in refused: not a live admin token");
            sign_in_form(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("That is not a live admin token."),
            )
        }
        Err(e) => failed(&state, None, e),
    }
}

pub(super) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Signed(op): Signed,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !op.csrf_matches(&form.csrf) {
        return forged(&state, &op);
    }
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = console::sign_out(&state.store, secret).await
    {
        return failed(&state, Some(&op), e);
    }
    let mut resp = Redirect::to("/console/sign-in").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(over_https(&state, &headers), SESSION_COOKIE, "", 0),
    );
    resp
}
