//! `keymint-bench load`: authentic webhook deliveries, closed loop
//! (`--concurrency`) or open loop (`--rate`, latency measured from each
//! request's scheduled start, so a stalled server can't hide its tail).

use crate::signers;
use crate::tally::{Tally, client, unix_now};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct LoadArgs {
    /// keymint base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, value_enum, default_value = "gumroad")]
    kind: signers::Kind,
    /// Endpoint name (default: the kind).
    #[arg(long)]
    endpoint: Option<String>,
    /// The endpoint's secret.
    #[arg(long)]
    secret: String,
    /// Provider product id the catalog maps.
    #[arg(long, default_value = "datatools-core")]
    product: String,
    /// Closed loop: this many requests in flight, each sent when the last answered.
    #[arg(long, conflicts_with = "rate")]
    concurrency: Option<usize>,
    /// Open loop: this many requests per second, on schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds first.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Share of requests that repeat an earlier sale (0.0-1.0).
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// The server's process id: also measure its CPU time and its commits
    /// per fully processed delivery (minted and emailed), from before the
    /// first request until the email worker has sent every license minted.
    #[arg(long)]
    pid: Option<u32>,
    /// PostgreSQL only: the server's database, whose `xact_commit` counts
    /// its commits (on SQLite the server's own counters do).
    #[arg(long)]
    database_url: Option<String>,
}

/// What the server has done so far, read from `/proc`, `/metrics` and
/// PostgreSQL's statistics.
#[derive(Debug, Clone, Copy)]
struct Work {
    cpu_s: f64,
    minted: f64,
    emailed: f64,
    commits: f64,
}

impl Work {
    async fn read(client: &reqwest::Client, args: &LoadArgs, pid: u32) -> anyhow::Result<Self> {
        let cpu_s = crate::hostile::process_cpu_seconds(pid)?;
        let text = client
            .get(format!("{}/metrics", args.url))
            .send()
            .await?
            .text()
            .await?;
        let metric = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(name) && !l.starts_with('#'))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let commits = match &args.database_url {
            Some(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await?;
                // The statistics a backend reports are flushed at most once a
                // second; clear this session's snapshot before reading.
                sqlx::query("SELECT pg_stat_clear_snapshot()")
                    .execute(&mut conn)
                    .await?;
                let n: i64 = sqlx::query_scalar(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                )
                .fetch_one(&mut conn)
                .await?;
                n as f64
            }
            None => {
                metric("keymint_db_group_commits_total") + metric("keymint_db_direct_writes_total")
            }
        };
        Ok(Self {
            cpu_s,
            minted: metric("keymint_licenses_minted_total"),
            emailed: metric("keymint_emails_sent_total"),
            commits,
        })
    }
}

/// Waits until the email worker has sent every license minted so far (at
/// most a minute), then reads [`Work`] again.
async fn drained(
    client: &reqwest::Client,
    args: &LoadArgs,
    pid: u32,
    before_commits: f64,
) -> anyhow::Result<Work> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let w = Work::read(client, args, pid).await?;
        if w.emailed >= w.minted || Instant::now() > give_up {
            if args.database_url.is_some() {
                // PostgreSQL reports a backend's counts up to a second late,
                // and an idle server still commits a little (the email
                // worker's polls): read until two readings a second apart
                // differ by less than 1% (five readings at most).
                let mut last = w;
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_millis(1100)).await;
                    let now = Work::read(client, args, pid).await?;
                    let settled = (now.commits - last.commits)
                        < 0.01 * (now.commits - before_commits).max(1.0);
                    last = now;
                    if settled {
                        break;
                    }
                }
                return Ok(last);
            }
            return Ok(w);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Picks the order for request `n`: usually new, sometimes an earlier one.
fn order_for(run: &str, n: u64, duplicates: f64) -> String {
    let reuse = n > 0 && duplicates > 0.0 && rand::random::<f64>() < duplicates;
    let k = if reuse { rand::random_range(0..n) } else { n };
    format!("{run}-{k}")
}

/// Sends one request and classifies the answer: the HTTP status, plus the
/// body's `status` for 200s (`200 ok`, `200 duplicate`, ...).
async fn send(client: &reqwest::Client, base: &str, req: signers::Signed) -> String {
    let mut builder = client
        .post(format!("{base}{}", req.path_and_query))
        .header("content-type", req.content_type)
        .body(req.body);
    for (k, v) in req.headers {
        builder = builder.header(k, v);
    }
    match builder.send().await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            if code == 200 {
                // A 200 without a JSON body is counted as `200 ?`.
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                format!("200 {}", body["status"].as_str().unwrap_or("?"))
            } else {
                // Read only to free the connection; the status is the answer.
                let _ = resp.bytes().await;
                code.to_string()
            }
        }
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "connection error".into(),
    }
}

pub async fn load(args: LoadArgs, json: bool) -> anyhow::Result<()> {
    let run = format!("B{}", &ulid::Ulid::generate().to_string()[..10]);
    let endpoint = args
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("{:?}", args.kind).to_lowercase());
    let make = {
        let args = args.clone();
        let run = run.clone();
        move |n: u64| {
            let order = order_for(&run, n, args.duplicates);
            signers::sale(
                args.kind,
                &endpoint,
                &args.secret,
                &args.product,
                &order,
                unix_now(),
            )
        }
    };
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let probe = client(2);
    let before = match args.pid {
        Some(pid) => Some(Work::read(&probe, &args, pid).await?),
        None => None,
    };
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let mut tally = Tally::new();
    if let Some(rate) = args.rate {
        // Open loop: request i is due at start + i/rate, whether or not
        // earlier ones have answered; latency counts from that due time.
        let client = client(1024);
        let interval = Duration::from_secs_f64(1.0 / rate);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut i: u64 = 0;
        loop {
            let due = start + interval.mul_f64(i as f64);
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            let req = make(counter.fetch_add(1, Ordering::Relaxed))?;
            let (client, base, tx) = (client.clone(), args.url.clone(), tx.clone());
            tokio::spawn(async move {
                let status = send(&client, &base, req).await;
                // The receiver is gone only once the run is over.
                let _ = tx.send((due, due.elapsed(), status));
            });
            i += 1;
        }
        drop(tx);
        while let Some((due, latency, status)) = rx.recv().await {
            if due >= measure_from {
                tally.record(latency, status);
            }
        }
        tally.report(&format!("open loop at {rate:.0}/s"), args.duration, json);
    } else {
        let concurrency = args.concurrency.unwrap_or(64);
        let client = client(concurrency);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, base, make, counter) = (
                client.clone(),
                args.url.clone(),
                make.clone(),
                counter.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut t = Tally::new();
                while Instant::now() < end {
                    let req = make(counter.fetch_add(1, Ordering::Relaxed))?;
                    let sent = Instant::now();
                    let status = send(&client, &base, req).await;
                    if sent >= measure_from && Instant::now() <= end {
                        t.record(sent.elapsed(), status);
                    }
                }
                anyhow::Ok(t)
            }));
        }
        for task in tasks {
            tally.merge(&task.await??);
        }
        tally.report(
            &format!("closed loop, {concurrency} in flight"),
            args.duration,
            json,
        );
    }
    if let (Some(before), Some(pid)) = (before, args.pid) {
        let after = drained(&probe, &args, pid, before.commits).await?;
        let emailed = (after.emailed - before.emailed).max(1.0);
        let cpu_us = 1e6 * (after.cpu_s - before.cpu_s) / emailed;
        let commits = (after.commits - before.commits) / emailed;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "fully_processed": emailed,
                    "server_cpu_us_per_delivery": cpu_us,
                    "commits_per_delivery": commits,
                })
            );
        } else {
            println!(
                "{emailed:.0} deliveries minted and emailed: {cpu_us:.0} µs of server CPU and {commits:.3} commits each"
            );
        }
    }
    Ok(())
}
