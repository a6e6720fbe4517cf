//! The Gumroad adapter's body parser, form-encoded and JSON: never panics.
#![no_main]

use keymint::adapters::{Adapter, RawRequest, gumroad::Gumroad};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|body: &[u8]| {
    let mut headers = BTreeMap::new();
    let _ = Gumroad.parse(&RawRequest { headers: &headers, query: None, body, received_at: 0 });
    headers.insert("content-type".to_string(), "application/json".to_string());
    let _ = Gumroad.parse(&RawRequest { headers: &headers, query: None, body, received_at: 0 });
});
