//! `keymint-bench`: load generator and measurements for keymint.
//!
//! - `load`: webhook ingest, closed loop (`--concurrency`) or open loop
//!   (`--rate`, latency measured from each request's scheduled start, so a
//!   stalled server can't hide its tail: no coordinated omission).
//! - `read`: admin lookups by license key, closed loop.
//! - `verify`: offline verification rate of `keymint-license` against raw
//!   Ed25519 verification of a message of the same length.
//! - `ceiling`: the SQL of one delivery (recording it, applying it, and the
//!   email worker's claim and mark), run directly against the database
//!   without HTTP, through keymint's own store functions.
//! - `startup`: time from process start to the first 200 from `/readyz`.
//! - `licensing`: validations and activations against the `/healthz` floor
//!   of the same server, in one run.
//!
//! Every command prints a human summary and, with `--json`, one JSON line.
//!
//! Each mode lives in its own file; `tally.rs` holds what they share.

mod ceiling;
mod hostile;
mod licensing;
mod load;
mod raw;
mod read;
mod signers;
mod startup;
mod tally;
mod verify;

use clap::{Parser, Subcommand};
use tally::{Tally, client, unix_now};

#[derive(Parser)]
#[command(
    name = "keymint-bench",
    about = "Load generator and measurements for keymint"
)]
struct Cli {
    /// Print one JSON line with the figures (after the summary).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send authentic webhook deliveries.
    Load(load::LoadArgs),
    /// Look licenses up through the admin API.
    Read(read::ReadArgs),
    /// Offline token verification rate against raw Ed25519.
    Verify {
        /// Seconds in all (alternating rounds of both).
        #[arg(long, default_value_t = 6.0)]
        seconds: f64,
    },
    /// The database's own ceiling for the writes of one delivery.
    Ceiling(ceiling::CeilingArgs),
    /// Start-to-ready time of a keymint binary.
    Startup(startup::StartupArgs),
    /// Forged deliveries built to be expensive to reject (a signature
    /// header with thousands of entries and a large body): the server's CPU
    /// time per rejection, and /healthz latency while they arrive.
    Hostile(hostile::HostileArgs),
    /// The licensing API: validations (closed and open loop) and
    /// activations, beside the server's own /healthz rate.
    Licensing(licensing::LicensingArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Load(args) => load::load(args, cli.json).await,
        Command::Read(args) => read::read(args, cli.json).await,
        Command::Verify { seconds } => verify::verify(seconds, cli.json),
        Command::Ceiling(args) => ceiling::ceiling(args, cli.json).await,
        Command::Startup(args) => startup::startup(args, cli.json).await,
        Command::Hostile(args) => hostile::run(args, cli.json).await,
        Command::Licensing(args) => licensing::run(args, cli.json).await,
    }
}
