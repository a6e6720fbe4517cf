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

mod key;
mod token;

pub use key::{LicenseKey, LicenseKeyError};
pub use token::{
    KeySet, LicenseClaims, MACHINE_FILE, MachineFileClaims, PublicKey, RECEIPT, ReceiptClaims,
    SigningKey, TokenError,
};
