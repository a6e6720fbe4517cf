//! Every provider adapter's parser on arbitrary bodies (authentic ones
//! reach it after the signature check): an error or an event, never a
//! panic.
#![no_main]

use keymint::adapters::{RawRequest, for_kind};
use keymint::config::EndpointKind;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const KINDS: [EndpointKind; 7] = [
    EndpointKind::Gumroad,
    EndpointKind::Stripe,
    EndpointKind::Standard,
    EndpointKind::Polar,
    EndpointKind::Lemonsqueezy,
    EndpointKind::Paddle,
    EndpointKind::Hyperswitch,
];

fuzz_target!(|body: &[u8]| {
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_string(), "application/json".to_string());
    headers.insert("webhook-id".to_string(), "msg_fuzz".to_string());
    headers.insert("webhook-timestamp".to_string(), "1700000000".to_string());
    let req = RawRequest { headers: &headers, query: None, body, received_at: 0 };
    for kind in KINDS {
        let _ = for_kind(kind).expect("every kind has an adapter").parse(&req);
    }
});
