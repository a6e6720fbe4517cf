//! License key parsing: never panics; whatever parses is canonical.
#![no_main]

use keymint_license::LicenseKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(key) = text.parse::<LicenseKey>() {
        let again: LicenseKey = key.as_str().parse().expect("canonical keys parse");
        assert_eq!(again, key);
    }
});
