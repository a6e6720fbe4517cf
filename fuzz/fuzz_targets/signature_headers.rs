//! The signed providers' header parsers and verifiers on arbitrary input:
//! never panic, never accept without the secret.
#![no_main]

use keymint::adapters::signatures::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &[u8])| {
    let (header, body) = input;
    let _ = STRIPE.parse(header);
    let _ = PADDLE.parse(header);
    let _ = parse_standard_signatures(header);
    let secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"];
    assert!(STRIPE.verify(Some(header), body, &secrets, 0, i64::MAX).is_err());
    assert!(PADDLE.verify(Some(header), body, &secrets, 0, i64::MAX).is_err());
    assert!(LEMONSQUEEZY.verify(Some(header), body, &secrets).is_err());
    assert!(HYPERSWITCH.verify(Some(header), body, &secrets).is_err());
    assert!(
        verify_standard(Some("msg"), Some("0"), Some(header), body, &secrets, StandardKeyMode::Standard, 0, i64::MAX)
            .is_err()
    );
});
