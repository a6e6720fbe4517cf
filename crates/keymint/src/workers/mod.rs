//! Background workers. Each has a `run_once` that tests drive step by step
//! and a loop that `serve` spawns. Workers never hold a database lock while
//! they call the network.

pub mod outbox;
pub mod recovery;
pub mod retention;
pub mod sweeper;

use crate::app::AppState;
use crate::store;
use std::time::Duration;

/// Jobs that run on one replica at a time, by lease name.
pub const SINGLETON_JOBS: [&str; 4] = ["sweeper", "retention", "reconciler", "recovery"];

/// Whether this process holds (or just took) the lease on the singleton
/// `job`, for `ttl`; renewing it each tick keeps it. A database error
/// counts as not holding it.
pub async fn hold_lease(state: &AppState, job: &str, ttl: Duration) -> bool {
    let now = store::now_ms();
    let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2));
    let result = async {
        let mut conn = state.store.writer().await?;
        store::leases::acquire(&mut conn, job, &state.instance_id, now, until).await
    }
    .await;
    match result {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(job, error = %e, "could not take the job lease");
            false
        }
    }
}

/// The lease time for a job that runs every `interval`: two intervals, at
/// least 30 s, so a live holder keeps it and a dead one's expires.
pub fn lease_ttl(interval: Duration) -> Duration {
    (interval * 2).max(Duration::from_secs(30))
}
pub mod reconciler;
