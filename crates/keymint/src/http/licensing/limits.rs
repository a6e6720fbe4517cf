//! Rate limits on the public licensing routes, per client address and per
//! replica (docs/licensing-api.md, "Rate limits"): a budget of requests,
//! and a much smaller one for answers that found no license. Counting is
//! `governor`'s; an address that spends its not-found budget is refused
//! every licensing request until the budget has a cell again, so past the
//! budget a guess learns nothing, whether the key exists or not.

use crate::config::RateLimitConfig;
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once: past it, stale entries are dropped first;
/// an address that finds no room is limited as if over its budget, so
/// memory stays bounded under a flood from many addresses.
const MAX_ADDRESSES: usize = 65_536;

type Misses = RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    governor::clock::DefaultClock,
    StateInformationMiddleware,
>;

pub struct LicensingLimits {
    requests: Option<DefaultKeyedRateLimiter<String>>,
    misses: Option<Misses>,
    /// Addresses that spent their not-found budget, until when.
    spent: Mutex<HashMap<String, Instant>>,
}

impl LicensingLimits {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        let quota = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        Self {
            requests: cfg
                .enabled
                .then(|| quota(cfg.per_minute))
                .flatten()
                .map(RateLimiter::keyed),
            misses: cfg
                .enabled
                .then(|| quota(cfg.not_found_per_minute))
                .flatten()
                .map(|q| RateLimiter::keyed(q).with_middleware::<StateInformationMiddleware>()),
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while the address has spent its not-found budget (what
    /// [`Self::admit`] checks first, without spending a request).
    pub fn shut_out(&self, source: &str) -> Result<(), Duration> {
        self.spent_until(&crate::rejections::source_key(source))
    }

    fn spent_until(&self, key: &str) -> Result<(), Duration> {
        if let Some(until) = self.spent.lock().expect("limits lock").get(key) {
            let now = Instant::now();
            if *until > now {
                return Err(*until - now);
            }
        }
        Ok(())
    }

    /// Before a request is served: `Err(wait)` when the address is over a
    /// budget.
    pub fn admit(&self, source: &str) -> Result<(), Duration> {
        let key = crate::rejections::source_key(source);
        self.spent_until(&key)?;
        let Some(requests) = &self.requests else {
            return Ok(());
        };
        if requests.len() >= MAX_ADDRESSES {
            requests.retain_recent();
            if requests.len() >= MAX_ADDRESSES {
                return Err(Duration::from_secs(1));
            }
        }
        requests.check_key(&key).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }

    /// After an answer that found no license: `Err(wait)` when that spent
    /// the address's not-found budget (this answer is then refused too).
    pub fn missed(&self, source: &str) -> Result<(), Duration> {
        let Some(misses) = &self.misses else {
            return Ok(());
        };
        let key = crate::rejections::source_key(source);
        if misses.len() >= MAX_ADDRESSES {
            misses.retain_recent();
        }
        let wait = match misses.check_key(&key) {
            Ok(snapshot) if snapshot.remaining_burst_capacity() > 0 => return Ok(()),
            // The last cell: the next guess must wait for the next one.
            Ok(snapshot) => {
                self.spend(key, snapshot.quota().replenish_interval());
                return Ok(());
            }
            Err(not_until) => not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            )),
        };
        self.spend(key, wait);
        Err(wait)
    }

    fn spend(&self, key: String, wait: Duration) {
        let now = Instant::now();
        let mut spent = self.spent.lock().expect("limits lock");
        if spent.len() >= MAX_ADDRESSES {
            spent.retain(|_, until| *until > now);
        }
        if spent.len() < MAX_ADDRESSES {
            spent.insert(key, now + wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, not_found: u32) -> LicensingLimits {
        LicensingLimits::new(&RateLimitConfig {
            enabled: true,
            per_minute,
            not_found_per_minute: not_found,
        })
    }

    #[test]
    fn requests_are_counted_per_address() {
        let l = limits(3, 100);
        for _ in 0..3 {
            assert!(l.admit("192.0.2.1").is_ok());
        }
        assert!(l.admit("192.0.2.1").is_err());
        assert!(l.admit("192.0.2.2").is_ok());
    }

    #[test]
    fn spending_the_not_found_budget_shuts_the_address_out() {
        let l = limits(1000, 2);
        assert!(l.admit("192.0.2.9").is_ok());
        assert!(l.missed("192.0.2.9").is_ok());
        assert!(l.admit("192.0.2.9").is_ok());
        // The last cell of the budget: the answer stands, the next request
        // waits, whatever key it asks about.
        assert!(l.missed("192.0.2.9").is_ok());
        let wait = l.admit("192.0.2.9").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(l.admit("192.0.2.10").is_ok());
    }

    #[test]
    fn disabled_limits_admit_everything() {
        let l = LicensingLimits::new(&RateLimitConfig {
            enabled: false,
            per_minute: 1,
            not_found_per_minute: 1,
        });
        for _ in 0..10 {
            assert!(l.admit("192.0.2.1").is_ok());
            assert!(l.missed("192.0.2.1").is_ok());
        }
    }
}
