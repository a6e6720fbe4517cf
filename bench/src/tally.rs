//! What every mode measures: latencies in a histogram and answers by kind,
//! printed the same way (and as one JSON line with `--json`); the shared
//! HTTP client and clock.

use hdrhistogram::Histogram;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies and answers of one run.
pub struct Tally {
    pub latency_us: Histogram<u64>,
    pub statuses: BTreeMap<String, u64>,
    pub completed: u64,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            statuses: BTreeMap::new(),
            completed: 0,
        }
    }

    pub fn record(&mut self, latency: Duration, status: String) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 120_000_000);
        // Clamped to the histogram's bounds just above, so it cannot fail.
        let _ = self.latency_us.record(us);
        *self.statuses.entry(status).or_default() += 1;
        self.completed += 1;
    }

    pub fn merge(&mut self, other: &Tally) {
        // Every tally has the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (k, v) in &other.statuses {
            *self.statuses.entry(k.clone()).or_default() += v;
        }
        self.completed += other.completed;
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn report(&self, label: &str, seconds: f64, json: bool) {
        let rate = self.completed as f64 / seconds;
        println!(
            "{label}: {} requests in {seconds:.1} s = {rate:.0}/s",
            self.completed
        );
        println!(
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.latency_us.max() as f64 / 1000.0
        );
        println!("  answers: {:?}", self.statuses);
        if json {
            println!(
                "{}",
                json!({
                    "label": label, "requests": self.completed, "seconds": seconds, "rate": rate,
                    "p50_ms": self.ms(0.5), "p90_ms": self.ms(0.9), "p99_ms": self.ms(0.99),
                    "p999_ms": self.ms(0.999), "max_ms": self.latency_us.max() as f64 / 1000.0,
                    "statuses": self.statuses,
                })
            );
        }
    }
}

pub fn client(pool: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client builds")
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
