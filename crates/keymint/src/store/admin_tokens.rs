//! `admin_tokens`: bearer tokens for the admin API, stored as SHA-256
//! hashes (the tokens carry 256 random bits, so a plain hash suffices).

use super::Conn;
use crate::domain::{AdminTokenId, Millis};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AdminToken {
    pub id: AdminTokenId,
    pub name: String,
    #[serde(skip)]
    pub token_hash: String,
    pub scopes: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

pub async fn insert(conn: &mut Conn, t: &AdminToken) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_tokens (id, name, token_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&t.id)
    .bind(&t.name)
    .bind(&t.token_hash)
    .bind(&t.scopes)
    .bind(t.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The live (not revoked) token with this hash.
pub async fn find_live(
    conn: &mut Conn,
    token_hash: &str,
) -> Result<Option<AdminToken>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(token_hash)
        .fetch_optional(conn)
        .await
}

/// Notes use at most once a minute, to keep reads from writing.
pub async fn touch(conn: &mut Conn, id: &AdminTokenId, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE admin_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(id)
    .bind(now)
    .bind(now - 60_000)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list(conn: &mut Conn) -> Result<Vec<AdminToken>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM admin_tokens ORDER BY created_at, id")
        .fetch_all(conn)
        .await
}

/// Revokes by id or name; returns how many tokens were revoked.
pub async fn revoke(conn: &mut Conn, id_or_name: &str, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE admin_tokens SET revoked_at = $2 WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
    )
    .bind(id_or_name)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
