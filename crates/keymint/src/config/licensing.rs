//! `[licensing]`: the public licensing API that buyers' programs call
//! (docs/licensing-api.md).

use super::humantime_serde_compat;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LicensingConfig {
    /// How long a validation receipt may be relied on offline (its `exp`).
    #[serde(with = "humantime_serde_compat")]
    pub receipt_ttl: Duration,
    /// How long a machine file lasts at most (its `exp` is the earlier of
    /// this from now and the license's own expiry).
    #[serde(with = "humantime_serde_compat")]
    pub machine_file_ttl: Duration,
    /// Deactivations a license's key may make through the public API in
    /// any 30 days (operators are never limited).
    pub deactivations_per_30d: u32,
    pub rate_limit: RateLimitConfig,
}

impl Default for LicensingConfig {
    fn default() -> Self {
        Self {
            receipt_ttl: Duration::from_secs(24 * 3600),
            machine_file_ttl: Duration::from_secs(30 * 86_400),
            deactivations_per_30d: 5,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// `[licensing.rate_limit]`: per client address, per replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Requests to the licensing routes per address and minute.
    pub per_minute: u32,
    /// Answers that found no license (key guessing) per address and
    /// minute; past it, every licensing request from that address waits.
    pub not_found_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_minute: 600,
            not_found_per_minute: 10,
        }
    }
}
