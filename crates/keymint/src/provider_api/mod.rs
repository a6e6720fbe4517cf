//! Provider APIs (Stripe and Hyperswitch): operator refunds (create one
//! with an `Idempotency-Key`, read its state), checkouts (create one for
//! an order, read it back), subscriptions and Stripe's billing portal.
//! Answers here never make a refund or an order terminal by themselves;
//! the caller turns a read state into a synthetic event for the dispatcher.

mod checkout;

pub use checkout::{
    CheckoutRequest, CheckoutState, CreatedCheckout, checkout_configured, checkout_state,
    create_checkout,
};

use crate::config::{EndpointConfig, EndpointKind};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// What is missing, as a sentence.
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    Unreachable(String),
    /// No connection could be made: the request was never sent, so it is
    /// safe to send again even where the provider takes no idempotency key.
    #[error("{0}")]
    NotConnected(String),
    #[error("the provider answered {status}: {message}")]
    Answered { status: u16, message: String },
    /// A success whose body does not say what was done: whether the call
    /// took effect is unknown, so it is settled later like an unreachable
    /// provider, never read as "nothing happened".
    #[error("the provider answered {status}, but {problem}")]
    Unreadable { status: u16, problem: String },
}

/// A refund's state at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundState {
    Pending,
    Succeeded,
    Failed,
}

/// Whether operator refunds can go through this endpoint.
/// Whether keymint can open a billing portal for this endpoint's
/// customers (Stripe with an API key).
pub fn has_billing_portal(ep: &EndpointConfig) -> bool {
    ep.kind == EndpointKind::Stripe && ep.api_key.is_some()
}

pub fn refunds_configured(ep: &EndpointConfig) -> bool {
    matches!(ep.kind, EndpointKind::Stripe | EndpointKind::Hyperswitch) && ep.api_key.is_some()
}

fn refund_key(ep: &EndpointConfig) -> Result<&crate::config::Secret, ApiError> {
    ep.api_key
        .as_ref()
        .filter(|_| refunds_configured(ep))
        .ok_or_else(|| ApiError::NotConfigured(format!("refunds not configured for {}", ep.name)))
}

fn base(ep: &EndpointConfig) -> String {
    let default = match ep.kind {
        EndpointKind::Stripe => "https://api.stripe.com",
        EndpointKind::Polar => "https://api.polar.sh",
        EndpointKind::Paddle => "https://api.paddle.com",
        EndpointKind::Lemonsqueezy => "https://api.lemonsqueezy.com",
        _ => "https://api.hyperswitch.io",
    };
    ep.api_url
        .as_deref()
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_string()
}

async fn send(req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
    let resp = req.send().await.map_err(|e| {
        if e.is_connect() {
            ApiError::NotConnected(format!("provider API unreachable: {}", e.without_url()))
        } else if e.is_timeout() {
            ApiError::Unreachable("the provider API did not answer in time".into())
        } else {
            ApiError::Unreachable(format!("provider API unreachable: {}", e.without_url()))
        }
    })?;
    let status = resp.status();
    let body = resp.json::<Value>().await;
    if status.is_success() {
        return body.map_err(|e| ApiError::Unreadable {
            status: status.as_u16(),
            problem: format!("its body is not JSON: {}", e.without_url()),
        });
    }
    // An error answer's body only adds detail: any body, or none, will do.
    let body = body.unwrap_or(Value::Null);
    // Stripe and Hyperswitch: error.message; Paddle: error.detail; Lemon
    // Squeezy: errors[0].detail; Polar: detail (text, or a list for a 422).
    let message = body
        .pointer("/error/message")
        .or_else(|| body.pointer("/error/detail"))
        .or_else(|| body.pointer("/errors/0/detail"))
        .or_else(|| body.pointer("/detail"))
        .or_else(|| body.pointer("/error"))
        .or_else(|| body.pointer("/message"))
        .map(|m| {
            m.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| m.to_string())
        })
        // No message in the body: the status says enough.
        .unwrap_or_default();
    Err(ApiError::Answered {
        status: status.as_u16(),
        message,
    })
}

/// [`send`], again after a pause when the answer says a second try can
/// work: a connection that was never made, and, where the provider takes
/// an idempotency key (so a repeat cannot make a second object), a
/// timeout, a 429 or a 5xx. At most three tries.
async fn send_with_retries(
    req: reqwest::RequestBuilder,
    idempotent: bool,
) -> Result<Value, ApiError> {
    let mut pause = std::time::Duration::from_millis(300);
    for _ in 0..2 {
        let Some(attempt) = req.try_clone() else {
            break;
        };
        match send(attempt).await {
            Err(ApiError::NotConnected(_)) => {}
            Err(ApiError::Unreachable(_)) if idempotent => {}
            Err(ApiError::Answered { status, .. })
                if idempotent && (status == 429 || status >= 500) => {}
            done => return done,
        }
        tokio::time::sleep(pause).await;
        pause *= 3;
    }
    send(req).await
}

/// A string field of a successful answer, required.
fn required_str(body: &Value, pointers: &[&str], what: &str) -> Result<String, ApiError> {
    pointers
        .iter()
        .find_map(|p| body.pointer(p).and_then(Value::as_str))
        .map(str::to_string)
        .ok_or_else(|| ApiError::Unreadable {
            status: 200,
            problem: format!("its answer has no {what} ({})", pointers.join(" or ")),
        })
}

fn state(text: &str) -> RefundState {
    match text {
        "succeeded" => RefundState::Succeeded,
        "failed" | "canceled" | "cancelled" => RefundState::Failed,
        // pending, requires_action and the like: asked again next tick.
        _ => RefundState::Pending,
    }
}

/// Asks the provider to refund `payment_ref`; returns the provider's refund
/// id. `idempotency_key` is the refund row's id and must not be empty.
pub async fn create_refund(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    payment_ref: &str,
    amount_cents: Option<i64>,
    idempotency_key: &str,
) -> Result<Option<String>, ApiError> {
    assert!(
        !idempotency_key.is_empty(),
        "an empty idempotency key is a bug"
    );
    let key = refund_key(ep)?;
    let body = match ep.kind {
        EndpointKind::Stripe => {
            let mut form = vec![
                ("payment_intent", payment_ref.to_string()),
                ("metadata[keymint_refund]", idempotency_key.to_string()),
            ];
            if let Some(a) = amount_cents {
                form.push(("amount", a.to_string()));
            }
            send(
                http.post(format!("{}/v1/refunds", base(ep)))
                    .bearer_auth(key.expose())
                    .header("Idempotency-Key", idempotency_key)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(serde_urlencoded::to_string(&form).expect("strings encode")),
            )
            .await?
        }
        _ => {
            let mut json = serde_json::json!({
                "payment_id": payment_ref,
                "refund_id": idempotency_key,
                "reason": "operator refund",
            });
            if let Some(a) = amount_cents {
                json["amount"] = a.into();
            }
            send(
                http.post(format!("{}/refunds", base(ep)))
                    .header("api-key", key.expose())
                    .header("Idempotency-Key", idempotency_key)
                    .json(&json),
            )
            .await?
        }
    };
    required_str(&body, &["/id", "/refund_id"], "refund id").map(Some)
}

/// Reads a refund's state at the provider.
pub async fn refund_state(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    provider_refund_id: &str,
) -> Result<RefundState, ApiError> {
    let key = refund_key(ep)?;
    let body = match ep.kind {
        EndpointKind::Stripe => {
            send(
                http.get(format!("{}/v1/refunds/{provider_refund_id}", base(ep)))
                    .bearer_auth(key.expose()),
            )
            .await?
        }
        _ => {
            send(
                http.get(format!("{}/refunds/{provider_refund_id}", base(ep)))
                    .header("api-key", key.expose()),
            )
            .await?
        }
    };
    let status = required_str(&body, &["/status"], "refund status")?;
    Ok(state(&status))
}

/// Stripe: the subscription object as `GET /v1/subscriptions/{id}` gives
/// it. `Ok(None)` for providers keymint does not read subscriptions from.
pub async fn read_subscription(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    subscription_id: &str,
) -> Result<Option<Value>, ApiError> {
    let (EndpointKind::Stripe, Some(key)) = (ep.kind, ep.api_key.as_ref()) else {
        return Ok(None);
    };
    send(
        http.get(format!("{}/v1/subscriptions/{subscription_id}", base(ep)))
            .bearer_auth(key.expose()),
    )
    .await
    .map(Some)
}

/// Stripe: a customer-portal session for `customer`
/// (`POST /v1/billing_portal/sessions`); its URL.
pub async fn billing_portal(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    customer: &str,
    return_url: Option<&str>,
) -> Result<String, ApiError> {
    let (EndpointKind::Stripe, Some(key)) = (ep.kind, ep.api_key.as_ref()) else {
        return Err(ApiError::NotConfigured(format!(
            "endpoint {:?} has no Stripe billing portal (a stripe endpoint with an api_key)",
            ep.name
        )));
    };
    let mut form = vec![("customer", customer)];
    if let Some(u) = return_url {
        form.push(("return_url", u));
    }
    let body = send(
        http.post(format!("{}/v1/billing_portal/sessions", base(ep)))
            .bearer_auth(key.expose())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&form).expect("strings encode")),
    )
    .await?;
    required_str(&body, &["/url"], "billing portal url")
}

/// Why a license's billing portal could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BillingPortalError {
    /// The license has no Stripe billing portal (why, as a sentence).
    #[error("{0}")]
    NotAvailable(String),
    #[error("the provider did not open a billing portal: {0}")]
    Provider(ApiError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A Stripe customer-portal URL for `license`'s customer, for the public
/// API's `billing-portal` route and the buyer portal alike.
pub async fn license_billing_portal(
    store: &crate::store::Store,
    http: &reqwest::Client,
    config: &crate::config::Config,
    license: &crate::store::licenses::License,
    return_url: Option<&str>,
) -> Result<String, BillingPortalError> {
    let Some(ep) = config
        .endpoint(&license.source)
        .filter(|ep| has_billing_portal(ep))
    else {
        return Err(BillingPortalError::NotAvailable(
            "this license was not sold through Stripe with an API key, so keymint has no billing portal to open".into(),
        ));
    };
    let customer = {
        let mut conn = store.conn().await?;
        crate::store::customers::provider_customer(
            &mut conn,
            &ep.name,
            &license.id,
            &license.customer_id,
        )
        .await?
    };
    let Some(customer) = customer else {
        return Err(BillingPortalError::NotAvailable(
            "the provider's customer of this license is not known".into(),
        ));
    };
    match billing_portal(http, ep, &customer, return_url).await {
        Ok(url) => Ok(url),
        Err(ApiError::NotConfigured(why)) => Err(BillingPortalError::NotAvailable(why)),
        Err(e) => Err(BillingPortalError::Provider(e)),
    }
}
