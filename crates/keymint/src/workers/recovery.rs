//! Recovery of deliveries left `received`: a process killed between
//! recording a delivery and applying it leaves the row without an outcome
//! (docs/architecture.md, "Record first"). Once the request that recorded
//! it is certainly gone (older than [`stuck_after`]), an authentic one is
//! run through the normal path (parse, dispatch, the same exactly-once
//! claims), ending `processed`, `duplicate`, `ignored` or `failed`. It runs
//! at start-up and then every request timeout, on one replica at a time.

use crate::app::AppState;
use crate::ingest::{self, IngestResult};
use crate::store::{self, deliveries};
use std::time::Duration;
use tokio::sync::watch;

/// Rows looked at per pass.
const BATCH: i64 = 200;

/// How old a `received` row must be before it is taken for stuck: twice
/// the request timeout, after which the request that recorded it has been
/// cut off (or its process is dead).
pub fn stuck_after(state: &AppState) -> Duration {
    state.config.server.request_timeout * 2
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recovered {
    /// Run through the normal path and ended in a terminal status.
    pub finished: usize,
    /// The database was unavailable: left for the next pass.
    pub left: usize,
}

/// One pass over the stuck deliveries, oldest first.
pub async fn run_once(state: &AppState) -> Result<Recovered, sqlx::Error> {
    let cutoff =
        store::now_ms() - i64::try_from(stuck_after(state).as_millis()).unwrap_or(i64::MAX / 2);
    let ids = {
        let mut conn = state.store.conn().await?;
        deliveries::stuck(&mut conn, cutoff, BATCH).await?
    };
    let mut done = Recovered::default();
    for id in ids {
        match ingest::replay(state, &id).await {
            Ok(IngestResult::Done { applied, .. }) => {
                tracing::warn!(delivery_id = %id, status = applied.response_status(), "recovered a delivery left unfinished by a stopped process");
                done.finished += 1;
            }
            Ok(_) => done.left += 1,
            Err(ingest::ReplayError::Database(e)) => return Err(e),
            Err(e) => {
                // Its endpoint is gone: it can never be processed; say so
                // on the row so it leaves `received`.
                let outcome = deliveries::Outcome::failed(format!("recovered after a stop: {e}"));
                let mut conn = state.store.writer().await?;
                deliveries::finish(&mut conn, &id, &outcome, store::now_ms()).await?;
                done.finished += 1;
            }
        }
    }
    Ok(done)
}

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    // First pass at start-up, then every request timeout.
    let mut first = true;
    loop {
        let interval = state.config.server.request_timeout;
        if !first {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
        first = false;
        if !super::hold_lease(&state, "recovery", super::lease_ttl(interval)).await {
            continue;
        }
        match run_once(&state).await {
            Ok(r) if r != Recovered::default() => {
                tracing::info!(finished = r.finished, left = r.left, "recovery pass");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "recovery pass failed; next interval"),
        }
    }
}
