//! Retention: old deliveries and dead emails, deleted in small batches so
//! ingest (which needs the same write lock on SQLite) is never held up.

use super::Store;
use serde::Serialize;
use std::time::Duration;

/// What goes, by category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Processed, duplicate and ignored deliveries older than the cut-off.
    pub deliveries: i64,
    /// Failed deliveries older than their (longer) cut-off.
    pub failed_deliveries: i64,
    /// Deliveries that failed authentication, older than their cut-off.
    pub rejected_deliveries: i64,
    /// Dead outbox rows older than the cut-off.
    pub dead_emails: i64,
}

/// The cut-offs, as Unix ms: rows received (created) before them go.
#[derive(Debug, Clone, Copy)]
pub struct Cutoffs {
    pub deliveries: i64,
    pub failed_deliveries: i64,
    pub rejected_deliveries: i64,
    pub dead_emails: i64,
}

const DELIVERIES: &str = "status IN ('processed', 'duplicate', 'ignored') AND received_at < $1";
const FAILED: &str = "status = 'failed' AND received_at < $1";
const REJECTED: &str = "status = 'rejected' AND received_at < $1";
const DEAD: &str = "status = 'dead' AND created_at < $1";

fn parts(c: &Cutoffs) -> [(&'static str, &'static str, i64); 4] {
    [
        ("deliveries", DELIVERIES, c.deliveries),
        ("deliveries", FAILED, c.failed_deliveries),
        ("deliveries", REJECTED, c.rejected_deliveries),
        ("outbox", DEAD, c.dead_emails),
    ]
}

/// Counts what [`sweep`] would delete.
pub async fn count(store: &Store, cutoffs: &Cutoffs) -> Result<Counts, sqlx::Error> {
    let mut conn = store.conn().await?;
    let mut n = [0i64; 4];
    for (i, (table, cond, cut)) in parts(cutoffs).into_iter().enumerate() {
        n[i] = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE {cond}"
        )))
        .bind(cut)
        .fetch_one(&mut *conn)
        .await?;
    }
    Ok(counts(n))
}

fn counts(n: [i64; 4]) -> Counts {
    Counts {
        deliveries: n[0],
        failed_deliveries: n[1],
        rejected_deliveries: n[2],
        dead_emails: n[3],
    }
}

/// Deletes everything older than the cut-offs, `batch` rows per
/// transaction with `pause` between transactions.
pub async fn sweep(
    store: &Store,
    cutoffs: &Cutoffs,
    batch: i64,
    pause: Duration,
) -> Result<Counts, sqlx::Error> {
    let mut n = [0i64; 4];
    for (i, (table, cond, cut)) in parts(cutoffs).into_iter().enumerate() {
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {cond} ORDER BY id LIMIT $2)"
        );
        loop {
            let deleted = {
                let mut conn = store.writer().await?;
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(cut)
                    .bind(batch)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            };
            n[i] += deleted as i64;
            if (deleted as i64) < batch {
                break;
            }
            tokio::time::sleep(pause).await;
        }
    }
    Ok(counts(n))
}
