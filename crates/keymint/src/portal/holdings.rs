//! What a signed-in buyer holds, in the words a buyer reads: each license
//! of their email with its status in plain words, its subscription, its
//! machines and what is left of its deactivation budget, and how the
//! subscription is managed.

use crate::app::AppState;
use crate::domain::{LicenseStatus, Millis};
use crate::store::{licenses::License, machines::Machine, subscriptions};
use crate::subscriptions::Status as SubStatus;
use serde::Serialize;

/// One license as the portal shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Holding {
    pub key: String,
    pub product: String,
    pub product_name: String,
    pub tier: String,
    /// `active`, `suspended`, `revoked` or `expired` (for the badge).
    pub status: &'static str,
    /// The status in plain words ("Active; renews on 2026-12-29").
    pub words: String,
    pub token: String,
    pub issued_on: String,
    pub max_machines: Option<i64>,
    pub machines: Vec<MachineView>,
    /// Deactivations left in the last 30 days, and the limit.
    pub budget_left: u32,
    pub budget_limit: u32,
    pub subscription: Option<String>,
    /// `stripe` (a billing-portal session on request), `url` (a fixed
    /// address, `manage_url`) or absent.
    pub manage: Option<&'static str>,
    pub manage_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineView {
    pub id: String,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub last_seen: String,
}

/// A day as a buyer reads it (UTC).
pub fn day(ms: Millis) -> String {
    ms.to_time()
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| ms.0.to_string())
}

/// A moment as a buyer reads it: `2026-11-29 16:15 UTC`.
pub fn moment(ms: Millis) -> String {
    ms.to_time()
        .map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()))
        .unwrap_or_else(|_| ms.0.to_string())
}

fn day_of(ms: Option<i64>) -> Option<String> {
    ms.map(|m| day(Millis(m)))
}

/// The license's status in plain words, with its subscription's when it
/// has one.
pub fn words(license: &License, sub: Option<&subscriptions::Subscription>) -> String {
    let reason = license.status_reason.as_deref().unwrap_or_default();
    match license.status {
        LicenseStatus::Active => match sub {
            Some(s) => match s.status {
                SubStatus::Trialing => match day_of(s.trial_end) {
                    Some(d) => format!("Active; free trial until {d}"),
                    None => "Active; free trial".into(),
                },
                SubStatus::PastDue => "Active, but the last payment failed (past due)".into(),
                SubStatus::Canceled => match day_of(s.current_period_end) {
                    Some(d) => format!("Active; the subscription ends on {d}"),
                    None => "Active; the subscription was canceled".into(),
                },
                _ if s.cancel_at_period_end != 0 => match day_of(s.current_period_end) {
                    Some(d) => format!("Active; the subscription ends on {d}"),
                    None => "Active; the subscription will end".into(),
                },
                _ => match day_of(s.current_period_end) {
                    Some(d) => format!("Active; renews on {d}"),
                    None => "Active".into(),
                },
            },
            None => match license.expires_at {
                Some(at) => format!("Active until {}", day(at)),
                None => "Active".into(),
            },
        },
        LicenseStatus::Suspended => match (sub.map(|s| s.status), reason) {
            (Some(SubStatus::Paused), _) => "Paused (the subscription is paused)".into(),
            (Some(SubStatus::PastDue), _) => "Suspended: payment past due".into(),
            (_, "dispute_opened") => "On hold while a payment dispute is open".into(),
            (_, "refund_pending") => "On hold while a refund is processed".into(),
            _ => "On hold; contact the seller".into(),
        },
        LicenseStatus::Revoked => match reason {
            "refunded" | "partially_refunded" => "Refunded".into(),
            "dispute_lost" => "Revoked (the payment was disputed)".into(),
            _ => "Revoked".into(),
        },
        LicenseStatus::Expired => match sub {
            Some(_) => "Ended (the subscription ended)".into(),
            None => match license.expires_at {
                Some(at) => format!("Expired on {}", day(at)),
                None => "Expired".into(),
            },
        },
    }
}

/// How the buyer manages a license's subscription: a Stripe billing-portal
/// session when the endpoint has an API key, else the endpoint's fixed
/// `customer_portal_url`, else nothing.
fn manage(state: &AppState, license: &License) -> (Option<&'static str>, Option<String>) {
    let Some(ep) = state.config.endpoint(&license.source) else {
        return (None, None);
    };
    if crate::provider_api::has_billing_portal(ep) {
        return (Some("stripe"), None);
    }
    match &ep.customer_portal_url {
        Some(url) => (Some("url"), Some(url.clone())),
        None => (None, None),
    }
}

/// Every license of `email`, as the portal shows it.
pub async fn of(state: &AppState, email: &str) -> Result<Vec<Holding>, super::PortalError> {
    let mut conn = state.store.conn().await?;
    let held = crate::store::licenses::of_email(&mut conn, email, super::MOST_LICENSES).await?;
    let mut holdings = Vec::with_capacity(held.len());
    for license in held {
        let sub = subscriptions::of_license(&mut conn, &license.id).await?;
        let machines = crate::store::machines::list(&mut conn, &license.id).await?;
        let budget = state.licensing.budget(&mut conn, &license.id).await?;
        let (manage, manage_url) = match &sub {
            Some(_) => manage(state, &license),
            None => (None, None),
        };
        let product_name = state
            .catalog
            .product(&license.product)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| license.product.clone());
        holdings.push(Holding {
            key: license.key.to_string(),
            product: license.product.clone(),
            product_name,
            tier: license.tier.clone(),
            status: license.status.as_str(),
            words: words(&license, sub.as_ref()),
            token: license.token.clone(),
            issued_on: day(license.issued_at),
            max_machines: license.max_machines,
            machines: machines.iter().map(machine_view).collect(),
            budget_left: budget.remaining(),
            budget_limit: budget.limit,
            subscription: sub.map(|s| s.status.as_str().to_string()),
            manage,
            manage_url,
        });
    }
    Ok(holdings)
}

fn machine_view(m: &Machine) -> MachineView {
    MachineView {
        id: m.id.to_string(),
        name: m.name.clone(),
        platform: m.platform.clone(),
        last_seen: moment(m.last_seen_at),
    }
}
