//! The subscription state machine (docs/architecture.md, "State
//! machines"; docs/subscriptions.md), as a pure function
//! over normalized subscription events: no database, no provider.
//!
//! Providers deliver out of order, so every event carries the provider's
//! event time; an event older than the last one applied is `Stale` and
//! changes nothing. The table below is the whole machine (also in
//! `docs/subscriptions.md`):
//!
//! | event | resulting status |
//! |---|---|
//! | `Created { status }` | the given status (pending_payment, trialing or active) |
//! | `Snapshot { status, cancel_at_period_end }` | the provider's whole view: its status (`active` with cancel-at-period-end is `canceled`) |
//! | `Trialing` | trialing |
//! | `Activated` / `PaymentSucceeded` / `Resumed` / `Uncanceled` | active (`Uncanceled` clears cancel-at-period-end) |
//! | `PaymentFailed` / `PastDue` | past_due (from pending_payment: stays pending_payment) |
//! | `Canceled { at_period_end: true }` | canceled, access until the period end |
//! | `Canceled { at_period_end: false }` | expired |
//! | `Paused` | paused |
//! | `Expired` | expired |
//! | `Revoked` | revoked |
//!
//! `expired` and `revoked` are terminal: only a newer `Created` or
//! `Snapshot` (a resubscription) or `Resumed`/`Activated` with a new period
//! leaves them. Two events with the same time apply in arrival order,
//! except that one never moves a subscription back to `pending_payment`
//! (providers stamp creation and first payment with the same second).

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    PendingPayment,
    Trialing,
    Active,
    PastDue,
    /// Canceled at period end: access continues until `current_period_end`.
    Canceled,
    Paused,
    Expired,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Paused => "paused",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending_payment" => Self::PendingPayment,
            "trialing" => Self::Trialing,
            "active" => Self::Active,
            "past_due" => Self::PastDue,
            "canceled" => Self::Canceled,
            "paused" => Self::Paused,
            "expired" => Self::Expired,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }

    pub const ALL: [Self; 8] = [
        Self::PendingPayment,
        Self::Trialing,
        Self::Active,
        Self::PastDue,
        Self::Canceled,
        Self::Paused,
        Self::Expired,
        Self::Revoked,
    ];

    fn terminal(self) -> bool {
        matches!(self, Self::Expired | Self::Revoked)
    }
}

/// A normalized subscription event. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Created {
        status: Status,
        trial_end: Option<i64>,
        period_end: Option<i64>,
    },
    /// The provider's full state of the subscription (Stripe, Polar, Lemon
    /// Squeezy and Paddle send the whole object with every event).
    Snapshot {
        status: Status,
        trial_end: Option<i64>,
        period_end: Option<i64>,
        cancel_at_period_end: bool,
    },
    Trialing {
        trial_end: Option<i64>,
    },
    Activated {
        period_end: Option<i64>,
    },
    PaymentSucceeded {
        period_end: Option<i64>,
    },
    PaymentFailed,
    PastDue,
    Canceled {
        at_period_end: bool,
        period_end: Option<i64>,
    },
    Uncanceled,
    Paused,
    Resumed {
        period_end: Option<i64>,
    },
    Expired,
    Revoked,
}

/// A subscription's state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub status: Status,
    pub trial_end: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    /// The provider's time of the last event applied.
    pub last_event_at: i64,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The new state (possibly equal to the old one).
    Changed(State),
    /// Older than the last applied event: recorded, changes nothing.
    Stale,
    /// Not applicable in the current state (e.g. `Uncanceled` after expiry).
    Ignored(&'static str),
}

/// Applies `event`, which the provider emitted at `event_at`, to `state`
/// (`None` for a subscription seen for the first time).
pub fn apply(state: Option<&State>, event: &Event, event_at: i64) -> Applied {
    if let Some(s) = state
        && event_at < s.last_event_at
    {
        return Applied::Stale;
    }
    let mut next = state.cloned().unwrap_or(State {
        status: Status::PendingPayment,
        trial_end: None,
        current_period_end: None,
        cancel_at_period_end: false,
        last_event_at: event_at,
    });
    next.last_event_at = event_at;
    let was_terminal = state.is_some_and(|s| s.status.terminal());
    match event {
        Event::Created {
            status,
            trial_end,
            period_end,
        } => {
            next.status = *status;
            next.trial_end = trial_end.or(next.trial_end);
            next.current_period_end = period_end.or(next.current_period_end);
            next.cancel_at_period_end = false;
        }
        Event::Snapshot {
            status,
            trial_end,
            period_end,
            cancel_at_period_end,
        } => {
            next.trial_end = trial_end.or(next.trial_end);
            next.current_period_end = period_end.or(next.current_period_end);
            next.cancel_at_period_end = *cancel_at_period_end && !status.terminal();
            next.status = if next.cancel_at_period_end
                && matches!(status, Status::Active | Status::Trialing | Status::PastDue)
            {
                Status::Canceled
            } else {
                *status
            };
        }
        _ if was_terminal && !matches!(event, Event::Resumed { .. } | Event::Activated { .. }) => {
            return Applied::Ignored("the subscription has ended");
        }
        Event::Trialing { trial_end } => {
            next.status = Status::Trialing;
            next.trial_end = trial_end.or(next.trial_end);
        }
        Event::Activated { period_end } | Event::PaymentSucceeded { period_end } => {
            if next.status != Status::Canceled {
                next.status = Status::Active;
            }
            next.current_period_end = period_end.or(next.current_period_end);
        }
        Event::Resumed { period_end } => {
            next.status = Status::Active;
            next.cancel_at_period_end = false;
            next.current_period_end = period_end.or(next.current_period_end);
        }
        Event::PaymentFailed | Event::PastDue => {
            if next.status != Status::PendingPayment {
                next.status = Status::PastDue;
            }
        }
        Event::Canceled {
            at_period_end: true,
            period_end,
        } => {
            next.status = Status::Canceled;
            next.cancel_at_period_end = true;
            next.current_period_end = period_end.or(next.current_period_end);
        }
        Event::Canceled {
            at_period_end: false,
            ..
        }
        | Event::Expired => {
            next.status = Status::Expired;
            next.cancel_at_period_end = false;
        }
        Event::Uncanceled => {
            if next.status != Status::Canceled {
                return Applied::Ignored("not canceled");
            }
            next.status = Status::Active;
            next.cancel_at_period_end = false;
        }
        Event::Paused => next.status = Status::Paused,
        Event::Revoked => next.status = Status::Revoked,
    }
    if let Some(s) = state
        && s.last_event_at == event_at
        && s.status != Status::PendingPayment
        && next.status == Status::PendingPayment
    {
        return Applied::Ignored("an earlier state reported with the same time");
    }
    Applied::Changed(next)
}

/// Whether the subscription grants access at `now` (ms), with `grace` (ms)
/// after a missed payment or the period end.
pub fn grants_access(state: &State, now: i64, grace: i64) -> bool {
    let within = |end: Option<i64>| end.is_none_or(|end| now < end.saturating_add(grace));
    match state.status {
        Status::Trialing => within(state.trial_end.or(state.current_period_end)),
        Status::Active | Status::PastDue | Status::Canceled => within(state.current_period_end),
        Status::PendingPayment | Status::Paused | Status::Expired | Status::Revoked => false,
    }
}

#[cfg(test)]
mod tests;
