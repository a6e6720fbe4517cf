//! `[signing]`, `[workers]`, `[subscriptions]`, `[reconciler]` and
//! `[retention]`: the signing identity and the background work's timing.

use super::{Secret, humantime_serde_compat};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SigningConfig {
    /// The `iss` claim of every token.
    pub issuer: String,
    /// A PASERK `k4.secret...` key to sign with instead of the key files in
    /// the data directory (give every replica the same one).
    pub secret_key: Option<Secret>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            issuer: "keymint".into(),
            secret_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkersConfig {
    /// Run background workers (outbox sender) in `serve`.
    pub enabled: bool,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SubscriptionsConfig {
    /// Access continues this long after a paid period ends (late renewal
    /// webhooks, payment retries); subscription tokens expire at the period
    /// end plus this.
    #[serde(with = "humantime_serde_compat")]
    pub grace: Duration,
    /// Email a fresh token to the buyer when a subscription renews.
    pub renewal_email: bool,
    /// How often the sweeper expires subscriptions whose paid period (plus
    /// grace) has ended.
    #[serde(with = "humantime_serde_compat")]
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReconcilerConfig {
    /// How often `keymint serve` runs it (with workers enabled).
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Operator refunds still pending this long are checked against the
    /// provider's API.
    #[serde(with = "humantime_serde_compat")]
    pub pending_age: Duration,
    /// Operator refunds without a provider id this long (the process died
    /// between writing the row and calling the provider) are failed and
    /// the license restored.
    #[serde(with = "humantime_serde_compat")]
    pub orphan_age: Duration,
    /// Rows looked at per tick.
    pub batch: i64,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            pending_age: Duration::from_secs(900),
            orphan_age: Duration::from_secs(120),
            batch: 50,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Processed, duplicate and ignored deliveries older than this are
    /// deleted.
    #[serde(with = "humantime_serde_compat")]
    pub deliveries: Duration,
    /// Failed deliveries (kept longer: an operator may still replay them).
    #[serde(with = "humantime_serde_compat")]
    pub failed_deliveries: Duration,
    /// Deliveries that failed authentication (forensics only: they hold at
    /// most a prefix of the body and are never replayed).
    #[serde(with = "humantime_serde_compat")]
    pub rejected_deliveries: Duration,
    /// Dead emails (an operator has had this long to resend them).
    #[serde(with = "humantime_serde_compat")]
    pub dead_emails: Duration,
    /// Rows deleted per transaction.
    pub batch: i64,
    /// Pause between batches, so ingest is never held up.
    #[serde(with = "humantime_serde_compat")]
    pub pause: Duration,
    /// How often `keymint serve` runs it (with workers enabled).
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            deliveries: Duration::from_secs(90 * DAY),
            failed_deliveries: Duration::from_secs(365 * DAY),
            rejected_deliveries: Duration::from_secs(30 * DAY),
            dead_emails: Duration::from_secs(90 * DAY),
            batch: 1000,
            pause: Duration::from_millis(100),
            interval: Duration::from_secs(3600),
        }
    }
}

impl RetentionConfig {
    /// The cut-offs at `now` (Unix ms).
    pub fn cutoffs(&self, now: i64) -> crate::store::retention::Cutoffs {
        let before = |d: Duration| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
        crate::store::retention::Cutoffs {
            deliveries: before(self.deliveries),
            failed_deliveries: before(self.failed_deliveries),
            rejected_deliveries: before(self.rejected_deliveries),
            dead_emails: before(self.dead_emails),
        }
    }
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3 * 86_400),
            renewal_email: true,
            sweep_interval: Duration::from_secs(60),
        }
    }
}
