//! `signing_keys`: public halves and status of signing keys. Private keys
//! never enter the database; they live in the data directory.

use super::Conn;
use serde::Serialize;

pub mod status {
    pub const ACTIVE: &str = "active";
    pub const RETIRED: &str = "retired";
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub public_key: String,
    pub status: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// Registers a key's public half (idempotent).
pub async fn register(
    conn: &mut Conn,
    kid: &str,
    public_key: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, public_key, status, created_at) VALUES ($1, $2, 'active', $3) \
         ON CONFLICT (kid) DO NOTHING",
    )
    .bind(kid)
    .bind(public_key)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list(conn: &mut Conn) -> Result<Vec<SigningKeyRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM signing_keys ORDER BY created_at, kid")
        .fetch_all(conn)
        .await
}

pub async fn retire(conn: &mut Conn, kid: &str, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE signing_keys SET status = 'retired', retired_at = $2 WHERE kid = $1 AND status <> 'retired'",
    )
    .bind(kid)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
