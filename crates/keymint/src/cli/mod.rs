//! The `keymint` command line: `serve` and the operator commands. Every
//! command loads the same configuration as the server. As in cargo, each
//! command group has its own file that parses its arguments, calls the
//! library and prints; this file holds the top-level command list and the
//! helpers every command shares.

mod deliveries;
mod keys;
mod license;
mod machines;
mod orders;
mod reconcile;
mod replay;
mod retention;
mod server;
mod tokens;
mod webhook;

pub use deliveries::DeliveriesCmd;
pub use keys::KeysCmd;
pub use license::{LicenseCmd, MintArgs};
pub use machines::MachinesCmd;
pub use orders::OrdersCmd;
pub use replay::ReplayArgs;
pub use tokens::TokenCmd;
pub use webhook::WebhookCmd;

use crate::config::Config;
use crate::store::{self, Store};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "keymint",
    version,
    about = "Turn payment webhooks into signed, emailed licenses"
)]
pub struct Cli {
    /// Configuration file (default: none; built-in defaults and KEYMINT_* variables).
    #[arg(long, global = true, env = "KEYMINT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (webhooks, public and admin API, workers).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Report every problem in the configuration; exit non-zero if any.
    CheckConfig,
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Admin API tokens.
    #[command(subcommand)]
    AdminToken(TokenCmd),
    /// Licenses.
    #[command(subcommand)]
    License(LicenseCmd),
    /// The machines a license is activated on.
    #[command(subcommand)]
    Machines(MachinesCmd),
    /// The webhook delivery log.
    #[command(subcommand)]
    Deliveries(DeliveriesCmd),
    /// Orders started through keymint's checkout (docs/checkout.md).
    #[command(subcommand)]
    Orders(OrdersCmd),
    /// Settle operator refunds stuck in pending, and subscriptions and
    /// checkout orders stuck in pending_payment, against the provider's API.
    Reconcile {
        /// Run one pass and exit (the server runs it every reconciler.interval):
        /// operator refunds and subscriptions stuck pending are read from the
        /// provider, and deliveries a stopped process left `received` are
        /// processed.
        #[arg(long)]
        once: bool,
    },
    /// Delete deliveries and dead emails older than the retention settings.
    Retention {
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Test an endpoint without the provider.
    #[command(subcommand)]
    Webhook(WebhookCmd),
    /// Re-run stored deliveries through the current code and catalog: one
    /// by id, or every failed one (oldest first) with --failed.
    Replay(ReplayArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: a cause whose
/// text the message already contains (`database: pool timed out` over
/// `pool timed out`) is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(text.trim()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(path).map_err(|p| anyhow::anyhow!("configuration problems:\n{p}"))
}

/// The store, its data directory prepared and its migrations applied, for
/// commands that need no running server.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let dir = &config.server.data_dir;
    store::prepare_data_dir(dir)
        .map_err(|e| anyhow::anyhow!("data directory {}: {e}", dir.display()))?;
    let url = config.database_url();
    let store = Store::connect(url.expose(), &config.database)
        .await
        .map_err(|e| anyhow::anyhow!(store::describe_connect_error(url.expose(), &e)))?;
    store.migrate().await?;
    Ok(store)
}

/// Prints a document as the admin API would answer it, indented.
fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::CheckConfig = cli.command {
        return server::check_config(cli.config.as_deref()).await;
    }
    let config = load_config(cli.config.as_deref())?;
    crate::telemetry::init(config.server.log_format, &config.server.log_level)
        .map_err(|e| anyhow::anyhow!("log filter: {e}"))?;
    match cli.command {
        Command::Serve => server::serve(config).await,
        Command::Migrate => {
            open_store(&config).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => unreachable!("handled above"),
        Command::Keys(cmd) => keys::run(config, cmd).await,
        Command::AdminToken(cmd) => tokens::run(config, cmd).await,
        Command::License(cmd) => license::run(config, cmd).await,
        Command::Machines(cmd) => machines::run(config, cmd).await,
        Command::Deliveries(cmd) => deliveries::run(config, cmd).await,
        Command::Orders(cmd) => orders::run(config, cmd).await,
        Command::Reconcile { .. } => reconcile::run(config).await,
        Command::Retention { dry_run } => retention::run(config, dry_run).await,
        Command::Webhook(cmd) => webhook::run(config, cmd).await,
        Command::Replay(args) => replay::run(config, args).await,
    }
}
