//! The operator console's sessions (docs/console.md): an admin token pasted
//! once is exchanged for a browser session. The cookie carries a random
//! secret; the store keeps its SHA-256 only; the session's CSRF token is
//! derived from the secret, so it needs no storage and dies with it. What
//! an operator may do is the token's scopes, checked on every action by
//! the same service functions as the admin API.

pub mod chart;

use crate::admin::{hash_token, scope};
use crate::store::{self, Store, admin_tokens, console_sessions};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The cookie that carries a console session's secret.
pub const SESSION_COOKIE: &str = "km_console";
/// The cookie that carries the sign-in form's one-time CSRF value.
pub const SIGN_IN_COOKIE: &str = "km_console_signin";

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The admin token's name: the actor of every action.
    pub name: String,
    scopes: Vec<String>,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Operator {
    pub fn may(&self, needed: &str) -> bool {
        self.scopes.iter().any(|s| s == needed || s == scope::ADMIN)
    }

    /// The actor recorded in histories.
    pub fn actor(&self) -> String {
        format!("console:{}", self.name)
    }

    /// Whether `sent` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, sent: &str) -> bool {
        same(&self.csrf, sent)
    }
}

/// Constant-time equality of two texts (`adapters::ct_eq`, as for webhook
/// secrets).
pub fn same(a: &str, b: &str) -> bool {
    crate::adapters::ct_eq(a.as_bytes(), b.as_bytes())
}

/// 256 random bits as base64url text.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of `secret` under `label` (a session id, a CSRF token, a
/// portal link's hash: one secret, several values that reveal nothing
/// of each other).
pub fn digest(label: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(b"\n");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Exchanges a pasted admin token for a session: its secret (for the
/// cookie), or `None` when the token is not a live one.
pub async fn sign_in(
    store: &Store,
    token: &str,
    ttl: std::time::Duration,
) -> Result<Option<String>, sqlx::Error> {
    let token = token.trim();
    if token.is_empty() || token.len() > 256 {
        return Ok(None);
    }
    // Read first: a flood of wrong tokens never queues for the write lock
    // the webhooks' group commits take.
    let found = {
        let mut conn = store.conn().await?;
        admin_tokens::find_live(&mut conn, &hash_token(token)).await?
    };
    let Some(t) = found else {
        return Ok(None);
    };
    let mut conn = store.writer().await?;
    let secret = random_secret();
    let now = store::now_ms();
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    console_sessions::delete_expired(&mut conn, now).await?;
    console_sessions::insert(
        &mut conn,
        &digest("session", &secret),
        &t.id,
        now,
        now + ttl,
    )
    .await?;
    admin_tokens::touch(&mut conn, &t.id, now).await?;
    Ok(Some(secret))
}

/// The operator of a session secret, while it is live.
pub async fn operator(store: &Store, secret: &str) -> Result<Option<Operator>, sqlx::Error> {
    if secret.is_empty() || secret.len() > 128 {
        return Ok(None);
    }
    let mut conn = store.conn().await?;
    let found =
        console_sessions::find_live(&mut conn, &digest("session", secret), store::now_ms()).await?;
    Ok(found.map(|t| Operator {
        name: t.name,
        scopes: t.scopes.split_whitespace().map(str::to_string).collect(),
        csrf: digest("csrf", secret),
    }))
}

/// Ends a session.
pub async fn sign_out(store: &Store, secret: &str) -> Result<(), sqlx::Error> {
    let mut conn = store.writer().await?;
    console_sessions::delete(&mut conn, &digest("session", secret)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_their_digests_apart() {
        let (a, b) = (random_secret(), random_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(digest("session", &a), digest("csrf", &a));
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
