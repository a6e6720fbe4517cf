//! Operator actions shared by the admin API and the CLI: tokens, manual
//! mints, revocation, reinstatement and resends.

use crate::app::AppState;
use crate::fulfilment::{self, MintError, Minted, Order};
use crate::store::licenses::{self, License, status as lstatus};
use crate::store::{self, Store, admin_tokens, outbox};
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

/// Creates a token; returns its row and the only copy of its text.
pub async fn create_token(
    store: &Store,
    name: &str,
    scopes: &[String],
) -> Result<(admin_tokens::AdminToken, String), sqlx::Error> {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret[..]);
    let text = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let row = admin_tokens::AdminToken {
        id: store::new_id("tok"),
        name: name.to_string(),
        token_hash: hash_token(&text),
        scopes: scopes.join(" "),
        created_at: store::now_ms(),
        last_used_at: None,
        revoked_at: None,
    };
    let mut conn = store.writer().await?;
    admin_tokens::insert(&mut conn, &row).await?;
    Ok((row, text))
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("unknown product {0:?}")]
    UnknownProduct(String),
    #[error("{0}")]
    Invalid(String),
    #[error("license not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A manual mint request.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct ManualMint {
    pub product: String,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// Mints by hand (source `manual`). With an `order_id`, repeating the call
/// returns the same license (`created = false`).
pub async fn mint_manual(
    state: &AppState,
    req: &ManualMint,
    actor: &str,
) -> Result<(License, bool), AdminError> {
    let product = state
        .catalog
        .product(&req.product)
        .ok_or_else(|| AdminError::UnknownProduct(req.product.clone()))?;
    let email = req.email.trim();
    if !valid_email(email) {
        return Err(AdminError::Invalid(format!(
            "{email:?} is not an email address"
        )));
    }
    let name = req
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default())
        .to_string();
    let order = Order {
        source: "manual".into(),
        order_id: req.order_id.clone().filter(|o| !o.trim().is_empty()),
        email: email.to_string(),
        name,
        amount_cents: None,
        currency: None,
        test: false,
        notes: req.notes.clone(),
        customer_ref: None,
        refs: Vec::new(),
        valid_until: None,
        send_email: true,
    };
    let mut tx = state.store.begin().await?;
    let minted = fulfilment::mint(
        &mut tx,
        product,
        &order,
        state.keyring.signer(),
        &state.config.signing.issuer,
        actor,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(match minted {
        Minted::New(l) => (l, true),
        Minted::Existing(l) => (l, false),
    })
}

fn valid_email(email: &str) -> bool {
    let mut parts = email.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.len() <= 254
}

/// Revokes (`revoke = true`) or reinstates a license with a reason.
pub async fn set_status(
    store: &Store,
    key: &str,
    revoke: bool,
    reason: &str,
    actor: &str,
) -> Result<License, AdminError> {
    let mut tx = store.begin().await?;
    let license = licenses::by_key(&mut tx, key)
        .await?
        .ok_or(AdminError::NotFound)?;
    let (to, action) = if revoke {
        (lstatus::REVOKED, "revoked")
    } else {
        (lstatus::ACTIVE, "reinstated")
    };
    if license.status == to {
        return Err(AdminError::Conflict(format!("license is already {to}")));
    }
    licenses::set_status(
        &mut tx,
        &license,
        to,
        action,
        Some(reason),
        actor,
        None,
        store::now_ms(),
    )
    .await?;
    tx.commit().await?;
    let mut conn = store.conn().await?;
    licenses::by_key(&mut conn, key)
        .await?
        .ok_or(AdminError::NotFound)
}

/// Queues the license email again; returns the outbox row id.
pub async fn resend(store: &Store, key: &str, actor: &str) -> Result<String, AdminError> {
    let mut tx = store.begin().await?;
    let license = licenses::by_key(&mut tx, key)
        .await?
        .ok_or(AdminError::NotFound)?;
    let now = store::now_ms();
    let dedupe = format!(
        "{}:{}:{}",
        outbox::kind::LICENSE_RESEND,
        license.id,
        ulid::Ulid::generate()
    );
    outbox::enqueue(
        &mut tx,
        &license.id,
        outbox::kind::LICENSE_RESEND,
        &dedupe,
        &license.email,
        now,
    )
    .await?;
    licenses::record_event(
        &mut tx,
        &license.id,
        "resent",
        Some(&license.status),
        &license.status,
        None,
        actor,
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(dedupe)
}
