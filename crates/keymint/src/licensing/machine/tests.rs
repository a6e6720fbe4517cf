use super::*;
use LicenseStatus::{Active, Expired, Revoked, Suspended};
use proptest::prelude::*;

fn st(status: LicenseStatus, reason: Option<&str>) -> State {
    State::of(status, reason)
}

#[test]
fn the_table() {
    let active = st(Active, None);
    let disputed = st(Suspended, Some(DISPUTE_OPENED));
    let refund_held = st(Suspended, Some(REFUND_PENDING));
    let paused = st(Suspended, Some("subscription_paused"));
    let revoked = st(Revoked, Some("refunded"));
    let expired = st(Expired, Some("period_ended"));
    let expired_disputed = st(Expired, Some(DISPUTE_OPENED));
    let sub = |status, grants| Cause::Subscription { status, grants };
    use SubscriptionStatus as S;
    let cases: Vec<(State, Cause, Step)> = vec![
        (active, Cause::Refunded, Step::Move(Revoked)),
        (disputed, Cause::Refunded, Step::Move(Revoked)),
        (expired, Cause::Refunded, Step::Move(Revoked)),
        (revoked, Cause::Refunded, Step::Record),
        (active, Cause::DisputeLost, Step::Move(Revoked)),
        (revoked, Cause::DisputeLost, Step::Record),
        (
            active,
            Cause::PartiallyRefunded { revokes: true },
            Step::Move(Revoked),
        ),
        (
            active,
            Cause::PartiallyRefunded { revokes: false },
            Step::Record,
        ),
        (
            refund_held,
            Cause::PartiallyRefunded { revokes: false },
            Step::Move(Active),
        ),
        (
            disputed,
            Cause::PartiallyRefunded { revokes: false },
            Step::Record,
        ),
        (active, Cause::RefundRequested, Step::Move(Suspended)),
        (disputed, Cause::RefundRequested, Step::Record),
        (expired, Cause::RefundRequested, Step::Record),
        (
            revoked,
            Cause::RefundRequested,
            Step::NotAllowed(NotAllowed::AlreadyRevoked),
        ),
        (refund_held, Cause::RefundFailed, Step::Move(Active)),
        (disputed, Cause::RefundFailed, Step::Unchanged),
        (active, Cause::RefundFailed, Step::Unchanged),
        (revoked, Cause::RefundFailed, Step::Unchanged),
        (active, Cause::DisputeOpened, Step::Move(Suspended)),
        (paused, Cause::DisputeOpened, Step::Mark),
        (refund_held, Cause::DisputeOpened, Step::Mark),
        (expired, Cause::DisputeOpened, Step::Mark),
        (disputed, Cause::DisputeOpened, Step::Record),
        (expired_disputed, Cause::DisputeOpened, Step::Record),
        (revoked, Cause::DisputeOpened, Step::Record),
        (expired_disputed, Cause::DisputeWon, Step::Mark),
        (expired_disputed, Cause::DisputeLost, Step::Move(Revoked)),
        (expired_disputed, sub(S::Active, true), Step::Unchanged),
        (disputed, Cause::DisputeWon, Step::Move(Active)),
        (paused, Cause::DisputeWon, Step::Record),
        (refund_held, Cause::DisputeWon, Step::Record),
        (active, Cause::DisputeWon, Step::Record),
        (active, Cause::OperatorRevoke, Step::Move(Revoked)),
        (expired, Cause::OperatorRevoke, Step::Move(Revoked)),
        (
            revoked,
            Cause::OperatorRevoke,
            Step::NotAllowed(NotAllowed::AlreadyRevoked),
        ),
        (revoked, Cause::OperatorReinstate, Step::Move(Active)),
        (disputed, Cause::OperatorReinstate, Step::Move(Active)),
        (expired, Cause::OperatorReinstate, Step::Move(Active)),
        (
            active,
            Cause::OperatorReinstate,
            Step::NotAllowed(NotAllowed::AlreadyActive),
        ),
        (active, sub(S::Active, true), Step::Unchanged),
        (active, sub(S::Paused, false), Step::Move(Suspended)),
        (paused, sub(S::Active, true), Step::Move(Active)),
        (active, sub(S::Expired, false), Step::Move(Expired)),
        (active, sub(S::Canceled, false), Step::Move(Expired)),
        (active, sub(S::Revoked, false), Step::Move(Revoked)),
        (expired, sub(S::Active, true), Step::Move(Active)),
        (disputed, sub(S::Active, true), Step::Unchanged),
        (disputed, sub(S::Expired, false), Step::Unchanged),
        (revoked, sub(S::Active, true), Step::Unchanged),
        (refund_held, sub(S::Active, true), Step::Unchanged),
        (refund_held, sub(S::Paused, false), Step::Unchanged),
        (refund_held, sub(S::Expired, false), Step::Move(Expired)),
        (active, Cause::PeriodEnded, Step::Move(Expired)),
        (paused, Cause::PeriodEnded, Step::Unchanged),
        (expired, Cause::PeriodEnded, Step::Unchanged),
    ];
    for (state, cause, want) in cases {
        assert_eq!(apply(state, cause), want, "{state:?} + {cause:?}");
    }
}

#[test]
fn a_partial_refund_that_keeps_the_license_is_recorded_as_a_partial_refund() {
    // It once went to the history as `refund_failed`.
    let cause = Cause::PartiallyRefunded { revokes: false };
    assert_eq!(cause.action(), "partially_refunded");
    assert_eq!(
        apply(st(Suspended, Some(REFUND_PENDING)), cause),
        Step::Move(Active)
    );
}

#[test]
fn operator_causes_carry_the_operators_reason_and_the_others_their_own() {
    assert_eq!(Cause::OperatorRevoke.reason(), None);
    assert_eq!(Cause::OperatorReinstate.reason(), None);
    assert_eq!(Cause::RefundRequested.reason(), Some(REFUND_PENDING));
    assert_eq!(Cause::DisputeOpened.reason(), Some(DISPUTE_OPENED));
    // The reason a refund request stores is the hold the machine reads back.
    let held = State::of(Suspended, Cause::RefundRequested.reason());
    assert_eq!(held.hold, Some(Hold::Refund));
    let disputed = State::of(Suspended, Cause::DisputeOpened.reason());
    assert_eq!(disputed.hold, Some(Hold::Dispute));
}

fn status_strategy() -> impl Strategy<Value = LicenseStatus> {
    (0usize..LicenseStatus::ALL.len()).prop_map(|i| LicenseStatus::ALL[i])
}

fn state_strategy() -> impl Strategy<Value = State> {
    (
        status_strategy(),
        prop_oneof![
            Just(None),
            Just(Some(DISPUTE_OPENED)),
            Just(Some(REFUND_PENDING)),
            Just(Some("subscription_paused")),
        ],
    )
        .prop_map(|(s, r)| State::of(s, r))
}

fn cause_strategy() -> impl Strategy<Value = Cause> {
    prop_oneof![
        Just(Cause::Refunded),
        any::<bool>().prop_map(|revokes| Cause::PartiallyRefunded { revokes }),
        Just(Cause::RefundRequested),
        Just(Cause::RefundFailed),
        Just(Cause::DisputeOpened),
        Just(Cause::DisputeWon),
        Just(Cause::DisputeLost),
        Just(Cause::OperatorRevoke),
        Just(Cause::OperatorReinstate),
        (0usize..8, any::<bool>()).prop_map(|(i, grants)| Cause::Subscription {
            status: SubscriptionStatus::ALL[i],
            grants
        }),
        Just(Cause::PeriodEnded),
    ]
}

/// Runs `causes` from `state`, keeping the status reason a move or a
/// mark stores.
fn run(mut state: State, causes: &[Cause]) -> State {
    for &cause in causes {
        match apply(state, cause) {
            Step::Move(to) => state = State::of(to, cause.reason().or(Some("operator"))),
            Step::Mark => state = State::of(state.status, cause.reason()),
            Step::Record | Step::Unchanged | Step::NotAllowed(_) => {}
        }
    }
    state
}

/// Causes that decide a dispute or override it: its decision, a refund
/// that revokes, an operator.
fn decides_a_dispute(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::DisputeWon
            | Cause::DisputeLost
            | Cause::Refunded
            | Cause::PartiallyRefunded { revokes: true }
            | Cause::OperatorRevoke
            | Cause::OperatorReinstate
    )
}

proptest! {
    /// A step never "moves" to the status the license already has.
    #[test]
    fn a_move_always_changes_the_status(state in state_strategy(), cause in cause_strategy()) {
        if let Step::Move(to) = apply(state, cause) {
            prop_assert_ne!(to, state.status);
        }
    }

    /// Only an operator brings a revoked license back: no webhook,
    /// subscription, refund or sweeper cause ever leaves `revoked`.
    #[test]
    fn only_an_operator_leaves_revoked(causes in proptest::collection::vec(cause_strategy(), 0..12)) {
        let automatic: Vec<Cause> = causes.into_iter().filter(|c| *c != Cause::OperatorReinstate).collect();
        let end = run(State::of(LicenseStatus::Revoked, Some("refunded")), &automatic);
        prop_assert_eq!(end.status, LicenseStatus::Revoked);
    }

    /// A full refund or a lost dispute ends revoked from any state.
    #[test]
    fn a_full_refund_always_ends_revoked(state in state_strategy()) {
        for cause in [Cause::Refunded, Cause::DisputeLost] {
            let end = run(state, &[cause]);
            prop_assert_eq!(end.status, LicenseStatus::Revoked);
        }
    }

    /// Whatever state a dispute is opened in (active, held by a refund or
    /// a pause, expired), no sequence of other causes makes the license
    /// active before the dispute is decided.
    #[test]
    fn a_dispute_opened_in_any_state_holds_until_decided(
        start in state_strategy(),
        causes in proptest::collection::vec(cause_strategy(), 0..12),
    ) {
        let mut state = run(start, &[Cause::DisputeOpened]);
        for cause in causes {
            if decides_a_dispute(cause) {
                break;
            }
            state = run(state, &[cause]);
            prop_assert_ne!(state.status, LicenseStatus::Active, "after {:?}", cause);
        }
    }

    /// An open dispute holds against everything but its decision, a
    /// refund and an operator.
    #[test]
    fn an_open_dispute_holds(sub in (0usize..8, any::<bool>()), other in prop_oneof![Just(Cause::PeriodEnded), Just(Cause::RefundFailed), Just(Cause::DisputeOpened), Just(Cause::RefundRequested), Just(Cause::PartiallyRefunded { revokes: false })]) {
        let disputed = State::of(LicenseStatus::Suspended, Some(DISPUTE_OPENED));
        let cause = Cause::Subscription { status: SubscriptionStatus::ALL[sub.0], grants: sub.1 };
        prop_assert!(!matches!(apply(disputed, cause), Step::Move(_)));
        prop_assert!(!matches!(apply(disputed, other), Step::Move(_)));
    }
}
