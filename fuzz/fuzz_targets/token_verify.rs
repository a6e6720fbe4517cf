//! Token decoding and verification on arbitrary input: never panics, and
//! never accepts anything but a token signed by the key.
#![no_main]

use keymint_license::{KeySet, SigningKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        // A fixed key whose secret half is thrown away: nothing the fuzzer
        // makes can carry a valid signature.
        let key = SigningKey::generate();
        KeySet::from_paserks([key.public_paserk().as_str()]).expect("valid key")
    })
}

fuzz_target!(|text: &str| {
    assert!(keys().verify_signature(text).is_err());
});
