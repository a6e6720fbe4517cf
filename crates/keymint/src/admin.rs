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
    #[error("{0}")]
    NotConfigured(String),
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

/// Refunds a license's payment through its provider: a `pending` refund row
/// is written (and the license suspended) first, then the provider is
/// called with that row's id as the `Idempotency-Key`. The answer never
/// makes the refund terminal; the provider's webhook or the reconciler
/// does.
pub async fn request_refund(
    state: &crate::app::AppState,
    key: &str,
    amount_cents: Option<i64>,
    reason: Option<&str>,
    actor: &str,
) -> Result<crate::store::refunds::Refund, AdminError> {
    use crate::store::refunds;
    if amount_cents.is_some_and(|a| a <= 0) {
        return Err(AdminError::Invalid("amount_cents must be positive".into()));
    }
    let now = store::now_ms();
    let mut tx = state.store.begin().await?;
    let license = licenses::by_key(&mut tx, key)
        .await?
        .ok_or(AdminError::NotFound)?;
    let ep = state
        .config
        .endpoint(&license.source)
        .filter(|ep| crate::provider_api::refunds_configured(ep))
        .ok_or_else(|| {
            AdminError::NotConfigured(format!("refunds not configured for {}", license.source))
        })?;
    if license.status == lstatus::REVOKED {
        return Err(AdminError::Conflict("license is already revoked".into()));
    }
    // What the provider refunds: the order itself (Hyperswitch payment,
    // Stripe payment intent), else a payment intent recorded for it.
    let payment_ref = match license.order_id.as_deref() {
        Some(o) if ep.kind != crate::config::EndpointKind::Stripe || o.starts_with("pi_") => {
            Some(o.to_string())
        }
        _ => licenses::refs_of(&mut tx, &license.id)
            .await?
            .into_iter()
            .rfind(|r| r.starts_with("pi_")),
    }
    .ok_or_else(|| AdminError::Invalid("no payment of this license to refund".into()))?;
    let refund = refunds::Refund {
        id: store::new_id("ref"),
        license_id: license.id.clone(),
        endpoint: license.source.clone(),
        payment_ref,
        amount_cents,
        status: refunds::status::PENDING.into(),
        provider_refund_id: None,
        reason: reason.map(str::to_string),
        error: None,
        requested_by: actor.to_string(),
        created_at: now,
        updated_at: now,
    };
    if !refunds::insert_pending(&mut tx, &refund).await? {
        let pending = refunds::pending_for_license(&mut tx, &license.id).await?;
        return Err(AdminError::Conflict(format!(
            "a refund for this license is already pending ({}); wait for the provider's answer",
            pending.map(|p| p.id).unwrap_or_default()
        )));
    }
    if license.status == lstatus::ACTIVE {
        licenses::set_status(
            &mut tx,
            &license,
            lstatus::SUSPENDED,
            "refund_requested",
            Some(crate::dispatcher::REFUND_PENDING),
            actor,
            None,
            now,
        )
        .await?;
    }
    tx.commit().await?;

    // The row is committed: a crash from here on leaves an orphan the
    // reconciler fails and restores.
    let (provider_id, error) = match crate::provider_api::create_refund(
        &state.http,
        ep,
        &refund.payment_ref,
        amount_cents,
        &refund.id,
    )
    .await
    {
        Ok(id) => (id, None),
        Err(e) => {
            tracing::warn!(refund_id = %refund.id, error = %e, "the provider did not take the refund; the reconciler will settle it");
            (None, Some(e.to_string()))
        }
    };
    let mut conn = state.store.writer().await?;
    refunds::note_call(
        &mut conn,
        &refund.id,
        provider_id.as_deref(),
        error.as_deref(),
        store::now_ms(),
    )
    .await?;
    Ok(refunds::get(&mut conn, &refund.id).await?.unwrap_or(refund))
}
