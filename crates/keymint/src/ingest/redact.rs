//! What a delivery row keeps of a request: secret headers and query
//! parameters replaced by `***`, and a rejected delivery's headers cut to a
//! bounded size (docs/architecture.md, "Authenticate on the raw bytes").

use std::collections::BTreeMap;

/// Header names never stored in clear.
fn is_secret_header(name: &str) -> bool {
    matches!(name, "authorization" | "cookie" | "proxy-authorization")
        || name.contains("secret")
        || name.contains("token")
        || name.contains("api-key")
        || name.contains("apikey")
}

/// Headers as stored: secrets replaced by `***`.
pub fn redact_headers(headers: &BTreeMap<String, String>) -> String {
    let redacted: BTreeMap<&str, &str> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                if is_secret_header(k) {
                    "***"
                } else {
                    v.as_str()
                },
            )
        })
        .collect();
    serde_json::to_string(&redacted).expect("string map serializes")
}

/// The longest header value kept on a rejected delivery; a longer one (a
/// forged signature header with thousands of entries) keeps its start and
/// its size, so forensics stay bounded like the body's prefix.
pub const REJECTED_HEADER_VALUE: usize = 256;

/// The most header bytes (names and values) kept on a rejected delivery;
/// the headers past it are only counted.
pub const REJECTED_HEADERS_TOTAL: usize = 4096;

/// Headers as a rejected delivery keeps them: each value cut to
/// [`REJECTED_HEADER_VALUE`] bytes (on a character boundary, marked with
/// the size it had), and no more than [`REJECTED_HEADERS_TOTAL`] bytes in
/// all, the rest replaced by one entry saying how many were left out.
pub(super) fn shorten_headers(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    let (mut used, mut left_out, mut left_bytes) = (0usize, 0usize, 0usize);
    for (k, v) in headers {
        let value = if v.len() <= REJECTED_HEADER_VALUE {
            v.clone()
        } else {
            let mut end = REJECTED_HEADER_VALUE;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}... ({} bytes)", &v[..end], v.len())
        };
        if used + k.len() + value.len() > REJECTED_HEADERS_TOTAL {
            left_out += 1;
            left_bytes += k.len() + v.len();
            continue;
        }
        used += k.len() + value.len();
        kept.insert(k.clone(), value);
    }
    if left_out > 0 {
        kept.insert(
            "keymint-omitted".into(),
            format!("{left_out} more headers ({left_bytes} bytes)"),
        );
    }
    kept
}

/// The path as stored: the values of secret query parameters replaced.
pub fn redact_path(path: &str, query: Option<&str>, secret_params: &[&str]) -> String {
    let Some(query) = query else {
        return path.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| {
            // `split` always yields a first part.
            let name = pair.split('=').next().unwrap_or_default();
            // A name that does not decode is compared as it was sent.
            let decoded: String = serde_urlencoded::from_str::<Vec<(String, String)>>(pair)
                .ok()
                .and_then(|v| v.into_iter().next())
                .map(|(k, _)| k)
                .unwrap_or_else(|| name.to_string());
            if secret_params.contains(&decoded.as_str()) {
                format!("{name}=***")
            } else {
                pair.to_string()
            }
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}
