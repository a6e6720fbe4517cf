//! `keymint admin-token`: create, list and revoke admin API tokens.

use super::open_store;
use crate::admin::{self, scope};
use crate::config::Config;
use crate::store::{self, admin_tokens};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token; it is printed once, as the last line.
    Create {
        /// A name for people (who or what uses it); unique among live tokens.
        #[arg(long)]
        name: String,
        /// Scopes (repeatable): admin, licenses:read, licenses:write, deliveries:read, deliveries:write.
        #[arg(long = "scope", default_value = "admin")]
        scopes: Vec<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id or name.
    Revoke { id_or_name: String },
}

pub(super) async fn run(config: Config, cmd: TokenCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    match cmd {
        TokenCmd::Create { name, scopes } => {
            if let Some(bad) = scopes.iter().find(|s| !scope::ALL.contains(&s.as_str())) {
                eprintln!("unknown scope {bad:?}; scopes: {}", scope::ALL.join(", "));
                return Ok(ExitCode::FAILURE);
            }
            let (row, text) = match admin::create_token(&store, &name, &scopes).await {
                Ok(created) => created,
                Err(
                    e @ (admin::AdminError::Invalid { .. } | admin::AdminError::Conflict { .. }),
                ) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            };
            println!(
                "created admin token {} ({}) with scopes: {}",
                row.id, row.name, row.scopes
            );
            println!("store it now; it is shown only once:");
            println!("{text}");
        }
        TokenCmd::List => {
            let mut conn = store.conn().await?;
            for t in admin_tokens::list(&mut conn).await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{}  {:20}  {:8}  {}", t.id, t.name, state, t.scopes);
            }
        }
        TokenCmd::Revoke { id_or_name } => {
            let mut conn = store.writer().await?;
            let n = admin_tokens::revoke(&mut conn, &id_or_name, store::now_ms()).await?;
            if n == 0 {
                eprintln!("no active token {id_or_name:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("revoked {id_or_name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
