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

#[derive(Serialize)]
struct KeyOut {
    kid: String,
    public_key: String,
    status: String,
}

#[derive(Serialize)]
struct Keys {
    keys: Vec<KeyOut>,
}

async fn keys(State(state): State<AppState>) -> Result<Json<Keys>, ApiError> {
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
