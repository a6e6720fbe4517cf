//! `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP API. Every
//! route is registered together with its description (utoipa-axum's
//! `routes!`), so the document lists exactly what the router serves; the
//! answers every route of a kind can give (timeouts, authentication, JSON
//! body errors, an unreachable database) are added here once.

use crate::app::AppState;
use crate::http::error::ErrorBody;
use axum::Json;
use std::sync::OnceLock;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "keymint", description = "Turn payment webhooks into signed, emailed licenses"),
    components(schemas(ErrorBody)),
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

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI 3.1 document")))]
async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}

/// The whole description, built once from the router's own routes.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, mut doc) = crate::http::api().split_for_parts();
        add_common_responses(&mut doc);
        doc
    })
}

/// Adds, where an operation does not list it already, every answer its
/// kind of route can give whatever the handler does.
fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let item_is_admin = path.starts_with("/admin/");
        // The licensing API reads any body as JSON and answers every
        // malformed request with a 400 (docs/licensing-api.md, "Errors").
        let item_is_licensing = path.starts_with("/v1/licenses");
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let mut add = |status: &str, description: &str| {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(description));
            };
            add(
                "408",
                "the request took longer than `server.request_timeout`",
            );
            add("405", "the route does not take this method");
            let has_path = op.parameters.as_ref().is_some_and(|ps| {
                ps.iter().any(|p| {
                    matches!(p, RefOr::T(p) if p.parameter_in == utoipa::openapi::path::ParameterIn::Path)
                })
            });
            if has_path && item_is_admin {
                add(
                    "400",
                    "a path value is malformed or has a control character",
                );
            }
            let json_body = op.request_body.as_ref().is_some_and(|b| match b {
                RefOr::T(body) => body.content.contains_key("application/json"),
                RefOr::Ref(_) => false,
            });
            if json_body && item_is_licensing {
                add("400", "the body is not the expected JSON");
                add("413", "the body is over 16 KiB");
            } else if json_body {
                add("400", "the body is not valid JSON");
                add("413", "the body is over `server.max_body_bytes`");
                add("415", "the body is not `application/json`");
                add("422", "a field is missing, unknown or of the wrong type");
            }
            let has_query = op.parameters.as_ref().is_some_and(|ps| {
                ps.iter().any(|p| {
                    matches!(p, RefOr::T(p) if p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
                })
            });
            if has_query {
                add("400", "a query parameter is unknown or has a bad value");
            }
            let takes_key = op.parameters.as_ref().is_some_and(|ps| {
                ps.iter()
                    .any(|p| matches!(p, RefOr::T(p) if p.name == "key"))
            });
            if takes_key {
                add("400", "the license key is malformed");
            }
            if op.security.is_some() {
                add("401", "missing, wrong or revoked bearer token");
                add("403", "the token lacks the scope this route needs");
                add("503", "the database is unreachable; retry");
            }
            // OpenAPI requires a description on every response.
            for (status, response) in op.responses.responses.iter_mut() {
                if let RefOr::T(r) = response
                    && r.description.is_empty()
                {
                    r.description = default_description(status).to_string();
                }
            }
        }
    }
}

/// What a status means when the handler's annotation does not say.
fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "done",
        "201" => "created",
        "202" => "accepted",
        "400" => "the request is malformed",
        "401" => "missing, wrong or revoked bearer token",
        "403" => "the token lacks the scope this route needs",
        "404" => "not found",
        "409" => "conflicts with the current state",
        "413" => "the body is too large",
        "415" => "the body is not `application/json`",
        "422" => "a field is missing, unknown or of the wrong type",
        "503" => "temporarily unavailable; retry",
        _ => "see the error's `code`",
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build(),
    )
}
