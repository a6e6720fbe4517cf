use super::*;
use proptest::prelude::*;

const HOUR: i64 = 3_600_000;
const GRACE: i64 = 3 * 24 * HOUR;

fn ents() -> Vec<String> {
    vec!["export".into(), "sync".into()]
}

fn facts<'a>(status: LicenseStatus, entitlements: &'a [String]) -> Facts<'a> {
    Facts {
        status,
        revoked_by: None,
        expires_at: None,
        product: "datatools-core",
        entitlements,
        subscription: None,
    }
}

#[test]
fn each_code_in_the_table_comes_from_its_case() {
    let e = ents();
    let now = Millis(1_000 * HOUR);
    let ask = Ask::default();
    let code = |f: &Facts<'_>, a: &Ask<'_>| decide(f, a, now, GRACE).code;

    assert_eq!(code(&facts(LicenseStatus::Active, &e), &ask), Code::Valid);
    for (by, want) in [
        (Some("refunded"), Code::Refunded),
        (Some("partially_refunded"), Code::Refunded),
        (Some("dispute_lost"), Code::DisputeLost),
        (Some("revoked"), Code::Revoked),
        (None, Code::Revoked),
    ] {
        let mut f = facts(LicenseStatus::Revoked, &e);
        f.revoked_by = by;
        assert_eq!(code(&f, &ask), want, "{by:?}");
    }
    assert_eq!(
        code(&facts(LicenseStatus::Suspended, &e), &ask),
        Code::Suspended
    );
    assert_eq!(
        code(&facts(LicenseStatus::Expired, &e), &ask),
        Code::Expired
    );

    // Past its expiry although the sweeper has not marked it yet.
    let mut f = facts(LicenseStatus::Active, &e);
    f.expires_at = Some(now);
    assert_eq!(code(&f, &ask), Code::Expired);
    f.expires_at = Some(Millis(now.0 + 1));
    assert_eq!(code(&f, &ask), Code::Valid);

    let other = Ask {
        product: Some("another"),
        ..Ask::default()
    };
    assert_eq!(
        code(&facts(LicenseStatus::Revoked, &e), &other),
        Code::ProductMismatch
    );
    let same = Ask {
        product: Some("datatools-core"),
        ..Ask::default()
    };
    assert_eq!(code(&facts(LicenseStatus::Active, &e), &same), Code::Valid);

    let wanted = vec!["export".to_string(), "cloud".into(), "ai".into()];
    let needs = Ask {
        entitlements: &wanted,
        ..Ask::default()
    };
    let v = decide(&facts(LicenseStatus::Active, &e), &needs, now, GRACE);
    assert_eq!(v.code, Code::EntitlementsMissing);
    assert_eq!(v.missing, vec!["cloud".to_string(), "ai".into()]);

    let elsewhere = Ask {
        machine_active: Some(false),
        ..Ask::default()
    };
    assert_eq!(
        code(&facts(LicenseStatus::Active, &e), &elsewhere),
        Code::NotActivated
    );
    // A license that is not valid says why, not that the machine is
    // unknown.
    assert_eq!(
        code(&facts(LicenseStatus::Suspended, &e), &elsewhere),
        Code::Suspended
    );
    let here = Ask {
        machine_active: Some(true),
        ..Ask::default()
    };
    assert_eq!(code(&facts(LicenseStatus::Active, &e), &here), Code::Valid);
}

fn sub(status: SubscriptionStatus, period_end: i64, cancel: bool) -> SubscriptionFacts {
    SubscriptionFacts {
        status,
        trial_end: None,
        current_period_end: Some(period_end),
        cancel_at_period_end: cancel,
    }
}

#[test]
fn a_subscription_warns_while_valid_and_tells_until_when() {
    let e = ents();
    let now = Millis(1_000 * HOUR);
    let end = now.0 + 10 * HOUR;
    let mut f = facts(LicenseStatus::Active, &e);

    f.subscription = Some(sub(SubscriptionStatus::PastDue, end, false));
    let v = decide(&f, &Ask::default(), now, GRACE);
    assert_eq!(
        (v.code, v.warnings.clone()),
        (Code::Valid, vec![Warning::PastDue])
    );
    assert_eq!(v.access_until, Some(Millis(end + GRACE)));

    f.subscription = Some(sub(SubscriptionStatus::Canceled, end, true));
    let v = decide(&f, &Ask::default(), now, GRACE);
    assert_eq!(
        (v.code, v.warnings),
        (Code::Valid, vec![Warning::CancelsAtPeriodEnd])
    );

    // Past the period and its grace: expired, with no warnings.
    f.subscription = Some(sub(SubscriptionStatus::PastDue, now.0 - GRACE, false));
    let v = decide(&f, &Ask::default(), now, GRACE);
    assert_eq!((v.code, v.warnings), (Code::Expired, vec![]));

    f.subscription = Some(sub(SubscriptionStatus::Paused, end, false));
    assert_eq!(
        decide(&f, &Ask::default(), now, GRACE).code,
        Code::Suspended
    );
    f.subscription = Some(sub(SubscriptionStatus::Expired, end, false));
    assert_eq!(decide(&f, &Ask::default(), now, GRACE).code, Code::Expired);

    let trial = SubscriptionFacts {
        status: SubscriptionStatus::Trialing,
        trial_end: Some(end),
        current_period_end: None,
        cancel_at_period_end: false,
    };
    f.subscription = Some(trial);
    let v = decide(&f, &Ask::default(), now, GRACE);
    assert_eq!(
        (v.code, v.access_until),
        (Code::Valid, Some(Millis(end + GRACE)))
    );

    // No subscription: the license's own expiry, or none for perpetual.
    let mut plain = facts(LicenseStatus::Active, &e);
    assert_eq!(
        decide(&plain, &Ask::default(), now, GRACE).access_until,
        None
    );
    plain.expires_at = Some(Millis(end));
    assert_eq!(
        decide(&plain, &Ask::default(), now, GRACE).access_until,
        Some(Millis(end))
    );
}

#[test]
fn codes_are_screaming_snake_case_in_json() {
    for code in Code::ALL {
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
        assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), code);
    }
}

fn any_status() -> impl Strategy<Value = LicenseStatus> {
    prop::sample::select(LicenseStatus::ALL.to_vec())
}

fn any_sub_status() -> impl Strategy<Value = SubscriptionStatus> {
    prop::sample::select(SubscriptionStatus::ALL.to_vec())
}

proptest! {
    /// Only `VALID` is valid, warnings come only with it, and a license
    /// that does not stand is never valid whatever the program asks.
    #[test]
    fn valid_only_when_everything_holds(
        status in any_status(),
        by in prop::option::of(prop::sample::select(vec!["refunded", "dispute_lost", "revoked"])),
        expires in prop::option::of(-100i64..100),
        sub_status in prop::option::of(any_sub_status()),
        period in -100i64..100,
        cancel in any::<bool>(),
        product in prop::option::of(prop::sample::select(vec!["datatools-core", "other"])),
        wanted in prop::collection::vec(prop::sample::select(vec!["export", "sync", "cloud"]), 0..3),
        machine in prop::option::of(any::<bool>()),
    ) {
        let e = ents();
        let now = Millis(1_000 * HOUR);
        let f = Facts {
            status,
            revoked_by: by,
            expires_at: expires.map(|h| Millis(now.0 + h * HOUR)),
            product: "datatools-core",
            entitlements: &e,
            subscription: sub_status.map(|s| sub(s, now.0 + period * HOUR, cancel)),
        };
        let wanted: Vec<String> = wanted.into_iter().map(String::from).collect();
        let ask = Ask { product, entitlements: &wanted, machine_active: machine };
        let v = decide(&f, &ask, now, GRACE);
        let stands = standing(&f, now, GRACE).is_ok();
        prop_assert_eq!(
            v.code == Code::Valid,
            stands
                && product.is_none_or(|p| p == "datatools-core")
                && wanted.iter().all(|w| e.contains(w))
                && machine != Some(false)
        );
        if v.code != Code::Valid {
            prop_assert!(v.warnings.is_empty());
        }
        if !stands {
            prop_assert_eq!(v.access_until, None);
        }
        if status != LicenseStatus::Active {
            prop_assert_ne!(v.code, Code::Valid);
        }
    }
}
