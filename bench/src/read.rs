//! `keymint-bench read`: admin lookups by license key, closed loop.

use crate::tally::{Tally, client};
use anyhow::Context;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ReadArgs {
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

pub async fn read(args: ReadArgs, json: bool) -> anyhow::Result<()> {
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
                        // Read only to free the connection.
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
