//! `keymint retention`: delete deliveries and dead emails older than the
//! retention settings, as the server's retention worker does.

use super::open_store;
use crate::config::Config;
use crate::domain::Millis;
use crate::store;
use std::process::ExitCode;

/// Deletes (or with `dry_run` counts) what the retention settings let go.
pub(super) async fn run(config: Config, dry_run: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let r = &config.retention;
    let cutoffs = r.cutoffs(store::now_ms());
    let (verb, counts) = if dry_run {
        (
            "would delete",
            store::retention::count(&store, &cutoffs).await?,
        )
    } else {
        (
            "deleted",
            store::retention::sweep(&store, &cutoffs, r.batch, r.pause).await?,
        )
    };
    println!(
        "{verb}: {} deliveries older than {}, {} failed deliveries older than {}, {} rejected deliveries older than {}, {} dead emails older than {}",
        counts.deliveries,
        store::format_ms(Millis(cutoffs.deliveries)),
        counts.failed_deliveries,
        store::format_ms(Millis(cutoffs.failed_deliveries)),
        counts.rejected_deliveries,
        store::format_ms(Millis(cutoffs.rejected_deliveries)),
        counts.dead_emails,
        store::format_ms(Millis(cutoffs.dead_emails)),
    );
    Ok(ExitCode::SUCCESS)
}
