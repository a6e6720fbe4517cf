//! Each silent default that used to sit on the way to a signature is now
//! an error naming the bad value.

use super::*;
use crate::domain::CustomerId;
use keymint_license::SigningKey;

const NOW: i64 = 1_750_000_000_000;

fn product(extra: &str) -> ProductConfig {
    toml::from_str(&format!(
        "id = \"pro\"\nname = \"Pro\"\ntier = \"pro\"\nkey_prefix = \"KM\"\n{extra}"
    ))
    .unwrap()
}

fn order() -> Order {
    Order {
        source: "manual".into(),
        order_id: Some("o-1".into()),
        email: "buyer@example.com".into(),
        name: "buyer".into(),
        amount_cents: None,
        currency: None,
        test: false,
        notes: None,
        customer_ref: None,
        refs: Vec::new(),
        valid_until: None,
        send_email: true,
    }
}

fn license() -> licenses::License {
    build(
        &product("max_machines = 3\nentitlements = [\"export\"]"),
        &order(),
        NOW,
    )
    .unwrap()
}

fn reissue_of(l: &licenses::License, valid_until: Option<i64>) -> Result<String, MintError> {
    reissue(
        l,
        false,
        valid_until,
        &SigningKey::generate(),
        "keymint",
        NOW,
    )
}

#[test]
fn a_good_license_reissues() {
    assert!(reissue_of(&license(), Some(NOW + 1000)).is_ok());
}

#[test]
fn an_out_of_range_max_machines_is_an_error_not_unlimited() {
    for bad in [-1, 0, i64::from(u32::MAX) + 1] {
        let mut l = license();
        l.max_machines = Some(bad);
        let err = reissue_of(&l, None).unwrap_err();
        assert!(
            matches!(err, MintError::MaxMachines { value, .. } if value == bad),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("max_machines"), "{err}");
    }
}

#[test]
fn unparsable_stored_entitlements_are_an_error_not_an_empty_list() {
    for bad in ["", "not json", "{\"a\": 1}", "[1, 2]"] {
        let mut l = license();
        l.entitlements = bad.into();
        let err = reissue_of(&l, None).unwrap_err();
        assert!(
            matches!(err, MintError::Entitlements { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("entitlements"), "{err}");
    }
}

#[test]
fn an_invalid_duration_is_refused_at_load_not_signed_perpetual() {
    for bad in ["forever", "0s"] {
        let err = toml::from_str::<ProductConfig>(&format!(
            "id = \"pro\"\nname = \"Pro\"\ntier = \"pro\"\nkey_prefix = \"KM\"\nduration = \"{bad}\""
        ))
        .unwrap_err();
        assert!(err.to_string().contains("duration"), "{bad}: {err}");
    }
}

#[test]
fn a_duration_past_what_a_token_carries_is_an_error_not_perpetual() {
    let err = build(&product("duration = \"100000000000y\""), &order(), NOW).unwrap_err();
    assert!(
        matches!(&err, MintError::Duration { product, .. } if product == "pro"),
        "{err}"
    );
}

/// The step a bad time fails at (`what` of [`MintError::Time`]).
fn time_error(result: Result<impl std::fmt::Debug, MintError>) -> &'static str {
    match result.unwrap_err() {
        MintError::Time { what, .. } => what,
        other => panic!("not a time error: {other}"),
    }
}

fn build(product: &ProductConfig, order: &Order, now: i64) -> Result<licenses::License, MintError> {
    build_license(
        product,
        order,
        &CustomerId::generate(),
        &SigningKey::generate(),
        "keymint",
        now,
    )
}

#[test]
fn an_unrepresentable_expiry_is_an_error_not_1970() {
    let mut o = order();
    o.valid_until = Some(i64::MAX);
    assert_eq!(time_error(build(&product(""), &o, NOW)), "the expiry");
    assert_eq!(
        time_error(reissue_of(&license(), Some(i64::MIN))),
        "the expiry"
    );
}

#[test]
fn an_unrepresentable_current_time_is_an_error_not_a_panic() {
    assert_eq!(
        time_error(build(&product(""), &order(), i64::MAX)),
        "the current time"
    );
}
