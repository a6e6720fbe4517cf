//! Retention: old deliveries and dead emails, deleted in small batches so
//! ingest (which needs the same write lock on SQLite) is never held up.

use super::Store;
use crate::domain::{DeliveryStatus, EmailStatus};
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

/// One category: rows of `table` in one of `statuses` whose `time` column
/// is before `cut`.
struct Part {
    table: &'static str,
    statuses: &'static [&'static str],
    time: &'static str,
    cut: i64,
}

impl Part {
    /// The WHERE condition: `$1` is the cut-off, the statuses are bound
    /// from `$first` on.
    fn condition(&self, first: usize) -> String {
        let params: Vec<String> = (first..first + self.statuses.len())
            .map(|i| format!("${i}"))
            .collect();
        format!("status IN ({}) AND {} < $1", params.join(", "), self.time)
    }
}

const DELIVERIES: &[&str] = &[
    DeliveryStatus::Processed.as_str(),
    DeliveryStatus::Duplicate.as_str(),
    DeliveryStatus::Ignored.as_str(),
];
const FAILED: &[&str] = &[DeliveryStatus::Failed.as_str()];
const REJECTED: &[&str] = &[DeliveryStatus::Rejected.as_str()];
const DEAD: &[&str] = &[EmailStatus::Dead.as_str()];

fn parts(c: &Cutoffs) -> [Part; 4] {
    let part = |table, statuses, time, cut| Part {
        table,
        statuses,
        time,
        cut,
    };
    [
        part("deliveries", DELIVERIES, "received_at", c.deliveries),
        part("deliveries", FAILED, "received_at", c.failed_deliveries),
        part("deliveries", REJECTED, "received_at", c.rejected_deliveries),
        part("outbox", DEAD, "created_at", c.dead_emails),
    ]
}

/// Counts what [`sweep`] would delete.
pub async fn count(store: &Store, cutoffs: &Cutoffs) -> Result<Counts, sqlx::Error> {
    let mut conn = store.conn().await?;
    let mut n = [0i64; 4];
    for (i, part) in parts(cutoffs).into_iter().enumerate() {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {}",
            part.table,
            part.condition(2)
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(part.cut);
        for status in part.statuses {
            query = query.bind(*status);
        }
        n[i] = query.fetch_one(&mut *conn).await?;
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
    for (i, part) in parts(cutoffs).into_iter().enumerate() {
        let table = part.table;
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {} ORDER BY id LIMIT $2)",
            part.condition(3)
        );
        loop {
            let deleted = {
                let mut conn = store.writer().await?;
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(part.cut)
                    .bind(batch);
                for status in part.statuses {
                    query = query.bind(*status);
                }
                query.execute(&mut *conn).await?.rows_affected()
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
