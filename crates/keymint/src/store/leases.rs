//! Job leases: one row per singleton background job. A replica runs a job
//! only while it holds the job's unexpired lease, so on several replicas
//! each job runs on one at a time; a lease of a replica that died simply
//! expires.

use super::Conn;

/// Takes (or renews) the lease on `job` for `holder` until `until` when it
/// is free, expired or already `holder`'s. True when `holder` has it.
pub async fn acquire(
    conn: &mut Conn,
    job: &str,
    holder: &str,
    now: i64,
    until: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE job_leases.expires_at <= $4 OR job_leases.holder = excluded.holder",
    )
    .bind(job)
    .bind(holder)
    .bind(until)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the lease up early (at shutdown).
pub async fn release(conn: &mut Conn, job: &str, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE job_leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
        .bind(job)
        .bind(holder)
        .execute(conn)
        .await?;
    Ok(())
}

/// Who holds `job` now, if anyone.
pub async fn holder(conn: &mut Conn, job: &str, now: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT holder FROM job_leases WHERE name = $1 AND expires_at > $2")
        .bind(job)
        .bind(now)
        .fetch_optional(conn)
        .await
}
