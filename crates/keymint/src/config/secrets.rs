//! Whether a configured secret is secret enough: not a documented
//! placeholder, and long enough not to be guessed.

use super::*;

/// Webhook secrets shorter than this many bytes are refused: a secret the
/// size of a password can be guessed, and every provider generates longer
/// ones. For a Standard Webhooks `whsec_` key the decoded key counts.
pub const MIN_SECRET_BYTES: usize = 16;

/// Prefixes providers put before the secret part; they are not secret.
pub(super) const SECRET_PREFIXES: &[&str] = &["whsec_", "polar_whs_", "pdl_ntfset_"];

/// Values the documentation shows where a secret goes.
pub(super) const DOCUMENTED_EXAMPLES: &[&str] = &[
    "a-long-random-string",
    "your-signing-secret",
    "the-signing-secret",
    // The Standard Webhooks specification's example key.
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
];

/// True for the placeholders of `keymint.example.toml` and the docs:
/// `replace-me...`, `...`, `<...>` and the documented example values.
pub(super) fn is_placeholder(secret: &str) -> bool {
    let s = secret.trim();
    let lower = s.to_ascii_lowercase();
    DOCUMENTED_EXAMPLES.contains(&s)
        || s.contains("...")
        || (s.starts_with('<') && s.ends_with('>'))
        || [
            "replace-me",
            "replace_me",
            "replaceme",
            "change-me",
            "change_me",
            "changeme",
        ]
        .iter()
        .any(|p| lower.contains(p))
}

pub(super) fn placeholder_problem(path: &str, secret: &Secret) -> String {
    format!(
        "{path}: {:?} is a documented placeholder, not a secret: put the real one here (server.allow_weak_secrets allows it for a local trial)",
        secret.expose()
    )
}

/// Why `secret` is too short, if it is. Never prints the secret.
pub(super) fn short_secret(secret: &str, base64_key: bool) -> Option<String> {
    if base64_key {
        use base64::Engine;
        let key = secret.strip_prefix("whsec_").unwrap_or(secret);
        let len = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_or(0, |k| k.len());
        return (len < MIN_SECRET_BYTES).then(|| {
            format!("the key decodes to {len} bytes; the minimum is {MIN_SECRET_BYTES} bytes")
        });
    }
    let rest = SECRET_PREFIXES
        .iter()
        .find_map(|p| secret.strip_prefix(p))
        .unwrap_or(secret);
    (rest.len() < MIN_SECRET_BYTES).then(|| {
        format!(
            "the secret is {} bytes{}; the minimum is {MIN_SECRET_BYTES} bytes (for example `openssl rand -hex 32`)",
            rest.len(),
            if rest.len() == secret.len() {
                ""
            } else {
                " after its prefix"
            }
        )
    })
}
