//! Retention: deletes old deliveries and dead emails in batches, every
//! `retention.interval`.

use crate::app::AppState;
use crate::store::{self, retention};
use std::time::Duration;
use tokio::sync::watch;

/// One pass at the current time.
pub async fn run_once(state: &AppState) -> Result<retention::Counts, sqlx::Error> {
    let r = &state.config.retention;
    retention::sweep(&state.store, &r.cutoffs(store::now_ms()), r.batch, r.pause).await
}

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.config.retention.interval) => {}
            _ = shutdown.changed() => return,
        }
        let interval = state.config.retention.interval;
        if !super::hold_lease(&state, "retention", super::lease_ttl(interval)).await {
            continue;
        }
        match run_once(&state).await {
            Ok(c) => {
                if c != retention::Counts::default() {
                    tracing::info!(
                        deliveries = c.deliveries,
                        failed_deliveries = c.failed_deliveries,
                        rejected_deliveries = c.rejected_deliveries,
                        dead_emails = c.dead_emails,
                        "retention deleted old rows"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention pass failed; trying again next interval");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
