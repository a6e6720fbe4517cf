//! The `keymint` command line: `serve` and the operator commands. Every
//! command loads the same configuration as the server.

mod keys;
mod server;

use crate::admin::{self, ManualMint, scope};
use crate::app::{AppState, Application};
use crate::config::Config;
use crate::http::admin::{DeliveryOut, LicenseOut, parse_time};
use crate::ingest::{self, IngestResult};
use crate::signing;
use crate::store::{self, Store, admin_tokens, deliveries, signing_keys};
use clap::{Args, Parser, Subcommand};
use keymint_license::KeySet;
use keys::keys;
use server::{check_config, serve};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "keymint",
    version,
    about = "Turn payment webhooks into signed, emailed licenses"
)]
pub struct Cli {
    /// Configuration file (default: none; built-in defaults and KEYMINT_* variables).
    #[arg(long, global = true, env = "KEYMINT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (webhooks, public and admin API, workers).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Report every problem in the configuration; exit non-zero if any.
    CheckConfig,
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Admin API tokens.
    #[command(subcommand)]
    AdminToken(TokenCmd),
    /// Licenses.
    #[command(subcommand)]
    License(LicenseCmd),
    /// The webhook delivery log.
    #[command(subcommand)]
    Deliveries(DeliveriesCmd),
    /// Settle operator refunds stuck in pending, and subscriptions stuck in
    /// pending_payment, against the provider's API.
    Reconcile {
        /// Run one pass and exit (the server runs it every reconciler.interval):
        /// operator refunds and subscriptions stuck pending are read from the
        /// provider, and deliveries a stopped process left `received` are
        /// processed.
        #[arg(long)]
        once: bool,
    },
    /// Delete deliveries and dead emails older than the retention settings.
    Retention {
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Test an endpoint without the provider.
    #[command(subcommand)]
    Webhook(WebhookCmd),
    /// Re-run stored deliveries through the current code and catalog: one
    /// by id, or every failed one (oldest first) with --failed.
    Replay {
        /// Delivery id (dlv_...).
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        delivery_id: Option<String>,
        /// Replay every failed, authentic delivery.
        #[arg(long)]
        failed: bool,
        /// With --failed: only this endpoint's.
        #[arg(long, requires = "failed")]
        endpoint: Option<String>,
        /// With --failed: only those received since (RFC 3339 or an age such as 24h).
        #[arg(long, requires = "failed")]
        since: Option<String>,
    },
}

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

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// List signing keys: which one signs, which verify, which are retired.
    List,
    /// Generate a new key: it verifies (is published) at once; it signs
    /// once activated.
    Generate {
        /// Make it the signing key now; running servers sign with it from
        /// their next license on.
        #[arg(long)]
        activate: bool,
    },
    /// Make a key the signing key; running servers follow at their next
    /// license.
    Activate { kid: String },
    /// Retire a key: it no longer verifies. The signing key is refused;
    /// activate another one first.
    Retire { kid: String },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token; it is printed once, as the last line.
    Create {
        #[arg(long)]
        name: String,
        /// Scopes (repeatable): admin, licenses:read, licenses:write, deliveries:read, deliveries:write.
        #[arg(long = "scope", default_value = "admin")]
        scopes: Vec<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id or name.
    Revoke { id_or_name: String },
}

#[derive(Subcommand, Debug)]
pub enum LicenseCmd {
    /// Mint a license by hand and queue its email.
    Mint(MintArgs),
    /// Show a license, its history and its emails.
    Show { key: String },
    /// Verify a token offline and print its claims.
    Verify {
        token: String,
        /// PASERK k4.public key to verify with (default: this instance's keys).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Revoke a license.
    Revoke {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Reinstate a revoked or suspended license.
    Reinstate {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Queue the license email again (refused for a revoked license).
    Resend {
        key: String,
        /// Send it even though the license is revoked (recorded in its history).
        #[arg(long)]
        force: bool,
    },
    /// Refund the license's payment through its provider (Stripe,
    /// Hyperswitch); pending until the provider's webhook or the reconciler.
    Refund {
        key: String,
        /// Minor units; omit for a full refund.
        #[arg(long)]
        amount: Option<i64>,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct MintArgs {
    #[arg(long)]
    product: String,
    #[arg(long)]
    email: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    order_id: Option<String>,
    #[arg(long)]
    notes: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DeliveriesCmd {
    /// List deliveries, newest first.
    List {
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// RFC 3339 time or an age such as 24h.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one delivery with its headers and body.
    Show { id: String },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: a cause whose
/// text the message already contains (`database: pool timed out` over
/// `pool timed out`) is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(text.trim()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(path).map_err(|p| anyhow::anyhow!("configuration problems:\n{p}"))
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let dir = &config.server.data_dir;
    store::prepare_data_dir(dir)
        .map_err(|e| anyhow::anyhow!("data directory {}: {e}", dir.display()))?;
    let url = config.database_url();
    let store = Store::connect(url.expose(), &config.database)
        .await
        .map_err(|e| anyhow::anyhow!(store::describe_connect_error(url.expose(), &e)))?;
    store.migrate().await?;
    Ok(store)
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::CheckConfig = cli.command {
        return check_config(cli.config.as_deref()).await;
    }
    let config = load_config(cli.config.as_deref())?;
    crate::telemetry::init(config.server.log_format, &config.server.log_level)
        .map_err(|e| anyhow::anyhow!("log filter: {e}"))?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            open_store(&config).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => unreachable!("handled above"),
        Command::Keys(cmd) => keys(config, cmd).await,
        Command::AdminToken(cmd) => tokens(config, cmd).await,
        Command::License(cmd) => license(config, cmd).await,
        Command::Deliveries(cmd) => deliveries_cmd(config, cmd).await,
        Command::Reconcile { .. } => {
            let state = AppState::build(config).await?;
            let tick = crate::workers::reconciler::run_once(&state).await?;
            let recovered = crate::workers::recovery::run_once(&state).await?;
            println!(
                "settled {}, orphans failed {}, left for the next pass {}; recovered {} stuck deliveries",
                tick.settled, tick.orphans_failed, tick.left, recovered.finished
            );
            crate::workers::outbox::run_once(&state).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Retention { dry_run } => {
            let store = open_store(&config).await?;
            let r = &config.retention;
            let cutoffs = r.cutoffs(store::now_ms());
            let (verb, counts) = if dry_run {
                (
                    "would delete",
                    store::retention::count(&store, &cutoffs).await?,
                )
            } else {
                (
                    "deleted",
                    store::retention::sweep(&store, &cutoffs, r.batch, r.pause).await?,
                )
            };
            println!(
                "{verb}: {} deliveries older than {}, {} failed deliveries older than {}, {} rejected deliveries older than {}, {} dead emails older than {}",
                counts.deliveries,
                store::format_ms(cutoffs.deliveries),
                counts.failed_deliveries,
                store::format_ms(cutoffs.failed_deliveries),
                counts.rejected_deliveries,
                store::format_ms(cutoffs.rejected_deliveries),
                counts.dead_emails,
                store::format_ms(cutoffs.dead_emails),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Webhook(WebhookCmd::Send {
            endpoint,
            file,
            url,
        }) => send_webhook(config, &endpoint, &file, url).await,
        Command::Replay {
            delivery_id: None,
            endpoint,
            since,
            ..
        } => {
            let state = AppState::build(config).await?;
            let filter = ingest::ReplayFilter {
                endpoint,
                since: since
                    .as_deref()
                    .map(parse_time)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!(e))?,
                ..Default::default()
            };
            let bar = indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} replayed {pos} deliveries ({per_sec}) {msg}",
                )
                .expect("static template"),
            );
            let summary = ingest::replay_failed(&state, &filter, |n, id| {
                bar.set_position(n as u64);
                bar.set_message(id.to_string());
            })
            .await?;
            bar.finish_and_clear();
            println!(
                "replayed {}: {} ok, {} duplicate, {} ignored, {} logged-no-mint, {} error, {} unavailable",
                summary.replayed,
                summary.ok,
                summary.duplicate,
                summary.ignored,
                summary.no_mint,
                summary.error,
                summary.unavailable
            );
            crate::workers::outbox::run_once(&state).await?;
            Ok(if summary.unavailable == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Replay {
            delivery_id: Some(delivery_id),
            ..
        } => {
            let state = AppState::build(config).await?;
            let result = ingest::replay(&state, &delivery_id).await?;
            let code = match &result {
                IngestResult::Done { applied, .. } => {
                    println!("{}", applied.response_status());
                    if let Some(k) = applied.license_key() {
                        println!("license_key: {k}");
                    }
                    ExitCode::SUCCESS
                }
                other => {
                    eprintln!("replay did not complete: {other:?}");
                    ExitCode::FAILURE
                }
            };
            crate::workers::outbox::run_once(&state).await?;
            Ok(code)
        }
    }
}

async fn tokens(config: Config, cmd: TokenCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    match cmd {
        TokenCmd::Create { name, scopes } => {
            if let Some(bad) = scopes.iter().find(|s| !scope::ALL.contains(&s.as_str())) {
                eprintln!("unknown scope {bad:?}; scopes: {}", scope::ALL.join(", "));
                return Ok(ExitCode::FAILURE);
            }
            let (row, text) = match admin::create_token(&store, &name, &scopes).await {
                Ok(created) => created,
                Err(
                    e @ (admin::AdminError::Invalid { .. } | admin::AdminError::Conflict { .. }),
                ) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            };
            println!(
                "created admin token {} ({}) with scopes: {}",
                row.id, row.name, row.scopes
            );
            println!("store it now; it is shown only once:");
            println!("{text}");
        }
        TokenCmd::List => {
            let mut conn = store.conn().await?;
            for t in admin_tokens::list(&mut conn).await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{}  {:20}  {:8}  {}", t.id, t.name, state, t.scopes);
            }
        }
        TokenCmd::Revoke { id_or_name } => {
            let mut conn = store.writer().await?;
            let n = admin_tokens::revoke(&mut conn, &id_or_name, store::now_ms()).await?;
            if n == 0 {
                eprintln!("no active token {id_or_name:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("revoked {id_or_name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn license(config: Config, cmd: LicenseCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        LicenseCmd::Verify { token, public_key } => {
            let keys = match public_key {
                Some(p) => KeySet::from_paserks([p.as_str()])?,
                None => signing::verification_keys(&open_store(&config).await?).await?,
            };
            match keys.verify(&token) {
                Ok(claims) => {
                    print_json(&claims);
                    eprintln!("valid");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("invalid: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        LicenseCmd::Mint(args) => {
            let state = AppState::build(config).await?;
            let req = ManualMint {
                product: args.product,
                email: args.email,
                name: args.name,
                order_id: args.order_id,
                notes: args.notes,
            };
            let (license, created) = admin::mint_manual(&state, &req, "cli").await?;
            eprintln!(
                "{}",
                if created {
                    "minted"
                } else {
                    "already minted for this order"
                }
            );
            print_json(&LicenseOut::from(license));
            Ok(ExitCode::SUCCESS)
        }
        LicenseCmd::Show { key } => {
            let store = open_store(&config).await?;
            let key = key.parse::<keymint_license::LicenseKey>()?.to_string();
            // The same document as GET /admin/v1/licenses/{key}.
            let Some(detail) = crate::http::admin::license_detail(&store, &key).await? else {
                eprintln!("no license {key}");
                return Ok(ExitCode::FAILURE);
            };
            print_json(&detail);
            Ok(ExitCode::SUCCESS)
        }
        LicenseCmd::Revoke { key, reason } | LicenseCmd::Reinstate { key, reason }
            if reason.trim().is_empty() =>
        {
            eprintln!("a reason is required for {key}");
            Ok(ExitCode::FAILURE)
        }
        LicenseCmd::Revoke { key, reason } => set_status(config, &key, true, &reason).await,
        LicenseCmd::Reinstate { key, reason } => set_status(config, &key, false, &reason).await,
        LicenseCmd::Resend { key, force } => {
            let store = open_store(&config).await?;
            let key = key.parse::<keymint_license::LicenseKey>()?.to_string();
            match admin::resend(&store, &key, force, "cli").await {
                Ok(_) => {
                    println!("queued; the running server sends it");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ admin::AdminError::Conflict { .. }) => {
                    eprintln!("error: {e}; add --force to send it anyway");
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e.into()),
            }
        }
        LicenseCmd::Refund {
            key,
            amount,
            reason,
        } => {
            let key = key.parse::<keymint_license::LicenseKey>()?.to_string();
            let state = AppState::build(config).await?;
            match admin::request_refund(&state, &key, amount, reason.as_deref(), "cli").await {
                Ok(r) => {
                    print_json(&crate::http::admin::RefundOut::from(r));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

async fn set_status(
    config: Config,
    key: &str,
    revoke: bool,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let key = key.parse::<keymint_license::LicenseKey>()?.to_string();
    let l = admin::set_status(&store, &key, revoke, reason, "cli").await?;
    println!("{} is now {}", l.key, l.status);
    Ok(ExitCode::SUCCESS)
}

async fn deliveries_cmd(config: Config, cmd: DeliveriesCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let mut conn = store.conn().await?;
    match cmd {
        DeliveriesCmd::List {
            endpoint,
            status,
            since,
            limit,
        } => {
            if let Some(s) = &status
                && !deliveries::status::ALL.contains(&s.as_str())
            {
                eprintln!(
                    "error: --status {s:?} is not one of {}",
                    deliveries::status::ALL.join(", ")
                );
                return Ok(ExitCode::FAILURE);
            }
            if !(1..=10_000).contains(&limit) {
                eprintln!("error: --limit {limit} must be between 1 and 10000");
                return Ok(ExitCode::FAILURE);
            }
            let filter = deliveries::Filter {
                endpoint,
                status,
                since: since
                    .as_deref()
                    .map(parse_time)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                until: None,
                before: None,
                limit,
            };
            for d in deliveries::list(&mut conn, &filter).await? {
                println!(
                    "{}  {}  {:10}  {:10}  {:24}  {}",
                    d.id,
                    store::format_ms(d.received_at),
                    d.endpoint,
                    d.status,
                    d.event_type.as_deref().unwrap_or("-"),
                    d.error.as_deref().unwrap_or("")
                );
            }
        }
        DeliveriesCmd::Show { id } => match deliveries::get(&mut conn, &id).await? {
            Some(d) => print_json(&DeliveryOut::new(d, true)),
            None => {
                eprintln!("no delivery {id}");
                return Ok(ExitCode::FAILURE);
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

async fn send_webhook(
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
        && ep.kind != crate::config::EndpointKind::Gumroad
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
    if ep.kind == crate::config::EndpointKind::Gumroad {
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
