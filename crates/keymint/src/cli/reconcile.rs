//! `keymint reconcile`: one pass of the reconciler and of the recovery of
//! unfinished deliveries, as a server runs them on its own.

use crate::app::AppState;
use crate::config::Config;
use std::process::ExitCode;

/// One reconciler pass, then the recovery of deliveries a stopped process
/// left `received`, then the emails these queued.
pub(super) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let state = AppState::build(config).await?;
    let tick = crate::workers::reconciler::run_once(&state).await?;
    let recovered = crate::workers::recovery::run_once(&state).await?;
    println!(
        "settled {}, orphans failed {}, orders asked of the provider again {}, left for the next pass {}; recovered {} stuck deliveries",
        tick.settled, tick.orphans_failed, tick.redriven, tick.left, recovered.finished
    );
    crate::workers::outbox::run_once(&state).await?;
    Ok(ExitCode::SUCCESS)
}
