//! `orders` and `order_events`: checkouts keymint started. A row is
//! written `pending_payment` before the provider is called; only the
//! dispatcher (a webhook, or the reconciler's synthetic event) ends that
//! state, except for a provider call that failed outright.

use super::Conn;
pub use crate::domain::OrderStatus;
use crate::domain::{LicenseId, Millis, OrderId};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Order {
    pub id: OrderId,
    pub product: String,
    pub endpoint: String,
    pub status: OrderStatus,
    pub email: Option<String>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
    #[serde(skip)]
    pub request_digest: String,
    #[serde(skip)]
    pub match_key: Option<String>,
    #[serde(skip)]
    pub first_trial: Option<String>,
    pub trial_days: Option<i64>,
    pub consent_terms: Option<String>,
    pub consent_at: Option<Millis>,
    pub consent_ip: Option<String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub provider_ref: Option<String>,
    pub checkout_url: Option<String>,
    #[serde(skip)]
    pub client_secret: Option<String>,
    pub license_id: Option<LicenseId>,
    pub error: Option<String>,
    pub source_ip: Option<String>,
    #[serde(skip)]
    pub checked_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One step of an order's history.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OrderEvent {
    pub id: String,
    pub order_id: OrderId,
    pub at: Millis,
    pub from_status: Option<OrderStatus>,
    pub to_status: OrderStatus,
    pub cause: String,
    pub actor: String,
    pub delivery_id: Option<String>,
    pub detail: Option<String>,
}

/// Who moved an order, and from which delivery.
pub struct Step<'a> {
    pub cause: &'a str,
    pub actor: &'a str,
    pub delivery_id: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub now: i64,
}

/// Writes a new pending order; false when a unique key (the client's
/// idempotency key, a pending order of the same request, a live trial of
/// the same buyer) already holds it.
pub async fn insert(conn: &mut Conn, o: &Order, step: &Step<'_>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO orders (id, product, endpoint, status, email, idempotency_key, request_digest, \
         match_key, first_trial, trial_days, consent_terms, consent_at, consent_ip, success_url, \
         cancel_url, source_ip, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&o.id)
    .bind(&o.product)
    .bind(&o.endpoint)
    .bind(o.status)
    .bind(&o.email)
    .bind(&o.idempotency_key)
    .bind(&o.request_digest)
    .bind(&o.match_key)
    .bind(&o.first_trial)
    .bind(o.trial_days)
    .bind(&o.consent_terms)
    .bind(o.consent_at)
    .bind(&o.consent_ip)
    .bind(&o.success_url)
    .bind(&o.cancel_url)
    .bind(&o.source_ip)
    .bind(o.created_at)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    record(conn, &o.id, None, o.status, step).await?;
    Ok(true)
}

async fn record(
    conn: &mut Conn,
    id: &OrderId,
    from: Option<OrderStatus>,
    to: OrderStatus,
    step: &Step<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO order_events (id, order_id, at, from_status, to_status, cause, actor, \
         delivery_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(format!("oev_{}", ulid::Ulid::generate()))
    .bind(id)
    .bind(step.now)
    .bind(from)
    .bind(to)
    .bind(step.cause)
    .bind(step.actor)
    .bind(step.delivery_id)
    .bind(step.detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a step that changes no status (a conflict an operator should
/// see).
pub async fn note(
    conn: &mut Conn,
    id: &OrderId,
    status: OrderStatus,
    step: &Step<'_>,
) -> Result<(), sqlx::Error> {
    record(conn, id, Some(status), status, step).await
}

pub async fn get(conn: &mut Conn, id: &OrderId) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn by_idempotency_key(conn: &mut Conn, key: &str) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM orders WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await
}

pub async fn pending_by_match(
    conn: &mut Conn,
    match_key: &str,
) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM orders WHERE match_key = $1 AND status = $2")
        .bind(match_key)
        .bind(OrderStatus::PendingPayment)
        .fetch_optional(conn)
        .await
}

/// Whether `email` already had a trial (a live order that started one) or
/// a license of `product`: trial = first_time gives it none.
pub async fn had_trial_or_license(
    conn: &mut Conn,
    first_trial: &str,
    product: &str,
    email: &str,
) -> Result<bool, sqlx::Error> {
    let trial: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM orders WHERE first_trial = $1 AND status IN ($2, $3) LIMIT 1",
    )
    .bind(first_trial)
    .bind(OrderStatus::PendingPayment)
    .bind(OrderStatus::Paid)
    .fetch_optional(&mut *conn)
    .await?;
    if trial.is_some() {
        return Ok(true);
    }
    let license: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM licenses WHERE email = $1 AND product = $2 LIMIT 1")
            .bind(email)
            .bind(product)
            .fetch_optional(conn)
            .await?;
    Ok(license.is_some())
}

/// What the provider answered when the checkout was created.
pub async fn note_checkout(
    conn: &mut Conn,
    id: &OrderId,
    provider_ref: &str,
    url: Option<&str>,
    client_secret: Option<&str>,
    step: &Step<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET provider_ref = $2, checkout_url = $3, client_secret = $4, \
         updated_at = $5 WHERE id = $1",
    )
    .bind(id)
    .bind(provider_ref)
    .bind(url)
    .bind(client_secret)
    .bind(step.now)
    .execute(&mut *conn)
    .await?;
    let status = get(conn, id)
        .await?
        .map_or(OrderStatus::PendingPayment, |o| o.status);
    record(conn, id, Some(status), status, step).await
}

/// Moves a pending order to `to` (failed or expired) with `error`; false
/// when it was no longer pending.
pub async fn close(
    conn: &mut Conn,
    id: &OrderId,
    to: OrderStatus,
    error: Option<&str>,
    step: &Step<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE orders SET status = $2, error = $3, updated_at = $4 WHERE id = $1 AND status = $5",
    )
    .bind(id)
    .bind(to)
    .bind(error)
    .bind(step.now)
    .bind(OrderStatus::PendingPayment)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    record(conn, id, Some(OrderStatus::PendingPayment), to, step).await?;
    Ok(true)
}

/// Marks an order (`before`, as just read) paid by `license_id`, from
/// whatever state it was in (a payment the provider took is honoured even
/// after keymint gave up on it), with the license's email when the
/// checkout had none (the provider collected it); false when it was
/// already paid.
pub async fn mark_paid(
    conn: &mut Conn,
    before: &Order,
    license_id: &LicenseId,
    step: &Step<'_>,
) -> Result<bool, sqlx::Error> {
    let id = &before.id;
    if before.status == OrderStatus::Paid {
        return Ok(false);
    }
    // An order paid after it ended gives up its hold on the buyer's trial:
    // a later checkout may hold it now, and the license itself counts from
    // here on (`had_trial_or_license`).
    let sql = if before.status == OrderStatus::PendingPayment {
        "UPDATE orders SET status = $2, license_id = $3, error = NULL, updated_at = $4, \
         email = COALESCE(email, (SELECT email FROM licenses WHERE id = $3)) \
         WHERE id = $1 AND status = $5"
    } else {
        "UPDATE orders SET status = $2, license_id = $3, error = NULL, updated_at = $4, \
         email = COALESCE(email, (SELECT email FROM licenses WHERE id = $3)), first_trial = NULL \
         WHERE id = $1 AND status = $5"
    };
    let done = sqlx::query(sql)
        .bind(id)
        .bind(OrderStatus::Paid)
        .bind(license_id)
        .bind(step.now)
        .bind(before.status)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    record(conn, id, Some(before.status), OrderStatus::Paid, step).await?;
    Ok(true)
}

pub async fn history(conn: &mut Conn, id: &OrderId) -> Result<Vec<OrderEvent>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM order_events WHERE order_id = $1 ORDER BY at, id")
        .bind(id)
        .fetch_all(conn)
        .await
}

pub struct Filter {
    pub status: Option<OrderStatus>,
    pub product: Option<String>,
    pub email: Option<String>,
    pub before: Option<String>,
    pub limit: i64,
}

/// Orders, newest first.
pub async fn search(conn: &mut Conn, f: &Filter) -> Result<Vec<Order>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM orders WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR product = $2) \
         AND ($3 IS NULL OR email = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
    )
    .bind(f.status)
    .bind(&f.product)
    .bind(f.email.as_ref().map(|e| e.to_lowercase()))
    .bind(&f.before)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

/// Pending orders older than `before`: with a provider reference (`known`)
/// to read from the provider, least recently read first (so checkouts that
/// stay open cannot keep the others from ever being read), or without one
/// (the provider call never finished).
pub async fn stuck(
    conn: &mut Conn,
    before: i64,
    known: bool,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    let sql = if known {
        "SELECT * FROM orders WHERE status = $1 AND provider_ref IS NOT NULL AND created_at < $2 \
         ORDER BY COALESCE(checked_at, 0), created_at LIMIT $3"
    } else {
        "SELECT * FROM orders WHERE status = $1 AND provider_ref IS NULL AND created_at < $2 \
         ORDER BY created_at LIMIT $3"
    };
    sqlx::query_as(sql)
        .bind(OrderStatus::PendingPayment)
        .bind(before)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Notes that the reconciler read the order from the provider now.
pub async fn mark_checked(conn: &mut Conn, id: &OrderId, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET checked_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// A retried request without a key no longer finds this order.
pub async fn forget_match(conn: &mut Conn, id: &OrderId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET match_key = NULL WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Claims a pending order whose provider call never finished, so one
/// caller (a retried request, or the reconciler) calls the provider again:
/// true for the one that moved `updated_at` from `seen` to `now`.
pub async fn claim_redrive(
    conn: &mut Conn,
    id: &OrderId,
    seen: Millis,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE orders SET updated_at = $3 WHERE id = $1 AND updated_at = $2 \
         AND provider_ref IS NULL AND status = $4",
    )
    .bind(id)
    .bind(seen)
    .bind(now)
    .bind(OrderStatus::PendingPayment)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
