//! `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP API,
//! generated from the handlers' annotations.

use crate::app::AppState;
use crate::http::{admin, public, webhooks};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "keymint", description = "Turn payment webhooks into signed, emailed licenses"),
    paths(
        webhooks::receive,
        public::keys,
        admin::mint,
        admin::search,
        admin::show,
        admin::revoke,
        admin::reinstate,
        admin::resend,
        admin::refund,
        admin::list_deliveries,
        admin::show_delivery,
        admin::replay,
        admin::replay_failed,
        admin::list_subscriptions,
        admin::show_subscription,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
