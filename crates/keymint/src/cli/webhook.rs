//! `keymint webhook send`: sign a payload as the endpoint's provider would
//! and POST it to a running keymint, to test an endpoint without the
//! provider.

use crate::config::{Config, EndpointKind};
use crate::store;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum WebhookCmd {
    /// Sign a payload file as the endpoint's provider would (with its first
    /// secret) and POST it to a running keymint; prints the answer.
    Send {
        /// Endpoint name from the configuration.
        endpoint: String,
        /// The payload: JSON, or form-encoded for Gumroad.
        file: PathBuf,
        /// Base URL of the server (default: http://<server.listen>).
        #[arg(long)]
        url: Option<String>,
    },
}

pub(super) async fn run(config: Config, cmd: WebhookCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        WebhookCmd::Send {
            endpoint,
            file,
            url,
        } => send(config, &endpoint, &file, url).await,
    }
}

pub(super) async fn send(
    config: Config,
    endpoint: &str,
    file: &std::path::Path,
    url: Option<String>,
) -> anyhow::Result<ExitCode> {
    let ep = config
        .endpoint(endpoint)
        .ok_or_else(|| anyhow::anyhow!("endpoint {endpoint:?} is not configured"))?;
    let secret = ep
        .secrets
        .first()
        .ok_or_else(|| anyhow::anyhow!("endpoint {endpoint:?} has no secret"))?;
    let body =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let parsed = serde_json::from_slice::<serde_json::Value>(&body);
    let json = parsed.is_ok();
    if let Err(e) = &parsed
        && ep.kind != EndpointKind::Gumroad
    {
        eprintln!(
            "error: {} is not JSON ({e}); {endpoint} takes a JSON payload (examples: docs/providers/)",
            file.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let msg_id = store::new_id("msg");
    let headers = crate::adapters::signatures::sign(
        ep.kind,
        secret.expose(),
        ep.legacy_secret,
        &body,
        now,
        &msg_id,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let base = url.unwrap_or_else(|| format!("http://{}", config.server.listen));
    let mut target = format!("{}/webhooks/{endpoint}", base.trim_end_matches('/'));
    if ep.kind == EndpointKind::Gumroad {
        target.push_str("?secret=");
        target.push_str(&serde_urlencoded::to_string([("", secret.expose())])?[1..]);
    }
    let mut req = reqwest::Client::new()
        .post(&target)
        .header(
            "content-type",
            if json {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            },
        )
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {base}: {}", e.without_url()))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    println!("{} {text}", status.as_u16());
    // Success is a 2xx whose body says the event was applied, seen before
    // or deliberately ignored; `error` and `logged-no-mint` are 200s too.
    let outcome = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_string));
    match outcome.as_deref() {
        Some("ok" | "duplicate" | "ignored") if status.is_success() => Ok(ExitCode::SUCCESS),
        Some(other) if status.is_success() => {
            eprintln!(
                "error: the server took the delivery but answered status {other:?}; see `keymint deliveries list`"
            );
            Ok(ExitCode::FAILURE)
        }
        _ => {
            eprintln!("error: the server answered {status}");
            Ok(ExitCode::FAILURE)
        }
    }
}
