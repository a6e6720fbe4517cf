//! `keymint serve` starting up as a real process: errors that name their
//! cause once, logs that a file or journald can trust, and data files that
//! only their owner can read.

use crate::both_databases;
use crate::helpers::{
    Db, GUMROAD_SECRET, Served, TestDb, assert_contains, sale_form, scratch_dir, with, write_config,
};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Runs `keymint serve` without a config file in `dir`, with overrides;
/// it is expected to stop on its own (a start-up error).
fn serve_failing(dir: &Path, env: &[(&str, &str)]) -> (Output, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"))
        .arg("serve")
        .current_dir(dir)
        .env_remove("KEYMINT_LOG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run keymint serve");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

#[test]
fn a_busy_port_is_named_before_anything_is_created() {
    let dir = scratch_dir("busy");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();

    let (out, err) = serve_failing(&dir, &[("KEYMINT_SERVER__LISTEN", &addr)]);

    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&addr), "the address is named: {err}");
    assert_contains(&err, "in use");
    assert!(
        !dir.join("keymint-data").exists(),
        "no data directory, database or signing key was created"
    );
    drop(holder);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_postgres_port_says_connection_refused_once() {
    let dir = scratch_dir("pgrefused");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/keymint");

    let (out, err) = serve_failing(
        &dir,
        &[
            ("KEYMINT_SERVER__LISTEN", "127.0.0.1:0"),
            ("KEYMINT_DATABASE__URL", &url),
            ("KEYMINT_DATABASE__ACQUIRE_TIMEOUT", "2s"),
        ],
    );

    assert!(!out.status.success(), "{err}");
    assert_contains(&err, &format!("connection refused at 127.0.0.1:{port}"));
    assert_eq!(err.matches("refused").count(), 1, "the cause once: {err}");
    assert!(!err.contains("timed out"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_postgres_database_is_named_with_how_to_create_it() {
    let dir = scratch_dir("pgmissing");
    // Reach the test PostgreSQL (or skip, as every PostgreSQL test does).
    let Some(existing) = TestDb::create(Db::Postgres, &dir, None).await else {
        return;
    };
    let missing = format!(
        "keymint_missing_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let (base, _) = existing.url.rsplit_once('/').unwrap();
    let url = format!("{base}/{missing}");

    let (out, err) = serve_failing(
        &dir,
        &[
            ("KEYMINT_SERVER__LISTEN", "127.0.0.1:0"),
            ("KEYMINT_DATABASE__URL", &url),
        ],
    );

    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&missing), "the database is named: {err}");
    assert!(
        err.contains("createdb") || err.contains("CREATE DATABASE"),
        "how to create it: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn text_logs_are_plain_and_cannot_be_forged(db: Db) {
    let dir = scratch_dir("forge");
    let Some(database) = TestDb::create(db, &dir, None).await else {
        return;
    };
    let config = write_config(&dir, &database.url, "http://127.0.0.1:9");
    let mut served = Served::start(
        &dir,
        &["--config", config.to_str().unwrap()],
        &[
            ("KEYMINT_EMAIL__PROVIDER", "log"),
            ("KEYMINT_WORKERS__ENABLED", "true"),
        ],
    );

    let sale = with(sale_form("GUM-FORGE"), "full_name", "Jane\r\nFORGED line");
    let resp = reqwest::Client::new()
        .post(served.url(&format!("/webhooks/gumroad?secret={GUMROAD_SECRET}")))
        .form(&sale)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    served.wait_for_line("log provider");
    let log = served.stop();

    assert!(log.contains("Jane"), "the email was logged: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "no escape codes in a pipe: {log:?}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "a buyer's name started a log line: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
async fn data_files_are_private_whatever_the_umask(db: Db) {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch_dir("modes");
    let Some(database) = TestDb::create(db, &dir, None).await else {
        return;
    };
    let config = write_config(&dir, &database.url, "http://127.0.0.1:9");
    let mode = |p: PathBuf| {
        let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        meta.permissions().mode() & 0o777
    };

    let served =
        Served::start_with_umask(&dir, &["--config", config.to_str().unwrap()], &[], "022");
    let data = dir.join("data");
    let mut modes = vec![
        ("data dir", mode(data.clone()), 0o700),
        ("keys dir", mode(data.join("keys")), 0o700),
    ];
    if db == Db::Sqlite {
        for file in ["keymint.db", "keymint.db-wal", "keymint.db-shm"] {
            modes.push((file, mode(data.join(file)), 0o600));
        }
    }
    served.stop();

    for (what, actual, expected) in modes {
        assert_eq!(actual, expected, "{what} is {actual:o}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
both_databases!(
    text_logs_are_plain_and_cannot_be_forged,
    data_files_are_private_whatever_the_umask
);
