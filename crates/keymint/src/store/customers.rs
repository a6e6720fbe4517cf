//! `customers` and `customer_refs`: who bought, by email, and which
//! provider customer ids name them.

use super::Conn;
use crate::domain::{CustomerId, Millis};
use serde::Serialize;

/// Finds or creates the customer with this email; returns its id.
pub async fn upsert_customer(
    conn: &mut Conn,
    email: &str,
    name: &str,
    now: i64,
) -> Result<CustomerId, sqlx::Error> {
    // A new customer is one statement (the insert answers its id); a
    // known one, whose insert does nothing and answers no row, is a read.
    let inserted: Option<CustomerId> = sqlx::query_scalar(
        "INSERT INTO customers (id, email, name, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (email) DO NOTHING RETURNING id",
    )
    .bind(CustomerId::generate())
    .bind(email)
    .bind(name)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = inserted {
        return Ok(id);
    }
    sqlx::query_scalar("SELECT id FROM customers WHERE email = $1")
        .bind(email)
        .fetch_one(conn)
        .await
}

/// A customer row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Customer {
    pub id: CustomerId,
    pub email: String,
    pub name: String,
    pub created_at: Millis,
}

/// The customer a provider's customer id is linked to.
pub async fn customer_by_ref(
    conn: &mut Conn,
    source: &str,
    customer_ref: &str,
) -> Result<Option<Customer>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.* FROM customer_refs r JOIN customers c ON c.id = r.customer_id \
         WHERE r.source = $1 AND r.ref = $2",
    )
    .bind(source)
    .bind(customer_ref)
    .fetch_optional(conn)
    .await
}

pub async fn customer_by_id(
    conn: &mut Conn,
    id: &CustomerId,
) -> Result<Option<Customer>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Links a provider's customer id to a customer (first link wins).
pub async fn link_customer(
    conn: &mut Conn,
    source: &str,
    customer_ref: &str,
    customer_id: &CustomerId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customer_refs (source, ref, customer_id) VALUES ($1, $2, $3) \
         ON CONFLICT (source, ref) DO NOTHING",
    )
    .bind(source)
    .bind(customer_ref)
    .bind(customer_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The provider's customer id for a license: its subscription's customer,
/// else one the provider linked to the license's customer.
pub async fn provider_customer(
    conn: &mut Conn,
    source: &str,
    license_id: &crate::domain::LicenseId,
    customer_id: &CustomerId,
) -> Result<Option<String>, sqlx::Error> {
    let sub: Option<String> = sqlx::query_scalar(
        "SELECT customer_ref FROM subscriptions WHERE license_id = $1 AND source = $2 \
         AND customer_ref IS NOT NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(license_id)
    .bind(source)
    .fetch_optional(&mut *conn)
    .await?;
    if sub.is_some() {
        return Ok(sub);
    }
    sqlx::query_scalar(
        "SELECT ref FROM customer_refs WHERE source = $1 AND customer_id = $2 ORDER BY ref LIMIT 1",
    )
    .bind(source)
    .bind(customer_id)
    .fetch_optional(conn)
    .await
}
