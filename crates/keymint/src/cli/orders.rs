//! `keymint orders`: the orders keymint's checkout started, as a table, or
//! one order with its history as the admin API shows it.

use super::{open_store, print_json};
use crate::config::Config;
use crate::domain::{OrderId, OrderStatus};
use crate::store::{self, orders};
use crate::views::{OrderDetail, OrderOut};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum OrdersCmd {
    /// List orders, newest first.
    List {
        /// pending_payment, paid, failed or expired.
        #[arg(long)]
        status: Option<String>,
        /// Catalog product id.
        #[arg(long)]
        product: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one order with its history.
    Show { id: String },
}

pub(super) async fn run(config: Config, cmd: OrdersCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let mut conn = store.conn().await?;
    match cmd {
        OrdersCmd::List {
            status,
            product,
            email,
            limit,
        } => {
            let status = match status.map(|s| s.parse::<OrderStatus>()) {
                None => None,
                Some(Ok(s)) => Some(s),
                Some(Err(e)) => {
                    eprintln!("error: --status: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            if !(1..=10_000).contains(&limit) {
                eprintln!("error: --limit {limit} must be between 1 and 10000");
                return Ok(ExitCode::FAILURE);
            }
            let filter = orders::Filter {
                status,
                product,
                email,
                before: None,
                limit,
            };
            for o in orders::search(&mut conn, &filter).await? {
                println!(
                    "{}  {}  {:15}  {:16}  {:24}  {}",
                    o.id,
                    store::format_ms(o.created_at),
                    o.status,
                    o.product,
                    o.email.as_deref().unwrap_or("-"),
                    o.error.as_deref().unwrap_or("")
                );
            }
        }
        // Text that is not an order id names no order.
        OrdersCmd::Show { id } => {
            let found = match OrderId::parse(&id) {
                Ok(parsed) => orders::get(&mut conn, &parsed).await?,
                Err(_) => None,
            };
            let Some(order) = found else {
                eprintln!("no order {id}");
                return Ok(ExitCode::FAILURE);
            };
            let history = orders::history(&mut conn, &order.id)
                .await?
                .into_iter()
                .map(Into::into)
                .collect();
            print_json(&OrderDetail {
                order: OrderOut::load(&mut conn, order).await?,
                history,
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
