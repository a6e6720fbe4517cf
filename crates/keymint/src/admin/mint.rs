//! Manual mints: a license minted by an operator (source `manual`), with
//! repeats of the same order id answered by the same license.

use super::AdminError;
use crate::app::AppState;
use crate::domain::Email;
use crate::fulfilment::{self, MintError, Minted, Order};
use crate::store::{self, licenses, licenses::License};
use crate::text;

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
        // One rule for every address (docs/architecture.md, "Input text").
        let email = Email::parse(email)
            .map_err(|e| AdminError::invalid("invalid_email", e.to_string()))?
            .into_string();
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
        &crate::licensing::By {
            actor,
            delivery_id: None,
            now: store::now_ms(),
            reason: None,
        },
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
