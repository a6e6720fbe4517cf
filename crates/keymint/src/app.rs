//! Building and running the server: [`Application::build`] takes a config,
//! binds (port 0 works, for tests), connects, migrates, loads keys and
//! returns a handle; [`Application::run`] serves until shutdown.

use crate::catalog::Catalog;
use crate::config::{Config, ConfigProblems};
use crate::dispatcher::Dispatcher;
use crate::notify::Mailer;
use crate::notify::templates::Templates;
use crate::signing::Keyring;
use crate::store::Store;
use crate::workers;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;
use tower::service_fn;

/// Everything a handler or worker needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub keyring: Arc<Keyring>,
    pub dispatcher: Dispatcher,
    pub mailer: Mailer,
    pub templates: Arc<Templates>,
    /// The console's and portal's pages.
    pub pages: Arc<crate::http::pages::Pages>,
    pub metrics: PrometheusHandle,
    /// Wakes the outbox worker when an email is queued.
    pub outbox_wake: Arc<Notify>,
    /// For provider APIs (Stripe line items).
    pub http: reqwest::Client,
    /// This process's name in job leases.
    pub instance_id: String,
    /// How many rejected deliveries each source may have recorded.
    pub rejected: Arc<crate::rejections::RejectedRecorder>,
    /// Validation and machines (docs/licensing-api.md).
    pub licensing: crate::licensing::Licensing,
    /// The licensing routes' per-address limits (this replica's).
    pub limits: Arc<crate::http::licensing::LicensingLimits>,
    /// The checkout routes' per-address limits (this replica's).
    pub checkout_limits: Arc<crate::http::licensing::LicensingLimits>,
    /// The portal's per-address limit (this replica's).
    pub portal_limits: Arc<crate::http::licensing::LicensingLimits>,
}

/// Why the server could not start. Each message names its cause once
/// (`cli::main` prints a cause only when it adds something).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration problems:\n{0}")]
    Config(#[from] ConfigProblems),
    /// The database could not be opened: the reason, explained by
    /// [`crate::store::describe_connect_error`] (which names the database).
    #[error("{0}")]
    Connect(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::signing::KeyError),
    #[error(transparent)]
    Mailer(#[from] crate::notify::MailerConfigError),
    #[error(transparent)]
    Templates(#[from] crate::notify::templates::TemplateError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    /// The database would acknowledge commits it has not made durable
    /// (docs/architecture.md, rule 9).
    #[error(
        "the database does not make commits durable ({0}): keymint answers a webhook only after its commit is on disk; set synchronous_commit = on and fsync = on for this database (docs/deploy.md)"
    )]
    NotDurable(String),
}

impl StartError {
    fn bind(addr: SocketAddr, e: &std::io::Error) -> Self {
        let reason = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the address is already in use (another keymint or another server holds it; stop it or change server.listen)".to_string()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges; use a higher port behind a proxy)".to_string()
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "the address is not on this machine (server.listen)".to_string()
            }
            _ => e.to_string(),
        };
        Self::Bind {
            addr: addr.to_string(),
            reason,
        }
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every
/// application built in this process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .expect("static buckets are valid")
                // Pieces of work per group commit: whole numbers up to the
                // committer's most (store/group.rs).
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "keymint_db_group_commit_size".into(),
                    ),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
                )
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours just
            // renders nothing, which is acceptable in embedding tests.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

impl AppState {
    /// Connects, migrates and loads keys: everything but the listener.
    /// For the CLI: it never creates a signing key.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with(config, false).await
    }

    /// As [`AppState::build`]; `first_start` lets `serve` generate the
    /// first signing key.
    async fn build_with(config: Config, first_start: bool) -> Result<Self, StartError> {
        // The recorder first, so the store's counters show on /metrics
        // from the start.
        let metrics = metrics_handle();
        crate::store::prepare_data_dir(&config.server.data_dir).map_err(|source| {
            StartError::DataDir {
                path: config.server.data_dir.clone(),
                source,
            }
        })?;
        let url = config.database_url();
        let store = Store::connect(url.expose(), &config.database)
            .await
            .map_err(|e| {
                StartError::Connect(crate::store::describe_connect_error(url.expose(), &e))
            })?;
        store.migrate().await?;
        if let Some(settings) = store.check_durable().await? {
            return Err(StartError::NotDurable(settings));
        }
        let keyring = Arc::new(Keyring::load(&config, &store, first_start).await?);
        let catalog = Arc::new(Catalog::from_config(&config));
        let dispatcher = Dispatcher::new(
            store.clone(),
            catalog.clone(),
            keyring.clone(),
            config.signing.issuer.clone(),
            config.subscriptions.clone(),
        );
        let mailer = Mailer::from_config(&config.email)?;
        let templates = Arc::new(Templates::load(config.templates_dir().as_deref())?);
        let pages = Arc::new(crate::http::pages::Pages::load(
            config.templates_dir().as_deref(),
        )?);
        let rejected = Arc::new(crate::rejections::RejectedRecorder::new(
            config.server.rejected_per_minute,
        ));
        let licensing = crate::licensing::Licensing::new(store.clone(), keyring.clone(), &config);
        let limits = Arc::new(crate::http::licensing::LicensingLimits::new(
            &config.licensing.rate_limit,
        ));
        let checkout_limits = Arc::new(crate::http::licensing::LicensingLimits::new(
            // Each budget is off at 0, on its own.
            &crate::config::RateLimitConfig {
                enabled: true,
                per_minute: config.checkout.per_minute,
                not_found_per_minute: config.checkout.not_found_per_minute,
            },
        ));
        let portal_limits = Arc::new(crate::http::licensing::LicensingLimits::new(
            &crate::config::RateLimitConfig {
                enabled: true,
                per_minute: config.portal.per_minute,
                not_found_per_minute: 0,
            },
        ));
        Ok(Self {
            config: Arc::new(config),
            store,
            catalog,
            keyring,
            dispatcher,
            mailer,
            templates,
            pages,
            metrics,
            outbox_wake: Arc::new(Notify::new()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .user_agent(concat!("keymint/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| StartError::Http(e.to_string()))?,
            instance_id: format!("{}-{}", hostname_or_pid(), crate::store::new_id("inst")),
            rejected,
            licensing,
            limits,
            checkout_limits,
            portal_limits,
        })
    }
}

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
}

impl Application {
    /// Binds, then builds the state: a busy port is reported before
    /// anything (data directory, database, signing key) is created.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let listen = config.server.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| StartError::bind(listen, &e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::bind(listen, &e))?;
        let state = AppState::build_with(config, true).await?;
        Ok(Self {
            listener,
            addr,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, with background workers when
    /// `workers.enabled`. Connections are served by hyper with a header
    /// read timeout (a client that sends its headers one byte a second is
    /// dropped) and the request timeout of the router; shutdown stops
    /// accepting, lets in-flight requests finish, then stops the workers.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = Vec::new();
        if self.state.config.workers.enabled {
            let (state, stop) = (&self.state, &stop_rx);
            workers = vec![
                tokio::spawn(workers::outbox::run(state.clone(), stop.clone())),
                tokio::spawn(workers::sweeper::run(state.clone(), stop.clone())),
                tokio::spawn(workers::retention::run(state.clone(), stop.clone())),
                tokio::spawn(workers::reconciler::run(state.clone(), stop.clone())),
                tokio::spawn(workers::recovery::run(state.clone(), stop.clone())),
            ];
        }
        let router = crate::http::router(self.state.clone());
        let header_timeout = self.state.config.server.header_read_timeout;
        // Connections open at once are capped: a permit is taken before
        // accepting, so past the cap new clients wait in the kernel's
        // backlog and descriptors stay free for the database and keys.
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.state.config.server.max_connections.max(1),
        ));
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Only latency depends on it; the connection works either way.
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            // Set by the first request: until then the connection lives
            // only `header_read_timeout` from accept, whichever protocol
            // it turns out to speak (hyper's own header timer starts only
            // once it has told HTTP/1 from HTTP/2 by the first bytes).
            let first_request = Arc::new(Notify::new());
            let seen = first_request.clone();
            let service = service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                seen.notify_one();
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(req.map(Body::new))
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                // A peer that stops answering pings is dropped.
                .keep_alive_interval(Some(header_timeout))
                .keep_alive_timeout(header_timeout);
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _permit = permit;
                let mut conn = std::pin::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => Some(result),
                    () = first_request.notified() => None,
                    () = tokio::time::sleep(header_timeout) => {
                        tracing::debug!(%peer, "closed a connection that sent no request in time");
                        return;
                    }
                };
                let result = match result {
                    Some(result) => result,
                    None => conn.await,
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(self.state.config.server.request_timeout) => {
                tracing::warn!("requests still running at shutdown were cut off");
            }
        }
        // An error means every worker has already stopped.
        let _ = stop_tx.send(true);
        let had_workers = !workers.is_empty();
        for w in workers {
            if let Err(e) = w.await {
                tracing::error!(error = %e, "a background worker panicked");
            }
        }
        if had_workers {
            // Hand singleton jobs to another replica now, not at lease end;
            // if that fails, the leases expire on their own.
            match self.state.store.writer().await {
                Ok(mut conn) => {
                    for job in workers::SINGLETON_JOBS {
                        if let Err(e) =
                            crate::store::leases::release(&mut conn, job, &self.state.instance_id)
                                .await
                        {
                            tracing::warn!(job, error = %e, "could not release a job lease at shutdown; it expires on its own");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not release job leases at shutdown; they expire on their own");
                }
            }
        }
        self.state.store.close().await;
        Ok(())
    }
}

/// A readable prefix for this process in job leases.
fn hostname_or_pid() -> String {
    // No readable hostname (containers, non-Linux): the pid names it.
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid{}", std::process::id()))
}
