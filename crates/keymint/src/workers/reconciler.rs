//! The reconciler: operator refunds stuck in `pending`, subscriptions
//! waiting for a first payment and checkout orders stuck in
//! `pending_payment` are checked against
//! the provider's API and settled by a synthetic event sent through the
//! same dispatcher as webhooks (so a late real webhook is a no-op); refunds
//! that never reached the provider are failed and their license restored.
//! A provider read error leaves the row for the next tick.

use crate::app::AppState;
use crate::dispatcher::{Source, restore_after_refund};
use crate::domain::Millis;
use crate::events::{Event, Parsed};
use crate::provider_api::{self, CheckoutState, RefundState};
use crate::store::deliveries::{self, NewDelivery};
use crate::store::{self, licenses, orders, refunds};
use serde::Serialize;
use std::time::Duration;
use tokio::sync::watch;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tick {
    /// Settled from the provider's state (succeeded or failed).
    pub settled: usize,
    /// Failed because the provider never got them (refunds), or refused
    /// them when asked again (orders).
    pub orphans_failed: usize,
    /// Orders whose provider call never finished, asked of the provider
    /// again and now with a checkout.
    pub redriven: usize,
    /// Still pending at the provider, or it could not be read: next tick.
    pub left: usize,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

pub async fn run_once(state: &AppState) -> Result<Tick, crate::dispatcher::DispatchError> {
    let cfg = &state.config.reconciler;
    let now = store::now_ms();
    let mut tick = Tick::default();

    let orphans = {
        let mut conn = state.store.conn().await?;
        refunds::orphans(&mut conn, now - ms(cfg.orphan_age), cfg.batch).await?
    };
    for r in orphans {
        let mut tx = state.store.begin().await?;
        let why = format!(
            "no provider refund id after {}: the provider was never reached (or refused); failed by the reconciler",
            humantime::format_duration(cfg.orphan_age)
        );
        if refunds::finish(
            &mut tx,
            &r.id,
            refunds::RefundStatus::Failed,
            Some(&why),
            now,
        )
        .await?
            && let Some(l) = licenses::by_id(&mut tx, &r.license_id).await?
        {
            let by = crate::licensing::By {
                actor: "reconciler",
                delivery_id: None,
                now,
                reason: None,
            };
            restore_after_refund(&mut tx, &l, &by).await?;
        }
        tx.commit().await?;
        tracing::error!(refund_id = %r.id, license_id = %r.license_id, error = %r.error.as_deref().unwrap_or("-"), "orphan refund failed and its license restored");
        tick.orphans_failed += 1;
    }

    let stuck = {
        let mut conn = state.store.conn().await?;
        refunds::stuck(&mut conn, now - ms(cfg.pending_age), cfg.batch).await?
    };
    for r in stuck {
        let Some(ep) = state.config.endpoint(&r.endpoint) else {
            tick.left += 1;
            continue;
        };
        let Some(provider_id) = r.provider_refund_id.clone() else {
            // `stuck` selects rows with a provider id; one without is an
            // orphan for the next tick, not a read of the id "".
            tick.left += 1;
            continue;
        };
        let read = provider_api::refund_state(&state.http, ep, &provider_id).await;
        let event = match read {
            Ok(RefundState::Succeeded) => Event::Refund {
                refs: vec![r.payment_ref.clone()],
                full: r.amount_cents.is_none(),
                amount_cents: r.amount_cents,
            },
            Ok(RefundState::Failed) => Event::RefundFailed {
                refs: vec![r.payment_ref.clone()],
            },
            Ok(RefundState::Pending) => {
                tick.left += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(refund_id = %r.id, error = %e, "could not read the refund from the provider; next tick");
                tick.left += 1;
                continue;
            }
        };
        let kind = if matches!(event, Event::Refund { .. }) {
            "succeeded"
        } else {
            "failed"
        };
        // Recorded like a delivery, so the audit trail and the dispatcher
        // are the same as for webhooks.
        let body = serde_json::json!({
            "refund": r.id, "provider_refund_id": provider_id, "provider_state": kind,
        });
        let delivery = record_synthetic(state, &r.endpoint, "refunds", &body, now).await?;
        let parsed = Parsed::new(
            format!("reconcile:refund:{}", r.id),
            format!("keymint.reconcile.refund_{kind}"),
            event,
        );
        let src = Source {
            endpoint: &r.endpoint,
            delivery_id: &delivery.id,
            by_reconciler: true,
        };
        state.dispatcher.apply(&src, &parsed).await?;
        tick.settled += 1;
    }
    // Subscriptions stuck waiting for a first payment: the provider's
    // current object, applied as a snapshot taken now (a late webhook is
    // older, hence stale).
    let pending = {
        let mut conn = state.store.conn().await?;
        crate::store::subscriptions::stuck_pending(&mut conn, now - ms(cfg.pending_age), cfg.batch)
            .await?
    };
    for s in pending {
        let Some(ep) = state.config.endpoint(&s.source) else {
            continue;
        };
        let object = match provider_api::read_subscription(&state.http, ep, &s.subscription_id)
            .await
        {
            Ok(Some(o)) => o,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(subscription = %s.subscription_id, error = %e, "could not read the subscription from the provider; next tick");
                tick.left += 1;
                continue;
            }
        };
        let synthetic = serde_json::json!({
            "id": format!("reconcile:sub:{}:{now}", s.id),
            "type": "customer.subscription.updated",
            "created": now / 1000,
            "data": {"object": object},
        });
        let parsed = match crate::adapters::stripe::parse_event(&synthetic) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(subscription = %s.subscription_id, error = %e, "the provider's subscription could not be read as one");
                tick.left += 1;
                continue;
            }
        };
        let delivery = record_synthetic(state, &s.source, "subscriptions", &synthetic, now).await?;
        let src = Source {
            endpoint: &s.source,
            delivery_id: &delivery.id,
            by_reconciler: true,
        };
        state.dispatcher.apply(&src, &parsed).await?;
        tick.settled += 1;
    }
    orders_tick(state, now, &mut tick).await?;
    Ok(tick)
}

/// Orders stuck in `pending_payment`: those the provider knows are read
/// back and settled by a synthetic event through the dispatcher (so a late
/// webhook is a no-op); those the provider never answered for are failed
/// (no buyer ever got a way to pay them).
async fn orders_tick(
    state: &AppState,
    now: i64,
    tick: &mut Tick,
) -> Result<(), crate::dispatcher::DispatchError> {
    let cfg = &state.config.reconciler;
    let orphans = {
        let mut conn = state.store.conn().await?;
        orders::stuck(&mut conn, now - ms(cfg.orphan_age), false, cfg.batch).await?
    };
    // Their process stopped mid-call: the provider is asked again (the same
    // order id: Stripe and Hyperswitch answer what they made then).
    let redrive_before = now - ms(crate::checkout::REDRIVE_AFTER);
    for o in orphans {
        if o.updated_at.0 >= redrive_before {
            tick.left += 1;
            continue;
        }
        match crate::checkout::redrive(state, o.clone()).await {
            Ok(Some(started)) if started.order.provider_ref.is_some() => tick.redriven += 1,
            Ok(Some(_)) => tick.orphans_failed += 1,
            Ok(None) => tick.left += 1,
            Err(e) => {
                tracing::warn!(order = %o.id, error = %e, "could not call the provider again for an order; next tick");
                tick.left += 1;
            }
        }
    }
    let stuck = {
        let mut conn = state.store.conn().await?;
        orders::stuck(&mut conn, now - ms(cfg.pending_age), true, cfg.batch).await?
    };
    for o in stuck {
        let (Some(ep), Some(provider_ref)) = (state.config.endpoint(&o.endpoint), &o.provider_ref)
        else {
            tick.left += 1;
            continue;
        };
        let read = provider_api::checkout_state(&state.http, ep, provider_ref).await;
        {
            let mut conn = state.store.writer().await?;
            orders::mark_checked(&mut conn, &o.id, now).await?;
        }
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(order = %o.id, error = %e, "could not read the checkout from the provider; next tick");
                tick.left += 1;
                continue;
            }
        };
        let event_id = format!("reconcile:order:{}", o.id);
        let unpaid_for = now - o.created_at.0;
        let ended = |expired: bool, reason: String| {
            Parsed::new(
                event_id.clone(),
                if expired {
                    "keymint.reconcile.checkout_expired"
                } else {
                    "keymint.reconcile.checkout_failed"
                },
                Event::CheckoutEnded {
                    order: o.id.clone(),
                    expired,
                    reason,
                },
            )
        };
        let parsed = match read {
            CheckoutState::Paid { event_type, object } => {
                match crate::adapters::synthetic(ep.kind, event_type, object, event_id.clone(), now)
                    .map_err(|e| e.to_string())
                    .and_then(|p| p.validate().map_err(|e| e.to_string()))
                {
                    Ok(mut p) => {
                        // The order is this one, whatever the provider's
                        // metadata says.
                        p.order = Some(o.id.clone());
                        p
                    }
                    Err(e) => {
                        tracing::warn!(order = %o.id, error = %e, "the provider's checkout could not be read as an event");
                        tick.left += 1;
                        continue;
                    }
                }
            }
            CheckoutState::Failed(reason) => ended(false, reason),
            CheckoutState::Expired(reason) => ended(true, reason),
            // Still unpaid past [checkout] expire_after: no payment is
            // coming (Paddle and Lemon Squeezy never expire a checkout
            // themselves); one that comes anyway still pays the order.
            CheckoutState::Open | CheckoutState::Unknown
                if unpaid_for >= ms(state.config.checkout.expire_after) =>
            {
                ended(
                    true,
                    format!(
                        "unpaid after {} (checkout.expire_after); expired by the reconciler",
                        humantime::format_duration(state.config.checkout.expire_after)
                    ),
                )
            }
            CheckoutState::Open | CheckoutState::Unknown => {
                tick.left += 1;
                continue;
            }
        };
        let body = serde_json::json!({"order": o.id, "provider_ref": provider_ref, "read": parsed.event_type});
        let delivery = record_synthetic(state, &o.endpoint, "orders", &body, now).await?;
        let src = Source {
            endpoint: &o.endpoint,
            delivery_id: &delivery.id,
            by_reconciler: true,
        };
        state.dispatcher.apply(&src, &parsed).await?;
        tick.settled += 1;
    }
    Ok(())
}

/// Records what the reconciler read as a delivery of kind `reconciler`, so
/// its effect has the same audit trail as a webhook's.
async fn record_synthetic(
    state: &AppState,
    endpoint: &str,
    what: &str,
    body: &serde_json::Value,
    now: i64,
) -> Result<NewDelivery, sqlx::Error> {
    let delivery = NewDelivery {
        id: crate::domain::DeliveryId::generate(),
        endpoint: endpoint.to_string(),
        kind: "reconciler".into(),
        received_at: Millis(now),
        source_ip: None,
        user_agent: Some("keymint-reconciler".into()),
        request_id: None,
        path: format!("/reconciler/{what}"),
        headers: "{}".into(),
        body: deliveries::StoredBody::whole(body.to_string().into_bytes()),
        signature_valid: true,
        status: crate::domain::DeliveryStatus::Received,
        error: None,
    };
    deliveries::record(&state.store, std::sync::Arc::new(delivery.clone())).await?;
    Ok(delivery)
}

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        let interval = state.config.reconciler.interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if !super::hold_lease(&state, "reconciler", super::lease_ttl(interval)).await {
            continue;
        }
        match run_once(&state).await {
            Ok(t) if t != Tick::default() => {
                tracing::info!(
                    settled = t.settled,
                    orphans_failed = t.orphans_failed,
                    left = t.left,
                    "reconciler tick"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconciler tick failed; next interval"),
        }
    }
}
