//! `machines`: the machines each license is activated on, and the one
//! read a validation makes (docs/licensing-api.md). Fingerprints arrive
//! here already hashed ([`crate::domain::Fingerprint::hash_for`]).

use super::Conn;
use crate::domain::{LicenseId, LicenseStatus, MachineId, Millis};
use crate::store::licenses::License;
use crate::subscriptions::Status as SubscriptionStatus;

/// The history action of a deactivation, and the actor of the public
/// API: together they count a key's deactivation budget.
pub const DEACTIVATED: &str = "machine_deactivated";
pub const ACTIVATED: &str = "machine_activated";
/// The actor the public licensing API records (the key is the
/// credential; no person is named).
pub const PUBLIC_ACTOR: &str = "licensing-api";
/// The actor of the buyer portal's deactivations (the same budget).
pub const PORTAL_ACTOR: &str = "buyer-portal";

/// A machine row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Machine {
    pub id: MachineId,
    pub license_id: LicenseId,
    pub fingerprint_hash: String,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub hostname: Option<String>,
    pub app_version: Option<String>,
    pub activated_at: Millis,
    pub last_seen_at: Millis,
    pub activated_by: String,
}

/// Everything a validation needs, read in one statement (one round trip:
/// most of a validation's cost): the license, its seat count, the machine
/// asked about, its newest subscription and, for a revoked license, the
/// action that revoked it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Lookup {
    #[sqlx(flatten)]
    pub license: License,
    pub machines_active: i64,
    pub revoked_by: Option<String>,
    pub machine_id: Option<MachineId>,
    pub machine_name: Option<String>,
    pub machine_platform: Option<String>,
    pub machine_hostname: Option<String>,
    pub machine_app_version: Option<String>,
    pub machine_activated_at: Option<Millis>,
    pub machine_last_seen_at: Option<Millis>,
    pub subscription_status: Option<SubscriptionStatus>,
    pub trial_end: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: Option<i64>,
}

/// The license with `key`, with the machine whose hash is
/// `fingerprint_hash` when one is asked about (a hash no row has, when
/// not). A read only: it never takes SQLite's write lock.
pub async fn lookup(
    conn: &mut Conn,
    key: &str,
    fingerprint_hash: Option<&str>,
) -> Result<Option<Lookup>, sqlx::Error> {
    sqlx::query_as(
        "SELECT l.*, \
           (SELECT COUNT(*) FROM machines c WHERE c.license_id = l.id) AS machines_active, \
           CASE WHEN l.status = $3 THEN (SELECT e.action FROM license_events e \
             WHERE e.license_id = l.id AND e.to_status = $3 ORDER BY e.at DESC, e.id DESC LIMIT 1) END AS revoked_by, \
           m.id AS machine_id, m.name AS machine_name, m.platform AS machine_platform, \
           m.hostname AS machine_hostname, m.app_version AS machine_app_version, \
           m.activated_at AS machine_activated_at, m.last_seen_at AS machine_last_seen_at, \
           s.status AS subscription_status, s.trial_end AS trial_end, \
           s.current_period_end AS current_period_end, s.cancel_at_period_end AS cancel_at_period_end \
         FROM licenses l \
         LEFT JOIN machines m ON m.license_id = l.id AND m.fingerprint_hash = $2 \
         LEFT JOIN subscriptions s ON s.id = (SELECT s2.id FROM subscriptions s2 \
           WHERE s2.license_id = l.id ORDER BY s2.updated_at DESC, s2.id DESC LIMIT 1) \
         WHERE l.key = $1",
    )
    .bind(key)
    .bind(fingerprint_hash)
    .bind(LicenseStatus::Revoked)
    .fetch_optional(conn)
    .await
}

pub async fn find(
    conn: &mut Conn,
    license_id: &LicenseId,
    fingerprint_hash: &str,
) -> Result<Option<Machine>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM machines WHERE license_id = $1 AND fingerprint_hash = $2")
        .bind(license_id)
        .bind(fingerprint_hash)
        .fetch_optional(conn)
        .await
}

pub async fn by_id(
    conn: &mut Conn,
    license_id: &LicenseId,
    id: &MachineId,
) -> Result<Option<Machine>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM machines WHERE license_id = $1 AND id = $2")
        .bind(license_id)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A license's machines, oldest activation first.
pub async fn list(conn: &mut Conn, license_id: &LicenseId) -> Result<Vec<Machine>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM machines WHERE license_id = $1 ORDER BY activated_at, id")
        .bind(license_id)
        .fetch_all(conn)
        .await
}

pub async fn count(conn: &mut Conn, license_id: &LicenseId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM machines WHERE license_id = $1")
        .bind(license_id)
        .fetch_one(conn)
        .await
}

/// Inserts a machine; false when that fingerprint is already active on
/// the license (the unique key decides, whatever the caller read).
pub async fn insert(conn: &mut Conn, m: &Machine) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO machines (id, license_id, fingerprint_hash, name, platform, hostname, app_version, \
         activated_at, last_seen_at, activated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (license_id, fingerprint_hash) DO NOTHING",
    )
    .bind(&m.id)
    .bind(&m.license_id)
    .bind(&m.fingerprint_hash)
    .bind(&m.name)
    .bind(&m.platform)
    .bind(&m.hostname)
    .bind(&m.app_version)
    .bind(m.activated_at)
    .bind(m.last_seen_at)
    .bind(&m.activated_by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A repeated activation: the descriptive fields it sent replace the
/// stored ones, and the machine was seen now.
pub async fn refresh(conn: &mut Conn, m: &Machine) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE machines SET name = COALESCE($2, name), platform = COALESCE($3, platform), \
         hostname = COALESCE($4, hostname), app_version = COALESCE($5, app_version), last_seen_at = $6 \
         WHERE id = $1",
    )
    .bind(&m.id)
    .bind(&m.name)
    .bind(&m.platform)
    .bind(&m.hostname)
    .bind(&m.app_version)
    .bind(m.last_seen_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that a machine was seen at `now`, unless it was already seen
/// after `seen_after`: at most one write per machine per interval, and
/// none when another request got there first.
pub async fn touch(
    conn: &mut Conn,
    id: &MachineId,
    now: Millis,
    seen_after: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE machines SET last_seen_at = $2 WHERE id = $1 AND last_seen_at <= $3")
        .bind(id)
        .bind(now)
        .bind(seen_after)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut Conn, id: &MachineId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM machines WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes every machine of a license; returns how many there were.
pub async fn delete_all(conn: &mut Conn, license_id: &LicenseId) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM machines WHERE license_id = $1")
        .bind(license_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Deactivations made through the public API since `since`: how many,
/// and when the oldest of them was (it leaves the window first).
pub async fn buyer_deactivations_since(
    conn: &mut Conn,
    license_id: &LicenseId,
    since: Millis,
) -> Result<(i64, Option<Millis>), sqlx::Error> {
    sqlx::query_as(
        "SELECT COUNT(*), MIN(at) FROM license_events \
         WHERE license_id = $1 AND action = $2 AND actor IN ($3, $5) AND at > $4",
    )
    .bind(license_id)
    .bind(DEACTIVATED)
    .bind(PUBLIC_ACTOR)
    .bind(since)
    .bind(PORTAL_ACTOR)
    .fetch_one(conn)
    .await
}

/// An operator's seat limit for one license (`None`: unlimited).
pub async fn set_max_machines(
    conn: &mut Conn,
    license_id: &LicenseId,
    max_machines: Option<i64>,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE licenses SET max_machines = $2, updated_at = $3 WHERE id = $1")
        .bind(license_id)
        .bind(max_machines)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}
