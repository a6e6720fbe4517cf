//! `keymint keys`: list, generate, activate and retire signing keys.

use super::open_store;
use crate::config::Config;
use crate::signing;
use crate::store::{self, signing_keys};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// List signing keys: which one signs, which verify, which are retired.
    List,
    /// Generate a new key: it verifies (is published) at once; it signs
    /// once activated.
    Generate {
        /// Make it the signing key now; running servers sign with it from
        /// their next license on.
        #[arg(long)]
        activate: bool,
    },
    /// Make a key the signing key; running servers follow at their next
    /// license.
    Activate { kid: String },
    /// Retire a key: it no longer verifies. The signing key is refused;
    /// activate another one first.
    Retire { kid: String },
}

pub(super) async fn run(config: Config, cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let configured = config.signing.secret_key.is_some();
    let refuse_configured = || {
        eprintln!(
            "signing.secret_key is set: it is the signing key; change it there and restart to rotate"
        );
        Ok(ExitCode::FAILURE)
    };
    match cmd {
        KeysCmd::List => {
            let mut conn = store.conn().await?;
            let rows = signing_keys::list(&mut conn).await?;
            for k in &rows {
                let role = if k.signing != 0 { "signing" } else { "-" };
                println!(
                    "{}  {:8}  {:7}  {}  {}",
                    k.kid,
                    k.status,
                    role,
                    store::format_ms(k.created_at),
                    k.public_key
                );
            }
            match rows.iter().find(|k| k.signing != 0) {
                Some(k) => println!("signing key: {}", k.kid),
                None => println!(
                    "no signing key yet: `keymint serve` makes one at its first start, or run `keymint keys generate --activate`"
                ),
            }
        }
        KeysCmd::Generate { activate } => {
            if activate && configured {
                return refuse_configured();
            }
            let key = signing::generate_key_file(&config.server.data_dir)?;
            let mut tx = store.begin().await?;
            signing_keys::register(&mut tx, key.kid(), &key.public_paserk(), store::now_ms())
                .await?;
            if activate {
                signing_keys::activate(&mut tx, key.kid()).await?;
            }
            tx.commit().await?;
            if activate {
                println!("generated {}; it signs from now on", key.kid());
            } else {
                println!(
                    "generated {}; it verifies now and signs after `keymint keys activate {}`",
                    key.kid(),
                    key.kid()
                );
            }
            println!("public key: {}", key.public_paserk());
        }
        KeysCmd::Activate { kid } => {
            if configured {
                return refuse_configured();
            }
            // The key must be one this instance can sign with.
            if !signing::load_local_keys(&config.server.data_dir)?
                .iter()
                .any(|k| k.kid() == kid)
            {
                eprintln!(
                    "no key file for {kid} in {}",
                    signing::keys_dir(&config.server.data_dir).display()
                );
                return Ok(ExitCode::FAILURE);
            }
            let mut tx = store.begin().await?;
            if !signing_keys::activate(&mut tx, &kid).await? {
                eprintln!("no unretired key {kid}");
                return Ok(ExitCode::FAILURE);
            }
            tx.commit().await?;
            println!("{kid} signs from now on");
        }
        KeysCmd::Retire { kid } => {
            let mut tx = store.begin().await?;
            match signing_keys::retire(&mut tx, &kid, store::now_ms()).await? {
                signing_keys::Retired::Done => {
                    tx.commit().await?;
                    println!("retired {kid}");
                }
                signing_keys::Retired::Signing => {
                    eprintln!(
                        "{kid} is the signing key; make another key sign first (`keymint keys generate --activate` or `keymint keys activate KID`)"
                    );
                    return Ok(ExitCode::FAILURE);
                }
                signing_keys::Retired::Unknown => {
                    eprintln!("no unretired key {kid}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
