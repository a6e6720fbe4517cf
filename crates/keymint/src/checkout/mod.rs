//! keymint's checkout: an order is committed `pending_payment` first, then
//! the provider is asked for a checkout with the order's id as the
//! idempotency key; the provider's webhook (or the reconciler) settles it
//! through the dispatcher (docs/checkout.md). This module knows orders and
//! the provider API, never HTTP.

use crate::app::AppState;
use crate::config::{ConsentPolicy, ProductConfig, TrialPolicy};
use crate::domain::{Email, Millis, OrderId, OrderStatus};
use crate::provider_api::{self, CheckoutRequest};
use crate::store::{self, licenses, orders};
use keymint_license::LicenseKey;
use sha2::{Digest, Sha256};
use std::time::Duration;

mod input;

use input::{check_consent, digest};
pub use input::{check_idempotency_key, check_redirect};
/// How long a request that found its order still being created by
/// another waits for the provider's answer before answering
/// `checkout_in_progress`.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(5);
/// An order whose provider call has not finished after this long was
/// left by a process that stopped mid-call: a retried request (or the
/// reconciler) calls the provider again. Longer than any call can take
/// (three tries of the 10 s client timeout).
pub(crate) const REDRIVE_AFTER: Duration = Duration::from_secs(45);
/// How long a retried request without an `Idempotency-Key`, from the same
/// address with the same body, finds the pending order it made.
const MATCH_WINDOW: Duration = Duration::from_secs(600);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The buyer's consent, as the checkout request carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub accepted: bool,
    pub terms_version: String,
}

/// A checkout request, parsed at the edge.
#[derive(Debug, Clone)]
pub struct Request {
    pub product: String,
    pub email: Option<Email>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub consent: Option<Consent>,
    pub idempotency_key: Option<String>,
    pub source_ip: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("no product {0:?} in the catalog")]
    UnknownProduct(String),
    /// What is missing for this product to be sold (never an order).
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    RedirectNotAllowed(String),
    /// Malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// Well-formed but not acceptable (422).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    ConsentRequired(String),
    #[error(
        "this Idempotency-Key was used for a different checkout request; use a new key for a new request"
    )]
    KeyReused,
    #[error(
        "a checkout with this Idempotency-Key is still being created; retry in a moment for the same answer"
    )]
    InProgress,
    /// The provider did not create the checkout; the order is failed with
    /// the provider's answer (`message`, for the admin API and the log;
    /// the buyer is told only that it failed) and nothing was charged.
    #[error(
        "the payment provider could not start the checkout; nothing was charged. Try again in a moment"
    )]
    ProviderFailed {
        order: Box<orders::Order>,
        message: String,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// An order and whether this request created it.
#[derive(Debug)]
pub struct Started {
    pub order: orders::Order,
    pub created: bool,
}

/// Starts a checkout: the order first, then the provider.
pub async fn start(state: &AppState, req: Request) -> Result<Started, CheckoutError> {
    let product = state
        .catalog
        .product(&req.product)
        .cloned()
        .ok_or_else(|| CheckoutError::UnknownProduct(req.product.clone()))?;
    let c = product.checkout.as_ref().ok_or_else(|| {
        CheckoutError::NotConfigured(format!(
            "product {:?} is not sold through keymint's checkout (it has no [products.checkout])",
            product.id
        ))
    })?;
    let ep = state
        .config
        .endpoint(&c.endpoint)
        .ok_or_else(|| CheckoutError::NotConfigured(format!("no endpoint {:?}", c.endpoint)))?;
    provider_api::checkout_configured(ep).map_err(CheckoutError::NotConfigured)?;
    if ep.kind == crate::config::EndpointKind::Stripe && req.success_url.is_none() {
        return Err(CheckoutError::Invalid(
            "success_url is required: Stripe sends the buyer there after paying".into(),
        ));
    }
    let success_url = req
        .success_url
        .as_deref()
        .map(|u| check_redirect(&state.config.checkout, "success_url", u))
        .transpose()?;
    let cancel_url = req
        .cancel_url
        .as_deref()
        .map(|u| check_redirect(&state.config.checkout, "cancel_url", u))
        .transpose()?;
    let consent_terms = check_consent(&product, req.consent.as_ref())?;
    let email = req.email.as_ref().map(Email::as_str);
    let request_digest = digest(&[
        &product.id,
        email.unwrap_or(""),
        success_url.as_deref().unwrap_or(""),
        cancel_url.as_deref().unwrap_or(""),
        consent_terms.as_deref().unwrap_or(""),
    ]);
    // Only the same address's retry finds the order: the body is on the
    // seller's public page, and an order id leads to its license key.
    let match_key = match (&req.idempotency_key, email) {
        (None, Some(_)) => Some(digest(&["match", &request_digest, &req.source_ip])),
        _ => None,
    };
    let trial_days = product.trial_days.filter(|d| *d > 0);
    let mut trial = trial_days.is_some();

    for _ in 0..4 {
        let mut tx = state.store.begin().await?;
        if let Some(key) = &req.idempotency_key
            && let Some(existing) = orders::by_idempotency_key(&mut tx, key).await?
        {
            drop(tx);
            if existing.request_digest != request_digest {
                return Err(CheckoutError::KeyReused);
            }
            return settled(state, existing).await;
        }
        if let Some(m) = &match_key
            && let Some(existing) = orders::pending_by_match(&mut tx, m).await?
        {
            if existing.created_at.0 >= store::now_ms() - ms(MATCH_WINDOW) {
                drop(tx);
                return settled(state, existing).await;
            }
            // Too old to be this request's retry: a new order.
            orders::forget_match(&mut tx, &existing.id).await?;
        }
        // trial = first_time: one per email and product, held by a unique
        // key among live orders; no email, no way to tell, no trial.
        let first_trial = match (trial, product.trial, email) {
            (true, TrialPolicy::FirstTime, Some(e)) => {
                let k = format!("{}\n{e}", product.id);
                if orders::had_trial_or_license(&mut tx, &k, &product.id, e).await? {
                    trial = false;
                    None
                } else {
                    Some(k)
                }
            }
            (true, TrialPolicy::FirstTime, None) => {
                trial = false;
                None
            }
            _ => None,
        };
        let now = store::now_ms();
        let order = orders::Order {
            id: OrderId::generate(),
            product: product.id.clone(),
            endpoint: ep.name.clone(),
            status: OrderStatus::PendingPayment,
            email: email.map(str::to_string),
            idempotency_key: req.idempotency_key.clone(),
            request_digest: request_digest.clone(),
            match_key: match_key.clone(),
            first_trial: first_trial.clone(),
            trial_days: if trial {
                trial_days.map(i64::from)
            } else {
                None
            },
            consent_at: consent_terms.as_ref().map(|_| Millis(now)),
            consent_ip: consent_terms.as_ref().map(|_| req.source_ip.clone()),
            consent_terms: consent_terms.clone(),
            success_url: success_url.clone(),
            cancel_url: cancel_url.clone(),
            provider_ref: None,
            checkout_url: None,
            client_secret: None,
            license_id: None,
            error: None,
            source_ip: Some(req.source_ip.clone()),
            checked_at: None,
            created_at: Millis(now),
            updated_at: Millis(now),
        };
        let actor = format!("checkout:{}", req.source_ip);
        let step = orders::Step {
            cause: "created",
            actor: &actor,
            delivery_id: None,
            detail: None,
            now,
        };
        if !orders::insert(&mut tx, &order, &step).await? {
            // A racing request took a unique key: the same key or request
            // (found above on the next round), or the buyer's trial.
            drop(tx);
            if first_trial.is_some() {
                trial = false;
            }
            continue;
        }
        tx.commit().await?;
        tracing::info!(order = %order.id, product = %order.product, endpoint = %order.endpoint, "order created; asking the provider for its checkout");
        return call_provider(state, ep, &product, order).await;
    }
    Err(CheckoutError::InProgress)
}

/// The order committed, the provider is asked; its answer is recorded.
async fn call_provider(
    state: &AppState,
    ep: &crate::config::EndpointConfig,
    product: &ProductConfig,
    order: orders::Order,
) -> Result<Started, CheckoutError> {
    // `{ORDER_ID}` in a redirect URL becomes the order's id, so the
    // seller's page can look the order up when the buyer comes back.
    let with_id = |u: &Option<String>| {
        u.as_ref()
            .map(|u| u.replace("{ORDER_ID}", order.id.as_str()))
    };
    let (success_url, cancel_url) = (with_id(&order.success_url), with_id(&order.cancel_url));
    let call = provider_api::create_checkout(
        &state.http,
        ep,
        &CheckoutRequest {
            order_id: order.id.as_str(),
            product,
            email: order.email.as_deref(),
            success_url: success_url.as_deref(),
            cancel_url: cancel_url.as_deref(),
            trial_days: order.trial_days.and_then(|d| u32::try_from(d).ok()),
            expires_at: Some(crate::store::format_ms(Millis(
                order.created_at.0
                    + i64::try_from(state.config.checkout.expire_after.as_millis())
                        .unwrap_or(i64::MAX / 2),
            ))),
        },
    )
    .await;
    let mut conn = state.store.writer().await?;
    let now = store::now_ms();
    match call {
        Ok(created) => {
            let detail = created.provider_ref.clone();
            let step = orders::Step {
                cause: "checkout_created",
                actor: "keymint",
                delivery_id: None,
                detail: Some(&detail),
                now,
            };
            orders::note_checkout(
                &mut conn,
                &order.id,
                &created.provider_ref,
                created.url.as_deref(),
                created.client_secret.as_deref(),
                &step,
            )
            .await?;
            metrics::counter!("keymint_checkouts_total", "result" => "created").increment(1);
            tracing::info!(order = %order.id, provider_ref = %detail, "checkout created");
        }
        Err(e) => {
            // No URL or client secret ever reached the buyer, so nothing
            // can be paid: the order fails with the reason.
            let message = e.to_string();
            tracing::warn!(order = %order.id, error = %message, "the provider did not create the checkout");
            let step = orders::Step {
                cause: "provider_failed",
                actor: "keymint",
                delivery_id: None,
                detail: Some(&message),
                now,
            };
            orders::close(
                &mut conn,
                &order.id,
                OrderStatus::Failed,
                Some(&message),
                &step,
            )
            .await?;
            metrics::counter!("keymint_checkouts_total", "result" => "provider_failed")
                .increment(1);
            let order = orders::get(&mut conn, &order.id).await?.unwrap_or(order);
            return Err(CheckoutError::ProviderFailed {
                order: Box::new(order),
                message,
            });
        }
    }
    let order = orders::get(&mut conn, &order.id).await?.unwrap_or(order);
    Ok(Started {
        order,
        created: true,
    })
}

/// An existing order for a repeated request: once its checkout exists (or
/// it ended), the same answer; while another request is still creating
/// it, a short wait, then `InProgress`; when the request that was creating
/// it stopped mid-call, the provider is called again.
async fn settled(state: &AppState, mut order: orders::Order) -> Result<Started, CheckoutError> {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER;
    let mut pause = Duration::from_millis(20);
    loop {
        if order.provider_ref.is_some() || order.status != OrderStatus::PendingPayment {
            return Ok(Started {
                order,
                created: false,
            });
        }
        if order.updated_at.0 < store::now_ms() - ms(REDRIVE_AFTER) {
            return match redrive(state, order.clone()).await? {
                Some(started) => Ok(Started {
                    created: false,
                    ..started
                }),
                // Another caller is calling the provider again.
                None => Err(CheckoutError::InProgress),
            };
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(CheckoutError::InProgress);
        }
        // Backing off while the other request's provider call finishes
        // (on this replica or another): the row is the only shared state.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
        let mut conn = state.store.conn().await?;
        order = match orders::get(&mut conn, &order.id).await? {
            Some(o) => o,
            None => return Err(CheckoutError::InProgress),
        };
    }
}

/// Calls the provider again for a pending order whose call never finished
/// (its process stopped mid-call): the same order id, so Stripe and
/// Hyperswitch answer the checkout they made then, if they made one; the
/// others make a new one, the first having never reached a buyer. `None`
/// when another caller claimed it first.
pub async fn redrive(
    state: &AppState,
    order: orders::Order,
) -> Result<Option<Started>, CheckoutError> {
    let now = store::now_ms();
    {
        let mut conn = state.store.writer().await?;
        if !orders::claim_redrive(&mut conn, &order.id, order.updated_at, now).await? {
            return Ok(None);
        }
    }
    let product = state.catalog.product(&order.product).cloned();
    let ep = state.config.endpoint(&order.endpoint);
    let (Some(product), Some(ep)) = (product, ep) else {
        let why = format!(
            "product {:?} or endpoint {:?} is no longer configured",
            order.product, order.endpoint
        );
        let step = orders::Step {
            cause: "provider_failed",
            actor: "keymint",
            delivery_id: None,
            detail: Some(&why),
            now,
        };
        let mut conn = state.store.writer().await?;
        orders::close(&mut conn, &order.id, OrderStatus::Failed, Some(&why), &step).await?;
        return Ok(None);
    };
    tracing::warn!(order = %order.id, "the provider call of this order never finished; calling the provider again");
    match call_provider(state, ep, &product, order).await {
        Ok(started) => Ok(Some(started)),
        Err(CheckoutError::ProviderFailed { order, .. }) => Ok(Some(Started {
            order: *order,
            created: false,
        })),
        Err(e) => Err(e),
    }
}

/// An order and, once paid, its license's key.
pub async fn status(
    state: &AppState,
    id: &OrderId,
) -> Result<Option<(orders::Order, Option<LicenseKey>)>, sqlx::Error> {
    let mut conn = state.store.conn().await?;
    let Some(order) = orders::get(&mut conn, id).await? else {
        return Ok(None);
    };
    let key = match (&order.license_id, order.status) {
        (Some(l), OrderStatus::Paid) => licenses::by_id(&mut conn, l).await?.map(|l| l.key),
        _ => None,
    };
    Ok(Some((order, key)))
}
