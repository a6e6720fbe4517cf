//! `refunds`: operator-initiated refunds, pending until a webhook or the
//! reconciler decides.

use super::Conn;
pub use crate::domain::RefundStatus;
use crate::domain::{LicenseId, Millis, RefundId};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Refund {
    pub id: RefundId,
    pub license_id: LicenseId,
    pub endpoint: String,
    pub payment_ref: String,
    pub amount_cents: Option<i64>,
    pub status: RefundStatus,
    pub provider_refund_id: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub requested_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Writes a pending refund; false when the license already has one.
pub async fn insert_pending(conn: &mut Conn, r: &Refund) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO refunds (id, license_id, endpoint, payment_ref, amount_cents, status, reason, \
         requested_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $9, $6, $7, $8, $8) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&r.id)
    .bind(&r.license_id)
    .bind(&r.endpoint)
    .bind(&r.payment_ref)
    .bind(r.amount_cents)
    .bind(&r.reason)
    .bind(&r.requested_by)
    .bind(r.created_at)
    .bind(RefundStatus::Pending)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn pending_for_license(
    conn: &mut Conn,
    license_id: &LicenseId,
) -> Result<Option<Refund>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM refunds WHERE license_id = $1 AND status = $2")
        .bind(license_id)
        .bind(RefundStatus::Pending)
        .fetch_optional(conn)
        .await
}

pub async fn get(conn: &mut Conn, id: &RefundId) -> Result<Option<Refund>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM refunds WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn for_license(
    conn: &mut Conn,
    license_id: &LicenseId,
) -> Result<Vec<Refund>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM refunds WHERE license_id = $1 ORDER BY created_at, id")
        .bind(license_id)
        .fetch_all(conn)
        .await
}

/// Records what the provider's synchronous answer said (never a terminal
/// status).
pub async fn note_call(
    conn: &mut Conn,
    id: &RefundId,
    provider_refund_id: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refunds SET provider_refund_id = COALESCE($2, provider_refund_id), error = $3, \
         updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(provider_refund_id)
    .bind(error)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a pending refund to a terminal status; false if it was not pending.
pub async fn finish(
    conn: &mut Conn,
    id: &RefundId,
    to: RefundStatus,
    error: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE refunds SET status = $2, error = COALESCE($3, error), updated_at = $4 \
         WHERE id = $1 AND status = $5",
    )
    .bind(id)
    .bind(to)
    .bind(error)
    .bind(now)
    .bind(RefundStatus::Pending)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Pending refunds the provider knows (it gave an id) older than `before`.
pub async fn stuck(conn: &mut Conn, before: i64, limit: i64) -> Result<Vec<Refund>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM refunds WHERE status = $3 AND provider_refund_id IS NOT NULL \
         AND created_at < $1 ORDER BY created_at LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .bind(RefundStatus::Pending)
    .fetch_all(conn)
    .await
}

/// Pending refunds without a provider id older than `before`: the process
/// died (or the provider refused) between writing the row and the call.
pub async fn orphans(conn: &mut Conn, before: i64, limit: i64) -> Result<Vec<Refund>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM refunds WHERE status = $3 AND provider_refund_id IS NULL \
         AND created_at < $1 ORDER BY created_at LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .bind(RefundStatus::Pending)
    .fetch_all(conn)
    .await
}
