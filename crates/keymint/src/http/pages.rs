//! The console's and the portal's page templates: compiled into the
//! binary, each replaceable by a file of the same name under
//! `<templates dir>/console/` or `<templates dir>/portal/` (the directory
//! of the email templates), read once at start. minijinja escapes every
//! value in `.html` templates.

use crate::notify::templates::{TemplateError, load_env};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, Value};
use std::path::Path;

macro_rules! pages {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $dir, "/", $name)))),*]
    };
}

const CONSOLE: &[(&str, &str)] = pages!("console":
    "base.html", "sign_in.html", "overview.html", "licenses.html", "license.html",
    "error.html", "deliveries.html", "delivery.html", "subscriptions.html",
    "subscription.html", "settings.html", "console.css",
);

const PORTAL: &[(&str, &str)] = pages!("portal":
    "base.html", "sign_in.html", "sent.html", "link.html", "licenses.html",
    "error.html", "portal.css",
);

/// Both sets of pages.
pub struct Pages {
    pub console: Environment<'static>,
    pub portal: Environment<'static>,
    /// The stylesheets, as loaded (overridable too).
    pub console_css: String,
    pub portal_css: String,
}

impl Pages {
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let named = |set: &str, e: TemplateError| match e {
            TemplateError::Render { name, source } => TemplateError::Render {
                name: format!("{set}/{name}"),
                source,
            },
            other => other,
        };
        let console = load_env(CONSOLE, dir.map(|d| d.join("console")).as_deref())
            .map_err(|e| named("console", e))?;
        let portal = load_env(PORTAL, dir.map(|d| d.join("portal")).as_deref())
            .map_err(|e| named("portal", e))?;
        let css = |env: &Environment<'_>, name: &str| {
            env.get_template(name)
                .map(|t| t.source().to_string())
                .map_err(|source| TemplateError::Render {
                    name: name.into(),
                    source,
                })
        };
        Ok(Self {
            console_css: css(&console, "console.css")?,
            portal_css: css(&portal, "portal.css")?,
            console,
            portal,
        })
    }
}

/// Page `name` of `env` rendered with `ctx` as an HTML answer; a page
/// that fails to render is logged and answered 500 (`what` names the set
/// in the log).
pub fn render(
    env: &Environment<'static>,
    what: &str,
    status: StatusCode,
    name: &str,
    ctx: Value,
) -> Response {
    match env.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(pages = what, template = name, error = %e, "page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The console's Content-Security-Policy: its own stylesheet and forms.
pub const CONSOLE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The portal's: the same, but a form may lead on to an https page
/// (Stripe's billing portal, after keymint's redirect).
pub const PORTAL_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' https:; frame-ancestors 'none'; base-uri 'none'";

/// The headers of every console and portal answer: not cached, not
/// framed, no referrer, not sniffed, and `csp`.
pub fn guard(resp: &mut Response, csp: &'static str) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}
