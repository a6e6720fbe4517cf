//! Test harness: `spawn_app(db)` starts a real keymint on a random port
//! with its own fresh database (a SQLite file in a temp dir, or a new
//! PostgreSQL database), a fake Postmark (wiremock) and a config file the
//! CLI can use too. Background workers are off; tests drive the outbox
//! step by step with `send_pending_emails()`. [`Served`] runs the binary
//! as a separate process instead.
//!
//! Arrange helpers: `app.admin()` (a typed client with an admin token made
//! in-process), `app.gumroad(form)` (a sale's typed answer),
//! `app.gumroad_sale(form)` (its `LicenseKey`), `app.cli(args)`.
//!
//! Shared by the `api` and `faults` test binaries (with `client.rs` and
//! `views.rs`); each uses a part.
#![allow(dead_code)]

use crate::client::{Api, expect_json};
use crate::views::WebhookAnswer;
use keymint::config::Config;
use keymint::{AppState, Application};
use keymint_license::LicenseKey;
use serde_json::Value;
use sqlx::Connection;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const GUMROAD_SECRET: &str = "test-gumroad-secret";
/// `whsec_` + base64("keymint-standard-test-key-000001").
pub const STANDARD_SECRET: &str = "whsec_a2V5bWludC1zdGFuZGFyZC10ZXN0LWtleS0wMDAwMDE=";
/// `whsec_` + base64("keymint-standard-old-key-0000001").
pub const STANDARD_OLD_SECRET: &str = "whsec_a2V5bWludC1zdGFuZGFyZC1vbGQta2V5LTAwMDAwMDE=";
/// The test config's endpoints, each named after its kind, with its older
/// and its current secret (both accepted: rotation).
pub const ENDPOINTS: [(&str, &str, &str); 7] = [
    ("gumroad", "old-secret", GUMROAD_SECRET),
    (
        "stripe",
        "whsec_old_stripe_secret",
        "whsec_test_stripe_secret",
    ),
    ("standard", STANDARD_OLD_SECRET, STANDARD_SECRET),
    ("polar", "polar_whs_old_secret", "polar_whs_test_secret"),
    ("lemonsqueezy", "ls-old-secret", "ls-test-secret"),
    ("paddle", "pdl_ntfset_old_secret", "pdl_ntfset_test_secret"),
    ("hyperswitch", "hs-old-hash-key", "hs-test-hash-key"),
];
pub const POLAR_CORE: &str = "0d7e8c1a-0b0e-4f2c-9a1e-5b1c2d3e4f50";
pub const POLAR_SUB: &str = "5f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Defines each listed `async fn name(db: Db)` as two tests, one per
/// database.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Postgres).await
                }
            )*
        }
    };
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub postmark: MockServer,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub db: Db,
    pub database: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A fresh database for one test; a PostgreSQL one is dropped afterwards.
pub struct TestDb {
    pub url: String,
    pub pg_name: Option<String>,
}

impl TestDb {
    /// A new empty database (a SQLite file under `dir`, or a PostgreSQL
    /// database reached through `pg_port` when given, e.g. a proxy), or
    /// None when PostgreSQL is unreachable and not required.
    pub async fn create(db: Db, dir: &Path, pg_port: Option<u16>) -> Option<Self> {
        match db {
            Db::Sqlite => Some(Self {
                url: format!("sqlite://{}", dir.join("data/keymint.db").display()),
                pg_name: None,
            }),
            Db::Postgres => {
                let name = create_pg_database().await?;
                let mut url = pg_url_for(&name);
                if let Some(port) = pg_port {
                    url = url.replace(":5432/", &format!(":{port}/"));
                }
                Some(Self {
                    url,
                    pg_name: Some(name),
                })
            }
        }
    }

    /// A pool on this database, for checks from the test.
    pub async fn store(&self) -> keymint::store::Store {
        let direct = match &self.pg_name {
            Some(name) => pg_url_for(name),
            None => self.url.clone(),
        };
        keymint::store::Store::connect(&direct, &keymint::config::DatabaseConfig::default())
            .await
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside async; use a private runtime on a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

fn admin_url() -> String {
    std::env::var("KEYMINT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn pg_url_for(database: &str) -> String {
    let base = admin_url();
    let (prefix, _) = base.rsplit_once('/').expect("URL has a database path");
    format!("{prefix}/{database}")
}

/// Creates a fresh PostgreSQL database, or returns None (with a notice)
/// when PostgreSQL is unreachable and not required.
async fn create_pg_database() -> Option<String> {
    let mut conn = match sqlx::PgConnection::connect(&admin_url()).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("KEYMINT_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!(
                    "PostgreSQL is required (KEYMINT_TEST_REQUIRE_POSTGRES=1) but unreachable at {}: {e}",
                    admin_url()
                );
            }
            eprintln!(
                "NOTICE: skipping a PostgreSQL test: {} is unreachable ({e})",
                admin_url()
            );
            return None;
        }
    };
    let name = format!(
        "keymint_test_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    Some(name)
}

/// A fresh directory under the system's temp directory, named after `tag`.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keymint-{tag}-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What `spawn_app` starts from, without starting it, for tests that run
/// `keymint` processes themselves: a scratch directory (with its `data`
/// folder), a fresh database and the test config (emails go nowhere).
/// None when PostgreSQL is unreachable and not required.
pub async fn unstarted(db: Db, tag: &str) -> Option<(PathBuf, TestDb, PathBuf)> {
    let dir = scratch_dir(tag);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let database = TestDb::create(db, &dir, None).await?;
    let config = write_config(&dir, &database.url, "http://127.0.0.1:9");
    Some((dir, database, config))
}

/// Writes the test configuration to `<dir>/keymint.toml`; returns its path.
pub fn write_config(dir: &Path, db_url: &str, postmark: &str) -> PathBuf {
    let path = dir.join("keymint.toml");
    std::fs::write(&path, config_text(dir, db_url, postmark)).unwrap();
    path
}

fn config_text(dir: &std::path::Path, db_url: &str, postmark: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{data}"
# Tests send many bad signatures from one address; the limit has its own test.
rejected_per_minute = 100000
# The secrets below are short, readable test values.
allow_weak_secrets = true

[database]
url = "{db_url}"
acquire_timeout = "2s"
busy_timeout = "300ms"

[email]
provider = "postmark"
from = "licenses@example.com"
max_attempts = 3
retry_base = "0s"
retry_max = "0s"

[email.postmark]
server_token = "pm-test-token"
api_url = "{postmark}"

[workers]
enabled = false

# Tests send many licensing requests from one address; the limits have
# their own tests.
[licensing.rate_limit]
per_minute = 1000000
not_found_per_minute = 1000000

[checkout]
allowed_redirect_hosts = ["shop.example.com", "*.example.org"]
per_minute = 1000000
not_found_per_minute = 1000000

{endpoints}
[[products]]
id = "datatools-core"
name = "DataTools Core"
tier = "core"
key_prefix = "DT1"
duration = "365d"
max_machines = 3
entitlements = ["export"]
[products.checkout]
endpoint = "stripe"
[products.map]
gumroad = ["datatools-core"]
stripe = ["price_core_onetime"]
standard = ["core"]
polar = ["{POLAR_CORE}"]
lemonsqueezy = ["101"]
paddle = ["pri_core_onetime"]
hyperswitch = ["datatools-core"]

[[products]]
id = "datatools-sub"
name = "DataTools Subscription"
tier = "sub"
key_prefix = "DT1"
subscription = true
entitlements = ["export", "sync"]
trial_days = 14
[products.checkout]
endpoint = "stripe"
[products.map]
gumroad = ["dt-membership"]
stripe = ["price_sub_monthly"]
standard = ["plan-monthly"]
polar = ["{POLAR_SUB}"]
lemonsqueezy = ["202"]
paddle = ["pri_sub_monthly"]

[[products]]
id = "datatools-pro"
name = "DataTools Pro"
tier = "pro"
key_prefix = "DT1"
duration = "perpetual"
entitlements = ["export", "sync"]
consent = "required"
terms_version = "2026-05"
[products.checkout]
endpoint = "hyperswitch"
amount_cents = 4900
currency = "usd"
[products.map]
gumroad = ["dt-pro", "datatools-pro-permalink"]
"#,
        data = dir.join("data").display(),
        endpoints = ENDPOINTS
            .iter()
            .map(|(name, old, current)| format!(
                "[[endpoints]]\nname = \"{name}\"\nkind = \"{name}\"\nsecrets = [\"{old}\", \"{current}\"]\n\n"
            ))
            .collect::<String>(),
    )
}

pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, &[]).await
}

/// Starts an app whose `kind` endpoint has an API key and a fake API's
/// URL (a wiremock server on loopback), with the reconciler looking at
/// every pending row at once, and `extra` overrides.
pub async fn spawn_app_with_api(
    db: Db,
    kind: &str,
    api: &MockServer,
    extra: &[(&str, &str)],
) -> Option<TestApp> {
    let upper = kind.to_uppercase();
    let key = format!("KEYMINT_ENDPOINTS__{upper}__API_KEY");
    let url = format!("KEYMINT_ENDPOINTS__{upper}__API_URL");
    let uri = api.uri();
    let mut env = vec![
        (key.as_str(), "sk_test_keymint"),
        (url.as_str(), uri.as_str()),
        ("KEYMINT_RECONCILER__PENDING_AGE", "0s"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(db, &env).await
}

/// Starts an app with `KEYMINT_*` environment overrides applied to its
/// config file.
pub async fn spawn_app_with(db: Db, env: &[(&str, &str)]) -> Option<TestApp> {
    spawn_app_custom(db, env, None).await
}

/// Starts an app whose PostgreSQL connections go to `pg_port` (a proxy).
pub async fn spawn_app_custom(
    db: Db,
    env: &[(&str, &str)],
    pg_port: Option<u16>,
) -> Option<TestApp> {
    let dir = scratch_dir("test");
    let database = TestDb::create(db, &dir, pg_port).await?;
    let postmark = MockServer::start().await;
    let config_path = write_config(&dir, &database.url, &postmark.uri());
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::load_with_env(Some(&config_path), &env).expect("test config is valid");
    let app = Application::build(config).await.expect("app builds");
    let base = format!("http://{}", app.addr());
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    Some(TestApp {
        base,
        client: reqwest::Client::new(),
        state,
        postmark,
        dir,
        config_path,
        db,
        database,
        shutdown: Some(tx),
    })
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `keymint --config <config> <args>` with extra environment
/// variables (warnings only in its log).
pub fn keymint_cli(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keymint"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KEYMINT_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run keymint")
}

/// A command's standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A configuration's last product, `b`, mapping the Gumroad product `same`
/// that product `a` already maps: a problem `check-config` must report.
pub const PRODUCT_B_MAPPED_TWICE: &str = r#"[[products]]
id = "b"
name = "B"
tier = "core"
key_prefix = "B"
[products.map]
gumroad = ["same"]
"#;

/// Writes `text` to a config file in a fresh scratch directory; its path.
pub fn config_file(tag: &str, text: &str) -> PathBuf {
    let path = scratch_dir(tag).join("k.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The arguments of `keymint license mint` for a `datatools-core` license
/// to `email`, followed by `extra`.
pub fn mint_args<'a>(email: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "license",
        "mint",
        "--product",
        "datatools-core",
        "--email",
        email,
    ];
    args.extend_from_slice(extra);
    args
}

/// Asserts that `text` contains `needle`, showing the text when not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in: {text}");
}

/// A Gumroad sale ping's fields.
pub fn sale_form(sale_id: &str) -> Vec<(String, String)> {
    [
        ("sale_id", sale_id),
        ("email", "jane@example.com"),
        ("full_name", "Jane Doe"),
        ("product_id", "datatools-core"),
        ("price", "9900"),
        ("currency", "usd"),
        ("test", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn with(mut form: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    form.retain(|(k, _)| k != key);
    form.push((key.to_string(), value.to_string()));
    form
}

impl TestApp {
    /// The app's config with the first `from` replaced by `to` (which must
    /// be there), written beside it as `name`; its path.
    pub fn config_replacing(&self, from: &str, to: &str, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let changed = text.replacen(from, to, 1);
        assert_ne!(text, changed);
        let path = self.dir.join(name);
        std::fs::write(&path, changed).unwrap();
        path
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts a form to the Gumroad endpoint with the right secret.
    pub async fn post_gumroad(&self, form: &[(String, String)]) -> reqwest::Response {
        self.post_gumroad_with_secret(form, Some(GUMROAD_SECRET))
            .await
    }

    pub async fn post_gumroad_with_secret(
        &self,
        form: &[(String, String)],
        secret: Option<&str>,
    ) -> reqwest::Response {
        let url = match secret {
            Some(s) => self.url(&format!("/webhooks/gumroad?secret={s}")),
            None => self.url("/webhooks/gumroad"),
        };
        self.client
            .post(url)
            .form(form)
            .send()
            .await
            .expect("request sent")
    }

    /// Makes the fake Postmark accept every email.
    pub async fn postmark_accepts(&self) {
        Mock::given(method("POST"))
            .and(path("/email"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "ErrorCode": 0, "Message": "OK", "MessageID": ulid::Ulid::generate().to_string()
            })))
            .mount(&self.postmark)
            .await;
    }

    /// Runs the outbox worker until nothing is due.
    pub async fn send_pending_emails(&self) -> usize {
        keymint::workers::outbox::run_once(&self.state)
            .await
            .expect("outbox run")
    }

    /// Emails Postmark received, as JSON bodies.
    pub async fn sent_emails(&self) -> Vec<Value> {
        self.postmark
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("JSON email"))
            .collect()
    }

    /// The number a query with one argument finds (a `COUNT(*)`).
    pub async fn scalar(&self, sql: &'static str, arg: &str) -> i64 {
        self.fetch_scalar(sql, arg).await
    }

    /// How many rows of `table` have `column` equal to `value`.
    pub async fn count(&self, table: &str, column: &str, value: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
        let mut conn = self.state.store.conn().await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("counting {table} by {column}: {e}"))
    }

    /// How many emails the licenses of a provider order id have.
    pub async fn emails_for_order(&self, order_id: &str) -> i64 {
        self.scalar(
            "SELECT COUNT(*) FROM outbox o JOIN licenses l ON l.id = o.license_id WHERE l.order_id = $1",
            order_id,
        )
        .await
    }

    /// The text a query with one argument finds.
    pub async fn scalar_text(&self, sql: &'static str, arg: &str) -> String {
        self.fetch_scalar(sql, arg).await
    }

    async fn fetch_scalar<T>(&self, sql: &'static str, arg: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + Unpin,
    {
        let mut conn = self.state.store.conn().await.unwrap();
        sqlx::query_scalar(sql)
            .bind(arg)
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{sql} ({arg}): {e}"))
    }

    /// A license as stored, by its key.
    pub async fn stored_license(&self, key: &LicenseKey) -> keymint::store::licenses::License {
        let mut conn = self.state.store.conn().await.unwrap();
        keymint::store::licenses::by_key(&mut conn, key)
            .await
            .unwrap()
            .expect("license exists")
    }

    /// How many licenses exist for a provider order id.
    pub async fn licenses_for(&self, order_id: &str) -> i64 {
        self.count("licenses", "order_id", order_id).await
    }

    /// A stored delivery.
    pub async fn delivery(&self, id: impl AsRef<str>) -> keymint::store::deliveries::Delivery {
        let mut conn = self.state.store.conn().await.unwrap();
        let id = id.as_ref().parse().expect("a delivery id");
        keymint::store::deliveries::get(&mut conn, &id)
            .await
            .unwrap()
            .expect("delivery exists")
    }

    /// Runs the keymint binary against this app's config and database.
    pub fn cli(&self, args: &[&str]) -> Output {
        keymint_cli(&self.config_path, args, &[])
    }

    /// Creates an admin token with every scope, in-process through the
    /// library (as `keymint admin-token create` does); returns its text.
    pub async fn admin_token(&self, name: &str) -> String {
        self.scoped_token(name, keymint::admin::scope::ADMIN).await
    }

    /// Creates an admin token with the one scope `scope`, as
    /// [`TestApp::admin_token`] does; returns its text.
    pub async fn scoped_token(&self, name: &str, scope: &str) -> String {
        let (_, text) = keymint::admin::create_token(&self.state.store, name, &[scope.to_string()])
            .await
            .expect("admin token created");
        text
    }

    /// Creates an admin token by running `keymint admin-token create`, for
    /// the tests of that command; returns the token text.
    pub fn admin_token_via_cli(&self, name: &str) -> String {
        let out = self.cli(&["admin-token", "create", "--name", name]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).lines().last().unwrap().trim().to_string()
    }

    /// A typed client holding a fresh admin token named `ops`.
    pub async fn admin(&self) -> Api {
        let token = self.admin_token("ops").await;
        Api::new(self.client.clone(), &self.base, Some(token))
    }

    /// A typed client sending `token` (one made elsewhere, or a bad one).
    pub fn admin_with(&self, token: &str) -> Api {
        Api::new(self.client.clone(), &self.base, Some(token.to_string()))
    }

    /// A typed client without a token, for the public routes.
    pub fn api(&self) -> Api {
        Api::new(self.client.clone(), &self.base, None)
    }

    /// Posts a Gumroad form with the right secret; its answer, which must
    /// be 200.
    pub async fn gumroad(&self, form: &[(String, String)]) -> WebhookAnswer {
        expect_json(self.post_gumroad(form).await, 200).await
    }

    /// Posts a Gumroad sale that must mint (or find) a license; its key.
    pub async fn gumroad_sale(&self, form: &[(String, String)]) -> LicenseKey {
        let answer = self.gumroad(form).await;
        assert_eq!(answer.status, "ok", "{answer}");
        answer.license_key.expect("a license key")
    }

    pub async fn admin_get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_post(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// A database outage a test can start and end: on PostgreSQL the test
/// database stops accepting connections and its sessions are terminated;
/// on SQLite another connection holds the write lock.
pub enum Outage {
    Postgres(String),
    Sqlite(sqlx::SqliteConnection),
}

impl Outage {
    pub async fn start(app: &TestApp) -> Self {
        match app.db {
            Db::Postgres => {
                let name = app.database.pg_name.clone().unwrap();
                let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&name)
                .execute(&mut conn)
                .await
                .unwrap();
                Self::Postgres(name)
            }
            Db::Sqlite => {
                let path = app.dir.join("data/keymint.db");
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Self::Sqlite(conn)
            }
        }
    }

    pub async fn end(self) {
        match self {
            Self::Postgres(name) => {
                let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            }
            Self::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

/// A running `keymint serve` whose log lines are collected.
pub struct Served {
    pub child: Child,
    pub port: u16,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymint"));
        cmd.args(args).arg("serve");
        Self::spawn(cmd, dir, env)
    }

    /// Like [`Served::start`], with the process's umask set first (through
    /// `sh`, so the test process's own umask is left alone).
    pub fn start_with_umask(dir: &Path, args: &[&str], env: &[(&str, &str)], umask: &str) -> Self {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_keymint"))
            .args(args)
            .arg("serve");
        Self::spawn(cmd, dir, env)
    }

    fn spawn(mut cmd: Command, dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = cmd
            .current_dir(dir)
            .env("KEYMINT_LOG", "info,sqlx=warn")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn keymint serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut seen = Vec::new();
        let port = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("keymint did not start; log so far: {seen:#?}"));
            let port = line
                .split("listening on http://")
                .nth(1)
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect::<String>()
                })
                .and_then(|addr| addr.rsplit(':').next().and_then(|p| p.parse().ok()));
            seen.push(line);
            if let Some(port) = port {
                break port;
            }
        };
        Self {
            child,
            port,
            lines,
            seen,
        }
    }

    /// Waits (up to a minute) for a log line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}; log: {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops the server (SIGTERM, graceful) and returns its whole log.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        self.seen.extend(self.lines.try_iter());
        self.seen.join("\n")
    }
}
