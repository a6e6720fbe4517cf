//! What the operator console's overview counts.

use super::Conn;
use serde::Serialize;

/// Rows of one status.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StatusCount {
    pub status: String,
    pub count: i64,
}

/// Licenses by status.
pub async fn licenses(conn: &mut Conn) -> Result<Vec<StatusCount>, sqlx::Error> {
    sqlx::query_as("SELECT status, COUNT(*) AS count FROM licenses GROUP BY status ORDER BY status")
        .fetch_all(conn)
        .await
}

/// Deliveries received since `since` (Unix ms), by status.
pub async fn deliveries(conn: &mut Conn, since: i64) -> Result<Vec<StatusCount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, COUNT(*) AS count FROM deliveries WHERE received_at >= $1 \
         GROUP BY status ORDER BY status",
    )
    .bind(since)
    .fetch_all(conn)
    .await
}

/// Emails in the outbox by status.
pub async fn emails(conn: &mut Conn) -> Result<Vec<StatusCount>, sqlx::Error> {
    sqlx::query_as("SELECT status, COUNT(*) AS count FROM outbox GROUP BY status ORDER BY status")
        .fetch_all(conn)
        .await
}

/// Licenses minted per day (UTC) since `since` (Unix ms, a day's start):
/// (day number since the epoch, all, by hand).
pub async fn minted_per_day(
    conn: &mut Conn,
    since: i64,
) -> Result<Vec<(i64, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT created_at / 86400000 AS day, COUNT(*) AS minted, \
         SUM(CASE WHEN source = $2 THEN 1 ELSE 0 END) AS manual \
         FROM licenses WHERE created_at >= $1 GROUP BY created_at / 86400000 ORDER BY day",
    )
    .bind(since)
    .bind(crate::admin::MANUAL)
    .fetch_all(conn)
    .await
}

/// Subscriptions by status.
pub async fn subscriptions(conn: &mut Conn) -> Result<Vec<StatusCount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, COUNT(*) AS count FROM subscriptions GROUP BY status ORDER BY status",
    )
    .fetch_all(conn)
    .await
}
