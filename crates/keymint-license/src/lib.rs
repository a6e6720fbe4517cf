//! The keymint license format: human-typable license keys and signed
//! PASETO `v4.public` license tokens.
//!
//! This crate is the one implementation of the format. The keymint server
//! uses it to mint; buyers' programs use it to verify offline. It has no
//! async runtime and no database, and its only cryptography is
//! [`pasetors`] (Ed25519 through `ed25519-compact`).
//!
//! # Verifying a license token offline
//!
//! Fetch the public key once from your keymint server (`GET /v1/keys`, the
//! `public_key` field, a PASERK `k4.public...` string), embed it in your
//! program, then:
//!
//! ```
//! use keymint_license::{KeySet, SigningKey, LicenseClaims};
//!
//! # let signing = SigningKey::generate();
//! # let claims = LicenseClaims::example();
//! # let token = signing.mint(&claims).unwrap();
//! # let paserk = signing.public_paserk();
//! let keys = KeySet::from_paserks([paserk.as_str()]).unwrap();
//! let verified = keys.verify(&token).unwrap();
//! assert_eq!(verified.product, "datatools-core");
//! assert!(verified.has_entitlement("export"));
//! ```
//!
//! Any other PASETO v4 library verifies the same tokens with the same
//! public key: the claims are plain JSON and the footer is
//! `{"kid":"k4.pid..."}`.
//!
//! # Machine files and receipts
//!
//! The server signs two more kinds of token with the same key, each
//! marked by its `typ` claim so none is accepted for another
//! ([`TokenError::WrongKind`]):
//!
//! - A **machine file** ([`MachineFileClaims`], `typ` `machine`) is what
//!   activating a machine (`PUT /v1/licenses/{key}/machines/{fingerprint}`)
//!   returns: the license bound to one machine's fingerprint, valid until
//!   its `exp` (the license's own expiry or the server's machine-file
//!   lifetime, whichever comes first). Store it on disk; at start-up,
//!   compute this machine's fingerprint and check the file offline with
//!   [`KeySet::verify_machine_file`]. A file copied to another machine
//!   fails with [`TokenError::FingerprintMismatch`]; an old one fails with
//!   [`TokenError::Expired`], which is when to go online again (activating
//!   an already active machine returns a fresh file).
//! - A **receipt** ([`ReceiptClaims`], `typ` `receipt`) is the signed form
//!   of a validation answer (`POST /v1/licenses/validate`): `valid`,
//!   `code`, the key and fingerprint asked about, and the caller's
//!   **nonce**. Check it with [`KeySet::verify_receipt`] before trusting
//!   the answer. The signature alone shows the server said it once; the
//!   nonce, fresh and random for each request, shows it said it *now, to
//!   this request*. Without it, a recorded "valid" answer from before a
//!   refund could be replayed forever by a fake server or a proxy
//!   ([`TokenError::NonceMismatch`]).
//!
//! ```
//! use keymint_license::{KeySet, TokenError};
//! use time::OffsetDateTime;
//!
//! fn licensed(keys: &KeySet, stored_file: &str, fingerprint: &str) -> bool {
//!     match keys.verify_machine_file(stored_file, fingerprint, OffsetDateTime::now_utc()) {
//!         Ok(claims) => claims.has_entitlement("export"),
//!         // Go online: activate again for a fresh file, or ask the user.
//!         Err(TokenError::Expired(_)) => false,
//!         Err(_) => false,
//!     }
//! }
//! # let _ = licensed;
//! ```
//!
//! # The `client` feature
//!
//! Off by default: without it this crate has no HTTP stack and no async
//! runtime. With it, `client::Client` is a small blocking client
//! (`ureq` with rustls) for the license API that does the above itself:
//! `client::Client::validate` sends a fresh nonce and returns the answer
//! only once its receipt verifies and agrees with the body;
//! `client::Client::activate` returns a verified machine file for this
//! fingerprint; `client::Client::deactivate` and
//! `client::Client::machines` manage seats. `examples/activate.rs`
//! (`cargo run -p keymint-license --features client --example activate`)
//! shows the whole flow: activate once, then run offline from the stored
//! machine file until it expires.

#[cfg(feature = "client")]
pub mod client;
mod key;
mod token;

pub use key::{LicenseKey, LicenseKeyError};
pub use token::{
    KeySet, LicenseClaims, MACHINE_FILE, MachineFileClaims, PublicKey, RECEIPT, ReceiptClaims,
    SigningKey, TokenError,
};
