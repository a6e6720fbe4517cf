//! Fulfilment: turning a sale of a catalog product into a license row with
//! its key and signed token, and writing it with its first email. Nothing
//! on the way to a signature turns a bad value into a default: each one is
//! a [`MintError`] with its reason (docs/architecture.md, rule 8).

use crate::config::ProductConfig;
use crate::domain::{CustomerId, LicenseId, Millis};
use crate::store::{Conn, customers, licenses, outbox};
use keymint_license::{LicenseClaims, LicenseKey, SigningKey};
use time::OffsetDateTime;

/// Who bought what, from where.
#[derive(Debug, Clone)]
pub struct Order {
    /// `manual` or the endpoint name.
    pub source: String,
    pub order_id: Option<String>,
    pub email: String,
    pub name: String,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub test: bool,
    pub notes: Option<String>,
    /// The provider's customer id, linked to the customer.
    pub customer_ref: Option<String>,
    /// Other provider ids naming this order (see `license_refs`).
    pub refs: Vec<String>,
    /// Token expiry (Unix ms) instead of the product's duration:
    /// subscriptions expire with their paid period plus grace.
    pub valid_until: Option<i64>,
    /// Email the license to the buyer (not for a subscription first seen
    /// after it ended).
    pub send_email: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("cannot make a license key: {0}")]
    Key(#[from] keymint_license::LicenseKeyError),
    #[error("cannot sign the license token: {0}")]
    Token(#[from] keymint_license::TokenError),
    #[error("cannot sign: {0}")]
    Signing(crate::signing::KeyError),
    /// A product whose `duration` runs past what a token can carry
    /// (a duration that does not parse is refused when the configuration
    /// loads): signing it perpetual would give away what was not sold.
    #[error("product {product:?}: {reason}")]
    Duration { product: String, reason: String },
    /// A time (expiry, issue time) a token cannot carry.
    #[error("{what} {ms} ms is not a representable time")]
    Time { what: &'static str, ms: i64 },
    /// A stored license whose seat limit does not fit a token: signing it
    /// unlimited would lift the limit.
    #[error("license {license}: stored max_machines {value} is out of range (1 to {max})", max = u32::MAX)]
    MaxMachines { license: String, value: i64 },
    /// A stored license whose entitlements are not a JSON list of
    /// strings: signing it with none would take them away.
    #[error("license {license}: stored entitlements are not a JSON list of strings: {reason}")]
    Entitlements { license: String, reason: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<crate::signing::KeyError> for MintError {
    fn from(e: crate::signing::KeyError) -> Self {
        match e {
            crate::signing::KeyError::Database(e) => Self::Database(e),
            other => Self::Signing(other),
        }
    }
}

/// Builds (does not store) a license for `order`.
pub fn build_license(
    product: &ProductConfig,
    order: &Order,
    customer_id: &CustomerId,
    signer: &SigningKey,
    issuer: &str,
    now_ms: i64,
) -> Result<licenses::License, MintError> {
    let id = LicenseId::generate();
    let key = LicenseKey::generate(&product.key_prefix, &product.tier)?;
    let now = ms_to_time("the current time", now_ms)?;
    let exp = match order.valid_until {
        Some(ms) => Some(ms_to_time("the expiry", ms)?),
        None => product_expiry(product, now)?,
    };
    let claims = LicenseClaims {
        iss: issuer.to_string(),
        sub: id.to_string(),
        key: key.to_string(),
        product: product.id.clone(),
        tier: product.tier.clone(),
        entitlements: product.entitlements.clone(),
        iat: now,
        nbf: now,
        exp,
        max_machines: product.max_machines,
        name: order.name.clone(),
        email: product.include_email.then(|| order.email.clone()),
    };
    let token = signer.mint(&claims)?;
    Ok(licenses::License {
        id,
        key,
        customer_id: customer_id.clone(),
        product: product.id.clone(),
        tier: product.tier.clone(),
        status: licenses::LicenseStatus::Active,
        status_reason: None,
        source: order.source.clone(),
        order_id: order.order_id.clone(),
        name: order.name.clone(),
        email: order.email.to_lowercase(),
        token,
        kid: signer.kid().to_string(),
        issued_at: Millis(now_ms),
        expires_at: exp.map(|e| Millis(e.unix_timestamp() * 1000)),
        max_machines: product.max_machines.map(i64::from),
        // A list of strings always serializes.
        entitlements: serde_json::to_string(&product.entitlements).expect("strings serialize"),
        amount_cents: order.amount_cents,
        currency: order.currency.clone(),
        test: i64::from(order.test),
        notes: order.notes.clone(),
        created_at: Millis(now_ms),
        updated_at: Millis(now_ms),
    })
}

/// What [`mint`] did.
#[derive(Debug)]
pub enum Minted {
    /// A new license, with its first email queued.
    New(licenses::License),
    /// A license for this `(source, order_id)` already existed.
    Existing(licenses::License),
}

impl Minted {
    /// The license, new or existing.
    pub fn into_license(self) -> licenses::License {
        match self {
            Self::New(l) | Self::Existing(l) => l,
        }
    }
}

/// Stores a new license for `order` with its history entry and first email,
/// in the caller's transaction; or returns the one that exists for the
/// same `(source, order_id)`.
pub async fn mint(
    conn: &mut Conn,
    product: &ProductConfig,
    order: &Order,
    signer: &SigningKey,
    issuer: &str,
    by: &crate::licensing::By<'_>,
) -> Result<Minted, MintError> {
    let now = by.now;
    // No read first: the `(source, order_id)` unique key decides below, and
    // the common case (a new order) saves a round trip.
    // The provider's customer id decides who the buyer is; the email only
    // when that id is new.
    let linked = match &order.customer_ref {
        Some(r) => customers::customer_by_ref(conn, &order.source, r)
            .await?
            .map(|c| c.id),
        None => None,
    };
    let customer_id = match linked {
        Some(id) => id,
        None => {
            let id =
                customers::upsert_customer(conn, &order.email.to_lowercase(), &order.name, now)
                    .await?;
            // First sight of this provider customer id: link it.
            if let Some(r) = &order.customer_ref {
                customers::link_customer(conn, &order.source, r, &id).await?;
            }
            id
        }
    };
    let license = build_license(product, order, &customer_id, signer, issuer, now)?;
    if !licenses::insert(conn, &license).await? {
        // A concurrent transaction minted this order first (only an order
        // id can conflict: a license without one never does).
        let existing = match order.order_id.as_deref() {
            Some(order_id) => licenses::by_order(conn, &order.source, order_id).await?,
            None => None,
        }
        .ok_or(sqlx::Error::RowNotFound)?;
        return Ok(Minted::Existing(existing));
    }
    if let Some(holder) = licenses::add_refs(conn, &order.source, &order.refs, &license.id).await? {
        // Another license already names one of this order's ids (a
        // subscription and its first order, delivered concurrently).
        licenses::delete_fresh(conn, &license.id).await?;
        let existing = licenses::by_id(conn, &holder)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        return Ok(Minted::Existing(existing));
    }
    licenses::record_event(
        conn,
        &license.id,
        "minted",
        None,
        license.status,
        None,
        by.actor,
        by.delivery_id,
        now,
    )
    .await?;
    if order.send_email {
        outbox::enqueue(
            conn,
            &license.id,
            outbox::EmailKind::LicenseIssued,
            &format!("{}:{}", outbox::EmailKind::LicenseIssued, license.id),
            &license.email,
            now,
        )
        .await?;
    }
    Ok(Minted::New(license))
}

/// Counts a minted license; callers call it after their transaction
/// commits, so a mint that rolled back is never counted.
pub fn count_minted(product: &str) {
    metrics::counter!("keymint_licenses_minted_total", "product" => product.to_string())
        .increment(1);
}

/// The expiry of a new license of `product` issued at `now`: `None` when
/// the product is perpetual.
fn product_expiry(
    product: &ProductConfig,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, MintError> {
    let Some(validity) = product.duration.duration() else {
        return Ok(None);
    };
    let too_far = || MintError::Duration {
        product: product.id.clone(),
        reason: format!("duration {:?} ends after the year 9999", product.duration),
    };
    let validity = time::Duration::try_from(validity).map_err(|_| too_far())?;
    now.checked_add(validity).map(Some).ok_or_else(too_far)
}

/// Unix ms to a time a token can carry, or an error naming `what`.
/// Tokens carry whole seconds.
fn ms_to_time(what: &'static str, ms: i64) -> Result<OffsetDateTime, MintError> {
    Millis(ms)
        .to_time_secs()
        .map_err(|_| MintError::Time { what, ms })
}

/// Signs a fresh token for an existing license, expiring at `valid_until`
/// (Unix ms); the claims are otherwise the license's own.
pub fn reissue(
    license: &licenses::License,
    include_email: bool,
    valid_until: Option<i64>,
    signer: &SigningKey,
    issuer: &str,
    now_ms: i64,
) -> Result<String, MintError> {
    let now = ms_to_time("the current time", now_ms)?;
    let entitlements =
        serde_json::from_str(&license.entitlements).map_err(|e| MintError::Entitlements {
            license: license.id.to_string(),
            reason: e.to_string(),
        })?;
    let max_machines = match license.max_machines {
        None => None,
        Some(m) => Some(u32::try_from(m).ok().filter(|&m| m > 0).ok_or_else(|| {
            MintError::MaxMachines {
                license: license.id.to_string(),
                value: m,
            }
        })?),
    };
    let claims = LicenseClaims {
        iss: issuer.to_string(),
        sub: license.id.to_string(),
        key: license.key.to_string(),
        product: license.product.clone(),
        tier: license.tier.clone(),
        entitlements,
        iat: now,
        nbf: now,
        exp: valid_until
            .map(|ms| ms_to_time("the expiry", ms))
            .transpose()?,
        max_machines,
        name: license.name.clone(),
        email: include_email.then(|| license.email.clone()),
    };
    Ok(signer.mint(&claims)?)
}

#[cfg(test)]
mod tests;
