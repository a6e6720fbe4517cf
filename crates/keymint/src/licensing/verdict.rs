//! What a validation answers, as a pure function of what the store says
//! about a license and what the program asked: no database, no clock of
//! its own. One verdict decides both `POST /v1/licenses/validate` and
//! whether a license may be activated (docs/licensing-api.md, "Codes").

use crate::domain::{LicenseStatus, Millis};
use crate::subscriptions::{self, Status as SubscriptionStatus};

/// The answer's code. `valid` is true with `Valid` only.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    Valid,
    NotFound,
    NotActivated,
    Suspended,
    Refunded,
    DisputeLost,
    Revoked,
    Expired,
    ProductMismatch,
    EntitlementsMissing,
}

impl Code {
    pub const ALL: [Code; 10] = [
        Code::Valid,
        Code::NotFound,
        Code::NotActivated,
        Code::Suspended,
        Code::Refunded,
        Code::DisputeLost,
        Code::Revoked,
        Code::Expired,
        Code::ProductMismatch,
        Code::EntitlementsMissing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::NotFound => "NOT_FOUND",
            Self::NotActivated => "NOT_ACTIVATED",
            Self::Suspended => "SUSPENDED",
            Self::Refunded => "REFUNDED",
            Self::DisputeLost => "DISPUTE_LOST",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::ProductMismatch => "PRODUCT_MISMATCH",
            Self::EntitlementsMissing => "ENTITLEMENTS_MISSING",
        }
    }

    /// For people; programs read the code.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Valid => "the license is valid",
            Self::NotFound => "no license has this key",
            Self::NotActivated => "the license is valid but not activated on this machine",
            Self::Suspended => {
                "the license is suspended (a payment dispute or refund is open, or the subscription is paused)"
            }
            Self::Refunded => "the license was revoked because its payment was refunded",
            Self::DisputeLost => "the license was revoked because a chargeback was lost",
            Self::Revoked => "the license was revoked",
            Self::Expired => "the license has expired",
            Self::ProductMismatch => "the license is for another product",
            Self::EntitlementsMissing => "the license does not grant every entitlement asked for",
        }
    }
}

/// Something a valid subscription's program may want to tell its user.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Warning {
    /// A renewal payment failed; access lasts until `access_until`.
    PastDue,
    /// The subscription ends at the end of the paid period.
    CancelsAtPeriodEnd,
}

impl Warning {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PastDue => "PAST_DUE",
            Self::CancelsAtPeriodEnd => "CANCELS_AT_PERIOD_END",
        }
    }
}

/// A license's subscription, as a validation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionFacts {
    pub status: SubscriptionStatus,
    pub trial_end: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
}

/// What the store says about a license.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub status: LicenseStatus,
    /// The history action that revoked it (`refunded`, `dispute_lost`,
    /// ...), for a revoked license.
    pub revoked_by: Option<&'a str>,
    pub expires_at: Option<Millis>,
    pub product: &'a str,
    pub entitlements: &'a [String],
    pub subscription: Option<SubscriptionFacts>,
}

/// What the program asked.
#[derive(Debug, Clone, Default)]
pub struct Ask<'a> {
    pub product: Option<&'a str>,
    pub entitlements: &'a [String],
    /// `Some(true)` when a fingerprint was sent and is one of the
    /// license's machines, `Some(false)` when sent and not, `None` when
    /// none was sent.
    pub machine_active: Option<bool>,
}

/// The verdict on one license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub code: Code,
    /// For `EntitlementsMissing`: the ones not granted.
    pub missing: Vec<String>,
    pub warnings: Vec<Warning>,
    /// When access ends as far as keymint knows now: a subscription's
    /// paid period (or trial) plus grace, else the license's expiry;
    /// `None` for a perpetual license, and for one that does not stand
    /// (or is another product's).
    pub access_until: Option<Millis>,
}

/// Whether the license stands at all at `now`, apart from what a program
/// asks: the codes an activation is refused with.
pub fn standing(facts: &Facts<'_>, now: Millis, grace_ms: i64) -> Result<(), Code> {
    match facts.status {
        LicenseStatus::Revoked => {
            return Err(match facts.revoked_by {
                Some("refunded" | "partially_refunded") => Code::Refunded,
                Some("dispute_lost") => Code::DisputeLost,
                _ => Code::Revoked,
            });
        }
        LicenseStatus::Suspended => return Err(Code::Suspended),
        LicenseStatus::Expired => return Err(Code::Expired),
        LicenseStatus::Active => {}
    }
    if facts.expires_at.is_some_and(|exp| now >= exp) {
        return Err(Code::Expired);
    }
    if let Some(sub) = facts.subscription {
        let state = subscriptions::State {
            status: sub.status,
            trial_end: sub.trial_end,
            current_period_end: sub.current_period_end,
            cancel_at_period_end: sub.cancel_at_period_end,
            last_event_at: 0,
        };
        if !subscriptions::grants_access(&state, now.as_i64(), grace_ms) {
            return Err(match sub.status {
                SubscriptionStatus::Paused => Code::Suspended,
                SubscriptionStatus::Revoked => Code::Revoked,
                _ => Code::Expired,
            });
        }
    }
    Ok(())
}

/// The verdict on a license the key found. The order is the table's in
/// docs/licensing-api.md: another product's key is a mismatch whatever its
/// state; then the license's own standing; then what the program needs.
pub fn decide(facts: &Facts<'_>, ask: &Ask<'_>, now: Millis, grace_ms: i64) -> Verdict {
    let access_until = access_until(facts, grace_ms);
    let warnings = facts
        .subscription
        .map(|s| {
            let mut w = Vec::new();
            if s.status == SubscriptionStatus::PastDue {
                w.push(Warning::PastDue);
            }
            if s.cancel_at_period_end || s.status == SubscriptionStatus::Canceled {
                w.push(Warning::CancelsAtPeriodEnd);
            }
            w
        })
        .unwrap_or_default();
    let verdict = |code, missing, access_until| Verdict {
        code,
        missing,
        warnings: if code == Code::Valid {
            warnings.clone()
        } else {
            Vec::new()
        },
        access_until,
    };
    if ask.product.is_some_and(|p| p != facts.product) {
        return verdict(Code::ProductMismatch, Vec::new(), None);
    }
    // A license that does not stand gives no access at all: no date that
    // could read as "until then".
    if let Err(code) = standing(facts, now, grace_ms) {
        return verdict(code, Vec::new(), None);
    }
    let missing: Vec<String> = ask
        .entitlements
        .iter()
        .filter(|e| !facts.entitlements.contains(e))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return verdict(Code::EntitlementsMissing, missing, access_until);
    }
    if ask.machine_active == Some(false) {
        return verdict(Code::NotActivated, Vec::new(), access_until);
    }
    verdict(Code::Valid, Vec::new(), access_until)
}

fn access_until(facts: &Facts<'_>, grace_ms: i64) -> Option<Millis> {
    let period_end = facts.subscription.and_then(|s| match s.status {
        SubscriptionStatus::Trialing => s.trial_end.or(s.current_period_end),
        _ => s.current_period_end,
    });
    match period_end {
        Some(end) => Some(Millis(end.saturating_add(grace_ms))),
        None => facts.expires_at,
    }
}

#[cfg(test)]
mod tests;
