//! `keymint-bench`: load generator and measurements for keymint.
//!
//! - `load`: webhook ingest, closed loop (`--concurrency`) or open loop
//!   (`--rate`, latency measured from each request's scheduled start, so a
//!   stalled server can't hide its tail: no coordinated omission).
//! - `read`: admin lookups by license key, closed loop.
//! - `verify`: offline verification rate of `keymint-license` against raw
//!   Ed25519 verification of a message of the same length.
//! - `ceiling`: the SQL of one delivery (recording it, applying it, and the
//!   email worker's claim and mark), run directly against the database
//!   without HTTP, through keymint's own store functions.
//! - `startup`: time from process start to the first 200 from `/readyz`.
//!
//! Every command prints a human summary and, with `--json`, one JSON line.

mod hostile;
mod signers;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "keymint-bench",
    about = "Load generator and measurements for keymint"
)]
struct Cli {
    /// Print one JSON line with the figures (after the summary).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send authentic webhook deliveries.
    Load(LoadArgs),
    /// Look licenses up through the admin API.
    Read(ReadArgs),
    /// Offline token verification rate against raw Ed25519.
    Verify {
        /// Seconds in all (alternating rounds of both).
        #[arg(long, default_value_t = 6.0)]
        seconds: f64,
    },
    /// The database's own ceiling for the writes of one delivery.
    Ceiling(CeilingArgs),
    /// Start-to-ready time of a keymint binary.
    Startup(StartupArgs),
    /// Forged deliveries built to be expensive to reject (a signature
    /// header with thousands of entries and a large body): the server's CPU
    /// time per rejection, and /healthz latency while they arrive.
    Hostile(hostile::HostileArgs),
}

#[derive(clap::Args, Clone)]
struct LoadArgs {
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
}

#[derive(clap::Args)]
struct ReadArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token with licenses:read and licenses:write.
    #[arg(long)]
    token: String,
    /// Licenses to create first and then read at random.
    #[arg(long, default_value_t = 200)]
    licenses: usize,
    #[arg(long, default_value = "datatools-core")]
    product: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
}

#[derive(clap::Args)]
struct CeilingArgs {
    /// Database URL (a fresh database: rows are added).
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Include the email worker's writes (claim, mark sent) per delivery.
    #[arg(long)]
    with_email: bool,
}

#[derive(clap::Args)]
struct StartupArgs {
    /// The keymint binary.
    #[arg(long, default_value = "target/release/keymint")]
    bin: String,
    /// Arguments before `serve` (for example `--config x.toml`).
    #[arg(long, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<String>,
    /// URL of /readyz for that configuration.
    #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
    ready_url: String,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Latencies and answers of one run.
struct Tally {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
    completed: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            statuses: BTreeMap::new(),
            completed: 0,
        }
    }

    fn record(&mut self, latency: Duration, status: String) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 120_000_000);
        let _ = self.latency_us.record(us);
        *self.statuses.entry(status).or_default() += 1;
        self.completed += 1;
    }

    fn merge(&mut self, other: &Tally) {
        let _ = self.latency_us.add(&other.latency_us);
        for (k, v) in &other.statuses {
            *self.statuses.entry(k.clone()).or_default() += v;
        }
        self.completed += other.completed;
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    fn report(&self, label: &str, seconds: f64, json: bool) {
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

fn client(pool: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client builds")
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
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
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                format!("200 {}", body["status"].as_str().unwrap_or("?"))
            } else {
                let _ = resp.bytes().await;
                code.to_string()
            }
        }
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "connection error".into(),
    }
}

async fn load(args: LoadArgs, json: bool) -> anyhow::Result<()> {
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
    Ok(())
}

async fn read(args: ReadArgs, json: bool) -> anyhow::Result<()> {
    let client = client(args.concurrency);
    let mut keys = Vec::with_capacity(args.licenses);
    for i in 0..args.licenses {
        let resp: serde_json::Value = client
            .post(format!("{}/admin/v1/licenses", args.url))
            .bearer_auth(&args.token)
            .json(&json!({"product": args.product, "email": format!("reader{i}@example.com")}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        keys.push(
            resp["license"]["key"]
                .as_str()
                .context("minted license has a key")?
                .to_string(),
        );
    }
    let keys = Arc::new(keys);
    let end = Instant::now() + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, keys, url, token) = (
            client.clone(),
            keys.clone(),
            args.url.clone(),
            args.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::new();
            while Instant::now() < end {
                let key = &keys[rand::random_range(0..keys.len())];
                let sent = Instant::now();
                let status = match client
                    .get(format!("{url}/admin/v1/licenses/{key}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let code = r.status().as_u16().to_string();
                        let _ = r.bytes().await;
                        code
                    }
                    Err(_) => "connection error".into(),
                };
                t.record(sent.elapsed(), status);
            }
            t
        }));
    }
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(&task.await?);
    }
    tally.report(
        &format!("admin get by key, {} in flight", args.concurrency),
        args.duration,
        json,
    );
    Ok(())
}

/// Runs `f` repeatedly for about `seconds`; returns calls per second.
fn rate_of(seconds: f64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn verify(seconds: f64, json: bool) -> anyhow::Result<()> {
    use keymint_license::{KeySet, LicenseClaims, SigningKey};
    let key = SigningKey::generate();
    let token = key.mint(&LicenseClaims::example())?;
    let keys = KeySet::from_paserks([key.public_paserk().as_str()])?;
    keys.verify(&token)?;
    // The same amount of signed data as the token's pre-authentication
    // encoding (header + payload + footer + framing), signed raw.
    let raw_pair = ed25519_compact::KeyPair::generate();
    let message = vec![0x42u8; token.len()];
    let signature = raw_pair.sk.sign(&message, None);
    raw_pair.pk.verify(&message, &signature)?;

    // Alternate short rounds and take medians, so drift in the machine's
    // speed (frequency, noisy neighbours) hits both sides alike.
    let rounds = 9;
    let (mut raws, mut ourss) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        raws.push(rate_of(seconds / f64::from(rounds), || {
            raw_pair
                .pk
                .verify(std::hint::black_box(&message), &signature)
                .expect("valid");
        }));
        ourss.push(rate_of(seconds / f64::from(rounds), || {
            keys.verify(std::hint::black_box(&token)).expect("valid");
        }));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (raw, ours) = (median(&mut raws), median(&mut ourss));
    let share = ours / raw * 100.0;
    println!(
        "offline verification, one core: keymint-license {ours:.0}/s, raw Ed25519 {raw:.0}/s ({share:.1}%)"
    );
    if json {
        println!(
            "{}",
            json!({"verify_per_s": ours, "raw_ed25519_per_s": raw, "share_pct": share})
        );
    }
    Ok(())
}

async fn ceiling(args: CeilingArgs, json: bool) -> anyhow::Result<()> {
    use keymint::store::{self, Store, deliveries, licenses, outbox};
    let config = keymint::config::DatabaseConfig {
        max_connections: Some(u32::try_from(args.concurrency).unwrap_or(10)),
        ..Default::default()
    };
    let store = Store::connect(&args.database_url, &config).await?;
    store.migrate().await?;
    let signer = keymint_license::SigningKey::generate();
    let token = signer.mint(&keymint_license::LicenseClaims::example())?;
    let run = ulid::Ulid::generate().to_string();
    let with_email = args.with_email;
    let counter = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (store, counter, token, run, kid) = (
            store.clone(),
            counter.clone(),
            token.clone(),
            run.clone(),
            signer.kid().to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::new();
            while Instant::now() < end {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let order = format!("{run}-{n}");
                let started = Instant::now();
                let now = store::now_ms();
                // 1. Record the delivery (its own commit, as ingest does).
                let d = deliveries::NewDelivery {
                    id: store::new_id("dlv"),
                    endpoint: "gumroad".into(),
                    kind: "gumroad".into(),
                    received_at: now,
                    source_ip: Some("127.0.0.1".into()),
                    user_agent: Some("bench".into()),
                    request_id: Some(ulid::Ulid::generate().to_string()),
                    path: "/webhooks/gumroad?secret=***".into(),
                    headers: "{\"content-type\":\"application/x-www-form-urlencoded\"}".into(),
                    body: deliveries::StoredBody::whole(
                        format!(
                            "sale_id={order}&product_id=datatools-core&email=b@example.com&price=4900"
                        )
                        .into_bytes(),
                    ),
                    signature_valid: true,
                    status: deliveries::status::RECEIVED,
                    error: None,
                };
                deliveries::record(&store, &d).await?;
                // 2. Apply it in one transaction, as the dispatcher does.
                let mut tx = store.begin().await?;
                deliveries::claim_event(&mut tx, "gumroad", &format!("sale:{order}"), &d.id, now)
                    .await?;
                let email = format!("buyer-{order}@example.com");
                let customer =
                    licenses::upsert_customer(&mut tx, &email, "Bench Buyer", now).await?;
                let license = licenses::License {
                    id: store::new_id("lic"),
                    key: keymint_license::LicenseKey::generate("DT1", "CORE")?.to_string(),
                    customer_id: customer,
                    product: "datatools-core".into(),
                    tier: "core".into(),
                    status: "active".into(),
                    status_reason: None,
                    source: "gumroad".into(),
                    order_id: Some(order.clone()),
                    name: "Bench Buyer".into(),
                    email: email.clone(),
                    token: token.clone(),
                    kid: kid.clone(),
                    issued_at: now,
                    expires_at: None,
                    max_machines: Some(3),
                    entitlements: "[\"export\"]".into(),
                    amount_cents: Some(4900),
                    currency: Some("USD".into()),
                    test: 0,
                    notes: None,
                    created_at: now,
                    updated_at: now,
                };
                licenses::insert(&mut tx, &license).await?;
                licenses::record_event(
                    &mut tx,
                    &license.id,
                    "minted",
                    None,
                    "active",
                    None,
                    "webhook:gumroad",
                    Some(&d.id),
                    now,
                )
                .await?;
                outbox::enqueue(
                    &mut tx,
                    &license.id,
                    "license_issued",
                    &format!("license_issued:{}", license.id),
                    &email,
                    now,
                )
                .await?;
                let outcome = deliveries::Outcome {
                    status: deliveries::status::PROCESSED,
                    event_type: Some("sale".into()),
                    event_id: Some(format!("sale:{order}")),
                    order_id: Some(order),
                    error: None,
                    license_id: Some(license.id.clone()),
                };
                deliveries::finish(&mut tx, &d.id, &outcome, now).await?;
                tx.commit().await?;
                // 3. With --with-email, the email worker's writes too: claim
                // due rows under a lease, read each license, mark each sent.
                if !with_email {
                    t.record(started.elapsed(), "ok".into());
                    continue;
                }
                let mut tx = store.begin().await?;
                let claimed =
                    outbox::claim_due(&mut tx, store.backend(), now, now + 60_000, 16).await?;
                tx.commit().await?;
                for row in claimed {
                    licenses::by_id(&mut *store.conn().await?, &row.license_id).await?;
                    outbox::mark_sent(&mut *store.writer().await?, &row.id, None, store::now_ms())
                        .await?;
                }
                t.record(started.elapsed(), "ok".into());
            }
            anyhow::Ok(t)
        }));
    }
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(&task.await??);
    }
    let what = if with_email {
        "ingest and email writes"
    } else {
        "ingest writes"
    };
    let label = format!(
        "database ceiling ({}, {what}), {} connections",
        store.backend().as_str(),
        args.concurrency
    );
    tally.report(&label, args.duration, json);
    Ok(())
}

async fn startup(args: StartupArgs, json: bool) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()?;
    let mut samples = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&args.bin)
            .args(&args.args)
            .arg("serve")
            .env("KEYMINT_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", args.bin))?;
        let ready = loop {
            if let Ok(r) = client.get(&args.ready_url).send().await
                && r.status().is_success()
            {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("not ready after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        samples.push(ready.as_secs_f64() * 1000.0);
        child.kill().await?;
        child.wait().await?;
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    println!(
        "start to ready: median {median:.1} ms over {} runs ({samples:.1?})",
        samples.len()
    );
    if json {
        println!(
            "{}",
            json!({"startup_ms_median": median, "samples_ms": samples})
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Load(args) => load(args, cli.json).await,
        Command::Read(args) => read(args, cli.json).await,
        Command::Verify { seconds } => verify(seconds, cli.json),
        Command::Ceiling(args) => ceiling(args, cli.json).await,
        Command::Startup(args) => startup(args, cli.json).await,
        Command::Hostile(args) => hostile::run(args, cli.json).await,
    }
}
