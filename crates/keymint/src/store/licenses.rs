//! `licenses`, `license_refs` (provider ids naming an order) and
//! `license_events` (each license's history).

use super::{Backend, Conn};
pub use crate::domain::LicenseStatus;
use crate::domain::{CustomerId, LicenseEventId, LicenseId, Millis};
use keymint_license::LicenseKey;
use serde::Serialize;

/// A license row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct License {
    pub id: LicenseId,
    /// Stored canonical; a stored key that does not parse fails the read.
    #[sqlx(try_from = "String")]
    pub key: LicenseKey,
    pub customer_id: CustomerId,
    pub product: String,
    pub tier: String,
    pub status: LicenseStatus,
    pub status_reason: Option<String>,
    pub source: String,
    pub order_id: Option<String>,
    pub name: String,
    pub email: String,
    pub token: String,
    pub kid: String,
    pub issued_at: Millis,
    pub expires_at: Option<Millis>,
    pub max_machines: Option<i64>,
    pub entitlements: String,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub test: i64,
    pub notes: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One change in a license's life.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LicenseEvent {
    pub id: LicenseEventId,
    pub license_id: LicenseId,
    pub at: Millis,
    pub action: String,
    pub from_status: Option<LicenseStatus>,
    pub to_status: LicenseStatus,
    pub reason: Option<String>,
    pub actor: String,
    pub delivery_id: Option<String>,
}

/// Search filters; text filters are given lower-cased.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Part of the email (emails are stored lower-cased).
    pub email: Option<String>,
    /// The order id, exactly.
    pub order_id: Option<String>,
    /// Part of the key, email, order id or name, case-insensitively.
    pub q: Option<String>,
    pub product: Option<String>,
    pub status: Option<LicenseStatus>,
    pub before: Option<String>,
    pub limit: i64,
}

/// Inserts a license unless one exists for `(source, order_id)`. Returns
/// false on that conflict (the caller then reads the existing one).
pub async fn insert(conn: &mut Conn, l: &License) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO licenses (id, key, customer_id, product, tier, status, status_reason, source, order_id, \
         name, email, token, kid, issued_at, expires_at, max_machines, entitlements, amount_cents, currency, \
         test, notes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) ON CONFLICT (source, order_id) DO NOTHING",
    )
    .bind(&l.id)
    .bind(l.key.as_str())
    .bind(&l.customer_id)
    .bind(&l.product)
    .bind(&l.tier)
    .bind(l.status)
    .bind(&l.status_reason)
    .bind(&l.source)
    .bind(&l.order_id)
    .bind(&l.name)
    .bind(&l.email)
    .bind(&l.token)
    .bind(&l.kid)
    .bind(l.issued_at)
    .bind(l.expires_at)
    .bind(l.max_machines)
    .bind(&l.entitlements)
    .bind(l.amount_cents)
    .bind(&l.currency)
    .bind(l.test)
    .bind(&l.notes)
    .bind(l.created_at)
    .bind(l.updated_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn by_order(
    conn: &mut Conn,
    source: &str,
    order_id: &str,
) -> Result<Option<License>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM licenses WHERE source = $1 AND order_id = $2")
        .bind(source)
        .bind(order_id)
        .fetch_optional(conn)
        .await
}

/// A license of another source whose order, or one of whose provider ids,
/// is `order_id`.
pub async fn by_order_elsewhere(
    conn: &mut Conn,
    source: &str,
    order_id: &str,
) -> Result<Option<License>, sqlx::Error> {
    let found = sqlx::query_as(
        "SELECT * FROM licenses WHERE order_id = $1 AND source <> $2 ORDER BY id LIMIT 1",
    )
    .bind(order_id)
    .bind(source)
    .fetch_optional(&mut *conn)
    .await?;
    if found.is_some() {
        return Ok(found);
    }
    sqlx::query_as(
        "SELECT l.* FROM license_refs r JOIN licenses l ON l.id = r.license_id \
         WHERE r.ref = $1 AND r.source <> $2 ORDER BY l.id LIMIT 1",
    )
    .bind(order_id)
    .bind(source)
    .fetch_optional(conn)
    .await
}

pub async fn by_key(conn: &mut Conn, key: &LicenseKey) -> Result<Option<License>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM licenses WHERE key = $1")
        .bind(key.as_str())
        .fetch_optional(conn)
        .await
}

/// Every license of one (lower-cased) email, newest first, up to `limit`.
pub async fn of_email(
    conn: &mut Conn,
    email: &str,
    limit: i64,
) -> Result<Vec<License>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM licenses WHERE email = $1 ORDER BY id DESC LIMIT $2")
        .bind(email)
        .bind(limit)
        .fetch_all(conn)
        .await
}

pub async fn by_id(conn: &mut Conn, id: &LicenseId) -> Result<Option<License>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM licenses WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The licenses with these ids (those that exist), in a few statements.
pub async fn by_ids(conn: &mut Conn, ids: &[LicenseId]) -> Result<Vec<License>, sqlx::Error> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(16) {
        let params = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT * FROM licenses WHERE id IN ({params})");
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id);
        }
        found.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// The license as it stands now, locked until the caller's transaction
/// ends: a status change decides from this, not from an earlier read, so
/// two writers on PostgreSQL (READ COMMITTED, several replicas) cannot
/// both act on a stale status. SQLite's write transaction already holds
/// the database's one write lock.
pub async fn by_id_for_update(
    conn: &mut Conn,
    id: &LicenseId,
) -> Result<Option<License>, sqlx::Error> {
    let sql = match Backend::of(conn) {
        Backend::Postgres => "SELECT * FROM licenses WHERE id = $1 FOR UPDATE",
        Backend::Sqlite => "SELECT * FROM licenses WHERE id = $1",
    };
    sqlx::query_as(sql).bind(id).fetch_optional(conn).await
}

/// The license with `key`, locked the same way: concurrent activations of
/// one license queue on it, on any replica (docs/architecture.md, "Seats").
pub async fn by_key_for_update(
    conn: &mut Conn,
    key: &LicenseKey,
) -> Result<Option<License>, sqlx::Error> {
    let sql = match Backend::of(conn) {
        Backend::Postgres => "SELECT * FROM licenses WHERE key = $1 FOR UPDATE",
        Backend::Sqlite => "SELECT * FROM licenses WHERE key = $1",
    };
    sqlx::query_as(sql)
        .bind(key.as_str())
        .fetch_optional(conn)
        .await
}

/// A LIKE pattern matching `text` anywhere, its wildcards escaped with a
/// backslash (named by `ESCAPE` in the query: the same on both databases).
fn contains(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

pub async fn search(conn: &mut Conn, f: &Filter) -> Result<Vec<License>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM licenses WHERE ($1 IS NULL OR email LIKE $1 ESCAPE '\\') \
         AND ($2 IS NULL OR product = $2) AND ($3 IS NULL OR status = $3) \
         AND ($4 IS NULL OR id < $4) AND ($5 IS NULL OR order_id = $5) \
         AND ($6 IS NULL OR LOWER(key) LIKE $6 ESCAPE '\\' OR email LIKE $6 ESCAPE '\\' \
              OR LOWER(COALESCE(order_id, '')) LIKE $6 ESCAPE '\\' OR LOWER(name) LIKE $6 ESCAPE '\\') \
         ORDER BY id DESC LIMIT $7",
    )
    .bind(f.email.as_deref().map(|e| contains(&e.to_lowercase())))
    .bind(&f.product)
    .bind(f.status)
    .bind(&f.before)
    .bind(&f.order_id)
    .bind(f.q.as_deref().map(|q| contains(&q.to_lowercase())))
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

/// Moves a license to `to` and records why, in the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub async fn set_status(
    conn: &mut Conn,
    license: &License,
    to: LicenseStatus,
    action: &str,
    reason: Option<&str>,
    actor: &str,
    delivery_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE licenses SET status = $2, status_reason = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(&license.id)
    .bind(to)
    .bind(reason)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    record_event(
        conn,
        &license.id,
        action,
        Some(license.status),
        to,
        reason,
        actor,
        delivery_id,
        now,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
pub async fn record_event(
    conn: &mut Conn,
    license_id: &LicenseId,
    action: &str,
    from: Option<LicenseStatus>,
    to: LicenseStatus,
    reason: Option<&str>,
    actor: &str,
    delivery_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO license_events (id, license_id, at, action, from_status, to_status, reason, actor, delivery_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(LicenseEventId::generate())
    .bind(license_id)
    .bind(now)
    .bind(action)
    .bind(from)
    .bind(to)
    .bind(reason)
    .bind(actor)
    .bind(delivery_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn history(
    conn: &mut Conn,
    license_id: &LicenseId,
) -> Result<Vec<LicenseEvent>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM license_events WHERE license_id = $1 ORDER BY at, id")
        .bind(license_id)
        .fetch_all(conn)
        .await
}

pub async fn count_for_order(
    conn: &mut Conn,
    source: &str,
    order_id: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM licenses WHERE source = $1 AND order_id = $2")
        .bind(source)
        .bind(order_id)
        .fetch_one(conn)
        .await
}

/// The license whose order any of `ids` names: its own order id first,
/// then the other provider ids recorded for it.
pub async fn find_by_refs(
    conn: &mut Conn,
    source: &str,
    ids: &[String],
) -> Result<Option<License>, sqlx::Error> {
    for id in ids {
        if let Some(l) = by_order(conn, source, id).await? {
            return Ok(Some(l));
        }
    }
    by_any_ref(conn, source, ids).await
}

/// The license another order recorded any of `ids` for (its refs only, in
/// one query of at most four ids at a time).
pub async fn by_any_ref(
    conn: &mut Conn,
    source: &str,
    ids: &[String],
) -> Result<Option<License>, sqlx::Error> {
    for chunk in ids.chunks(4) {
        let pick = |i: usize| chunk.get(i).or(chunk.first()).cloned();
        let found = sqlx::query_as(
            "SELECT l.* FROM license_refs r JOIN licenses l ON l.id = r.license_id \
             WHERE r.source = $1 AND r.ref IN ($2, $3, $4, $5) LIMIT 1",
        )
        .bind(source)
        .bind(pick(0))
        .bind(pick(1))
        .bind(pick(2))
        .bind(pick(3))
        .fetch_optional(&mut *conn)
        .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Records provider ids that name this license's order. Returns the id of
/// another license that already holds one of them, if any.
pub async fn add_refs(
    conn: &mut Conn,
    source: &str,
    refs: &[String],
    license_id: &LicenseId,
) -> Result<Option<LicenseId>, sqlx::Error> {
    for r in refs {
        // The insert answers a row only when it wrote one: then the ref is
        // this license's, without a read.
        let inserted: Option<LicenseId> = sqlx::query_scalar(
            "INSERT INTO license_refs (source, ref, license_id) VALUES ($1, $2, $3) \
             ON CONFLICT (source, ref) DO NOTHING RETURNING license_id",
        )
        .bind(source)
        .bind(r)
        .bind(license_id)
        .fetch_optional(&mut *conn)
        .await?;
        if inserted.is_some() {
            continue;
        }
        let holder: LicenseId = sqlx::query_scalar(
            "SELECT license_id FROM license_refs WHERE source = $1 AND ref = $2",
        )
        .bind(source)
        .bind(r)
        .fetch_one(&mut *conn)
        .await?;
        if &holder != license_id {
            return Ok(Some(holder));
        }
    }
    Ok(None)
}

/// Deletes a license written earlier in the same transaction (a concurrent
/// one won the race for one of its refs).
pub async fn delete_fresh(conn: &mut Conn, license_id: &LicenseId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM license_refs WHERE license_id = $1")
        .bind(license_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM licenses WHERE id = $1")
        .bind(license_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces a license's token (renewal, new expiry).
pub async fn set_token(
    conn: &mut Conn,
    license_id: &LicenseId,
    token: &str,
    kid: &str,
    expires_at: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE licenses SET token = $2, kid = $3, expires_at = $4, issued_at = $5, updated_at = $5 \
         WHERE id = $1",
    )
    .bind(license_id)
    .bind(token)
    .bind(kid)
    .bind(expires_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The provider ids recorded for a license's order.
pub async fn refs_of(conn: &mut Conn, license_id: &LicenseId) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT ref FROM license_refs WHERE license_id = $1 ORDER BY ref")
        .bind(license_id)
        .fetch_all(conn)
        .await
}
