//! `keymint-bench startup`: time from process start to the first 200 from
//! `/readyz`.

use anyhow::Context;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct StartupArgs {
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

pub async fn startup(args: StartupArgs, json: bool) -> anyhow::Result<()> {
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
