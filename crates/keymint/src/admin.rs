//! Operator actions shared by the admin API and the CLI: tokens, manual
//! mints, revocation, reinstatement and resends.

use crate::app::AppState;
use crate::domain::LicenseStatus;
use crate::fulfilment::{self, MintError, Minted, Order};
use crate::licensing::{self, By, Cause, Step};
use crate::store::licenses::{self, License};
use crate::store::{self, Store, admin_tokens, outbox};
use crate::text;
use keymint_license::LicenseKey;
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
        id: store::new_id("tok"),
        name: name.to_string(),
        token_hash: hash_token(&text),
        scopes: scopes.join(" "),
        created_at: store::now_ms(),
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

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("unknown product {0:?}")]
    UnknownProduct(String),
    /// Input that breaks a rule; `code` names the rule.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("license not found")]
    NotFound,
    /// The request conflicts with the current state; `code` says how.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    NotConfigured(String),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl AdminError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The stable code a client sees.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownProduct(_) => "unknown_product",
            Self::Invalid { code, .. } | Self::Conflict { code, .. } => code,
            Self::NotFound => "license_not_found",
            Self::NotConfigured(_) => "not_configured",
            Self::Mint(_) | Self::Database(_) => "internal",
        }
    }
}

impl From<text::ControlCharacter> for AdminError {
    fn from(e: text::ControlCharacter) -> Self {
        Self::invalid("control_character", e.to_string())
    }
}

/// The source of licenses minted by hand.
pub const MANUAL: &str = "manual";

/// A manual mint request.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
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

/// A manual mint request that passed the input rules (docs/architecture.md,
/// "Input text"): the same on SQLite and PostgreSQL.
#[derive(Debug)]
struct CleanMint {
    product: String,
    email: String,
    name: String,
    /// False when the name was left out (and derived from the email).
    name_given: bool,
    order_id: Option<String>,
    notes: Option<String>,
}

impl ManualMint {
    fn clean(&self) -> Result<CleanMint, AdminError> {
        text::check_identifier("product", &self.product)?;
        let email = self.email.trim();
        text::check_identifier("email", email)?;
        if !valid_email(email) {
            return Err(AdminError::invalid(
                "invalid_email",
                format!("{email:?} is not an email address"),
            ));
        }
        let email = email.to_lowercase();
        let given = self
            .name
            .as_deref()
            .map(text::clean_line)
            .filter(|n| !n.is_empty());
        let name_given = given.is_some();
        // `split` always yields a first piece: the default is never used.
        let name = given.unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
        let order_id = match self.order_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(o) => {
                text::check_identifier("order_id", o)?;
                Some(o.to_string())
            }
        };
        let notes = self
            .notes
            .as_deref()
            .map(text::clean_multiline)
            .filter(|n| !n.is_empty());
        Ok(CleanMint {
            product: self.product.trim().to_string(),
            email,
            name,
            name_given,
            order_id,
            notes,
        })
    }
}

/// What differs between a repeated manual mint and the license its
/// order id already has: product and email always, name and notes when
/// the repeat gives them.
fn differences(existing: &License, req: &CleanMint) -> Vec<&'static str> {
    let mut diff = Vec::new();
    if existing.product != req.product {
        diff.push("product");
    }
    if existing.email != req.email {
        diff.push("email");
    }
    if req.name_given && existing.name != req.name {
        diff.push("name");
    }
    if req.notes.is_some() && existing.notes != req.notes {
        diff.push("notes");
    }
    diff
}

/// A repeat of a manual mint: the same details answer the same license;
/// different ones are a conflict naming what differs.
fn repeat(existing: License, req: &CleanMint) -> Result<(License, bool), AdminError> {
    let diff = differences(&existing, req);
    if diff.is_empty() {
        return Ok((existing, false));
    }
    Err(AdminError::conflict(
        "order_id_conflict",
        format!(
            "order id {:?} was already minted (license {}) with a different {}; repeat the original request or use a new order id",
            // A repeat is found by its order id, so there always is one.
            req.order_id.as_deref().unwrap_or_default(),
            existing.key,
            diff.join(" and ")
        ),
    ))
}

/// Mints by hand (source `manual`). With an `order_id`, repeating the call
/// with the same details returns the same license (`created = false`);
/// different details, or an order id another source already minted, are a
/// conflict (docs/admin-api.md).
pub async fn mint_manual(
    state: &AppState,
    req: &ManualMint,
    actor: &str,
) -> Result<(License, bool), AdminError> {
    let req = req.clean()?;
    let product = state
        .catalog
        .product(&req.product)
        .ok_or_else(|| AdminError::UnknownProduct(req.product.clone()))?;
    let order = Order {
        source: MANUAL.into(),
        order_id: req.order_id.clone(),
        email: req.email.clone(),
        name: req.name.clone(),
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
    if let Some(order_id) = &req.order_id {
        if let Some(existing) = licenses::by_order(&mut tx, MANUAL, order_id).await? {
            return repeat(existing, &req);
        }
        if let Some(other) = licenses::by_order_elsewhere(&mut tx, MANUAL, order_id).await? {
            return Err(AdminError::conflict(
                "order_id_taken",
                format!(
                    "order id {order_id:?} belongs to a sale from {} (license {}); a manual order id must not repeat another source's",
                    other.source, other.key
                ),
            ));
        }
    }
    let signer = state
        .keyring
        .signer(&mut tx)
        .await
        .map_err(MintError::from)?;
    let minted = fulfilment::mint(
        &mut tx,
        product,
        &order,
        &signer,
        &state.config.signing.issuer,
        actor,
        None,
        store::now_ms(),
    )
    .await?;
    tx.commit().await?;
    match minted {
        Minted::New(l) => {
            fulfilment::count_minted(&product.id);
            Ok((l, true))
        }
        Minted::Existing(l) => repeat(l, &req),
    }
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
    key: &LicenseKey,
    revoke: bool,
    reason: &str,
    actor: &str,
) -> Result<License, AdminError> {
    let reason = text::clean_line(reason);
    if reason.is_empty() {
        return Err(AdminError::invalid(
            "reason_required",
            "a reason is required",
        ));
    }
    let mut tx = store.begin().await?;
    let license = licenses::by_key(&mut tx, key)
        .await?
        .ok_or(AdminError::NotFound)?;
    let cause = if revoke {
        Cause::OperatorRevoke
    } else {
        Cause::OperatorReinstate
    };
    let by = By {
        actor,
        delivery_id: None,
        now: store::now_ms(),
        reason: Some(&reason),
    };
    if let Step::NotAllowed(why) = licensing::transition(&mut tx, &license, cause, &by).await? {
        return Err(AdminError::conflict(why.code(), why.to_string()));
    }
    tx.commit().await?;
    let mut conn = store.conn().await?;
    licenses::by_key(&mut conn, key)
        .await?
        .ok_or(AdminError::NotFound)
}

/// Queues the license email again; returns the outbox row id. A revoked
/// license is not sent again unless `force`, and a forced resend says so
/// in the history.
pub async fn resend(
    store: &Store,
    key: &LicenseKey,
    force: bool,
    actor: &str,
) -> Result<String, AdminError> {
    let mut tx = store.begin().await?;
    let license = licenses::by_key(&mut tx, key)
        .await?
        .ok_or(AdminError::NotFound)?;
    let revoked = license.status == LicenseStatus::Revoked;
    if revoked && !force {
        return Err(AdminError::conflict(
            "license_revoked",
            format!(
                "license {} is revoked ({}); it is not emailed again unless forced",
                license.key,
                license
                    .status_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    let reason = revoked.then_some("forced: the license is revoked");
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
        Some(license.status),
        license.status,
        reason,
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
    key: &LicenseKey,
    amount_cents: Option<i64>,
    reason: Option<&str>,
    actor: &str,
) -> Result<crate::store::refunds::Refund, AdminError> {
    use crate::store::refunds;
    if amount_cents.is_some_and(|a| a <= 0) {
        return Err(AdminError::invalid(
            "invalid_amount",
            "amount_cents must be positive",
        ));
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
    // Asked before the refund row is written: a license the machine will
    // not hold has nothing to refund.
    let current = licensing::machine::State::of(license.status, license.status_reason.as_deref());
    if let Step::NotAllowed(why) = licensing::machine::apply(current, Cause::RefundRequested) {
        return Err(AdminError::conflict("license_revoked", why.to_string()));
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
    .ok_or_else(|| AdminError::invalid("no_payment", "no payment of this license to refund"))?;
    let refund = refunds::Refund {
        id: crate::domain::RefundId::generate(),
        license_id: license.id.clone(),
        endpoint: license.source.clone(),
        payment_ref,
        amount_cents,
        status: refunds::RefundStatus::Pending,
        provider_refund_id: None,
        reason: reason.map(text::clean_line).filter(|r| !r.is_empty()),
        error: None,
        requested_by: actor.to_string(),
        created_at: now,
        updated_at: now,
    };
    if !refunds::insert_pending(&mut tx, &refund).await? {
        let pending = match refunds::pending_for_license(&mut tx, &license.id).await? {
            Some(p) => format!(" ({})", p.id),
            // Settled between the insert and this read.
            None => String::new(),
        };
        return Err(AdminError::conflict(
            "refund_pending",
            format!(
                "a refund for this license is already pending{pending}; wait for the provider's answer"
            ),
        ));
    }
    let by = By {
        actor,
        delivery_id: None,
        now,
        reason: None,
    };
    licensing::transition(&mut tx, &license, Cause::RefundRequested, &by).await?;
    tx.commit().await?;

    // The row is committed: a crash from here on leaves an orphan the
    // reconciler fails and restores.
    let (provider_id, error) = match crate::provider_api::create_refund(
        &state.http,
        ep,
        &refund.payment_ref,
        amount_cents,
        refund.id.as_str(),
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
