//! `keymint machines`: list, deactivate and reset a license's machines,
//! and check out a machine file for an air-gapped machine that can never
//! reach the server (docs/licensing-api.md, "Operators").

use super::print_json;
use crate::app::AppState;
use crate::config::Config;
use crate::domain::{Fingerprint, MachineId};
use crate::licensing::service::MachineMeta;
use crate::views::licensing::{MachineOut, MachinesOut, ResetOut};
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
        /// The machine file's lifetime (capped by the license's expiry).
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
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
            print_json(&MachinesOut {
                machines_active: list.len() as i64,
                machines: list.iter().map(MachineOut::from).collect(),
                max_machines: license.max_machines,
            });
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
            let done = licensing
                .activate(&key, &fp, meta, None, Some(ttl), "cli")
                .await?;
            match out {
                Some(path) => {
                    write_private(&path, &done.machine_file)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
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
                None => println!("{}", done.machine_file),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}
