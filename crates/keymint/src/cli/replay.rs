//! `keymint replay`: re-run stored deliveries through the current code and
//! catalog, one by id or every failed one.

use crate::app::AppState;
use crate::config::Config;
use crate::domain::DeliveryId;
use crate::http::admin::parse_time;
use crate::ingest::{self, IngestResult, ReplayError};
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Delivery id (dlv_...).
    #[arg(required_unless_present = "failed", conflicts_with = "failed")]
    delivery_id: Option<String>,
    /// Replay every failed, authentic delivery.
    #[arg(long)]
    failed: bool,
    /// With --failed: only this endpoint's.
    #[arg(long, requires = "failed")]
    endpoint: Option<String>,
    /// With --failed: only those received since (RFC 3339 or an age such as 24h).
    #[arg(long, requires = "failed")]
    since: Option<String>,
}

pub(super) async fn run(config: Config, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let state = AppState::build(config).await?;
    let code = match args.delivery_id {
        Some(id) => replay_one(&state, &id).await?,
        None => replay_failed(&state, args.endpoint, args.since.as_deref()).await?,
    };
    // Emails the replays queued go out now: no server may be running.
    crate::workers::outbox::run_once(&state).await?;
    Ok(code)
}

async fn replay_one(state: &AppState, delivery_id: &str) -> anyhow::Result<ExitCode> {
    // Text that is not a delivery id names no delivery.
    let id = DeliveryId::parse(delivery_id).map_err(|_| ReplayError::NotFound)?;
    let result = ingest::replay(state, &id).await?;
    Ok(match &result {
        IngestResult::Done { applied, .. } => {
            println!("{}", applied.response_status());
            if let Some(k) = applied.license_key() {
                println!("license_key: {k}");
            }
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("replay did not complete: {other:?}");
            ExitCode::FAILURE
        }
    })
}

async fn replay_failed(
    state: &AppState,
    endpoint: Option<String>,
    since: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let filter = ingest::ReplayFilter {
        endpoint,
        since: since
            .map(parse_time)
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?,
        ..Default::default()
    };
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} replayed {pos} deliveries ({per_sec}) {msg}",
        )
        .expect("static template"),
    );
    let summary = ingest::replay_failed(state, &filter, |n, id| {
        bar.set_position(n as u64);
        bar.set_message(id.to_string());
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "replayed {}: {} ok, {} duplicate, {} ignored, {} logged-no-mint, {} error, {} unavailable",
        summary.replayed,
        summary.ok,
        summary.duplicate,
        summary.ignored,
        summary.no_mint,
        summary.error,
        summary.unavailable
    );
    Ok(if summary.unavailable == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
