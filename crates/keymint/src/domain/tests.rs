use super::*;

#[test]
fn statuses_round_trip_through_their_text() {
    for s in LicenseStatus::ALL {
        assert_eq!(s.as_str().parse::<LicenseStatus>().unwrap(), *s);
        assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
    }
    for s in DeliveryStatus::ALL {
        assert_eq!(s.as_str().parse::<DeliveryStatus>().unwrap(), *s);
    }
    assert_eq!(EmailKind::LicenseRenewed.as_str(), "license_renewed");
}

#[test]
fn an_unknown_value_is_an_error_naming_it_never_a_default() {
    let err = "on_holiday".parse::<LicenseStatus>().unwrap_err();
    assert_eq!(err.value, "on_holiday");
    let text = err.to_string();
    assert!(text.contains("license status \"on_holiday\""), "{text}");
    assert!(
        text.contains("active, suspended, revoked, expired"),
        "{text}"
    );
    assert!(serde_json::from_str::<RefundStatus>("\"refunded\"").is_err());
}
