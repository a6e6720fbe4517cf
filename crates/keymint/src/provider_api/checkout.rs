//! Checkouts at the providers: create one for an order (the order's id as
//! the `Idempotency-Key` where the provider takes one, and as
//! `keymint_order` in the metadata every provider carries to its
//! webhooks), and read one back for the reconciler (docs/checkout.md).

use super::{ApiError, base, required_str, send, send_with_retries};
use crate::config::{EndpointConfig, EndpointKind, ProductConfig, Secret};
use serde_json::{Value, json};

/// A checkout the provider created for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedCheckout {
    /// The provider's id: a Stripe Checkout Session, a Hyperswitch
    /// payment, a Polar checkout, a Paddle transaction, a Lemon Squeezy
    /// checkout.
    pub provider_ref: String,
    /// The page to send the buyer to (every provider but Hyperswitch).
    pub url: Option<String>,
    /// Hyperswitch: what the seller's page confirms the payment with.
    pub client_secret: Option<String>,
}

/// What keymint asks the provider to charge for one order.
pub struct CheckoutRequest<'a> {
    /// The order id: the idempotency key and the metadata's
    /// `keymint_order`.
    pub order_id: &'a str,
    pub product: &'a ProductConfig,
    pub email: Option<&'a str>,
    pub success_url: Option<&'a str>,
    pub cancel_url: Option<&'a str>,
    /// Trial days to give (Stripe, Polar); `None`: no trial.
    pub trial_days: Option<u32>,
    /// When the checkout should stop taking payment, as RFC 3339 (Lemon
    /// Squeezy's `expires_at`; the others expire checkouts themselves).
    pub expires_at: Option<String>,
}

/// Whether keymint's checkout can start payments through this endpoint:
/// a provider it supports, with an API key (and, for Lemon Squeezy, a
/// store); the reason when not.
pub fn checkout_configured(ep: &EndpointConfig) -> Result<&Secret, String> {
    if !matches!(
        ep.kind,
        EndpointKind::Stripe
            | EndpointKind::Hyperswitch
            | EndpointKind::Polar
            | EndpointKind::Paddle
            | EndpointKind::Lemonsqueezy
    ) {
        return Err(format!(
            "endpoint {:?} is a {} endpoint; keymint's checkout starts payments with stripe, polar, paddle, lemonsqueezy or hyperswitch",
            ep.name,
            ep.kind.as_str()
        ));
    }
    if ep.kind == EndpointKind::Lemonsqueezy && ep.store_id.is_none() {
        return Err(format!(
            "endpoint {:?} has no store_id, so keymint cannot start a Lemon Squeezy checkout there",
            ep.name
        ));
    }
    ep.api_key.as_ref().ok_or_else(|| {
        format!(
            "endpoint {:?} has no api_key, so keymint cannot start a payment there",
            ep.name
        )
    })
}

/// Creates the provider's checkout for an order. A retried call with the
/// same order id never makes a second one where the provider takes an
/// `Idempotency-Key` (Stripe, Hyperswitch); keymint itself calls once per
/// order for the others.
pub async fn create_checkout(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    req: &CheckoutRequest<'_>,
) -> Result<CreatedCheckout, ApiError> {
    assert!(!req.order_id.is_empty(), "an empty order id is a bug");
    let key = checkout_configured(ep).map_err(ApiError::NotConfigured)?;
    let product = req.product;
    let item = || {
        product.checkout_item(ep.kind).ok_or_else(|| {
            ApiError::NotConfigured(format!(
                "product {:?} names nothing to sell at {}",
                product.id,
                ep.kind.as_str()
            ))
        })
    };
    let metadata = json!({"keymint_order": req.order_id, "keymint_product": product.id});
    match ep.kind {
        EndpointKind::Stripe => {
            let mode = if product.subscription {
                "subscription"
            } else {
                "payment"
            };
            let mut form: Vec<(String, String)> = vec![
                ("mode".into(), mode.into()),
                ("line_items[0][price]".into(), item()?.into()),
                ("line_items[0][quantity]".into(), "1".into()),
                ("client_reference_id".into(), req.order_id.into()),
                ("metadata[keymint_order]".into(), req.order_id.into()),
                ("metadata[keymint_product]".into(), product.id.clone()),
            ];
            // The order reaches the payment (refunds, disputes) or the
            // subscription (its events) as well as the session.
            let nested = if product.subscription {
                "subscription_data"
            } else {
                "payment_intent_data"
            };
            form.push((
                format!("{nested}[metadata][keymint_order]"),
                req.order_id.into(),
            ));
            form.push((
                format!("{nested}[metadata][keymint_product]"),
                product.id.clone(),
            ));
            if let Some(days) = req.trial_days {
                form.push((
                    "subscription_data[trial_period_days]".into(),
                    days.to_string(),
                ));
            }
            for (field, value) in [
                ("customer_email", req.email),
                ("success_url", req.success_url),
                ("cancel_url", req.cancel_url),
            ] {
                if let Some(v) = value {
                    form.push((field.into(), v.into()));
                }
            }
            let body = send_with_retries(
                http.post(format!("{}/v1/checkout/sessions", base(ep)))
                    .bearer_auth(key.expose())
                    .header("Idempotency-Key", req.order_id)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(serde_urlencoded::to_string(&form).expect("strings encode")),
                true,
            )
            .await?;
            Ok(CreatedCheckout {
                provider_ref: required_str(&body, &["/id"], "Checkout Session id")?,
                url: Some(required_str(&body, &["/url"], "Checkout Session url")?),
                client_secret: None,
            })
        }
        EndpointKind::Polar => {
            let mut body = json!({
                "products": [item()?],
                "metadata": metadata,
            });
            if let Some(e) = req.email {
                body["customer_email"] = e.into();
            }
            if let Some(u) = req.success_url {
                body["success_url"] = u.into();
            }
            if let Some(u) = req.cancel_url {
                body["return_url"] = u.into();
            }
            // keymint decides the trial: its length, or none at all.
            match req.trial_days {
                Some(days) => {
                    body["trial_interval"] = "day".into();
                    body["trial_interval_count"] = days.into();
                }
                None if product.subscription => body["allow_trial"] = false.into(),
                None => {}
            }
            let answer = send_with_retries(
                http.post(format!("{}/v1/checkouts/", base(ep)))
                    .bearer_auth(key.expose())
                    .json(&body),
                false,
            )
            .await?;
            Ok(CreatedCheckout {
                provider_ref: required_str(&answer, &["/id"], "checkout id")?,
                url: Some(required_str(&answer, &["/url"], "checkout url")?),
                client_secret: None,
            })
        }
        EndpointKind::Paddle => {
            // Paddle keeps the buyer's email nowhere on a transaction; the
            // custom data carries it to the webhooks (adapters/paddle.rs).
            let mut custom = metadata;
            if let Some(e) = req.email {
                custom["email"] = e.into();
            }
            let body = json!({
                "items": [{"price_id": item()?, "quantity": 1}],
                "custom_data": custom,
            });
            let answer = send_with_retries(
                http.post(format!("{}/transactions", base(ep)))
                    .bearer_auth(key.expose())
                    .json(&body),
                false,
            )
            .await?;
            Ok(CreatedCheckout {
                provider_ref: required_str(&answer, &["/data/id"], "transaction id")?,
                url: Some(required_str(
                    &answer,
                    &["/data/checkout/url"],
                    "checkout url (set a default payment link in Paddle)",
                )?),
                client_secret: None,
            })
        }
        EndpointKind::Lemonsqueezy => {
            let variant = item()?;
            let mut checkout_data = json!({"custom": metadata});
            if let Some(e) = req.email {
                checkout_data["email"] = e.into();
            }
            let mut product_options = json!({"enabled_variants": [variant]});
            if let Some(u) = req.success_url {
                product_options["redirect_url"] = u.into();
            }
            let body = json!({"data": {
                "type": "checkouts",
                "attributes": {
                    "checkout_data": checkout_data,
                    "product_options": product_options,
                    "expires_at": req.expires_at,
                },
                "relationships": {
                    "store": {"data": {"type": "stores", "id": ep.store_id}},
                    "variant": {"data": {"type": "variants", "id": variant}},
                },
            }});
            let answer = send_with_retries(
                http.post(format!("{}/v1/checkouts", base(ep)))
                    .bearer_auth(key.expose())
                    .header("accept", "application/vnd.api+json")
                    .header("content-type", "application/vnd.api+json")
                    .body(body.to_string()),
                false,
            )
            .await?;
            Ok(CreatedCheckout {
                provider_ref: required_str(&answer, &["/data/id"], "checkout id")?,
                url: Some(required_str(
                    &answer,
                    &["/data/attributes/url"],
                    "checkout url",
                )?),
                client_secret: None,
            })
        }
        _ => {
            let c = product.checkout.as_ref().ok_or_else(|| {
                ApiError::NotConfigured(format!("product {:?} has no checkout", product.id))
            })?;
            let mut body = json!({
                "amount": c.amount_cents,
                "currency": c.currency.as_deref().map(str::to_ascii_uppercase),
                "confirm": false,
                "capture_method": "automatic",
                "description": product.name,
                "metadata": metadata,
            });
            if let Some(e) = req.email {
                body["email"] = e.into();
            }
            if let Some(u) = req.success_url {
                body["return_url"] = u.into();
            }
            let answer = send_with_retries(
                http.post(format!("{}/payments", base(ep)))
                    .header("api-key", key.expose())
                    .header("Idempotency-Key", req.order_id)
                    .json(&body),
                true,
            )
            .await?;
            Ok(CreatedCheckout {
                provider_ref: required_str(&answer, &["/payment_id"], "payment id")?,
                url: None,
                client_secret: Some(required_str(&answer, &["/client_secret"], "client secret")?),
            })
        }
    }
}

/// Where a checkout stands at the provider, as the reconciler reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckoutState {
    /// Still payable, or not paid yet.
    Open,
    /// The provider cannot be asked (Lemon Squeezy has no checkout status).
    Unknown,
    /// Paid: the provider's own event type and object for it, which the
    /// endpoint's adapter reads as it would the webhook
    /// (`adapters::synthetic`).
    Paid {
        event_type: &'static str,
        object: Value,
    },
    /// The payment failed or was cancelled, with the provider's reason.
    Failed(String),
    /// The provider expired the checkout unpaid.
    Expired(String),
}

/// Reads a checkout back from the provider.
pub async fn checkout_state(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    provider_ref: &str,
) -> Result<CheckoutState, ApiError> {
    let key = checkout_configured(ep).map_err(ApiError::NotConfigured)?;
    let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    Ok(match ep.kind {
        EndpointKind::Stripe => {
            let s = send(
                http.get(format!("{}/v1/checkout/sessions/{provider_ref}", base(ep)))
                    .bearer_auth(key.expose()),
            )
            .await?;
            match (
                text(&s, "/status").as_deref(),
                text(&s, "/payment_status").as_deref(),
            ) {
                (Some("complete"), Some("paid" | "no_payment_required")) => CheckoutState::Paid {
                    event_type: "checkout.session.completed",
                    object: s,
                },
                (Some("expired"), _) => CheckoutState::Expired(format!(
                    "the Checkout Session {provider_ref} expired unpaid"
                )),
                _ => CheckoutState::Open,
            }
        }
        EndpointKind::Polar => {
            let c = send(
                http.get(format!("{}/v1/checkouts/{provider_ref}", base(ep)))
                    .bearer_auth(key.expose()),
            )
            .await?;
            match text(&c, "/status").as_deref() {
                // The order it made is what a webhook would have carried.
                Some("succeeded") => {
                    let orders = send(
                        http.get(format!(
                            "{}/v1/orders/?{}",
                            base(ep),
                            serde_urlencoded::to_string([("checkout_id", provider_ref)])
                                .expect("strings encode")
                        ))
                        .bearer_auth(key.expose()),
                    )
                    .await?;
                    match orders.pointer("/items/0") {
                        Some(order) => CheckoutState::Paid {
                            event_type: "order.paid",
                            object: order.clone(),
                        },
                        // Paid, but its order is not there yet: next tick.
                        None => CheckoutState::Open,
                    }
                }
                Some("expired") => CheckoutState::Expired(format!(
                    "the Polar checkout {provider_ref} expired unpaid"
                )),
                Some("failed") => {
                    CheckoutState::Failed(format!("the Polar checkout {provider_ref} failed"))
                }
                _ => CheckoutState::Open,
            }
        }
        EndpointKind::Paddle => {
            let t = send(
                http.get(format!("{}/transactions/{provider_ref}", base(ep)))
                    .bearer_auth(key.expose()),
            )
            .await?;
            let data = t.pointer("/data").cloned().unwrap_or(Value::Null);
            match text(&data, "/status").as_deref() {
                Some("paid" | "completed") => CheckoutState::Paid {
                    event_type: "transaction.completed",
                    object: data,
                },
                Some("canceled") => CheckoutState::Failed(format!(
                    "the Paddle transaction {provider_ref} was canceled"
                )),
                _ => CheckoutState::Open,
            }
        }
        EndpointKind::Lemonsqueezy => CheckoutState::Unknown,
        _ => {
            let p = send(
                http.get(format!("{}/payments/{provider_ref}", base(ep)))
                    .header("api-key", key.expose()),
            )
            .await?;
            match text(&p, "/status").as_deref() {
                Some("succeeded") => CheckoutState::Paid {
                    event_type: "payment_succeeded",
                    object: p,
                },
                Some(status @ ("failed" | "cancelled")) => {
                    CheckoutState::Failed(match text(&p, "/error_message") {
                        Some(m) => format!("payment {provider_ref} {status}: {m}"),
                        None => format!("payment {provider_ref} {status}"),
                    })
                }
                _ => CheckoutState::Open,
            }
        }
    })
}
