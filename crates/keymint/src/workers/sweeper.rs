//! The expiry sweeper: subscription licenses whose paid period (or trial)
//! plus grace has ended without a renewal are expired. A canceled
//! subscription becomes `expired` with them. Safe on several replicas:
//! each row is re-checked under its lock before it changes.

use crate::app::AppState;
use std::time::Duration;
use tokio::sync::watch;

/// Rows handled per tick.
const BATCH: i64 = 100;

/// Expires everything due now; returns how many licenses it expired.
pub async fn run_once(state: &AppState) -> Result<usize, crate::dispatcher::DispatchError> {
    let mut total = 0;
    loop {
        let n = state.dispatcher.sweep(BATCH).await?;
        total += n;
        if n < BATCH as usize {
            return Ok(total);
        }
    }
}

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let interval = state.config.subscriptions.sweep_interval;
    loop {
        // One replica at a time (each row is re-checked under its lock too).
        if !super::hold_lease(&state, "sweeper", super::lease_ttl(interval)).await {
            tokio::select! {
                _ = tokio::time::sleep(interval) => continue,
                _ = shutdown.changed() => return,
            }
        }
        let sleep = match run_once(&state).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(expired = n, "sweeper expired subscription licenses");
                }
                interval
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweeper could not finish a tick");
                interval.max(Duration::from_secs(1))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => return,
        }
    }
}
