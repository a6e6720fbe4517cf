//! Public API: the published verification keys.

use crate::app::AppState;
use crate::http::ApiError;
use crate::store::signing_keys;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/keys", get(keys))
}

/// A verification key.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyOut {
    /// PASERK k4.pid of the key: the `kid` in token footers.
    kid: String,
    /// PASERK k4.public: give it to any PASETO v4 library.
    public_key: String,
    /// active or retired.
    status: String,
}

/// The published verification keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Keys {
    keys: Vec<KeyOut>,
}

/// The keys that verify license tokens (PASERK `k4.public`).
#[utoipa::path(get, path = "/v1/keys", tag = "public", responses((status = 200, body = Keys)))]
pub(crate) async fn keys(State(state): State<AppState>) -> Result<Json<Keys>, ApiError> {
    let mut conn = state.store.conn().await?;
    let keys = signing_keys::list(&mut conn)
        .await?
        .into_iter()
        .map(|k| KeyOut {
            kid: k.kid,
            public_key: k.public_key,
            status: k.status,
        })
        .collect();
    Ok(Json(Keys { keys }))
}
