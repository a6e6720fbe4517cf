//! Public API: the published verification keys.

use crate::app::AppState;
use crate::domain::SigningKeyStatus;
use crate::http::ApiError;
use crate::store::signing_keys;
use axum::Json;
use axum::extract::State;
use base64::Engine;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(keys))
}

/// A verification key.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyOut {
    /// PASERK k4.pid of the key: the `kid` in token footers.
    kid: String,
    /// PASERK k4.public: give it to any PASETO v4 library.
    public_key: String,
    /// The same key as SPKI PEM, for libraries that take PEM.
    public_key_pem: String,
    /// The same key as its raw 32 bytes, base64url without padding.
    public_key_raw: String,
    /// active or retired.
    status: SigningKeyStatus,
}

/// The published verification keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Keys {
    keys: Vec<KeyOut>,
}

/// The keys that verify license tokens (PASERK `k4.public`).
#[utoipa::path(get, path = "/v1/keys", tag = "public",
    responses((status = 200, body = Keys),
              (status = 503, body = crate::http::error::ErrorBody, description = "the database is unreachable; retry")))]
pub(crate) async fn keys(State(state): State<AppState>) -> Result<Json<Keys>, ApiError> {
    let mut conn = state.store.conn().await?;
    let mut keys = Vec::new();
    for k in signing_keys::list(&mut conn).await? {
        // A stored key that does not parse is a logged 500, never a key
        // left out of the list: clients would stop verifying its tokens
        // without anyone being told (docs/architecture.md, rule 8).
        let key = crate::signing::public_key(&k).map_err(|e| ApiError::Internal(e.into()))?;
        let raw = key.as_bytes();
        let pem = ed25519_compact::PublicKey::from_slice(raw)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("signing key {}: {e}", k.kid)))?
            .to_pem();
        keys.push(KeyOut {
            public_key_pem: pem,
            public_key_raw: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
            kid: k.kid,
            public_key: k.public_key,
            status: k.status,
        });
    }
    Ok(Json(Keys { keys }))
}
