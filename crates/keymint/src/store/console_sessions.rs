//! `console_sessions`: operator console sessions, stored by the SHA-256 of
//! the cookie's secret and read joined to their live admin token.

use super::Conn;
use crate::domain::AdminTokenId;

/// A live session's token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionToken {
    pub token_id: AdminTokenId,
    pub name: String,
    pub scopes: String,
}

pub async fn insert(
    conn: &mut Conn,
    id: &str,
    token_id: &AdminTokenId,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO console_sessions (id, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(token_id)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The session's token, while the session has not expired and the token
/// is not revoked.
pub async fn find_live(
    conn: &mut Conn,
    id: &str,
    now: i64,
) -> Result<Option<SessionToken>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id AS token_id, t.name AS name, t.scopes AS scopes FROM console_sessions s \
         JOIN admin_tokens t ON t.id = s.token_id \
         WHERE s.id = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(conn)
    .await
}

pub async fn delete(conn: &mut Conn, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_sessions WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes sessions that expired before `now`; how many.
pub async fn delete_expired(conn: &mut Conn, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
