//! `keymint-bench hostile`: forged deliveries built to be expensive to
//! reject (a signature header with thousands of entries and a large body):
//! the server's CPU time per rejection, read from /proc, and /healthz
//! latency while they arrive.

use crate::{Tally, client, unix_now};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(clap::Args)]
pub struct HostileArgs {
    /// keymint base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A Stripe endpoint's name.
    #[arg(long, default_value = "stripe")]
    endpoint: String,
    /// The server's process id, to read its CPU time from /proc.
    #[arg(long)]
    pid: u32,
    /// Forged requests in all.
    #[arg(long, default_value_t = 200)]
    requests: u64,
    /// In flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: u64,
    /// `v1=` entries in the Stripe-Signature header.
    #[arg(long, default_value_t = 10_000)]
    entries: usize,
    /// Body size in KiB.
    #[arg(long, default_value_t = 250)]
    body_kib: usize,
}

/// User plus system CPU time of process `pid` so far, in seconds.
pub(crate) fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let hz: f64 = String::from_utf8(
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()?
            .stdout,
    )?
    .trim()
    .parse()?;
    Ok(ticks / hz)
}

pub async fn run(args: HostileArgs, json: bool) -> anyhow::Result<()> {
    let now = unix_now();
    let header = std::iter::once(format!("t={now}"))
        .chain(std::iter::repeat_n("v1=".to_string(), args.entries))
        .collect::<Vec<_>>()
        .join(",");
    let body = vec![b'x'; args.body_kib * 1024];
    let url = format!("{}/webhooks/{}", args.url, args.endpoint);
    let http = client(args.concurrency as usize + 1);
    // /healthz, probed without pause while the forged requests arrive.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (http, base, done) = (http.clone(), args.url.clone(), done.clone());
        tokio::spawn(async move {
            let mut t = Tally::new();
            while !done.load(Ordering::Relaxed) {
                let start = Instant::now();
                let status = match http.get(format!("{base}/healthz")).send().await {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(_) => "error".into(),
                };
                t.record(start.elapsed(), status);
            }
            t
        })
    };
    let cpu_before = process_cpu_seconds(args.pid)?;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (http, url, header, body, next) = (
            http.clone(),
            url.clone(),
            header.clone(),
            body.clone(),
            next.clone(),
        );
        let total = args.requests;
        workers.push(tokio::spawn(async move {
            let mut t = Tally::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let start = Instant::now();
                let status = match http
                    .post(&url)
                    .header("stripe-signature", &header)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(_) => "error".into(),
                };
                t.record(start.elapsed(), status);
            }
            t
        }));
    }
    let mut forged = Tally::new();
    for w in workers {
        forged.merge(&w.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds(args.pid)? - cpu_before;
    done.store(true, Ordering::Relaxed);
    let health = probe.await?;
    let cpu_ms = cpu * 1000.0 / forged.completed.max(1) as f64;
    forged.report(
        &format!(
            "forged Stripe deliveries ({} v1= entries, {} KiB body)",
            args.entries, args.body_kib
        ),
        seconds,
        false,
    );
    println!("  server CPU per forged delivery: {cpu_ms:.3} ms (user + system, from /proc)");
    health.report("/healthz meanwhile", seconds, false);
    if json {
        println!(
            "{}",
            json!({
                "label": "hostile", "requests": forged.completed, "statuses": forged.statuses,
                "cpu_ms_per_request": cpu_ms, "p50_ms": forged.ms(0.5),
                "max_ms": forged.latency_us.max() as f64 / 1000.0,
                "healthz_p50_ms": health.ms(0.5), "healthz_p99_ms": health.ms(0.99),
                "healthz_max_ms": health.latency_us.max() as f64 / 1000.0,
            })
        );
    }
    Ok(())
}
