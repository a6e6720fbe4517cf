//! What a checkout request must be before an order is made: redirect
//! URLs on the allowed hosts, a well-formed `Idempotency-Key`, the
//! product's consent, and the digest that tells one request from another.

use super::*;

/// The longest redirect URL accepted.
const MAX_URL: usize = 2048;
/// The longest `Idempotency-Key` accepted (Stripe's limit).
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Checks a redirect URL: absolute, https (http only to a loopback host,
/// for a local trial), on a host `[checkout] allowed_redirect_hosts` lists.
pub fn check_redirect(
    cfg: &crate::config::CheckoutConfig,
    field: &str,
    text: &str,
) -> Result<String, CheckoutError> {
    if text.len() > MAX_URL {
        return Err(CheckoutError::Invalid(format!(
            "{field} is longer than {MAX_URL} characters"
        )));
    }
    let url = reqwest::Url::parse(text)
        .map_err(|e| CheckoutError::Invalid(format!("{field} is not an absolute URL: {e}")))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => {
            return Err(CheckoutError::RedirectNotAllowed(format!(
                "{field} must be an https URL (got {other}:)"
            )));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CheckoutError::RedirectNotAllowed(format!(
            "{field} must not carry a user name or password"
        )));
    }
    if !cfg.allows_host(host) {
        return Err(CheckoutError::RedirectNotAllowed(format!(
            "{field}'s host {host:?} is not in [checkout] allowed_redirect_hosts"
        )));
    }
    // The text the client sent, which Stripe substitutes
    // `{CHECKOUT_SESSION_ID}` in (the parsed form would escape the braces).
    Ok(text.to_string())
}

/// Checks an `Idempotency-Key` header's value.
pub fn check_idempotency_key(text: &str) -> Result<String, CheckoutError> {
    if text.is_empty()
        || text.len() > MAX_IDEMPOTENCY_KEY
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(CheckoutError::Invalid(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(text.to_string())
}

/// The consent a product needs, checked; what is recorded.
pub(super) fn check_consent(
    product: &ProductConfig,
    consent: Option<&Consent>,
) -> Result<Option<String>, CheckoutError> {
    let given = consent.filter(|c| c.accepted);
    if product.consent == ConsentPolicy::Required {
        let Some(c) = given else {
            return Err(CheckoutError::ConsentRequired(format!(
                "product {:?} needs the buyer's express consent: send consent {{accepted: true, terms_version}}",
                product.id
            )));
        };
        if let Some(current) = &product.terms_version
            && &c.terms_version != current
        {
            return Err(CheckoutError::ConsentRequired(format!(
                "the consent names terms {:?}, but the current terms are {current:?}; show the buyer the current terms",
                c.terms_version
            )));
        }
    }
    if let Some(c) = given
        && (c.terms_version.trim().is_empty()
            || c.terms_version.len() > 64
            || c.terms_version.chars().any(char::is_control))
    {
        return Err(CheckoutError::Unprocessable(
            "consent.terms_version must be 1-64 characters without control characters".into(),
        ));
    }
    Ok(given.map(|c| c.terms_version.clone()))
}

/// A hex SHA-256 of the parts, each length-prefixed.
pub(super) fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckoutConfig;

    fn cfg() -> CheckoutConfig {
        CheckoutConfig {
            allowed_redirect_hosts: vec!["shop.example.com".into(), "localhost".into()],
            ..CheckoutConfig::default()
        }
    }

    #[test]
    fn redirects_are_https_on_an_allowed_host_and_kept_as_sent() {
        let ok = "https://shop.example.com/thanks?order={ORDER_ID}&s={CHECKOUT_SESSION_ID}";
        assert_eq!(check_redirect(&cfg(), "success_url", ok).unwrap(), ok);
        assert!(check_redirect(&cfg(), "u", "http://localhost:3000/ok").is_ok());
        for (bad, refused) in [
            ("http://shop.example.com/", true),
            ("https://evil.example.net/", true),
            ("ftp://shop.example.com/", true),
            ("https://a:b@shop.example.com/", true),
            ("//shop.example.com/", false),
            ("not a url", false),
        ] {
            match check_redirect(&cfg(), "u", bad) {
                Err(CheckoutError::RedirectNotAllowed(_)) => assert!(refused, "{bad}"),
                Err(CheckoutError::Invalid(_)) => assert!(!refused, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let long = format!("https://shop.example.com/{}", "a".repeat(MAX_URL));
        assert!(matches!(
            check_redirect(&cfg(), "u", &long),
            Err(CheckoutError::Invalid(_))
        ));
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_up_to_255() {
        assert!(check_idempotency_key("a-B_9.~").is_ok());
        assert!(check_idempotency_key(&"k".repeat(255)).is_ok());
        for bad in ["", "has space", "tab\t", "ünï"] {
            assert!(check_idempotency_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_idempotency_key(&"k".repeat(256)).is_err());
    }

    #[test]
    fn digests_tell_parts_apart() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_eq!(digest(&["a", "b"]), digest(&["a", "b"]));
    }
}
