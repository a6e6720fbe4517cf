//! Checks across values, once every value has been read: names, secrets,
//! references between sections. Each problem starts with its path
//! (`endpoints[2].secrets[0]: ...`) and all of them are listed at once.

use super::endpoints::default_tolerance;
use super::read::Layout;
use super::secrets::{is_placeholder, placeholder_problem, short_secret};
use super::*;
use std::collections::HashMap;

/// The names of one list's entries (endpoints by `name`, products by
/// `id`): each must be a valid name and appear once.
struct UniqueNames<'a> {
    field: &'static str,
    what: &'static str,
    list: &'static str,
    seen: HashMap<&'a str, usize>,
}

impl<'a> UniqueNames<'a> {
    fn new(field: &'static str, what: &'static str, list: &'static str) -> Self {
        let seen = HashMap::new();
        Self {
            field,
            what,
            list,
            seen,
        }
    }

    /// Lists the problems of entry `i`'s name, at path `at`.
    fn check(&mut self, at: &str, name: &'a str, i: usize, problems: &mut Vec<String>) {
        let (field, what, list) = (self.field, self.what, self.list);
        if !valid_name(name) {
            problems.push(format!(
                "{at}.{field}: {name:?} must be 1-64 lowercase letters, digits, '-' or '_'"
            ));
        }
        if let Some(first) = self.seen.insert(name, i) {
            problems.push(format!(
                "{at}.{field}: {what} {name:?} is defined twice (also {list}[{first}])"
            ));
        }
    }
}

impl Config {
    pub(super) fn validate(&self, layout: &Layout, problems: &mut Vec<String>) {
        if let Err(e) = crate::telemetry::parse_filter(&self.server.log_level) {
            problems.push(format!("server.log_level: {e}"));
        }
        // An unreadable `listen` is already listed, and the default stands
        // in for it: weak secrets are judged against no address then.
        let listen = (!problems.iter().any(|p| p.starts_with("server.listen:")))
            .then_some(self.server.listen);
        for (i, host) in self.checkout.allowed_redirect_hosts.iter().enumerate() {
            let wildcard = host.strip_prefix("*.");
            let bare = wildcard.unwrap_or(host);
            if bare.is_empty()
                || bare.len() > 253
                || !bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                problems.push(format!(
                    "checkout.allowed_redirect_hosts[{i}]: {host:?} is not a host name (example.com, or *.example.com for its subdomains; no scheme, port or path)"
                ));
            } else if wildcard.is_some() && !bare.trim_matches('.').contains('.') {
                problems.push(format!(
                    "checkout.allowed_redirect_hosts[{i}]: {host:?} would allow every site under .{bare}; name your own domain (*.example.com)"
                ));
            }
        }
        self.portal.check(problems);
        if self.checkout.expire_after < std::time::Duration::from_secs(600) {
            problems.push(
                "checkout.expire_after: must be at least 10m (a buyer needs time to pay)".into(),
            );
        }
        if self.server.max_connections == 0 {
            problems.push("server.max_connections: must be positive".into());
        }
        if self.server.max_body_bytes == 0 {
            problems.push("server.max_body_bytes: must be positive".into());
        }
        // A zero period would make a timeout fire at once or a worker spin.
        for (path, d) in [
            ("server.request_timeout", self.server.request_timeout),
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("email.poll_interval", self.email.poll_interval),
            (
                "subscriptions.sweep_interval",
                self.subscriptions.sweep_interval,
            ),
            ("reconciler.interval", self.reconciler.interval),
            ("retention.interval", self.retention.interval),
            ("licensing.receipt_ttl", self.licensing.receipt_ttl),
            (
                "licensing.machine_file_ttl",
                self.licensing.machine_file_ttl,
            ),
        ] {
            if d.is_zero() {
                problems.push(format!("{path}: must be longer than zero"));
            }
        }
        for (path, n) in [
            ("reconciler.batch", self.reconciler.batch),
            ("retention.batch", self.retention.batch),
        ] {
            if n < 1 {
                problems.push(format!("{path}: must be at least 1, not {n}"));
            }
        }
        let limits = &self.licensing.rate_limit;
        if limits.enabled {
            for (path, n) in [
                ("licensing.rate_limit.per_minute", limits.per_minute),
                (
                    "licensing.rate_limit.not_found_per_minute",
                    limits.not_found_per_minute,
                ),
            ] {
                if n == 0 {
                    problems.push(format!(
                        "{path}: must be at least 1 (set licensing.rate_limit.enabled = false to turn the limit off)"
                    ));
                }
            }
        }
        let weak_allowed =
            self.server.allow_weak_secrets && listen.is_some_and(|a| a.ip().is_loopback());
        if self.server.allow_weak_secrets && !weak_allowed && listen.is_some() {
            problems.push(format!(
                "server.allow_weak_secrets: only allowed while server.listen is a loopback address (127.0.0.1 or [::1]), not {:?}",
                self.server.listen.to_string()
            ));
        }
        let url = self.database_url();
        // `split` always yields a first part.
        let scheme = url.expose().split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            problems.push(format!(
                "database.url: scheme {scheme:?} is not supported (use sqlite:// or postgres://)"
            ));
        }
        if self.database.max_connections == Some(0) {
            problems.push("database.max_connections: must be at least 1".into());
        }
        // The one rule for an address wherever one enters keymint; the
        // text is kept as written (a sender's case is the operator's).
        if let Err(e) = crate::domain::Email::parse(&self.email.from) {
            problems.push(format!("email.from: {e}"));
        }
        if let Some(Err(e)) = self
            .email
            .reply_to
            .as_deref()
            .map(crate::domain::Email::parse)
        {
            problems.push(format!("email.reply_to: {e}"));
        }
        if self.email.max_attempts == 0 {
            problems.push("email.max_attempts: must be at least 1".into());
        }
        match self.email.provider {
            EmailProvider::Log => {}
            EmailProvider::Postmark => {
                if self
                    .email
                    .postmark
                    .server_token
                    .as_ref()
                    .is_none_or(|t| t.expose().trim().is_empty())
                {
                    problems.push(
                        "email.postmark.server_token: not set, but email.provider is \"postmark\""
                            .into(),
                    );
                }
            }
            EmailProvider::Smtp => {
                if self.email.smtp.host.as_deref().is_none_or(str::is_empty) {
                    problems
                        .push("email.smtp.host: not set, but email.provider is \"smtp\"".into());
                }
                if self.email.smtp.username.is_some() != self.email.smtp.password.is_some() {
                    problems.push(
                        "email.smtp.password: email.smtp.username and email.smtp.password must be set together".into(),
                    );
                }
            }
        }
        if !weak_allowed {
            let others = [
                (
                    "email.postmark.server_token",
                    &self.email.postmark.server_token,
                ),
                ("email.smtp.password", &self.email.smtp.password),
                ("signing.secret_key", &self.signing.secret_key),
            ];
            for (path, secret) in others {
                if let Some(s) = secret
                    && is_placeholder(s.expose())
                {
                    problems.push(placeholder_problem(path, s));
                }
            }
        }

        if self.retention.batch < 1 {
            problems.push("retention.batch: must be at least 1".into());
        }
        if self.retention.failed_deliveries < self.retention.deliveries {
            problems.push(
                "retention.failed_deliveries: must be at least retention.deliveries (failed deliveries are kept longer)"
                    .into(),
            );
        }

        let mut names = UniqueNames::new("name", "endpoint", "endpoints");
        for (ep, &i) in self.endpoints.iter().zip(&layout.endpoints) {
            let at = format!("endpoints[{i}]");
            names.check(&at, &ep.name, i, problems);
            if ep.secrets.iter().all(|s| s.expose().trim().is_empty()) {
                problems.push(format!(
                    "{at}.secrets: endpoint {:?} has no secret: set secrets = [\"...\"] or KEYMINT_ENDPOINTS__{}__SECRETS_FILE",
                    ep.name,
                    ep.name.to_uppercase().replace('-', "_")
                ));
            }
            if ep.legacy_secret && ep.kind != EndpointKind::Polar {
                problems.push(format!(
                    "{at}.legacy_secret: applies to kind \"polar\" only (endpoint {:?} is {:?})",
                    ep.name,
                    ep.kind.as_str()
                ));
            }
            for (j, s) in ep.secrets.iter().enumerate() {
                let at = format!("{at}.secrets[{j}]");
                let base64_key = match ep.kind {
                    EndpointKind::Standard => true,
                    // Polar's own `polar_whs_...` secrets are used as text,
                    // as Polar's SDKs do; only `whsec_` ones are base64.
                    EndpointKind::Polar => !ep.legacy_secret && s.expose().starts_with("whsec_"),
                    _ => false,
                };
                if base64_key
                    && let Err(e) = crate::adapters::signatures::check_standard_secret(s.expose())
                {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
                if weak_allowed || s.expose().trim().is_empty() {
                    continue;
                }
                if is_placeholder(s.expose()) {
                    problems.push(placeholder_problem(&at, s));
                } else if let Some(problem) = short_secret(s.expose(), base64_key) {
                    problems.push(format!("{at}: {problem}"));
                }
            }
            if ep.kind == EndpointKind::Gumroad && ep.tolerance != default_tolerance() {
                problems.push(format!(
                    "{at}.tolerance: gumroad sends no timestamp, so tolerance does not apply"
                ));
            }
            if ep.tolerance.is_zero() {
                problems.push(format!("{at}.tolerance: must be at least one second"));
            }
            if ep.store_id.is_some() && ep.kind != EndpointKind::Lemonsqueezy {
                problems.push(format!(
                    "{at}.store_id: a Lemon Squeezy setting; this is a {} endpoint",
                    ep.kind.as_str()
                ));
            }
            if let Some(url) = &ep.customer_portal_url
                && let Err(why) = super::portal::check_public_url(url)
            {
                problems.push(format!("{at}.customer_portal_url: {url:?} {why}"));
            }
            if let Some(url) = &ep.api_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(format!(
                    "{at}.api_url: {url:?} must start with http:// or https://"
                ));
            }
            if !weak_allowed
                && let Some(key) = &ep.api_key
                && is_placeholder(key.expose())
            {
                problems.push(placeholder_problem(&format!("{at}.api_key"), key));
            }
        }

        let mut product_ids = UniqueNames::new("id", "product", "products");
        let mut mapped: HashMap<(&str, &str), &str> = HashMap::new();
        for (p, &i) in self.products.iter().zip(&layout.products) {
            let at = format!("products[{i}]");
            product_ids.check(&at, &p.id, i, problems);
            for (field, value) in [("tier", &p.tier), ("key_prefix", &p.key_prefix)] {
                if !keymint_license_segment(value) {
                    problems.push(format!(
                        "{at}.{field}: {value:?} must be 1-16 letters or digits"
                    ));
                }
            }
            if p.max_machines == Some(0) {
                problems.push(format!(
                    "{at}.max_machines: must be at least 1 (omit it for unlimited)"
                ));
            }
            self.check_product_checkout(&at, p, problems);
            for (endpoint, ids) in &p.map {
                if self.endpoint(endpoint).is_none()
                    && !layout.unreadable_endpoints.contains(endpoint)
                {
                    problems.push(format!(
                        "{at}.map.{endpoint}: endpoint {endpoint:?} is not defined"
                    ));
                }
                for id in ids {
                    if let Some(other) =
                        mapped.insert((endpoint.as_str(), id.as_str()), p.id.as_str())
                    {
                        problems.push(format!(
                            "{at}.map.{endpoint}: {endpoint} product id {id:?} is mapped twice (products {other:?} and {:?})",
                            p.id
                        ));
                    }
                }
            }
        }
    }
}

fn keymint_license_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}
