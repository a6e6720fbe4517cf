//! Gumroad's URL-secret check on arbitrary query strings: never panics, and
//! only the configured secret passes.
#![no_main]

use keymint::adapters::{Adapter, RawRequest, gumroad::Gumroad};
use keymint::config::{EndpointConfig, EndpointKind};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|query: &str| {
    let headers = BTreeMap::new();
    let endpoint = EndpointConfig::for_test("g", EndpointKind::Gumroad, &["fuzz-secret-value"]);
    let req = RawRequest { headers: &headers, query: Some(query), body: b"", received_at: 0 };
    if Gumroad.authenticate(&req, &endpoint, 0).is_ok() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("an accepted query parses");
        assert!(pairs.iter().any(|(k, v)| k == "secret" && v == "fuzz-secret-value"));
    }
});
