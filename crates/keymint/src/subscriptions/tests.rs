use super::*;
use proptest::prelude::*;

const DAY: i64 = 86_400_000;

fn run(events: &[(Event, i64)]) -> Option<State> {
    let mut state: Option<State> = None;
    for (event, at) in events {
        if let Applied::Changed(next) = apply(state.as_ref(), event, *at) {
            state = Some(next);
        }
    }
    state
}

#[test]
fn an_event_with_the_same_time_never_moves_back_to_pending_payment() {
    let active = State {
        status: Status::Active,
        trial_end: None,
        current_period_end: Some(30 * DAY),
        cancel_at_period_end: false,
        last_event_at: 500,
    };
    let incomplete = Event::Snapshot {
        status: Status::PendingPayment,
        trial_end: None,
        period_end: None,
        cancel_at_period_end: false,
    };
    assert!(matches!(
        apply(Some(&active), &incomplete, 500),
        Applied::Ignored(_)
    ));
    // A newer one may.
    assert!(matches!(
        apply(Some(&active), &incomplete, 501),
        Applied::Changed(State {
            status: Status::PendingPayment,
            ..
        })
    ));
    // Same time, any other change applies in arrival order.
    assert!(matches!(
        apply(Some(&active), &Event::PaymentFailed, 500),
        Applied::Changed(State {
            status: Status::PastDue,
            ..
        })
    ));
}

#[test]
fn the_table() {
    use Status::*;
    let base = State {
        status: Active,
        trial_end: None,
        current_period_end: Some(30 * DAY),
        cancel_at_period_end: false,
        last_event_at: 0,
    };
    let cases: Vec<(Status, Event, Option<Status>)> = vec![
        (Active, Event::PaymentFailed, Some(PastDue)),
        (PendingPayment, Event::PaymentFailed, Some(PendingPayment)),
        (
            PastDue,
            Event::PaymentSucceeded {
                period_end: Some(60 * DAY),
            },
            Some(Active),
        ),
        (
            Active,
            Event::Canceled {
                at_period_end: true,
                period_end: None,
            },
            Some(Canceled),
        ),
        (
            Active,
            Event::Canceled {
                at_period_end: false,
                period_end: None,
            },
            Some(Expired),
        ),
        (Canceled, Event::Uncanceled, Some(Active)),
        (
            Active,
            Event::Snapshot {
                status: Active,
                trial_end: None,
                period_end: Some(60 * DAY),
                cancel_at_period_end: true,
            },
            Some(Canceled),
        ),
        (
            Canceled,
            Event::Snapshot {
                status: Active,
                trial_end: None,
                period_end: None,
                cancel_at_period_end: false,
            },
            Some(Active),
        ),
        (
            Expired,
            Event::Snapshot {
                status: Trialing,
                trial_end: Some(DAY),
                period_end: None,
                cancel_at_period_end: false,
            },
            Some(Trialing),
        ),
        (
            Active,
            Event::Snapshot {
                status: Expired,
                trial_end: None,
                period_end: None,
                cancel_at_period_end: true,
            },
            Some(Expired),
        ),
        (Active, Event::Uncanceled, None),
        (Active, Event::Paused, Some(Paused)),
        (Paused, Event::Resumed { period_end: None }, Some(Active)),
        (Active, Event::Revoked, Some(Revoked)),
        (Expired, Event::PaymentFailed, None),
        (Revoked, Event::Uncanceled, None),
        (
            Expired,
            Event::Created {
                status: Active,
                trial_end: None,
                period_end: Some(90 * DAY),
            },
            Some(Active),
        ),
        (
            Trialing,
            Event::Activated {
                period_end: Some(30 * DAY),
            },
            Some(Active),
        ),
        (
            Canceled,
            Event::PaymentSucceeded { period_end: None },
            Some(Canceled),
        ),
    ];
    for (from, event, to) in cases {
        let state = State {
            status: from,
            ..base.clone()
        };
        let got = apply(Some(&state), &event, 1);
        match to {
            Some(to) => assert!(
                matches!(&got, Applied::Changed(s) if s.status == to),
                "{from:?} + {event:?} -> {got:?}"
            ),
            None => assert!(
                matches!(got, Applied::Ignored(_)),
                "{from:?} + {event:?} -> {got:?}"
            ),
        }
    }
}

#[test]
fn older_events_are_stale_and_change_nothing() {
    let state = run(&[
        (
            Event::Created {
                status: Status::Active,
                trial_end: None,
                period_end: Some(30 * DAY),
            },
            100,
        ),
        (Event::Revoked, 300),
    ])
    .unwrap();
    assert_eq!(
        apply(Some(&state), &Event::Activated { period_end: None }, 200),
        Applied::Stale
    );
    assert_eq!(state.status, Status::Revoked);
}

#[test]
fn trial_then_active_then_canceled_then_expired() {
    let events = [
        (
            Event::Created {
                status: Status::Trialing,
                trial_end: Some(7 * DAY),
                period_end: None,
            },
            1,
        ),
        (
            Event::Activated {
                period_end: Some(37 * DAY),
            },
            2,
        ),
        (
            Event::Canceled {
                at_period_end: true,
                period_end: Some(37 * DAY),
            },
            3,
        ),
    ];
    let s = run(&events).unwrap();
    assert_eq!(s.status, Status::Canceled);
    assert!(
        grants_access(&s, 36 * DAY, 0),
        "canceled keeps access until the period end"
    );
    assert!(!grants_access(&s, 38 * DAY, 0));
    assert!(grants_access(&s, 38 * DAY, 2 * DAY), "grace extends it");
    let s = run(&[
        events[0].clone(),
        events[1].clone(),
        events[2].clone(),
        (Event::Expired, 4),
    ])
    .unwrap();
    assert_eq!(s.status, Status::Expired);
    assert!(!grants_access(&s, 10 * DAY, DAY));
}

#[test]
fn pending_payment_grants_nothing() {
    let s = run(&[(
        Event::Created {
            status: Status::PendingPayment,
            trial_end: None,
            period_end: None,
        },
        1,
    )])
    .unwrap();
    assert!(!grants_access(&s, 0, DAY));
}

fn event_strategy() -> impl Strategy<Value = Event> {
    let end = proptest::option::of(0i64..100 * DAY);
    prop_oneof![
        (end.clone()).prop_map(|period_end| Event::Created {
            status: Status::Active,
            trial_end: None,
            period_end
        }),
        end.clone()
            .prop_map(|trial_end| Event::Trialing { trial_end }),
        end.clone()
            .prop_map(|period_end| Event::Activated { period_end }),
        end.clone()
            .prop_map(|period_end| Event::PaymentSucceeded { period_end }),
        Just(Event::PaymentFailed),
        Just(Event::PastDue),
        (any::<bool>(), end.clone()).prop_map(|(at_period_end, period_end)| Event::Canceled {
            at_period_end,
            period_end
        }),
        Just(Event::Uncanceled),
        (0usize..8, any::<bool>(), end.clone()).prop_map(
            |(i, cancel_at_period_end, period_end)| Event::Snapshot {
                status: Status::ALL[i],
                trial_end: None,
                period_end,
                cancel_at_period_end,
            }
        ),
        Just(Event::Paused),
        end.prop_map(|period_end| Event::Resumed { period_end }),
        Just(Event::Expired),
        Just(Event::Revoked),
    ]
}

proptest! {
    /// An event older than the last one applied never changes anything.
    #[test]
    fn stale_events_never_change_state(events in proptest::collection::vec(event_strategy(), 1..6), late in event_strategy()) {
        let timed: Vec<(Event, i64)> = events.into_iter().enumerate().map(|(i, e)| (e, 100 + i as i64)).collect();
        if let Some(state) = run(&timed) {
            prop_assert_eq!(apply(Some(&state), &late, 99), Applied::Stale);
        }
    }

    /// However the earlier events are ordered in delivery, a newest
    /// snapshot (`Created`) decides the final status.
    #[test]
    fn the_newest_snapshot_wins_in_any_delivery_order(
        events in proptest::collection::vec(event_strategy(), 0..7),
        seed in any::<u64>(),
        position in any::<proptest::sample::Index>(),
    ) {
        let mut timed: Vec<(Event, i64)> = events.into_iter().enumerate().map(|(i, e)| (e, i as i64)).collect();
        let n = timed.len();
        for i in (1..n).rev() {
            let j = (seed.rotate_left(i as u32) % (i as u64 + 1)) as usize;
            timed.swap(i, j);
        }
        let snapshot = (Event::Created { status: Status::Trialing, trial_end: Some(DAY), period_end: None }, 1_000);
        timed.insert(position.index(n + 1), snapshot);
        let fin = run(&timed).unwrap();
        // Events delivered after the snapshot are older, hence stale.
        prop_assert_eq!(fin.status, Status::Trialing);
        prop_assert_eq!(fin.last_event_at, 1_000);
    }
}
