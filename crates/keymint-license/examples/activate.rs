//! Activate this machine once, then run offline from its machine file.
//!
//! ```text
//! cargo run -p keymint-license --features client --example activate -- \
//!     <base-url> <k4.public...> <license key> [state-file]
//! ```
//!
//! The machine's fingerprint is the SHA-256 (hex) of `/etc/machine-id`, or
//! of the host name where there is none, behind a fixed prefix: the server
//! never sees the machine id itself. The state file (default
//! `keymint-machine-file` in the current directory) holds the machine
//! file.
//!
//! - No state file: activate (`PUT .../machines/{fingerprint}`), store the
//!   machine file, print it.
//! - A state file that verifies offline for this machine and key: print
//!   "offline" and the license; no network at all.
//! - Expired: validate online (with a fresh nonce, receipt verified); when
//!   the license is still valid, or valid but this machine was deactivated,
//!   activate again for a fresh machine file. Otherwise say why and exit 1.
//! - Any other failure to verify (another machine's file, another key,
//!   altered): say so and activate anew.
//!
//! Exit codes: 0 licensed, 1 not licensed or the server refused, 2 bad
//! usage, 3 cannot reach the server or its answer did not verify.

use keymint_license::client::{Client, ClientError, MachineMeta, ValidateRequest};
use keymint_license::{KeySet, MachineFileClaims, TokenError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::exit;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const DEFAULT_STATE_FILE: &str = "keymint-machine-file";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (base_url, public_key, license_key, state) = match args.as_slice() {
        [base, public, key] => (base, public, key, PathBuf::from(DEFAULT_STATE_FILE)),
        [base, public, key, state] => (base, public, key, PathBuf::from(state)),
        _ => {
            eprintln!(
                "usage: activate <base-url> <PASERK k4.public key> <license key> [state-file]"
            );
            exit(2);
        }
    };
    let keys = KeySet::from_paserks([public_key.as_str()]).unwrap_or_else(|e| {
        eprintln!("bad public key: {e}");
        exit(2);
    });
    let fingerprint = fingerprint();
    println!("fingerprint: {fingerprint}");

    match std::fs::read_to_string(&state) {
        Ok(stored) => {
            match keys.verify_machine_file(&stored, &fingerprint, OffsetDateTime::now_utc()) {
                Ok(claims) if same_key(&claims.key, license_key) => {
                    println!("offline: the stored machine file verifies, no network used");
                    describe(&claims);
                    return;
                }
                Ok(claims) => println!(
                    "the stored machine file is for key {}, not this one: activating",
                    claims.key
                ),
                Err(TokenError::Expired(at)) => {
                    println!("the stored machine file expired at {at}: validating online");
                    let client = Client::new(base_url, keys.clone());
                    if !still_licensed(&client, license_key, &fingerprint) {
                        exit(1);
                    }
                }
                Err(e) => println!("the stored machine file does not verify ({e}): activating"),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no machine file at {}: activating", state.display());
        }
        Err(e) => {
            eprintln!("cannot read {}: {e}", state.display());
            exit(2);
        }
    }

    let client = Client::new(base_url, keys);
    activate(&client, license_key, &fingerprint, &state);
}

/// Validates online with this machine's fingerprint: true when the
/// license is valid, or valid but not (or no longer) activated here.
fn still_licensed(client: &Client, key: &str, fingerprint: &str) -> bool {
    match client.validate(&ValidateRequest::new(key).fingerprint(fingerprint)) {
        Ok(validation) if validation.is_valid() => {
            println!("online: the receipt says VALID");
            true
        }
        Ok(validation) if validation.receipt.code == "NOT_ACTIVATED" => {
            println!("online: valid, but this machine is not activated");
            true
        }
        Ok(validation) => {
            println!(
                "not licensed: {} ({})",
                validation.receipt.code, validation.answer.detail
            );
            false
        }
        Err(e) => fail(e),
    }
}

fn activate(client: &Client, key: &str, fingerprint: &str, state: &Path) {
    let meta = MachineMeta {
        platform: Some(format!(
            "{}-{}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )),
        hostname: hostname(),
        app_version: Some(env!("CARGO_PKG_VERSION").into()),
        ..MachineMeta::default()
    };
    match client.activate(key, fingerprint, &meta) {
        Ok(activation) => {
            if let Err(e) = std::fs::write(state, &activation.machine_file) {
                eprintln!("cannot write {}: {e}", state.display());
                exit(2);
            }
            println!(
                "online: {} machine {}; machine file stored in {}",
                if activation.created {
                    "activated"
                } else {
                    "already active, refreshed"
                },
                activation.machine.id,
                state.display()
            );
            describe(&activation.claims);
        }
        Err(e) => fail(e),
    }
}

fn fail(e: ClientError) -> ! {
    match e {
        ClientError::Refused {
            status,
            code,
            message,
            retry_after,
        } => {
            println!("refused (HTTP {status} {code}): {message}");
            if let Some(seconds) = retry_after {
                println!("retry after {seconds} s");
            }
            exit(1);
        }
        other => {
            eprintln!("error: {other}");
            exit(3);
        }
    }
}

fn describe(claims: &MachineFileClaims) {
    let until = claims
        .exp
        .format(&Rfc3339)
        .unwrap_or_else(|_| claims.exp.to_string());
    println!(
        "licensed: {} ({} {}), machine {}, entitlements: [{}], offline until {until}",
        claims.key,
        claims.product,
        claims.tier,
        claims.machine,
        claims.entitlements.join(", ")
    );
}

/// SHA-256 (hex) of a fixed prefix and `/etc/machine-id`, else the host
/// name.
fn fingerprint() -> String {
    let source = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .or_else(hostname)
        .unwrap_or_else(|| {
            eprintln!("cannot identify this machine: no /etc/machine-id and no host name");
            exit(2);
        });
    Sha256::digest(format!("keymint-machine:{source}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// The same key, ignoring case and surrounding spaces (the server stores
/// the canonical upper-case form).
fn same_key(a: &str, b: &str) -> bool {
    match (
        a.parse::<keymint_license::LicenseKey>(),
        b.parse::<keymint_license::LicenseKey>(),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.trim() == b.trim(),
    }
}
