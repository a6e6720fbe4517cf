//! Subscriptions as the admin API shows them: the subscription, its event
//! history and its license's history.

use super::HistoryOut;
use crate::store::{self, subscriptions::Listed, subscriptions::SubscriptionEvent};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A subscription as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionOut {
    /// keymint's id (`sub_...`).
    pub id: String,
    pub endpoint: String,
    /// The provider's subscription id.
    pub subscription_id: String,
    pub status: String,
    pub trial_end: Option<String>,
    pub current_period_end: Option<String>,
    pub cancel_at_period_end: bool,
    /// The provider's time of the last event applied.
    pub last_event_at: String,
    pub product: Option<String>,
    pub email: Option<String>,
    pub customer_ref: Option<String>,
    pub license_key: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Listed> for SubscriptionOut {
    fn from(l: Listed) -> Self {
        let s = l.subscription;
        Self {
            id: s.id.to_string(),
            endpoint: s.source,
            subscription_id: s.subscription_id,
            status: s.status.as_str().to_string(),
            trial_end: s.trial_end.map(store::format_ms),
            current_period_end: s.current_period_end.map(store::format_ms),
            cancel_at_period_end: s.cancel_at_period_end != 0,
            last_event_at: store::format_ms(s.last_event_at),
            product: s.product,
            email: l.email,
            customer_ref: s.customer_ref,
            license_key: l.license_key,
            created_at: store::format_ms(s.created_at),
            updated_at: store::format_ms(s.updated_at),
        }
    }
}

/// One event in a subscription's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionEventOut {
    /// The provider's time for the event.
    pub at: String,
    pub received_at: String,
    pub event_type: String,
    /// `applied`, `stale` (older than the last applied event: changed
    /// nothing) or `ignored` (not applicable in that state).
    pub result: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub period_end: Option<String>,
    pub actor: String,
    pub delivery_id: Option<String>,
}

impl From<SubscriptionEvent> for SubscriptionEventOut {
    fn from(e: SubscriptionEvent) -> Self {
        Self {
            at: store::format_ms(e.at),
            received_at: store::format_ms(e.received_at),
            event_type: e.event_type,
            result: e.result,
            from_status: e.from_status.map(|s| s.as_str().to_string()),
            to_status: e.to_status.as_str().to_string(),
            period_end: e.period_end.map(store::format_ms),
            actor: e.actor,
            delivery_id: e.delivery_id,
        }
    }
}

/// A page of subscriptions; pass `next_before` as `before` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionPage {
    pub subscriptions: Vec<SubscriptionOut>,
    pub next_before: Option<String>,
}

/// A subscription with its event history and its license's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionDetail {
    pub subscription: SubscriptionOut,
    pub events: Vec<SubscriptionEventOut>,
    pub license_history: Vec<HistoryOut>,
}
