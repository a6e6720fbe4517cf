//! The buyer portal (docs/portal.md): a buyer signs in with a link emailed
//! to their address and sees every license of that address, across every
//! provider. The pages are served under `/portal` (`http/portal/`); what
//! a buyer may do there goes through the same library functions as the
//! admin API (`admin/`, `licensing/`), scoped to the signed-in email.
//!
//! A link's token is never stored: the row keeps its SHA-256, and the
//! outbox worker derives the token again from the link's id with the
//! signing key named on the row ([`link_token`]), a key that lives in the
//! data directory or the config, not the database. So the email can be
//! sent and retried like any other, and a copy of the database opens no
//! one's portal.

pub mod holdings;

use crate::console::{digest, random_secret, same};
use crate::domain::Email;
use crate::signing::{KeyError, Keyring};
use crate::store::{self, Store, licenses, outbox, portal};
use base64::Engine;
use keymint_license::SigningKey;

/// The cookie that carries a portal session's secret.
pub const SESSION_COOKIE: &str = "km_portal";
/// The cookie that carries a portal form's one-time CSRF value before
/// sign-in.
pub const FORM_COOKIE: &str = "km_portal_form";
/// Most licenses one page lists.
pub const MOST_LICENSES: i64 = 200;

/// A signed-in buyer.
#[derive(Debug, Clone)]
pub struct Buyer {
    /// The (lower-cased) email whose licenses this session sees.
    pub email: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Buyer {
    pub fn csrf_matches(&self, sent: &str) -> bool {
        same(&self.csrf, sent)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("signing key: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Licensing(#[from] crate::licensing::LicensingError),
}

/// The token of link `link_id`, derived with `key` (HMAC-SHA256 over the
/// id): the same every time, known only to holders of the key.
pub fn link_token(key: &SigningKey, link_id: &str) -> String {
    let mac = crate::adapters::signatures::hmac256_bytes(
        key.secret_paserk().as_bytes(),
        &[b"keymint portal link\n", link_id.as_bytes()],
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
}

fn token_hash(token: &str) -> String {
    digest("portal-link", token)
}

/// What became of a request for a sign-in link. The page answers the same
/// whatever it is, so the answer tells no one whether an address bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRequest {
    /// A link was queued for the address.
    Queued,
    /// The address holds no license: nothing was sent.
    NoLicenses,
    /// The address asked more than `links_per_hour` times in the last
    /// hour: nothing was sent.
    TooMany,
}

/// Records the request and queues a sign-in link for `email` when it
/// holds a license and has not asked more than `links_per_hour` times this
/// hour. Every outcome commits one transaction with a write (the request,
/// stored by the address's hash), so the answer takes about as long
/// whether or not the address bought.
pub async fn request_link(
    store: &Store,
    keyring: &Keyring,
    cfg: &crate::config::PortalConfig,
    email: &Email,
) -> Result<LinkRequest, PortalError> {
    let now = store::now_ms();
    let asker = digest("portal-request", email.as_str());
    let mut tx = store.begin().await?;
    portal::record_request(&mut tx, &asker, now).await?;
    // Requests a day old are of no use to the count, links a day past
    // their end of none to anyone.
    portal::delete_old(&mut tx, now - 86_400_000).await?;
    let asked = portal::requests_since(&mut tx, &asker, now - 3_600_000).await?;
    let holds = !licenses::of_email(&mut tx, email.as_str(), 1)
        .await?
        .is_empty();
    let outcome = if asked > i64::from(cfg.links_per_hour) {
        LinkRequest::TooMany
    } else if !holds {
        LinkRequest::NoLicenses
    } else {
        let key = keyring.signer(&mut tx).await?;
        let id = format!("pl_{}", ulid::Ulid::generate());
        let token = link_token(&key, &id);
        let ttl = i64::try_from(cfg.link_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        portal::insert_link(
            &mut tx,
            &id,
            &token_hash(&token),
            email.as_str(),
            key.kid(),
            now,
            now + ttl,
        )
        .await?;
        outbox::enqueue_link(&mut tx, &id, email.as_str(), now).await?;
        LinkRequest::Queued
    };
    tx.commit().await?;
    Ok(outcome)
}

/// The email a live, unused link signs in as (nothing is changed).
pub async fn link_email(store: &Store, token: &str) -> Result<Option<String>, PortalError> {
    if !plausible(token) {
        return Ok(None);
    }
    let mut conn = store.conn().await?;
    Ok(portal::live_link(&mut conn, &token_hash(token), store::now_ms()).await?)
}

/// Uses a link (once) and opens a session for its email: the session's
/// secret for the cookie, or `None` when the link is unknown, used or
/// expired.
pub async fn sign_in(
    store: &Store,
    token: &str,
    ttl: std::time::Duration,
) -> Result<Option<String>, PortalError> {
    if !plausible(token) {
        return Ok(None);
    }
    let now = store::now_ms();
    let mut tx = store.begin().await?;
    let Some(email) = portal::use_link(&mut tx, &token_hash(token), now).await? else {
        return Ok(None);
    };
    let secret = random_secret();
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    portal::delete_expired_sessions(&mut tx, now).await?;
    portal::insert_session(
        &mut tx,
        &digest("portal-session", &secret),
        &email,
        now,
        now + ttl,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(secret))
}

/// The buyer of a session secret, while it is live.
pub async fn buyer(store: &Store, secret: &str) -> Result<Option<Buyer>, PortalError> {
    if !plausible(secret) {
        return Ok(None);
    }
    let mut conn = store.conn().await?;
    let email = portal::session_email(
        &mut conn,
        &digest("portal-session", secret),
        store::now_ms(),
    )
    .await?;
    Ok(email.map(|email| Buyer {
        email,
        csrf: digest("portal-csrf", secret),
    }))
}

/// Ends a session.
pub async fn sign_out(store: &Store, secret: &str) -> Result<(), PortalError> {
    let mut conn = store.writer().await?;
    portal::delete_session(&mut conn, &digest("portal-session", secret)).await?;
    Ok(())
}

/// Tokens and secrets are 43 base64url characters; anything else is not
/// looked up.
fn plausible(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_are_stable_per_key_and_id() {
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        let t = link_token(&a, "pl_1");
        assert_eq!(t, link_token(&a, "pl_1"));
        assert_ne!(t, link_token(&a, "pl_2"));
        assert_ne!(t, link_token(&b, "pl_1"));
        assert!(plausible(&t), "{t}");
        assert!(plausible(&random_secret()));
        assert!(!plausible("short"));
        assert!(!plausible(&format!("{}!", &t[..42])));
    }
}
