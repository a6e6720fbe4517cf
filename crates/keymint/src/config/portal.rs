//! `[portal]`: the buyer portal served at `/portal` (docs/portal.md). Off
//! by default, so nothing is exposed to buyers before the seller decides.

use super::humantime_serde_compat;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PortalConfig {
    /// Serve the portal at `/portal`.
    pub enabled: bool,
    /// The address buyers reach keymint at (`https://licenses.example.com`);
    /// sign-in links in emails start with it. Required when enabled: a
    /// link is never built from the request's `Host`, which the requester
    /// chooses.
    pub public_url: Option<String>,
    /// The seller's name, shown on the portal's pages and in its emails.
    pub seller_name: Option<String>,
    /// Where buyers write for help, shown on the portal's pages.
    pub support_email: Option<String>,
    /// How long an emailed sign-in link works (once).
    #[serde(with = "humantime_serde_compat")]
    pub link_ttl: Duration,
    /// How long a signed-in buyer's browser session lasts.
    #[serde(with = "humantime_serde_compat")]
    pub session_ttl: Duration,
    /// Sign-in link requests one address may make per hour (past it the
    /// page answers the same and nothing is sent).
    pub links_per_hour: u32,
    /// Sign-in requests (and link openings) one client address may make
    /// per minute, on each replica.
    pub per_minute: u32,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            public_url: None,
            seller_name: None,
            support_email: None,
            link_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(24 * 3600),
            links_per_hour: 5,
            per_minute: 10,
        }
    }
}

impl PortalConfig {
    /// The public URL without a trailing slash (checked by `check`).
    pub fn base_url(&self) -> &str {
        self.public_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
    }

    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if let Some(name) = &self.seller_name
            && (name.trim().is_empty() || name.chars().any(char::is_control) || name.len() > 100)
        {
            problems.push("portal.seller_name: must be one line of 1 to 100 characters".into());
        }
        if let Some(Err(e)) = self
            .support_email
            .as_deref()
            .map(crate::domain::Email::parse)
        {
            problems.push(format!("portal.support_email: {e}"));
        }
        if self.link_ttl < Duration::from_secs(60) || self.link_ttl > Duration::from_secs(86_400) {
            problems.push("portal.link_ttl: must be between 1m and 24h".into());
        }
        if self.session_ttl < Duration::from_secs(60)
            || self.session_ttl > Duration::from_secs(90 * 86_400)
        {
            problems.push("portal.session_ttl: must be between 1m and 90d".into());
        }
        if self.links_per_hour == 0 {
            problems.push("portal.links_per_hour: must be at least 1".into());
        }
        if self.per_minute == 0 {
            problems.push("portal.per_minute: must be at least 1".into());
        }
        if !self.enabled {
            return;
        }
        match self.public_url.as_deref() {
            None => problems.push(
                "portal.public_url: required when portal.enabled = true (the address buyers reach keymint at, such as https://licenses.example.com; sign-in links start with it)".into(),
            ),
            Some(url) => {
                if let Err(why) = check_public_url(url) {
                    problems.push(format!("portal.public_url: {url:?} {why}"));
                }
            }
        }
    }
}

/// An `https` URL (or `http` on a loopback host, for trying keymint on one
/// machine) without credentials, query or fragment.
pub(super) fn check_public_url(url: &str) -> Result<(), &'static str> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "is not a URL")?;
    let loopback = matches!(parsed.host(), Some(url::Host::Domain("localhost")))
        || matches!(parsed.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("must be https (http only for 127.0.0.1 or localhost)"),
    }
    if parsed.host().is_none() {
        return Err("has no host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry a user name or password");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("must not have a query or fragment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        for ok in [
            "https://licenses.example.com",
            "https://example.com/keymint/",
            "http://127.0.0.1:8080",
            "http://localhost:8080",
        ] {
            assert_eq!(check_public_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://licenses.example.com",
            "licenses.example.com",
            "https://u:p@example.com",
            "https://example.com/?a=1",
            "ftp://example.com",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enabled_needs_a_public_url() {
        let mut problems = Vec::new();
        PortalConfig {
            enabled: true,
            ..PortalConfig::default()
        }
        .check(&mut problems);
        assert!(
            problems[0].starts_with("portal.public_url: required"),
            "{problems:?}"
        );
        let mut problems = Vec::new();
        PortalConfig::default().check(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
