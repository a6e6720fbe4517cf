//! `keymint machines`: list, deactivate and reset a license's machines,
//! and check out a machine file for an air-gapped machine that can never
//! reach the server (docs/licensing-api.md, "Operators").

use super::print_json;
use crate::app::AppState;
use crate::config::Config;
use crate::domain::{Fingerprint, MachineId};
use crate::licensing::service::MachineMeta;
use crate::views::licensing::{MachinesOut, ResetOut};
use clap::Subcommand;
use keymint_license::LicenseKey;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum MachinesCmd {
    /// List the machines a license is activated on.
    List { key: String },
    /// Deactivate one machine by its id (`mch_...`); never budgeted.
    Deactivate { key: String, machine_id: String },
    /// Deactivate every machine of a license.
    Reset { key: String },
    /// Activate FINGERPRINT (counting against the seat limit) and write a
    /// machine file for a machine that never reaches this server.
    Checkout {
        key: String,
        fingerprint: String,
        /// The machine file's lifetime, at least a minute (default:
        /// `[licensing] machine_file_ttl`; capped by the license's expiry).
        #[arg(long, value_parser = checkout_ttl)]
        ttl: Option<std::time::Duration>,
        /// Write the machine file here (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A name for the machine in listings.
        #[arg(long)]
        name: Option<String>,
    },
}

pub async fn run(config: Config, cmd: MachinesCmd) -> anyhow::Result<ExitCode> {
    let state = AppState::build(config).await?;
    let licensing = &state.licensing;
    match cmd {
        MachinesCmd::List { key } => {
            let key: LicenseKey = key.parse()?;
            let (license, list) = licensing.machines(&key).await?;
            print_json(&MachinesOut::new(&license, &list));
        }
        MachinesCmd::Deactivate { key, machine_id } => {
            let key: LicenseKey = key.parse()?;
            let id = MachineId::parse(&machine_id)?;
            licensing.operator_deactivate(&key, &id, "cli").await?;
            println!("deactivated {id}");
        }
        MachinesCmd::Reset { key } => {
            let key: LicenseKey = key.parse()?;
            let deactivated = licensing.reset(&key, "cli").await?;
            print_json(&ResetOut { deactivated });
        }
        MachinesCmd::Checkout {
            key,
            fingerprint,
            ttl,
            out,
            name,
        } => {
            let key: LicenseKey = key.parse()?;
            let fp = Fingerprint::parse(&fingerprint)?;
            let meta = MachineMeta {
                name: crate::domain::machine_text("name", name.as_deref())?,
                ..MachineMeta::default()
            };
            // The file is opened before the seat is taken: a path that
            // cannot be written must not cost a seat.
            let existed = out.as_ref().is_some_and(|p| p.exists());
            let file = out
                .as_ref()
                .map(|path| {
                    open_private(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                })
                .transpose()?;
            let done = match licensing.activate(&key, &fp, meta, None, ttl, "cli").await {
                Ok(done) => done,
                Err(e) => {
                    // Leave no empty file behind (an existing one is kept
                    // as it was: it is only truncated once there is a
                    // machine file to write).
                    if let (Some(path), false) = (&out, existed) {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(e.into());
                }
            };
            match (out, file) {
                (Some(path), Some(mut file)) => {
                    use std::io::Write;
                    file.set_len(0)
                        .and_then(|()| writeln!(file, "{}", done.machine_file))
                        .map_err(|e| {
                        anyhow::anyhow!(
                            "{}: {e} (machine {} is activated; run the checkout again to get its file)",
                            path.display(),
                            done.machine.id
                        )
                    })?;
                    eprintln!(
                        "{} machine {} ({} of {}); machine file written to {}",
                        if done.created {
                            "activated"
                        } else {
                            "already active:"
                        },
                        done.machine.id,
                        done.license.machines_active,
                        done.license
                            .max_machines
                            .map_or_else(|| "unlimited".to_string(), |m| m.to_string()),
                        path.display()
                    );
                }
                _ => println!("{}", done.machine_file),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens (creating, not yet truncating) a file readable by its owner only.
fn open_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    crate::store::private_file_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// A checkout's `--ttl`: a duration of at least a minute (a machine file
/// that expires as it is issued would take a seat for nothing).
fn checkout_ttl(text: &str) -> Result<std::time::Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if ttl < std::time::Duration::from_secs(60) {
        return Err(format!("{text:?} is shorter than a minute"));
    }
    Ok(ttl)
}
