//! The license state machine, as a pure table from (state, cause) to a
//! step: no database, no provider. Every place that changes a license's
//! status goes through [`apply`] (by way of [`super::transition`]), so the
//! history records the real cause. The table (also in
//! `docs/architecture.md`, "State machines"):
//!
//! | cause | active | suspended | revoked | expired |
//! |---|---|---|---|---|
//! | `Refunded`, `DisputeLost`, `PartiallyRefunded { revokes: true }` | revoked | revoked | recorded | revoked |
//! | `PartiallyRefunded { revokes: false }` | recorded | active if a refund hold, else recorded | recorded | recorded |
//! | `RefundRequested` (operator refund hold) | suspended | recorded | not allowed | recorded |
//! | `RefundFailed` (restore) | unchanged | active if a refund hold, else unchanged | unchanged | unchanged |
//! | `DisputeOpened` | suspended | recorded if a dispute hold, else marked | recorded | marked |
//! | `DisputeWon` | recorded | active if a dispute hold, else recorded | recorded | marked if a dispute hold, else recorded |
//! | `OperatorRevoke` | revoked | revoked | not allowed | revoked |
//! | `OperatorReinstate` | not allowed | active | active | active |
//! | `Subscription { status, grants }` | the status the subscription wants* | the same, unless a dispute hold, or a refund hold and it wants `active` or `suspended` | unchanged | the same, unless a dispute hold |
//! | `PeriodEnded` (sweeper) | expired | unchanged | unchanged | unchanged |
//!
//! *A subscription that grants access wants `active`; else `paused` wants
//! `suspended`, `revoked` wants `revoked`, anything else `expired`.
//! "Recorded" keeps the status and writes the cause to the history;
//! "marked" keeps the status but makes the cause the stored status reason
//! (an open dispute on a license already held or expired must still hold
//! it until decided); "unchanged" writes nothing.

use crate::domain::LicenseStatus;
use crate::subscriptions::Status as SubscriptionStatus;

/// The status reason of a license held while an operator's refund is
/// pending.
pub const REFUND_PENDING: &str = "refund_pending";
/// The status reason of a license held while a dispute is open.
pub const DISPUTE_OPENED: &str = "dispute_opened";

/// Why a `suspended` license is held, read from its stored status reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// An open dispute: only its decision lifts it.
    Dispute,
    /// An operator's pending refund: its outcome lifts it.
    Refund,
    /// Anything else (a paused subscription).
    Other,
}

/// A license's state as the machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub status: LicenseStatus,
    /// Why it is held: for a `suspended` license, what suspended it; for
    /// an `expired` one, only an open dispute (marked on it). `None` for
    /// `active` and `revoked`.
    pub hold: Option<Hold>,
}

impl State {
    /// The state of a license with this stored status and status reason.
    pub fn of(status: LicenseStatus, status_reason: Option<&str>) -> Self {
        let held_by = match status_reason {
            Some(DISPUTE_OPENED) => Hold::Dispute,
            Some(REFUND_PENDING) => Hold::Refund,
            _ => Hold::Other,
        };
        let hold = match status {
            LicenseStatus::Suspended => Some(held_by),
            LicenseStatus::Expired => (held_by == Hold::Dispute).then_some(held_by),
            LicenseStatus::Active | LicenseStatus::Revoked => None,
        };
        Self { status, hold }
    }
}

/// What happened to a license.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The whole payment was refunded.
    Refunded,
    /// Part of the payment was refunded; `revokes` when the product
    /// revokes on partial refunds.
    PartiallyRefunded {
        revokes: bool,
    },
    /// An operator asked the provider for a refund: held until it settles.
    RefundRequested,
    /// The provider (or the reconciler) failed an operator's refund.
    RefundFailed,
    DisputeOpened,
    DisputeWon,
    DisputeLost,
    OperatorRevoke,
    OperatorReinstate,
    /// The license's subscription changed (or was re-read); `grants` when
    /// it grants access now.
    Subscription {
        status: SubscriptionStatus,
        grants: bool,
    },
    /// The sweeper: the paid period and grace ended without a renewal.
    PeriodEnded,
}

impl Cause {
    /// The history's `action` for this cause.
    pub fn action(self) -> &'static str {
        match self {
            Self::Refunded => "refunded",
            Self::PartiallyRefunded { .. } => "partially_refunded",
            Self::RefundRequested => "refund_requested",
            Self::RefundFailed => "refund_failed",
            Self::DisputeOpened => DISPUTE_OPENED,
            Self::DisputeWon => "dispute_won",
            Self::DisputeLost => "dispute_lost",
            Self::OperatorRevoke => "revoked",
            Self::OperatorReinstate => "reinstated",
            Self::Subscription { status, .. } => match status {
                SubscriptionStatus::PendingPayment => "subscription_pending_payment",
                SubscriptionStatus::Trialing => "subscription_trialing",
                SubscriptionStatus::Active => "subscription_active",
                SubscriptionStatus::PastDue => "subscription_past_due",
                SubscriptionStatus::Canceled => "subscription_canceled",
                SubscriptionStatus::Paused => "subscription_paused",
                SubscriptionStatus::Expired => "subscription_expired",
                SubscriptionStatus::Revoked => "subscription_revoked",
            },
            Self::PeriodEnded => "period_ended",
        }
    }

    /// The status reason stored with the change (and the history's
    /// reason); `None` for operator causes, whose reason the operator
    /// gives.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::OperatorRevoke | Self::OperatorReinstate => None,
            Self::RefundRequested => Some(REFUND_PENDING),
            Self::PeriodEnded => Some("the paid period and grace ended"),
            other => Some(other.action()),
        }
    }
}

/// What a cause does to a license in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The status becomes this one; the history records the cause.
    Move(LicenseStatus),
    /// The status stays; the history still records the cause (a refund of
    /// a revoked license, a second dispute on a held one).
    Record,
    /// The status stays, but the cause becomes its stored status reason
    /// and the history records it: a dispute opened on a license already
    /// held (by a refund or a pause) or expired holds it from now on, and
    /// a dispute won on an expired license lifts that mark.
    Mark,
    /// Nothing to change and nothing to record.
    Unchanged,
    /// The cause does not apply in this state; an operator sees why.
    NotAllowed(NotAllowed),
}

/// Why an operator's cause does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    #[error("license is already revoked")]
    AlreadyRevoked,
    #[error("license is already active")]
    AlreadyActive,
}

impl NotAllowed {
    /// The stable code a client sees.
    pub fn code(self) -> &'static str {
        match self {
            Self::AlreadyRevoked => "already_revoked",
            Self::AlreadyActive => "already_active",
        }
    }
}

/// The status a subscription's license follows: `active` while it grants
/// access, else by its status.
pub fn follows(status: SubscriptionStatus, grants: bool) -> LicenseStatus {
    match status {
        _ if grants => LicenseStatus::Active,
        SubscriptionStatus::Paused => LicenseStatus::Suspended,
        SubscriptionStatus::Revoked => LicenseStatus::Revoked,
        _ => LicenseStatus::Expired,
    }
}

/// Applies `cause` to a license in `state`.
pub fn apply(state: State, cause: Cause) -> Step {
    use LicenseStatus::{Active, Expired, Revoked, Suspended};
    let to_unless = |to: LicenseStatus, otherwise: Step| {
        if state.status == to {
            otherwise
        } else {
            Step::Move(to)
        }
    };
    match cause {
        Cause::Refunded | Cause::DisputeLost | Cause::PartiallyRefunded { revokes: true } => {
            to_unless(Revoked, Step::Record)
        }
        Cause::PartiallyRefunded { revokes: false } => match state.hold {
            // The refund is done and keeps the license: the hold lifts.
            Some(Hold::Refund) => Step::Move(Active),
            _ => Step::Record,
        },
        Cause::RefundRequested => match state.status {
            Active => Step::Move(Suspended),
            // A revoked license has nothing left to refund for.
            Revoked => Step::NotAllowed(NotAllowed::AlreadyRevoked),
            // Already held or ended: the history still shows the request.
            Suspended | Expired => Step::Record,
        },
        Cause::RefundFailed => match state.hold {
            Some(Hold::Refund) => Step::Move(Active),
            _ => Step::Unchanged,
        },
        Cause::DisputeOpened => match (state.status, state.hold) {
            (Active, _) => Step::Move(Suspended),
            (_, Some(Hold::Dispute)) | (Revoked, _) => Step::Record,
            (Suspended | Expired, _) => Step::Mark,
        },
        Cause::DisputeWon => match (state.status, state.hold) {
            (Suspended, Some(Hold::Dispute)) => Step::Move(Active),
            (Expired, Some(Hold::Dispute)) => Step::Mark,
            _ => Step::Record,
        },
        Cause::OperatorRevoke => to_unless(Revoked, Step::NotAllowed(NotAllowed::AlreadyRevoked)),
        Cause::OperatorReinstate => to_unless(Active, Step::NotAllowed(NotAllowed::AlreadyActive)),
        Cause::Subscription { status, grants } => {
            // Refunds, lost disputes and operators revoke for good; an open
            // dispute holds until it is decided.
            let wants = follows(status, grants);
            let held = match state.hold {
                Some(Hold::Dispute) => true,
                // A pending refund's outcome decides first; a subscription
                // may still end the license meanwhile.
                Some(Hold::Refund) => matches!(wants, Active | Suspended),
                Some(Hold::Other) | None => false,
            };
            if state.status == Revoked || held {
                return Step::Unchanged;
            }
            to_unless(wants, Step::Unchanged)
        }
        Cause::PeriodEnded => match state.status {
            Active => Step::Move(Expired),
            _ => Step::Unchanged,
        },
    }
}

#[cfg(test)]
mod tests;
