//! The store: every SQL statement keymint runs, over SQLite or PostgreSQL.
//!
//! One set of queries serves both databases through sqlx's `Any` driver:
//! placeholders are `$n` (both accept them), times are Unix milliseconds in
//! `BIGINT`/`INTEGER` columns, flags are integers. The few places where the
//! dialects differ (write-transaction start, `FOR UPDATE SKIP LOCKED`)
//! branch on [`Backend`]. The store knows nothing about HTTP.

pub mod admin_tokens;
pub mod conn;
pub mod console_sessions;
pub mod customers;
pub mod deliveries;
mod files;
pub mod group;
pub mod leases;
pub mod licenses;
mod lite;
pub mod machines;
pub mod orders;
pub mod outbox;
pub mod overview;
pub mod portal;
pub mod refunds;
pub mod retention;
pub mod signing_keys;
pub mod subscriptions;

use crate::config::DatabaseConfig;
use crate::domain::Millis;
use files::{create_private_dir, private_sqlite_files};
pub use files::{prepare_data_dir, private_file_options};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Connection};
use std::path::Path;
use std::str::FromStr;

/// A write transaction.
pub type Tx = sqlx::Transaction<'static, Any>;
/// A connection, for functions usable inside or outside a transaction:
/// sqlx's own, or the SQLite group-commit lane's ([`conn`]).
pub type Conn = dyn conn::DbConn;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database the URL chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Chooses the backend by URL scheme; unknown schemes are refused.
    pub fn from_url(url: &str) -> Result<Self, sqlx::Error> {
        match url.split(':').next() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            other => Err(sqlx::Error::Configuration(
                format!(
                    "database scheme {other:?} is not supported (use sqlite:// or postgres://)"
                )
                .into(),
            )),
        }
    }

    /// The backend a connection speaks.
    pub fn of(conn: &Conn) -> Self {
        conn.backend()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The connection pools, the group committer and the backend.
///
/// On SQLite, writes go through a pool of exactly one connection: writers
/// queue fairly in memory instead of polling SQLite's lock with
/// `busy_timeout` sleeps (which made tail latency jump by up to 100 ms),
/// while reads use the other pool, which WAL keeps unblocked. On
/// PostgreSQL both are the same pool. The hot writes (recording and
/// applying deliveries, the email worker's claims and results, SQLite's
/// activations) go through the [`group::Committer`], which shares the
/// writer pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    writer: AnyPool,
    committer: group::Committer,
    backend: Backend,
}

/// Group-commit lanes on PostgreSQL: enough to overlap one lane's round
/// trips with another's, few enough that batches stay large.
const POSTGRES_LANES: usize = 2;

/// Current time in Unix milliseconds: the one clock, [`Millis::now`], as
/// the integer the store's `now` parameters still take.
pub fn now_ms() -> i64 {
    crate::domain::Millis::now().as_i64()
}

/// Formats Unix milliseconds as RFC 3339.
pub fn format_ms(ms: Millis) -> String {
    // For display only: a time RFC 3339 cannot show is shown as its
    // number rather than hidden.
    ms.to_time()
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.as_i64().to_string())
}

/// A fresh prefixed id such as `dlv_01J...`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::generate())
}

impl Store {
    /// Connects (creating the SQLite file and its directory if needed).
    pub async fn connect(url: &str, cfg: &DatabaseConfig) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        // One plain connection first: a pool that cannot connect only
        // reports that it timed out, while the operator needs the reason
        // (refused, no such database, wrong password): see
        // `describe_connect_error`.
        connect_once(&options, cfg.acquire_timeout)
            .await?
            .close()
            .await?;
        let readers = cfg.max_connections.unwrap_or(match backend {
            Backend::Postgres => 10,
            Backend::Sqlite => {
                std::thread::available_parallelism().map_or(2, |n| n.get().max(2)) as u32
            }
        });
        let pool = Self::pool_options(backend, cfg, readers)
            .connect_with(options.clone())
            .await?;
        let (writer, lanes) = match backend {
            Backend::Sqlite => {
                let writer = Self::pool_options(backend, cfg, 1)
                    .connect_with(options)
                    .await?;
                let lanes = match sqlite_file(&url) {
                    Some(path) => group::Lanes::SqliteFile {
                        path,
                        busy_timeout: cfg.busy_timeout,
                    },
                    None => group::Lanes::Pooled(1),
                };
                (writer, lanes)
            }
            Backend::Postgres => (pool.clone(), group::Lanes::Pooled(POSTGRES_LANES)),
        };
        let committer = group::Committer::start(writer.clone(), backend, lanes)?;
        Ok(Self {
            pool,
            writer,
            committer,
            backend,
        })
    }

    fn pool_options(backend: Backend, cfg: &DatabaseConfig, size: u32) -> AnyPoolOptions {
        let busy_ms = cfg.busy_timeout.as_millis();
        AnyPoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .acquire_timeout(cfg.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; FULL
                        // syncs the log at every commit, so a commit
                        // survives a power cut, not only a crash of
                        // keymint (docs/architecture.md, "Durability and
                        // group commit").
                        for pragma in [
                            "PRAGMA journal_mode = WAL".to_string(),
                            "PRAGMA synchronous = FULL".to_string(),
                            "PRAGMA foreign_keys = ON".to_string(),
                            format!("PRAGMA busy_timeout = {busy_ms}"),
                        ] {
                            sqlx::query(sqlx::AssertSqlSafe(pragma))
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                    Ok(())
                })
            })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies pending migrations. On PostgreSQL the migrator holds an
    /// advisory lock, so replicas starting together migrate once.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await,
        }
    }

    /// Starts a write transaction. SQLite takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so another process writing to the same file
    /// (the CLI) makes it wait on `busy_timeout` instead of failing with a
    /// lock-upgrade deadlock.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        metrics::counter!("keymint_db_direct_writes_total").increment(1);
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
    }

    /// A pooled connection for reads.
    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Any>, sqlx::Error> {
        self.pool.acquire().await
    }

    /// A connection for single-statement writes outside a transaction.
    pub async fn writer(&self) -> Result<sqlx::pool::PoolConnection<Any>, sqlx::Error> {
        // Counted as one commit: an upper bound, for the benchmarks'
        // commits per delivery (docs/operations.md, "Metrics").
        metrics::counter!("keymint_db_direct_writes_total").increment(1);
        self.writer.acquire().await
    }

    /// Runs `work` in the next group commit; see [`group::Committer::write`].
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: for<'c> FnMut(&'c mut Conn) -> group::BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: group::WorkError,
    {
        self.committer.write(work).await
    }

    /// What the group committer has done so far.
    pub fn commit_stats(&self) -> &group::Stats {
        self.committer.stats()
    }

    /// True when a trivial query succeeds.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Adds `mode=rwc`, creates the parent directory of a SQLite file (0700)
/// and the file itself (0600).
/// One plain connection, or the reason it could not be made (a time-out
/// named as `database.acquire_timeout`).
async fn connect_once(
    options: &AnyConnectOptions,
    timeout: std::time::Duration,
) -> Result<sqlx::AnyConnection, sqlx::Error> {
    use sqlx::ConnectOptions;
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(conn) => conn,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer within database.acquire_timeout ({})",
                humantime::format_duration(timeout)
            ),
        ))),
    }
}

/// Whether the database at `url` can be reached, without writing anything:
/// PostgreSQL is connected to and pinged; an existing SQLite file is opened
/// read-only; a SQLite file that does not exist yet is fine (`serve`
/// creates it). On PostgreSQL the answer is also whether it makes commits
/// durable: `Some(settings)` names the settings `serve` would refuse
/// (SQLite's are keymint's own, set on every connection). For `keymint
/// check-config`.
pub async fn check_reachable(
    url: &str,
    timeout: std::time::Duration,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let target = match Backend::from_url(url)? {
        Backend::Postgres => url.to_string(),
        Backend::Sqlite => {
            let (path, _) = sqlite_parts(url);
            if path.is_empty() || path == ":memory:" || !Path::new(path).exists() {
                return Ok(None);
            }
            format!("sqlite://{path}?mode=ro")
        }
    };
    let options = AnyConnectOptions::from_str(&target)?.disable_statement_logging();
    let mut conn = connect_once(&options, timeout).await?;
    sqlx::query("SELECT 1").execute(&mut conn).await?;
    let refused = match Backend::of(&conn) {
        Backend::Postgres => {
            let (durable, settings) = durability_settings(&mut conn, Backend::Postgres).await?;
            (!durable).then(|| describe_settings(&settings))
        }
        Backend::Sqlite => None,
    };
    // The probe already answered; a failed goodbye changes nothing.
    let _ = conn.close().await;
    Ok(refused)
}

/// Settings as `name = value, ...`, for messages.
pub fn describe_settings(settings: &std::collections::BTreeMap<String, String>) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file behind a normalised SQLite URL (see [`sqlite_url`]), when the
/// group-commit lane can open it itself: not an in-memory or read-only
/// database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let (path, query) = sqlite_parts(url);
    let plain_file = query
        .split('&')
        .all(|p| !matches!(p, "mode=ro" | "mode=memory") && !p.starts_with("vfs="));
    (plain_file && !path.is_empty() && path != ":memory:").then(|| path.into())
}

/// A SQLite URL's path and query string (either may be empty).
fn sqlite_parts(url: &str) -> (&str, &str) {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    rest.split_once('?').unwrap_or((rest, ""))
}

fn sqlite_url(url: &str) -> Result<String, sqlx::Error> {
    let (path, query) = sqlite_parts(url);
    let read_only = query.split('&').any(|p| p == "mode=ro");
    if path != ":memory:" && !path.is_empty() && !read_only {
        let file = Path::new(path);
        if let Some(parent) = file.parent()
            && !parent.as_os_str().is_empty()
        {
            create_private_dir(parent).map_err(sqlx::Error::Io)?;
        }
        private_sqlite_files(file).map_err(sqlx::Error::Io)?;
    }
    let mut out = format!("sqlite://{path}");
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !params.iter().any(|p| p.starts_with("mode=")) {
        params.push("mode=rwc");
    }
    out.push('?');
    out.push_str(&params.join("&"));
    Ok(out)
}

/// Why the database at `url` could not be opened, in words an operator can
/// act on: the cause once, with the host and port or file it concerns
/// (never the password).
pub fn describe_connect_error(url: &str, e: &sqlx::Error) -> String {
    let Ok(Backend::Postgres) = Backend::from_url(url) else {
        let (path, _) = sqlite_parts(url);
        return match e {
            sqlx::Error::Database(db) => {
                format!("cannot open the SQLite database {path}: {}", db.message())
            }
            sqlx::Error::Io(io) => format!("cannot open the SQLite database {path}: {io}"),
            other => format!("cannot open the SQLite database {path}: {other}"),
        };
    };
    let Ok(pg) = sqlx::postgres::PgConnectOptions::from_str(url) else {
        return e.to_string();
    };
    let at = format!("{}:{}", pg.get_host(), pg.get_port());
    match e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => format!(
                "database: connection refused at {at}: is PostgreSQL running and listening on that port? (database.url)"
            ),
            std::io::ErrorKind::TimedOut => format!("PostgreSQL at {at} gave {io}"),
            _ => format!("cannot reach PostgreSQL at {at}: {io}"),
        },
        sqlx::Error::Tls(tls) => format!("TLS with PostgreSQL at {at} failed: {tls}"),
        sqlx::Error::Database(db) => {
            // An error without a code matches none of the codes below.
            let code = db.code().unwrap_or_default();
            let name = pg.get_database().unwrap_or(pg.get_username());
            match &*code {
                // invalid_catalog_name
                "3D000" => format!(
                    "PostgreSQL database {name:?} does not exist at {at}: create it with `createdb -h {} -p {} {name}` or `CREATE DATABASE {name};` in psql (docs/deploy.md)",
                    pg.get_host(),
                    pg.get_port()
                ),
                // invalid_password, invalid_authorization_specification
                "28P01" | "28000" => format!(
                    "PostgreSQL at {at} refused user {:?}: {}",
                    pg.get_username(),
                    db.message()
                ),
                _ => format!("PostgreSQL at {at}: {} (SQLSTATE {code})", db.message()),
            }
        }
        other => format!("PostgreSQL at {at}: {other}"),
    }
}

/// True when the error is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Errors that mean the database itself is unavailable (as opposed to a
/// bad query): the caller answers 503 so the sender retries.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            // An error without a code matches none of the codes below.
            let code = db.code().unwrap_or_default();
            // SQLite: 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, 14 CANTOPEN.
            // PostgreSQL: class 08 connection, 53 resources, 57 operator
            // intervention (shutdown), 40001/40P01 retryable.
            matches!(
                &*code,
                "5" | "6" | "10" | "13" | "14" | "517" | "261" | "40001" | "40P01"
            ) || code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
        }
        _ => false,
    }
}

/// The durability settings in force on the connection that commits
/// writes, as the database itself reports them.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Durability {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// True when every commit is on disk before it returns (SQLite:
    /// `synchronous` FULL or EXTRA in WAL mode; PostgreSQL:
    /// `synchronous_commit` not `off` and `fsync` on).
    pub durable: bool,
    /// Each setting as the database reports it, by name.
    pub settings: std::collections::BTreeMap<String, String>,
    /// Transactions the group committer has committed since start.
    pub group_commits: u64,
    /// Pieces of work those transactions held.
    pub group_commit_pieces: u64,
}

impl Store {
    /// Reads [`Durability`] from the connection the group commits use,
    /// inside a group commit of its own.
    pub async fn durability(&self) -> Result<Durability, sqlx::Error> {
        let backend = self.backend;
        let (durable, settings) = self
            .write(move |conn| Box::pin(durability_settings(conn, backend)))
            .await?;
        Ok(Durability {
            backend: self.backend.as_str(),
            durable,
            settings,
            group_commits: self.commit_stats().commits(),
            group_commit_pieces: self.commit_stats().pieces(),
        })
    }
}

impl Store {
    /// Whether commits are durable, as [`Store::durability`] says, but read
    /// on the writer pool's connection (set up like the lane's) without a
    /// transaction: at start-up a CLI command beside a busy server must not
    /// queue for SQLite's write lock. `Some(settings)` when they are not.
    pub async fn check_durable(&self) -> Result<Option<String>, sqlx::Error> {
        let mut conn = self.writer.acquire().await?;
        let (durable, settings) = durability_settings(&mut conn, self.backend).await?;
        Ok((!durable).then(|| describe_settings(&settings)))
    }
}

type Settings = std::collections::BTreeMap<String, String>;

/// Whether `conn` commits durably, and the settings that say so.
async fn durability_settings(
    conn: &mut Conn,
    backend: Backend,
) -> Result<(bool, Settings), sqlx::Error> {
    let mut settings = Settings::new();
    let durable = match backend {
        Backend::Sqlite => {
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await?;
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await?;
            // 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
            let sync_name = match sync {
                0 => "off",
                1 => "normal",
                2 => "full",
                3 => "extra",
                _ => "unknown",
            };
            settings.insert("journal_mode".into(), journal.to_lowercase());
            settings.insert("synchronous".into(), sync_name.into());
            sync >= 2
        }
        Backend::Postgres => {
            for name in ["synchronous_commit", "fsync", "wal_sync_method"] {
                let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
                    .fetch_one(&mut *conn)
                    .await?;
                settings.insert(name.into(), value);
            }
            settings["synchronous_commit"] != "off" && settings["fsync"] == "on"
        }
    };
    Ok((durable, settings))
}
