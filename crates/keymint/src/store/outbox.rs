//! `outbox`: emails to send, written in the same transaction as the
//! license they are about, claimed by workers under a lease.

use super::licenses::License;
use super::{Backend, Conn, Store};
pub use crate::domain::EmailKind;
use crate::domain::{EmailId, EmailStatus, LicenseId, Millis};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: EmailId,
    /// The license the email is about; `None` for a portal sign-in link.
    pub license_id: Option<LicenseId>,
    /// The portal sign-in link the email carries.
    pub link_id: Option<String>,
    pub kind: EmailKind,
    pub dedupe_key: String,
    pub to_email: String,
    pub status: EmailStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub provider_message_id: Option<String>,
    pub created_at: Millis,
    pub sent_at: Option<Millis>,
}

/// Queues an email once per `dedupe_key`; returns false if it was queued
/// before.
pub async fn enqueue(
    conn: &mut Conn,
    license_id: &LicenseId,
    kind: EmailKind,
    dedupe_key: &str,
    to_email: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO outbox (id, license_id, kind, dedupe_key, to_email, status, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $7, 0, $6, $6) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(EmailId::generate())
    .bind(license_id)
    .bind(kind)
    .bind(dedupe_key)
    .bind(to_email)
    .bind(now)
    .bind(EmailStatus::Pending)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Queues a portal sign-in link's email (about no license).
pub async fn enqueue_link(
    conn: &mut Conn,
    link_id: &str,
    to_email: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (id, link_id, kind, dedupe_key, to_email, status, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $7, 0, $6, $6)",
    )
    .bind(EmailId::generate())
    .bind(link_id)
    .bind(EmailKind::PortalLink)
    .bind(format!("{}:{link_id}", EmailKind::PortalLink))
    .bind(to_email)
    .bind(now)
    .bind(EmailStatus::Pending)
    .execute(conn)
    .await?;
    Ok(())
}

/// What a claimed email is about, read in the claim's transaction (`None`
/// when it no longer exists).
#[derive(Debug, Clone)]
pub enum About {
    License(Option<Box<License>>),
    Link(Option<super::portal::Link>),
}

/// True when some email is due and not leased.
pub async fn any_due(conn: &mut Conn, now: i64) -> Result<bool, sqlx::Error> {
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM outbox WHERE status = $2 AND next_attempt_at <= $1 \
         AND (lease_until IS NULL OR lease_until < $1) LIMIT 1",
    )
    .bind(now)
    .bind(EmailStatus::Pending)
    .fetch_optional(conn)
    .await?;
    Ok(due.is_some())
}

/// Leases up to `limit` due rows to the caller until `lease_until`,
/// counting the attempt. On PostgreSQL concurrent workers skip each
/// other's rows (`FOR UPDATE SKIP LOCKED`); on SQLite the caller runs this
/// in an immediate transaction, which serialises claimers.
pub async fn claim_due(
    conn: &mut Conn,
    backend: Backend,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let sql = match backend {
        Backend::Postgres => {
            "UPDATE outbox SET lease_until = $2, attempts = attempts + 1 WHERE id IN (\
             SELECT id FROM outbox WHERE status = $4 AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_attempt_at LIMIT $3 \
             FOR UPDATE SKIP LOCKED) RETURNING *"
        }
        Backend::Sqlite => {
            "UPDATE outbox SET lease_until = $2, attempts = attempts + 1 WHERE id IN (\
             SELECT id FROM outbox WHERE status = $4 AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_attempt_at LIMIT $3) RETURNING *"
        }
    };
    sqlx::query_as(sql)
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .bind(EmailStatus::Pending)
        .fetch_all(conn)
        .await
}

pub async fn mark_sent(
    conn: &mut Conn,
    id: &EmailId,
    message_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET status = $4, sent_at = $2, provider_message_id = $3, lease_until = NULL, \
         last_error = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(message_id)
    .bind(EmailStatus::Sent)
    .execute(conn)
    .await?;
    Ok(())
}

/// How one claimed email's attempt ended.
#[derive(Debug, Clone)]
pub enum Completion {
    Sent { message_id: Option<String> },
    Retry { error: String, next_attempt_at: i64 },
    Dead { error: String },
}

/// Most rows one statement of [`complete`] marks sent.
const SENT_PER_STATEMENT: usize = 16;

/// Records how a round of claimed emails ended: the sent ones in a few
/// multi-row statements, the rest one by one (failures are rare).
pub async fn complete(
    conn: &mut Conn,
    done: &[(EmailId, Completion)],
    now: i64,
) -> Result<(), sqlx::Error> {
    let sent: Vec<(&EmailId, Option<&str>)> = done
        .iter()
        .filter_map(|(id, c)| match c {
            Completion::Sent { message_id } => Some((id, message_id.as_deref())),
            _ => None,
        })
        .collect();
    for chunk in sent.chunks(SENT_PER_STATEMENT) {
        // Rows are (id, provider message id): `column1`, `column2` on both
        // databases.
        let rows = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 3, 2 * i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE outbox SET status = $1, sent_at = $2, provider_message_id = v.column2, \
             lease_until = NULL, last_error = NULL FROM (VALUES {rows}) AS v WHERE outbox.id = v.column1"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(EmailStatus::Sent)
            .bind(now);
        for (id, message_id) in chunk {
            q = q.bind(*id).bind(*message_id);
        }
        q.execute(&mut *conn).await?;
    }
    for (id, c) in done {
        match c {
            Completion::Sent { .. } => {}
            Completion::Retry {
                error,
                next_attempt_at,
            } => mark_retry(conn, id, error, *next_attempt_at).await?,
            Completion::Dead { error } => mark_dead(conn, id, error).await?,
        }
    }
    Ok(())
}

/// [`claim_due`] in the next group commit (the email worker's claim),
/// with what each row is about read in the same transaction.
pub async fn claim_durably(
    store: &Store,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<(OutboxRow, About)>, sqlx::Error> {
    let backend = store.backend();
    store
        .write(move |conn| {
            Box::pin(async move {
                let rows = claim_due(conn, backend, now, lease_until, limit).await?;
                let ids: Vec<_> = rows.iter().filter_map(|r| r.license_id.clone()).collect();
                let found = super::licenses::by_ids(conn, &ids).await?;
                let link_ids: Vec<_> = rows.iter().filter_map(|r| r.link_id.clone()).collect();
                let links = super::portal::links_by_ids(conn, &link_ids).await?;
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        // Rows of one license (an issue and a resend) share it.
                        let about = match (&row.license_id, &row.link_id) {
                            (Some(id), _) => About::License(
                                found.iter().find(|l| &l.id == id).cloned().map(Box::new),
                            ),
                            (None, Some(id)) => {
                                About::Link(links.iter().find(|l| &l.id == id).cloned())
                            }
                            (None, None) => About::License(None),
                        };
                        (row, about)
                    })
                    .collect())
            })
        })
        .await
}

/// [`complete`] in the next group commit, at the time it runs.
pub async fn complete_durably(
    store: &Store,
    done: Vec<(EmailId, Completion)>,
) -> Result<(), sqlx::Error> {
    if done.is_empty() {
        return Ok(());
    }
    let done = Arc::new(done);
    store
        .write(move |conn| {
            let done = done.clone();
            Box::pin(async move { complete(conn, &done, super::now_ms()).await })
        })
        .await
}

pub async fn mark_retry(
    conn: &mut Conn,
    id: &EmailId,
    error: &str,
    next_attempt_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET next_attempt_at = $2, last_error = $3, lease_until = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(next_attempt_at)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Hands a claimed but unsent row back at once (a stopping worker), undoing
/// the attempt its claim counted, so another worker takes it without
/// waiting for the lease to run out.
pub async fn release(conn: &mut Conn, id: &EmailId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET lease_until = NULL, attempts = attempts - 1 \
         WHERE id = $1 AND status = $2",
    )
    .bind(id)
    .bind(EmailStatus::Pending)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_dead(conn: &mut Conn, id: &EmailId, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET status = $3, last_error = $2, lease_until = NULL WHERE id = $1")
        .bind(id)
        .bind(error)
        .bind(EmailStatus::Dead)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn for_license(
    conn: &mut Conn,
    license_id: &LicenseId,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM outbox WHERE license_id = $1 ORDER BY created_at, id")
        .bind(license_id)
        .fetch_all(conn)
        .await
}

pub async fn count_by_status(conn: &mut Conn, status: EmailStatus) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = $1")
        .bind(status)
        .fetch_one(conn)
        .await
}
