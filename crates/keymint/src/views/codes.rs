//! Every `code` an error body can carry, for `/openapi.json`'s `ErrorBody`
//! schema: one list, checked against docs/admin-api.md's table by a test,
//! so a client generated from the document knows each one.

/// The codes, as docs/admin-api.md ("Errors") explains them.
pub const ERROR_CODES: &[&str] = &[
    "bad_request",
    "bad_limit",
    "bad_status",
    "bad_cursor",
    "empty_filter",
    "filter_too_long",
    "control_character",
    "bad_license_key",
    "unauthorized",
    "forbidden",
    "license_not_found",
    "machine_not_found",
    "not_found",
    "no_such_route",
    "method_not_allowed",
    "timeout",
    "license_revoked",
    "already_revoked",
    "already_active",
    "refund_pending",
    "refunds_not_configured",
    "order_id_taken",
    "order_id_conflict",
    "conflict",
    "body_too_large",
    "payload_too_large",
    "unsupported_media_type",
    "unprocessable",
    "unknown_product",
    "invalid_email",
    "reason_required",
    "invalid_amount",
    "invalid_max_machines",
    "no_payment",
    "product_not_found",
    "order_not_found",
    "checkout_not_configured",
    "idempotency_key_reused",
    "checkout_in_progress",
    "billing_portal_not_available",
    "redirect_not_allowed",
    "consent_required",
    "rate_limited",
    "provider_failed",
    "internal",
    "unavailable",
];

/// The schema of `ErrorBody.code`: a string, one of [`ERROR_CODES`].
pub(super) fn schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ERROR_CODES.iter().copied()))
        .description(Some(
            "What went wrong, for programs: stable; docs/admin-api.md explains each",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::ERROR_CODES;
    use std::collections::BTreeSet;

    /// The documented table and the published list are the same codes.
    #[test]
    fn the_documented_codes_are_the_published_ones() {
        let docs = include_str!("../../../../docs/admin-api.md");
        let table = docs
            .split("| code | status | meaning |")
            .nth(1)
            .expect("docs/admin-api.md has the table of codes");
        let documented: BTreeSet<&str> = table
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        let published: BTreeSet<&str> = ERROR_CODES.iter().copied().collect();
        assert_eq!(documented, published);
        assert_eq!(published.len(), ERROR_CODES.len(), "a code is listed twice");
    }

    /// Every code the HTTP error type names on its own is published.
    #[test]
    fn the_error_types_codes_are_published() {
        use crate::http::error::code_for_status;
        use axum::http::StatusCode;
        for status in [400, 401, 403, 404, 405, 409, 413, 415, 422, 408, 500, 503] {
            let code = code_for_status(StatusCode::from_u16(status).unwrap());
            assert!(ERROR_CODES.contains(&code), "{status}: {code}");
        }
    }
}
