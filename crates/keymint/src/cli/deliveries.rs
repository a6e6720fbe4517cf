//! `keymint deliveries`: the webhook delivery log, as a table or one
//! delivery as the admin API shows it.

use super::{open_store, print_json};
use crate::config::Config;
use crate::domain::{DeliveryId, DeliveryStatus};
use crate::http::admin::parse_time;
use crate::store::{self, deliveries};
use crate::views::DeliveryOut;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum DeliveriesCmd {
    /// List deliveries, newest first.
    List {
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// RFC 3339 time or an age such as 24h.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one delivery with its headers and body.
    Show { id: String },
}

pub(super) async fn run(config: Config, cmd: DeliveriesCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let mut conn = store.conn().await?;
    match cmd {
        DeliveriesCmd::List {
            endpoint,
            status,
            since,
            limit,
        } => {
            let status = match status.map(|s| s.parse::<DeliveryStatus>().map_err(|_| s)) {
                None => None,
                Some(Ok(s)) => Some(s),
                Some(Err(s)) => {
                    eprintln!(
                        "error: --status {s:?} is not one of {}",
                        DeliveryStatus::names().join(", ")
                    );
                    return Ok(ExitCode::FAILURE);
                }
            };
            if !(1..=10_000).contains(&limit) {
                eprintln!("error: --limit {limit} must be between 1 and 10000");
                return Ok(ExitCode::FAILURE);
            }
            let filter = deliveries::Filter {
                endpoint,
                status,
                since: since
                    .as_deref()
                    .map(parse_time)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                until: None,
                before: None,
                limit,
            };
            for d in deliveries::list(&mut conn, &filter).await? {
                println!(
                    "{}  {}  {:10}  {:10}  {:24}  {}",
                    d.id,
                    store::format_ms(d.received_at),
                    d.endpoint,
                    d.status,
                    // A rejected delivery has no event yet: shown as `-`.
                    d.event_type.as_deref().unwrap_or("-"),
                    d.error.as_deref().unwrap_or("")
                );
            }
        }
        // Text that is not a delivery id names no delivery.
        DeliveriesCmd::Show { id } => match match DeliveryId::parse(&id) {
            Ok(parsed) => deliveries::get(&mut conn, &parsed).await?,
            Err(_) => None,
        } {
            Some(d) => print_json(&DeliveryOut::full(d)?),
            None => {
                eprintln!("no delivery {id}");
                return Ok(ExitCode::FAILURE);
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}
