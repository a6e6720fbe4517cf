//! Admin tokens: their scopes, their text and creating one.

use super::AdminError;
use crate::domain::Millis;
use crate::store::{self, Store, admin_tokens};
use crate::text;
use sha2::{Digest, Sha256};

/// Scopes an admin token can hold.
pub mod scope {
    pub const ADMIN: &str = "admin";
    pub const LICENSES_READ: &str = "licenses:read";
    pub const LICENSES_WRITE: &str = "licenses:write";
    pub const DELIVERIES_READ: &str = "deliveries:read";
    pub const DELIVERIES_WRITE: &str = "deliveries:write";
    pub const ALL: &[&str] = &[
        ADMIN,
        LICENSES_READ,
        LICENSES_WRITE,
        DELIVERIES_READ,
        DELIVERIES_WRITE,
    ];
}

/// Token text prefix, so leaked tokens are recognisable to scanners.
pub const TOKEN_PREFIX: &str = "kmt_";

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a token; returns its row and the only copy of its text. Names
/// are unique among live tokens, so `revoke NAME` means one token.
pub async fn create_token(
    store: &Store,
    name: &str,
    scopes: &[String],
) -> Result<(admin_tokens::AdminToken, String), AdminError> {
    let name = name.trim();
    text::check_identifier("name", name)?;
    if name.is_empty() || name.len() > 64 || name.starts_with("tok_") {
        return Err(AdminError::invalid(
            "invalid_name",
            format!("token name {name:?} must be 1 to 64 characters and not start with tok_"),
        ));
    }
    let mut secret = [0u8; 32];
    rand::fill(&mut secret[..]);
    let text = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let row = admin_tokens::AdminToken {
        id: crate::domain::AdminTokenId::generate(),
        name: name.to_string(),
        token_hash: hash_token(&text),
        scopes: scopes.join(" "),
        created_at: Millis(store::now_ms()),
        last_used_at: None,
        revoked_at: None,
    };
    let mut conn = store.writer().await?;
    match admin_tokens::insert(&mut conn, &row).await {
        Ok(()) => Ok((row, text)),
        Err(e) if store::is_unique_violation(&e) => Err(AdminError::conflict(
            "token_name_taken",
            format!(
                "a live token is already named {name:?}; revoke it first or choose another name"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}
