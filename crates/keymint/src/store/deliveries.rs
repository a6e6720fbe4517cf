//! `deliveries`: the audit log of every webhook delivery, authenticated or
//! not, with its raw body so it can be replayed.

use super::{Conn, Store};
use crate::domain::{DeliveryId, DeliveryStatus, LicenseId, Millis};
use serde::Serialize;
use std::sync::Arc;

/// What ingest writes before acting.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub endpoint: String,
    pub kind: String,
    pub received_at: Millis,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub path: String,
    pub headers: String,
    pub body: StoredBody,
    pub signature_valid: bool,
    pub status: DeliveryStatus,
    /// Why it was rejected, for a delivery that failed authentication.
    pub error: Option<String>,
}

/// How processing ended, written in the same transaction as its effects.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: DeliveryStatus,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub order_id: Option<String>,
    pub error: Option<String>,
    pub license_id: Option<LicenseId>,
}

impl Outcome {
    /// A failure (replayable) with its reason and no event context yet.
    pub fn failed(reason: String) -> Self {
        Self {
            status: DeliveryStatus::Failed,
            event_type: None,
            event_id: None,
            order_id: None,
            error: Some(reason),
            license_id: None,
        }
    }
}

/// A stored delivery.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: DeliveryId,
    pub endpoint: String,
    pub kind: String,
    pub received_at: Millis,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub path: String,
    pub headers: String,
    #[serde(skip)]
    pub body: Vec<u8>,
    /// Size of the whole body as received (bytes); `body` holds only a
    /// prefix of a rejected delivery's.
    pub body_size: Option<i64>,
    /// SHA-256 of the whole body as received, hex.
    pub body_sha256: Option<String>,
    pub signature_valid: Option<i64>,
    pub status: DeliveryStatus,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub order_id: Option<String>,
    pub error: Option<String>,
    pub license_id: Option<LicenseId>,
    pub processed_at: Option<Millis>,
    pub attempts: i64,
}

/// How much of a rejected delivery's body is kept: enough to see what was
/// sent, too little for a flood of forged requests to fill the disk.
pub const REJECTED_BODY_PREFIX: usize = 4096;

/// A body as stored, with the size and SHA-256 (hex) of the whole body as
/// received, whatever part of it is kept.
#[derive(Debug, Clone)]
pub struct StoredBody {
    pub bytes: Vec<u8>,
    pub size: i64,
    pub sha256: String,
}

impl StoredBody {
    /// All of it: an authentic delivery is kept whole, to be replayed.
    pub fn whole(body: Vec<u8>) -> Self {
        let (size, sha256) = digest(&body);
        Self {
            bytes: body,
            size,
            sha256,
        }
    }

    /// At most [`REJECTED_BODY_PREFIX`] bytes of it, for a delivery that
    /// failed authentication.
    pub fn prefix(body: &[u8]) -> Self {
        let (size, sha256) = digest(body);
        Self {
            bytes: body[..body.len().min(REJECTED_BODY_PREFIX)].to_vec(),
            size,
            sha256,
        }
    }
}

fn digest(body: &[u8]) -> (i64, String) {
    use sha2::Digest;
    (
        i64::try_from(body.len()).expect("bodies are capped far below i64::MAX"),
        hex::encode(sha2::Sha256::digest(body)),
    )
}

/// Filters for listing; every field optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub endpoint: Option<String>,
    pub status: Option<DeliveryStatus>,
    /// Received at or after (ms).
    pub since: Option<i64>,
    /// Received before (ms).
    pub until: Option<i64>,
    /// Only ids lower than this (the previous page's last id).
    pub before: Option<String>,
    pub limit: i64,
}

pub async fn insert(conn: &mut Conn, d: &NewDelivery) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO deliveries (id, endpoint, kind, received_at, source_ip, user_agent, request_id, \
         path, headers, body, signature_valid, status, error, attempts, body_size, body_sha256) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $15)",
    )
    .bind(&d.id)
    .bind(&d.endpoint)
    .bind(&d.kind)
    .bind(d.received_at)
    .bind(&d.source_ip)
    .bind(&d.user_agent)
    .bind(&d.request_id)
    .bind(&d.path)
    .bind(&d.headers)
    .bind(&d.body.bytes)
    .bind(i64::from(d.signature_valid))
    .bind(d.status)
    .bind(&d.error)
    .bind(d.body.size)
    .bind(&d.body.sha256)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a delivery before anything acts on it (docs/architecture.md,
/// rule 1): answers once the row is durably committed, in the next group
/// commit.
pub async fn record(store: &Store, d: Arc<NewDelivery>) -> Result<(), sqlx::Error> {
    store
        .write(move |conn| {
            let d = d.clone();
            Box::pin(async move { insert(conn, &d).await })
        })
        .await
}

/// Writes the outcome of one processing attempt on its own, in the next
/// group commit.
pub async fn finish_durably(
    store: &Store,
    id: &DeliveryId,
    outcome: Outcome,
) -> Result<(), sqlx::Error> {
    let work = Arc::new((id.clone(), outcome));
    store
        .write(move |conn| {
            let work = work.clone();
            Box::pin(async move {
                let (id, outcome) = &*work;
                finish(conn, id, outcome, super::now_ms()).await
            })
        })
        .await
}

/// Writes the outcome of one processing attempt.
pub async fn finish(
    conn: &mut Conn,
    id: &DeliveryId,
    outcome: &Outcome,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET status = $2, event_type = COALESCE($3, event_type), \
         event_id = COALESCE($4, event_id), order_id = COALESCE($5, order_id), error = $6, \
         license_id = COALESCE($7, license_id), processed_at = $8, attempts = attempts + 1 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(outcome.status)
    .bind(&outcome.event_type)
    .bind(&outcome.event_id)
    .bind(&outcome.order_id)
    // Reasons can quote what a sender sent; keep them one clean line.
    .bind(outcome.error.as_deref().map(crate::text::clean_line))
    .bind(&outcome.license_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id: &DeliveryId) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn list(conn: &mut Conn, f: &Filter) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM deliveries WHERE ($1 IS NULL OR endpoint = $1) AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR received_at >= $3) AND ($4 IS NULL OR received_at < $4) \
         AND ($5 IS NULL OR id < $5) ORDER BY id DESC LIMIT $6",
    )
    .bind(&f.endpoint)
    .bind(f.status)
    .bind(f.since)
    .bind(f.until)
    .bind(&f.before)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

/// Counts by status (for tests and the console).
pub async fn count_where(conn: &mut Conn, order_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(conn)
        .await
}

/// Claims an event id for an endpoint. Returns false when it was already
/// processed: the database, not memory, decides exactly-once.
pub async fn claim_event(
    conn: &mut Conn,
    endpoint: &str,
    event_id: &str,
    delivery_id: &DeliveryId,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO processed_events (endpoint, event_id, delivery_id, processed_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (endpoint, event_id) DO NOTHING",
    )
    .bind(endpoint)
    .bind(event_id)
    .bind(delivery_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Authentic deliveries still `received` that arrived before `cutoff`
/// (Unix ms): their request is gone without an outcome. Oldest first.
pub async fn stuck(
    conn: &mut Conn,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<DeliveryId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE status = $1 AND signature_valid = 1 \
         AND received_at < $2 ORDER BY received_at, id LIMIT $3",
    )
    .bind(DeliveryStatus::Received)
    .bind(cutoff)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Failed, authentic deliveries after `after_id` (oldest first), for bulk
/// replay.
pub async fn failed_page(
    conn: &mut Conn,
    endpoint: Option<&str>,
    since: Option<i64>,
    after_id: &str,
    limit: i64,
) -> Result<Vec<DeliveryId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE status = $1 AND signature_valid = 1 \
         AND ($2 IS NULL OR endpoint = $2) AND ($3 IS NULL OR received_at >= $3) AND id > $4 \
         ORDER BY id LIMIT $5",
    )
    .bind(DeliveryStatus::Failed)
    .bind(endpoint)
    .bind(since)
    .bind(after_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}
