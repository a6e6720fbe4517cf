//! `signing_keys`: public halves and status of signing keys. Private keys
//! never enter the database; they live in the data directory.

use super::{Backend, Conn};
use crate::domain::{Millis, SigningKeyStatus};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub public_key: String,
    pub status: SigningKeyStatus,
    pub created_at: Millis,
    pub retired_at: Option<Millis>,
    /// 1 for the one key that signs.
    pub signing: i64,
}

/// Registers a key's public half (idempotent).
pub async fn register(
    conn: &mut Conn,
    kid: &str,
    public_key: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, public_key, status, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (kid) DO NOTHING",
    )
    .bind(kid)
    .bind(public_key)
    .bind(SigningKeyStatus::Active)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list(conn: &mut Conn) -> Result<Vec<SigningKeyRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM signing_keys ORDER BY created_at, kid")
        .fetch_all(conn)
        .await
}

/// Makes processes that choose the signing key at start take turns, until
/// the caller's transaction ends: a PostgreSQL advisory lock (SQLite's
/// write transaction is already exclusive).
pub async fn lock_choice(conn: &mut Conn, backend: Backend) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        // Any fixed number; keymint takes no other advisory lock with it.
        sqlx::query("SELECT 1 FROM pg_advisory_xact_lock(7309471013)")
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The kid of the key that signs, if one is recorded.
pub async fn active_kid(conn: &mut Conn) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT kid FROM signing_keys WHERE signing = 1")
        .fetch_optional(conn)
        .await
}

/// Makes `kid` the key that signs, in the caller's transaction. Returns
/// false when no registered, unretired key has that kid.
pub async fn activate(conn: &mut Conn, kid: &str) -> Result<bool, sqlx::Error> {
    let usable: Option<String> =
        sqlx::query_scalar("SELECT kid FROM signing_keys WHERE kid = $1 AND status <> $2")
            .bind(kid)
            .bind(SigningKeyStatus::Retired)
            .fetch_optional(&mut *conn)
            .await?;
    if usable.is_none() {
        return Ok(false);
    }
    sqlx::query("UPDATE signing_keys SET signing = 0 WHERE signing = 1 AND kid <> $1")
        .bind(kid)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE signing_keys SET signing = 1 WHERE kid = $1")
        .bind(kid)
        .execute(conn)
        .await?;
    Ok(true)
}

/// What [`retire`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Retired {
    Done,
    /// No unretired key has that kid.
    Unknown,
    /// The key signs; another must be activated first.
    Signing,
}

/// Retires a key that does not sign: it stops verifying.
pub async fn retire(conn: &mut Conn, kid: &str, now: i64) -> Result<Retired, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE signing_keys SET status = $3, retired_at = $2 \
         WHERE kid = $1 AND status <> $3 AND signing = 0",
    )
    .bind(kid)
    .bind(now)
    .bind(SigningKeyStatus::Retired)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(Retired::Done);
    }
    let signing: Option<i64> =
        sqlx::query_scalar("SELECT signing FROM signing_keys WHERE kid = $1 AND status <> $2")
            .bind(kid)
            .bind(SigningKeyStatus::Retired)
            .fetch_optional(conn)
            .await?;
    Ok(match signing {
        Some(_) => Retired::Signing,
        None => Retired::Unknown,
    })
}
