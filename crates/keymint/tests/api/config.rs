//! Configuration as an operator meets it: environment overrides in their
//! documented form, placeholder and short secrets, the log level, and
//! problems that name where they are.

use crate::both_databases;
use crate::helpers::{
    Db, PRODUCT_B_MAPPED_TWICE, assert_contains, sale_form, scratch_dir, spawn_app_with, stderr,
};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Runs `keymint --config <file> <args>` in `dir` with extra variables.
fn keymint(dir: &Path, config: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keymint"));
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(args)
        .current_dir(dir)
        .env_remove("KEYMINT_LOG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run keymint")
}

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../keymint.example.toml")
}

async fn list_form_env_override_replaces_the_secrets(db: Db) {
    let new = "rotated-secret-number-one";
    let newer = "rotated-secret-number-two";
    let Some(app) = spawn_app_with(
        db,
        &[(
            "KEYMINT_ENDPOINTS__GUMROAD__SECRETS",
            &format!(r#"["{new}", "{newer}"]"#),
        )],
    )
    .await
    else {
        return;
    };

    let second = app
        .post_gumroad_with_secret(&sale_form("GUM-ENV-LIST"), Some(newer))
        .await;
    let replaced = app
        .post_gumroad_with_secret(
            &sale_form("GUM-ENV-OLD"),
            Some(crate::helpers::GUMROAD_SECRET),
        )
        .await;

    assert_eq!(second.status(), 200, "{}", second.text().await.unwrap());
    assert_eq!(replaced.status(), 404, "the file's secrets were replaced");
}

both_databases!(list_form_env_override_replaces_the_secrets);

#[test]
fn a_list_override_that_does_not_parse_is_an_error_naming_the_variable() {
    let dir = scratch_dir("envlist");
    let out = keymint(
        &dir,
        Some(&example_config()),
        &["check-config"],
        &[
            ("KEYMINT_SERVER__ALLOW_WEAK_SECRETS", "true"),
            ("KEYMINT_ENDPOINTS__GUMROAD__SECRETS", r#"["s1", s2"#),
        ],
    );

    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("KEYMINT_ENDPOINTS__GUMROAD__SECRETS:"),
        "the variable is named: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_refuses_the_example_placeholders_unless_opted_out() {
    let dir = scratch_dir("placeholders");

    let refused = keymint(&dir, Some(&example_config()), &["check-config"], &[]);
    let opted_out = keymint(
        &dir,
        Some(&example_config()),
        &["check-config"],
        &[("KEYMINT_SERVER__ALLOW_WEAK_SECRETS", "true")],
    );

    let err = stderr(&refused);
    assert!(!refused.status.success(), "{err}");
    for (path, placeholder) in [
        (
            "endpoints[0].secrets[0]",
            "replace-me-with-a-long-random-string",
        ),
        ("endpoints[1].secrets[0]", "whsec_replace_me"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(path) && l.contains(placeholder)),
            "{path} ({placeholder}) is refused: {err}"
        );
    }
    assert!(opted_out.status.success(), "{}", stderr(&opted_out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn short_secrets_are_refused_with_the_minimum_named() {
    let dir = scratch_dir("short");
    let config = dir.join("k.toml");
    // A 12-character Gumroad secret, and a Standard Webhooks key whose
    // base64 text is long but decodes to 8 bytes ("12345678").
    std::fs::write(
        &config,
        r#"
[[endpoints]]
name = "gumroad"
kind = "gumroad"
secrets = ["twelve-chars"]
[[endpoints]]
name = "store"
kind = "standard"
secrets = ["whsec_MTIzNDU2Nzg="]
[[endpoints]]
name = "stripe"
kind = "stripe"
secrets = ["whsec_0123456789abcdefghijklmnopqrstuv"]
"#,
    )
    .unwrap();

    let out = keymint(&dir, Some(&config), &["check-config"], &[]);

    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let line = |path: &str| {
        err.lines()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("no problem at {path}: {err}"))
            .to_string()
    };
    assert!(
        line("endpoints[0].secrets[0]").contains("16 bytes"),
        "{err}"
    );
    assert!(
        line("endpoints[1].secrets[0]").contains("16 bytes"),
        "{err}"
    );
    assert!(
        !err.contains("endpoints[2]"),
        "a long Stripe secret is fine: {err}"
    );
    assert!(
        !err.contains("twelve-chars"),
        "a secret is never printed: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_weak_secret_opt_out_needs_a_loopback_address() {
    let dir = scratch_dir("optout");

    let out = keymint(
        &dir,
        Some(&example_config()),
        &["check-config"],
        &[
            ("KEYMINT_SERVER__ALLOW_WEAK_SECRETS", "true"),
            ("KEYMINT_SERVER__LISTEN", "0.0.0.0:8080"),
        ],
    );

    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_contains(&err, "server.allow_weak_secrets");
    assert_contains(&err, "replace-me-with-a-long-random-string");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_invalid_log_level_stops_every_command() {
    let dir = scratch_dir("loglevel");
    let config = dir.join("k.toml");
    std::fs::write(&config, "[server]\nlog_level = \"loud\"\n").unwrap();

    let checked = keymint(&dir, Some(&config), &["check-config"], &[]);
    let migrated = keymint(&dir, Some(&config), &["migrate"], &[]);
    let from_env = keymint(&dir, None, &["migrate"], &[("KEYMINT_LOG", "loud")]);

    for out in [&checked, &migrated] {
        let err = stderr(out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("server.log_level") && err.contains("loud"),
            "{err}"
        );
    }
    let err = stderr(&from_env);
    assert!(!from_env.status.success(), "{err}");
    assert_contains(&err, "KEYMINT_LOG");
    assert!(
        !dir.join("keymint-data").exists(),
        "nothing is created for a refused configuration"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_problem_names_its_path_and_all_are_listed_at_once() {
    let dir = scratch_dir("paths");
    let config = dir.join("k.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
max_body_bytes = -5
request_timeout = "soon"
[[endpoints]]
name = "gumroad"
kind = "gumroad"
secrets = ["a-long-enough-gumroad-secret"]
[[endpoints]]
name = "paddle"
kind = "paddle"
secrets = ["pdl_ntfset_a-long-enough-paddle-secret"]
[[endpoints]]
name = "shop"
kind = "shopify"
secrets = ["a-long-enough-shop-secret"]
[[products]]
id = "a"
name = "A"
tier = "core"
key_prefix = "A"
entitlements = ["export", 7]
[products.map]
gumroad = ["same"]
shop = ["x"]
{PRODUCT_B_MAPPED_TWICE}"#
        ),
    )
    .unwrap();

    let out = keymint(&dir, Some(&config), &["check-config"], &[]);

    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let problems: Vec<&str> = err
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .collect();
    for (path, about) in [
        ("endpoints[2].kind", "shopify"),
        ("server.max_body_bytes", "-5"),
        ("server.request_timeout", "soon"),
        ("products[0].entitlements[1]", "7"),
        ("products[1].map.gumroad", "mapped twice"),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{path}:")) && p.contains(about)),
            "a problem at {path} about {about}: {err}"
        );
    }
    assert!(
        !problems.iter().any(|p| p.contains("shop\" is not defined")),
        "an endpoint that could not be read is not blamed twice: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_lists_an_unreachable_database_with_the_other_problems() {
    let dir = scratch_dir("dbtoo");
    // A port nothing listens on: bind one and let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("k.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[database]
url = "postgres://keymint@127.0.0.1:{port}/keymint"
acquire_timeout = "2s"
[[endpoints]]
name = "gumroad"
kind = "gumroad"
secrets = ["replace-me-with-a-long-random-string"]
"#
        ),
    )
    .unwrap();

    let out = keymint(&dir, Some(&config), &["check-config"], &[]);

    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.starts_with("2 problem(s)"), "{err}");
    assert_contains(&err, "endpoints[0].secrets");
    assert!(
        err.contains(&format!(
            "database.url: unreachable: connection refused at 127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[test]
fn check_config_writes_nothing() {
    let dir = scratch_dir("nowrite");
    let config = dir.join("k.toml");
    std::fs::write(
        &config,
        r#"
[server]
data_dir = "data"
[[endpoints]]
name = "gumroad"
kind = "gumroad"
secrets = ["a-long-enough-gumroad-secret"]
"#,
    )
    .unwrap();

    let out = keymint(&dir, Some(&config), &["check-config"], &[]);

    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !dir.join("data").exists(),
        "check-config created the data directory"
    );
    // An existing database is opened read-only and left as it was.
    let migrate = keymint(&dir, Some(&config), &["migrate"], &[]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    let db = dir.join("data/keymint.db");
    let before = std::fs::read(&db).unwrap();
    let out = keymint(&dir, Some(&config), &["check-config"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn zero_periods_and_batches_are_refused() {
    let dir = scratch_dir("zero");
    let config = dir.join("k.toml");
    std::fs::write(
        &config,
        r#"
[server]
request_timeout = "0s"
[email]
poll_interval = "0s"
[reconciler]
interval = "0s"
batch = 0
[retention]
batch = -1
"#,
    )
    .unwrap();

    let out = keymint(&dir, Some(&config), &["check-config"], &[]);

    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    for problem in [
        "server.request_timeout: must be longer than zero",
        "email.poll_interval: must be longer than zero",
        "reconciler.interval: must be longer than zero",
        "reconciler.batch: must be at least 1, not 0",
        "retention.batch: must be at least 1, not -1",
    ] {
        assert!(err.contains(problem), "{problem} missing from {err}");
    }
}
