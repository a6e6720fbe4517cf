//! `subscriptions` and `subscription_events`: one row per provider
//! subscription, and every event applied to it or refused as stale.

use super::{Backend, Conn};
use crate::domain::{CustomerId, LicenseId, Millis, SubscriptionEventId, SubscriptionId};
use crate::subscriptions::{State, Status};
use serde::Serialize;

/// A subscription row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub source: String,
    pub subscription_id: String,
    pub status: Status,
    pub trial_end: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: i64,
    pub last_event_at: Millis,
    pub product: Option<String>,
    pub customer_id: Option<CustomerId>,
    pub customer_ref: Option<String>,
    pub license_id: Option<LicenseId>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Subscription {
    /// The row as the state machine sees it.
    pub fn state(&self) -> State {
        State {
            status: self.status,
            trial_end: self.trial_end,
            current_period_end: self.current_period_end,
            cancel_at_period_end: self.cancel_at_period_end != 0,
            last_event_at: self.last_event_at.as_i64(),
        }
    }
}

// Stored as its text. An unknown stored status fails the read, naming it,
// never a default (docs/architecture.md, rule 8): guessing
// `pending_payment` would take access away.
crate::domain::text_column!(Status, |text: &str| {
    Status::parse(text).ok_or_else(|| {
        format!(
            "unknown stored subscription status {text:?} (expected one of: {})",
            Status::ALL.map(Status::as_str).join(", ")
        )
    })
});

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One event in a subscription's life.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SubscriptionEvent {
    pub id: SubscriptionEventId,
    pub subscription_id: SubscriptionId,
    /// The provider's time for the event.
    pub at: Millis,
    pub received_at: Millis,
    pub event_type: String,
    /// `applied`, `stale` or `ignored`.
    pub result: String,
    pub from_status: Option<Status>,
    pub to_status: Status,
    pub period_end: Option<i64>,
    pub actor: String,
    pub delivery_id: Option<String>,
}

/// Returns the row for `(source, subscription_id)`, locked for this
/// transaction, creating it (`pending_payment`) when new; the flag says
/// whether it was created now.
pub async fn lock_or_create(
    conn: &mut Conn,
    backend: Backend,
    source: &str,
    subscription_id: &str,
    at: i64,
    now: i64,
) -> Result<(Subscription, bool), sqlx::Error> {
    let created = sqlx::query(
        "INSERT INTO subscriptions (id, source, subscription_id, status, last_event_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $6, $4, $5, $5) ON CONFLICT (source, subscription_id) DO NOTHING",
    )
    .bind(SubscriptionId::generate())
    .bind(source)
    .bind(subscription_id)
    .bind(at)
    .bind(now)
    .bind(Status::PendingPayment)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    // SQLite transactions here already hold the write lock.
    let sql = match backend {
        Backend::Postgres => {
            "SELECT * FROM subscriptions WHERE source = $1 AND subscription_id = $2 FOR UPDATE"
        }
        Backend::Sqlite => "SELECT * FROM subscriptions WHERE source = $1 AND subscription_id = $2",
    };
    let row = sqlx::query_as(sql)
        .bind(source)
        .bind(subscription_id)
        .fetch_one(conn)
        .await?;
    Ok((row, created))
}

/// Writes the row's state and links.
pub async fn save(conn: &mut Conn, s: &Subscription) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET status = $2, trial_end = $3, current_period_end = $4, \
         cancel_at_period_end = $5, last_event_at = $6, product = $7, customer_id = $8, \
         customer_ref = $9, license_id = $10, updated_at = $11 WHERE id = $1",
    )
    .bind(&s.id)
    .bind(s.status)
    .bind(s.trial_end)
    .bind(s.current_period_end)
    .bind(s.cancel_at_period_end)
    .bind(s.last_event_at)
    .bind(&s.product)
    .bind(&s.customer_id)
    .bind(&s.customer_ref)
    .bind(&s.license_id)
    .bind(s.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn record_event(conn: &mut Conn, e: &SubscriptionEvent) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscription_events (id, subscription_id, at, received_at, event_type, result, \
         from_status, to_status, period_end, actor, delivery_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&e.id)
    .bind(&e.subscription_id)
    .bind(e.at)
    .bind(e.received_at)
    .bind(&e.event_type)
    .bind(&e.result)
    .bind(e.from_status)
    .bind(e.to_status)
    .bind(e.period_end)
    .bind(&e.actor)
    .bind(&e.delivery_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Search filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub endpoint: Option<String>,
    pub email: Option<String>,
    pub before: Option<String>,
    pub limit: i64,
}

/// A subscription with its customer's email, for listings.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Listed {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub subscription: Subscription,
    pub email: Option<String>,
    pub license_key: Option<String>,
}

pub async fn search(conn: &mut Conn, f: &Filter) -> Result<Vec<Listed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.*, c.email AS email, l.key AS license_key FROM subscriptions s \
         LEFT JOIN customers c ON c.id = s.customer_id LEFT JOIN licenses l ON l.id = s.license_id \
         WHERE ($1 IS NULL OR s.status = $1) AND ($2 IS NULL OR s.source = $2) \
         AND ($3 IS NULL OR c.email = $3) AND ($4 IS NULL OR s.id < $4) ORDER BY s.id DESC LIMIT $5",
    )
    .bind(f.status)
    .bind(&f.endpoint)
    .bind(f.email.as_ref().map(|e| e.to_lowercase()))
    .bind(&f.before)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

/// By keymint id (`sub_...`) or by the provider's subscription id.
pub async fn get(conn: &mut Conn, id: &str) -> Result<Option<Listed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.*, c.email AS email, l.key AS license_key FROM subscriptions s \
         LEFT JOIN customers c ON c.id = s.customer_id LEFT JOIN licenses l ON l.id = s.license_id \
         WHERE s.id = $1 OR s.subscription_id = $1 ORDER BY s.id LIMIT 1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The subscription a license belongs to, if any (the newest, should a
/// provider have moved it).
pub async fn of_license(
    conn: &mut Conn,
    license_id: &LicenseId,
) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM subscriptions WHERE license_id = $1 ORDER BY id DESC LIMIT 1")
        .bind(license_id)
        .fetch_optional(conn)
        .await
}

pub async fn history(
    conn: &mut Conn,
    subscription_row_id: &SubscriptionId,
) -> Result<Vec<SubscriptionEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM subscription_events WHERE subscription_id = $1 ORDER BY received_at, id",
    )
    .bind(subscription_row_id)
    .fetch_all(conn)
    .await
}

/// Subscriptions whose license is still active although the paid period
/// (or trial) plus `grace` ended before `now`: the sweeper's work.
pub async fn due_for_expiry(
    conn: &mut Conn,
    now: i64,
    grace: i64,
    limit: i64,
) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.* FROM subscriptions s JOIN licenses l ON l.id = s.license_id \
         WHERE l.status = 'active' AND s.status IN ('trialing', 'active', 'past_due', 'canceled') \
         AND COALESCE(CASE WHEN s.status = 'trialing' THEN s.trial_end END, s.current_period_end) < $1 \
         ORDER BY s.id LIMIT $2",
    )
    .bind(now - grace)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Subscriptions still waiting for their first payment since before
/// `before` (the reconciler asks the provider about them).
pub async fn stuck_pending(
    conn: &mut Conn,
    before: i64,
    limit: i64,
) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM subscriptions WHERE status = 'pending_payment' AND updated_at < $1 \
         ORDER BY updated_at LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}
