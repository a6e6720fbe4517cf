//! `keymint license`: mint, show, verify, revoke, reinstate, resend and
//! refund, printing the same documents as the admin API (`crate::views`).

use super::{open_store, print_json};
use crate::admin::license_detail;
use crate::admin::{self, ManualMint};
use crate::app::AppState;
use crate::config::Config;
use crate::signing;
use crate::views::{LicenseOut, RefundOut};
use clap::{Args, Subcommand};
use keymint_license::{KeySet, LicenseKey};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum LicenseCmd {
    /// Mint a license by hand and queue its email.
    Mint(MintArgs),
    /// Show a license, its history and its emails.
    Show { key: String },
    /// Verify a token offline and print its claims.
    Verify {
        token: String,
        /// PASERK k4.public key to verify with (default: this instance's keys).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Revoke a license.
    Revoke {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Reinstate a revoked or suspended license.
    Reinstate {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Queue the license email again (refused for a revoked license).
    Resend {
        key: String,
        /// Send it even though the license is revoked (recorded in its history).
        #[arg(long)]
        force: bool,
    },
    /// Refund the license's payment through its provider (Stripe,
    /// Hyperswitch); pending until the provider's webhook or the reconciler.
    Refund {
        key: String,
        /// Minor units; omit for a full refund.
        #[arg(long)]
        amount: Option<i64>,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct MintArgs {
    #[arg(long)]
    product: String,
    #[arg(long)]
    email: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    order_id: Option<String>,
    #[arg(long)]
    notes: Option<String>,
}

/// The canonical spelling of a key typed on the command line.
fn canonical_key(key: &str) -> anyhow::Result<LicenseKey> {
    Ok(key.parse::<LicenseKey>()?)
}

pub(super) async fn run(config: Config, cmd: LicenseCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        LicenseCmd::Verify { token, public_key } => {
            let keys = match public_key {
                Some(p) => KeySet::from_paserks([p.as_str()])?,
                None => signing::verification_keys(&open_store(&config).await?).await?,
            };
            match keys.verify(&token) {
                Ok(claims) => {
                    print_json(&claims);
                    eprintln!("valid");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("invalid: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        LicenseCmd::Mint(args) => {
            let state = AppState::build(config).await?;
            let req = ManualMint {
                product: args.product,
                email: args.email,
                name: args.name,
                order_id: args.order_id,
                notes: args.notes,
            };
            let (license, created) = admin::mint_manual(&state, &req, "cli").await?;
            eprintln!(
                "{}",
                if created {
                    "minted"
                } else {
                    "already minted for this order"
                }
            );
            print_json(&LicenseOut::try_from(license)?);
            Ok(ExitCode::SUCCESS)
        }
        LicenseCmd::Show { key } => {
            let store = open_store(&config).await?;
            let key = canonical_key(&key)?;
            // The same document as GET /admin/v1/licenses/{key}.
            let Some(detail) = license_detail(&store, &key).await? else {
                eprintln!("no license {key}");
                return Ok(ExitCode::FAILURE);
            };
            print_json(&detail);
            Ok(ExitCode::SUCCESS)
        }
        LicenseCmd::Revoke { key, reason } | LicenseCmd::Reinstate { key, reason }
            if reason.trim().is_empty() =>
        {
            eprintln!("a reason is required for {key}");
            Ok(ExitCode::FAILURE)
        }
        LicenseCmd::Revoke { key, reason } => set_status(config, &key, true, &reason).await,
        LicenseCmd::Reinstate { key, reason } => set_status(config, &key, false, &reason).await,
        LicenseCmd::Resend { key, force } => {
            let store = open_store(&config).await?;
            let key = canonical_key(&key)?;
            match admin::resend(&store, &key, force, "cli").await {
                Ok(_) => {
                    println!("queued; the running server sends it");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ admin::AdminError::Conflict { .. }) => {
                    eprintln!("error: {e}; add --force to send it anyway");
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e.into()),
            }
        }
        LicenseCmd::Refund {
            key,
            amount,
            reason,
        } => {
            let key = canonical_key(&key)?;
            let state = AppState::build(config).await?;
            match admin::request_refund(&state, &key, amount, reason.as_deref(), "cli").await {
                Ok(r) => {
                    print_json(&RefundOut::from(r));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

async fn set_status(
    config: Config,
    key: &str,
    revoke: bool,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let key = canonical_key(key)?;
    let l = admin::set_status(&store, &key, revoke, reason, "cli").await?;
    println!("{} is now {}", l.key, l.status);
    Ok(ExitCode::SUCCESS)
}
