//! `portal_links` and `portal_sessions`: the buyer portal's sign-in links
//! (stored by the SHA-256 of the emailed token) and browser sessions
//! (stored by the SHA-256 of the cookie's secret), each scoped to one
//! email.

use super::Conn;

/// A sign-in link as the outbox worker needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Link {
    pub id: String,
    pub email: String,
    pub kid: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// Records a request for a sign-in link for the address with this hash.
pub async fn record_request(
    conn: &mut Conn,
    email_hash: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO portal_requests (id, email_hash, at) VALUES ($1, $2, $3)")
        .bind(format!("plr_{}", ulid::Ulid::generate()))
        .bind(email_hash)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many requests the address with this hash made since `since`.
pub async fn requests_since(
    conn: &mut Conn,
    email_hash: &str,
    since: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM portal_requests WHERE email_hash = $1 AND at > $2")
        .bind(email_hash)
        .bind(since)
        .fetch_one(conn)
        .await
}

pub async fn insert_link(
    conn: &mut Conn,
    id: &str,
    token_hash: &str,
    email: &str,
    kid: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO portal_links (id, token_hash, email, kid, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(token_hash)
    .bind(email)
    .bind(kid)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The links with these ids (those that exist), in one statement (a
/// claim holds at most a batch of rows).
pub async fn links_by_ids(conn: &mut Conn, ids: &[String]) -> Result<Vec<Link>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let params = (1..=ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT id, email, kid, created_at, expires_at, used_at FROM portal_links WHERE id IN ({params})"
    );
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(id);
    }
    q.fetch_all(conn).await
}

/// The email of a live, unused link with this token hash (read only: the
/// page a link opens asks before it signs in).
pub async fn live_link(
    conn: &mut Conn,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT email FROM portal_links WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// Marks a live, unused link used and returns its email; `None` when the
/// link is unknown, used or expired. One statement: of two racing uses,
/// one wins.
pub async fn use_link(
    conn: &mut Conn,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE portal_links SET used_at = $2 \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING email",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// Deletes requests made before `before`, and links that expired before
/// it with their emails.
pub async fn delete_old(conn: &mut Conn, before: i64) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM portal_requests WHERE at < $1")
        .bind(before)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "DELETE FROM outbox WHERE link_id IN (SELECT id FROM portal_links WHERE expires_at < $1)",
    )
    .bind(before)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query("DELETE FROM portal_links WHERE expires_at < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

pub async fn insert_session(
    conn: &mut Conn,
    id: &str,
    email: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO portal_sessions (id, email, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(email)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The email of a live session.
pub async fn session_email(
    conn: &mut Conn,
    id: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT email FROM portal_sessions WHERE id = $1 AND expires_at > $2")
        .bind(id)
        .bind(now)
        .fetch_optional(conn)
        .await
}

pub async fn delete_session(conn: &mut Conn, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM portal_sessions WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_expired_sessions(conn: &mut Conn, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM portal_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
