//! How many deliveries that fail authentication are recorded: a few per
//! source and minute, for forensics, then only counted. Without a secret a
//! client must not be able to make keymint write without bound
//! (docs/webhooks.md, "Rejected deliveries").

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// Sources tracked at once. Past it, expired sources are dropped; if a
/// flood from more sources than this is still fresh, a new source is not
/// recorded (it is still counted), so the limiter's memory stays bounded.
const MAX_SOURCES: usize = 65_536;

/// Per-source budget for recording rejected deliveries.
pub struct RejectedRecorder {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl RejectedRecorder {
    /// `per_minute` recordings per source; 0 records none.
    pub fn new(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    /// True when a rejected delivery from `source` may be recorded now.
    pub fn allow(&self, source: Option<&str>) -> bool {
        let Some(limiter) = &self.limiter else {
            return false;
        };
        // Deliveries without a known source share one budget.
        let key = source.map(source_key).unwrap_or_default();
        if limiter.len() >= MAX_SOURCES {
            limiter.retain_recent();
            if limiter.len() >= MAX_SOURCES {
                return false;
            }
        }
        limiter.check_key(&key).is_ok()
    }
}

/// The budget's key for a source address: IPv6 clients get a whole /64
/// each, so one host cannot dodge the limit by changing its low bits.
pub(crate) fn source_key(source: &str) -> String {
    match source.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_its_own_budget() {
        let r = RejectedRecorder::new(2);
        assert!(r.allow(Some("192.0.2.1")));
        assert!(r.allow(Some("192.0.2.1")));
        assert!(!r.allow(Some("192.0.2.1")));
        assert!(r.allow(Some("192.0.2.2")));
        assert!(!RejectedRecorder::new(0).allow(Some("192.0.2.3")));
    }

    #[test]
    fn ipv6_sources_share_their_64() {
        assert_eq!(
            source_key("2001:db8:1:2:aaaa::1"),
            source_key("2001:db8:1:2:bbbb::9")
        );
        assert_ne!(source_key("2001:db8:1:2::1"), source_key("2001:db8:1:3::1"));
        assert_eq!(source_key("::ffff:192.0.2.7"), "192.0.2.7");
    }
}
