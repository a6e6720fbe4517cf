//! `keymint-bench licensing`: the licensing API's hot path, measured in one
//! run against the server's own HTTP floor.
//!
//! 1. Setup: `--licenses` licenses minted through the admin API, each
//!    activated on one machine (`bench-machine-{i}`).
//! 2. `/healthz`, closed loop: the server's floor for one request.
//! 3. Validations, closed loop: a random license's key, its machine's
//!    fingerprint and a fresh nonce in every request; receipts signed.
//! 4. Validations, open loop at half the closed-loop rate: latency from
//!    each request's scheduled start (no coordinated omission).
//! 5. Activations, closed loop: a new machine on a random license each
//!    time (the write path: the license's lock, a count, an insert, a
//!    history row and a signed machine file).
//!
//! With `--pid`, the server's CPU time (user + system, from /proc) per
//! request of each closed loop is printed too: a figure that holds on a
//! shared machine where requests per second do not.

use crate::hostile::process_cpu_seconds;
use crate::tally::{Tally, client};
use anyhow::Context;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct LicensingArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token with licenses:write (to mint the licenses).
    #[arg(long)]
    token: String,
    #[arg(long, default_value = "datatools-core")]
    product: String,
    #[arg(long, default_value_t = 10_000)]
    licenses: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The server's process id, for its CPU time per request.
    #[arg(long)]
    pid: Option<u32>,
}

/// What one kind of request needs: its method, path and body.
type Make = Arc<dyn Fn(u64) -> (reqwest::Method, String, Option<serde_json::Value>) + Send + Sync>;

async fn send(
    client: &reqwest::Client,
    base: &str,
    req: (reqwest::Method, String, Option<serde_json::Value>),
) -> String {
    let (method, path, body) = req;
    let mut r = client.request(method, format!("{base}{path}"));
    if let Some(body) = body {
        r = r.json(&body);
    }
    match r.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // A validation is told apart by its code, not its status.
            match resp.json::<serde_json::Value>().await {
                Ok(v) if v["code"].is_string() => {
                    format!("{status} {}", v["code"].as_str().unwrap_or(""))
                }
                _ => status.to_string(),
            }
        }
        Err(_) => "connection error".into(),
    }
}

/// A closed loop of `concurrency` workers for `seconds`; with the server's
/// CPU seconds spent meanwhile when `pid` is given.
async fn closed(
    base: &str,
    concurrency: usize,
    seconds: f64,
    make: Make,
    pid: Option<u32>,
) -> anyhow::Result<(Tally, Option<f64>)> {
    let client = client(concurrency);
    let counter = Arc::new(AtomicU64::new(0));
    let cpu_before = pid.map(process_cpu_seconds).transpose()?;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, base, make, counter) = (
            client.clone(),
            base.to_string(),
            make.clone(),
            counter.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::new();
            while Instant::now() < end {
                let req = make(counter.fetch_add(1, Ordering::Relaxed));
                let sent = Instant::now();
                let status = send(&client, &base, req).await;
                t.record(sent.elapsed(), status);
            }
            t
        }));
    }
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(&task.await?);
    }
    let cpu = match (pid, cpu_before) {
        (Some(pid), Some(before)) => Some(process_cpu_seconds(pid)? - before),
        _ => None,
    };
    Ok((tally, cpu))
}

/// An open loop at `rate` per second; latency from each scheduled start.
async fn open(base: &str, rate: f64, seconds: f64, make: Make) -> Tally {
    let client = client(1024);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut i: u64 = 0;
    loop {
        let due = start + interval.mul_f64(i as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let (client, base, tx, req) = (client.clone(), base.to_string(), tx.clone(), make(i));
        tokio::spawn(async move {
            let status = send(&client, &base, req).await;
            // The receiver is gone only once the run is over.
            let _ = tx.send((due.elapsed(), status));
        });
        i += 1;
    }
    drop(tx);
    let mut tally = Tally::new();
    while let Some((latency, status)) = rx.recv().await {
        tally.record(latency, status);
    }
    tally
}

fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub async fn run(args: LicensingArgs, json_out: bool) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_string();
    let setup = client(args.concurrency);
    let started = Instant::now();
    // Mint and activate, `concurrency` at a time.
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, base, next, token, product, n) = (
            setup.clone(),
            base.clone(),
            next.clone(),
            args.token.clone(),
            args.product.clone(),
            args.licenses as u64,
        );
        tasks.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let minted: serde_json::Value = client
                    .post(format!("{base}/admin/v1/licenses"))
                    .bearer_auth(&token)
                    .json(&json!({"product": product, "email": format!("bench{i}@example.com")}))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let key = minted["license"]["key"]
                    .as_str()
                    .context("a minted license has a key")?
                    .to_string();
                client
                    .put(format!(
                        "{base}/v1/licenses/{key}/machines/bench-machine-{i}"
                    ))
                    .send()
                    .await?
                    .error_for_status()
                    .context("activating the bench machine (is licensing.rate_limit off?)")?;
                keys.push((i, key));
            }
            anyhow::Ok(keys)
        }));
    }
    let mut licenses = Vec::with_capacity(args.licenses);
    for task in tasks {
        licenses.extend(task.await??);
    }
    let licenses = Arc::new(licenses);
    println!(
        "setup: {} licenses minted and activated in {:.1} s",
        licenses.len(),
        started.elapsed().as_secs_f64()
    );

    let healthz: Make = Arc::new(|_| (reqwest::Method::GET, "/healthz".into(), None));
    let (floor, floor_cpu) =
        closed(&base, args.concurrency, args.duration, healthz, args.pid).await?;
    floor.report(
        &format!("GET /healthz, {} in flight", args.concurrency),
        args.duration,
        false,
    );

    let validate: Make = {
        let licenses = licenses.clone();
        Arc::new(move |_| {
            let (i, key) = &licenses[rand::random_range(0..licenses.len())];
            let body =
                json!({"key": key, "fingerprint": format!("bench-machine-{i}"), "nonce": nonce()});
            (
                reqwest::Method::POST,
                "/v1/licenses/validate".into(),
                Some(body),
            )
        })
    };
    let (valid, valid_cpu) = closed(
        &base,
        args.concurrency,
        args.duration,
        validate.clone(),
        args.pid,
    )
    .await?;
    valid.report(
        &format!("POST /v1/licenses/validate, {} in flight", args.concurrency),
        args.duration,
        false,
    );
    let valid_rate = valid.completed as f64 / args.duration;
    let half = (valid_rate / 2.0).max(1.0);
    let open_tally = open(&base, half, args.duration, validate).await;
    open_tally.report(
        &format!("validate, open loop at {half:.0}/s"),
        args.duration,
        false,
    );

    let activate: Make = {
        let licenses = licenses.clone();
        let run = ulid::Ulid::generate().to_string();
        Arc::new(move |n| {
            let (_, key) = &licenses[rand::random_range(0..licenses.len())];
            let path = format!("/v1/licenses/{key}/machines/act-{run}-{n}");
            (reqwest::Method::PUT, path, Some(json!({"nonce": nonce()})))
        })
    };
    let (act, act_cpu) = closed(&base, args.concurrency, args.duration, activate, args.pid).await?;
    act.report(
        &format!("PUT machines (new), {} in flight", args.concurrency),
        args.duration,
        false,
    );

    let rate = |t: &Tally| t.completed as f64 / args.duration;
    let per = |cpu: Option<f64>, t: &Tally| cpu.map(|c| 1000.0 * c / t.completed.max(1) as f64);
    let figures = json!({
        "healthz_per_s": rate(&floor),
        "healthz_p99_ms": floor.ms(0.99),
        "healthz_cpu_ms": per(floor_cpu, &floor),
        "validate_per_s": valid_rate,
        "validate_p99_ms": valid.ms(0.99),
        "validate_cpu_ms": per(valid_cpu, &valid),
        "validate_share_pct": 100.0 * valid_rate / rate(&floor).max(1.0),
        "validate_statuses": valid.statuses,
        "half_rate": half,
        "half_p50_ms": open_tally.ms(0.5),
        "half_p99_ms": open_tally.ms(0.99),
        "half_max_ms": open_tally.latency_us.max() as f64 / 1000.0,
        "activate_per_s": rate(&act),
        "activate_p99_ms": act.ms(0.99),
        "activate_cpu_ms": per(act_cpu, &act),
        "activate_statuses": act.statuses,
    });
    println!(
        "validations: {:.0}/s = {:.1}% of the /healthz floor ({:.0}/s); p99 at half that rate {:.2} ms",
        valid_rate,
        figures["validate_share_pct"].as_f64().unwrap_or(0.0),
        rate(&floor),
        open_tally.ms(0.99)
    );
    if let (Some(v), Some(h)) = (per(valid_cpu, &valid), per(floor_cpu, &floor)) {
        println!("server CPU per request: validate {v:.3} ms, /healthz {h:.3} ms (from /proc)");
    }
    if json_out {
        println!("{figures}");
    }
    Ok(())
}
