//! The integration recipes of docs/licensing-api.md, run as their users run
//! them: `docs/recipes/keymint_client.py` (Python, pyseto) and
//! `docs/recipes/keymint_client.mjs` (Node, paseto) as subprocesses against
//! a live server. A license is minted by a Gumroad sale, activated and
//! validated by the recipe, refunded, and validated again; and every check
//! a recipe makes on a signed answer must be able to fail.
//!
//! Skipped with a NOTICE when python3 with pyseto, or node with
//! `docs/recipes/node_modules`, is missing, unless
//! KEYMINT_TEST_REQUIRE_INTEROP=1 (then that is a failure).

use crate::both_databases;
use crate::helpers::{Db, TestApp, sale_form, spawn_app, spawn_app_with, with};
use crate::views::PublishedKey;
use keymint_license::SigningKey;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn recipes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/recipes")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Python,
    Node,
}

impl Lang {
    fn command(self) -> Command {
        let dir = recipes_dir();
        let mut cmd = match self {
            Self::Python => {
                let mut c = Command::new("python3");
                c.arg(dir.join("keymint_client.py"));
                c
            }
            Self::Node => {
                let mut c = Command::new("node");
                c.arg(dir.join("keymint_client.mjs"));
                c
            }
        };
        cmd.current_dir(dir).env_remove("KEYMINT_RECIPE_TEST_NONCE");
        cmd
    }

    /// Whether this recipe can run here; with KEYMINT_TEST_REQUIRE_INTEROP=1
    /// a missing tool is a failure that says how to install it.
    fn available(self) -> bool {
        let (ok, what, install) = match self {
            Self::Python => (
                Command::new("python3")
                    .args(["-c", "import pyseto"])
                    .output()
                    .is_ok_and(|o| o.status.success()),
                "python3 with pyseto",
                "python3 -m pip install pyseto",
            ),
            Self::Node => (
                Command::new("node")
                    .args([
                        "-e",
                        "if (+process.versions.node.split('.')[0] < 20) process.exit(1)",
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success())
                    && recipes_dir()
                        .join("node_modules/paseto/package.json")
                        .is_file(),
                "node 20+ with docs/recipes/node_modules",
                "npm ci --prefix docs/recipes",
            ),
        };
        if ok {
            return true;
        }
        if std::env::var("KEYMINT_TEST_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
            panic!(
                "{what} is required for the recipe tests (KEYMINT_TEST_REQUIRE_INTEROP=1); install it with: {install}"
            );
        }
        eprintln!("NOTICE: skipping the {self:?} recipe test: {what} is missing ({install})");
        false
    }
}

/// What one run of a recipe printed (its one JSON line) and its exit code.
#[derive(Debug)]
struct Ran {
    code: i32,
    out: Value,
}

impl Ran {
    #[track_caller]
    fn ok(&self) -> &Value {
        assert_eq!(self.code, 0, "the recipe failed: {}", self.out);
        &self.out
    }

    /// A signed answer did not verify: exit 3 and an error saying why.
    #[track_caller]
    fn unverified(&self, why: &str) {
        assert_eq!(self.code, 3, "the recipe must refuse this: {}", self.out);
        let error = self.out["error"].as_str().unwrap_or_default();
        assert!(error.contains("does not verify"), "{}", self.out);
        assert!(error.contains(why), "{why:?} not in {}", self.out);
        assert!(
            self.out.get("code").is_none(),
            "nothing is reported as the answer: {}",
            self.out
        );
    }
}

async fn run(lang: Lang, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = lang.command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // The server runs on this test's runtime: wait for the child elsewhere.
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("the recipe starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let out: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{lang:?} recipe printed no JSON line ({e}): stdout {stdout:?}, stderr {:?}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    Ran {
        code: output.status.code().unwrap_or(-1),
        out,
    }
}

/// A license minted by a Gumroad sale: its key and its token (in a file).
struct Minted {
    key: String,
    token_file: String,
}

async fn mint(app: &TestApp, form: &[(String, String)], name: &str) -> Minted {
    let key = app.gumroad_sale(form).await;
    let token = app.stored_license(&key).await.token;
    let path = app.dir.join(name);
    std::fs::write(&path, token).unwrap();
    Minted {
        key: key.to_string(),
        token_file: format!("@{}", path.display()),
    }
}

async fn published_key(app: &TestApp) -> PublishedKey {
    let mut keys = app.api().published_keys().await.keys;
    assert_eq!(keys.len(), 1);
    keys.remove(0)
}

/// The pinned-key arguments: the PASERK and its kid.
fn pinned(key: &PublishedKey) -> [&str; 4] {
    ["--public-key", &key.public_key, "--kid", &key.kid]
}

async fn round_trip(db: Db, lang: Lang) {
    if !lang.available() {
        return;
    }
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let sale = format!("GUM-RECIPE-{lang:?}");
    let license = mint(&app, &sale_form(&sale), "license.tok").await;
    let key = published_key(&app).await;
    let fingerprint = format!("{lang:?}-machine-0001");
    let machine_file = app.dir.join("machine.tok");
    let machine_file = machine_file.to_str().unwrap();
    let base = [
        "--server",
        app.base.as_str(),
        "--key",
        &license.key,
        "--fingerprint",
        &fingerprint,
    ];

    // Activate with the pinned key: machine file, receipt and license
    // token all verified.
    let args = [
        &["activate"][..],
        &base,
        &pinned(&key),
        &[
            "--license-token",
            &license.token_file,
            "--save-machine-file",
            machine_file,
        ],
    ]
    .concat();
    let first = run(lang, &args, &[]).await;
    let out = first.ok();
    assert_eq!(out["activated"], true, "{out}");
    assert_eq!(out["created"], true, "{out}");
    assert_eq!(out["machine_file_ok"], true, "{out}");
    assert_eq!(out["receipt_ok"], true, "{out}");
    assert_eq!(out["code"], "VALID", "{out}");
    assert_eq!(out["valid"], true, "{out}");
    assert_eq!(out["license_token_ok"], true, "{out}");
    assert!(
        out["license_token_exp"].is_string(),
        "a 365-day license: {out}"
    );
    let machine = out["machine"].as_str().unwrap().to_string();
    assert!(machine.starts_with("mch_"), "{out}");

    // Activation is idempotent: the same machine, no second seat.
    let again = run(lang, &args, &[]).await;
    assert_eq!(again.ok()["created"], false, "{}", again.out);
    assert_eq!(again.out["machine"], machine.as_str());
    let seats: Value = app
        .client
        .get(app.url(&format!("/v1/licenses/{}/machines", license.key)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seats["machines_active"], 1, "{seats}");
    assert_eq!(seats["max_machines"], 3, "{seats}");

    // Offline: the stored machine file verifies for this machine.
    let stored = format!("@{machine_file}");
    let offline = [
        &[
            "offline",
            "--fingerprint",
            &fingerprint,
            "--machine-file",
            &stored,
        ][..],
        &pinned(&key),
    ]
    .concat();
    let out = run(lang, &offline, &[]).await;
    assert_eq!(out.ok()["machine"], machine.as_str(), "{}", out.out);
    assert_eq!(out.out["key"], license.key.as_str());

    // Validate with the keys fetched from GET /v1/keys, and the key typed
    // in lower case (the server's forgiving parse).
    let lower = license.key.to_lowercase();
    let fetched = [
        "validate",
        "--server",
        &app.base,
        "--key",
        &lower,
        "--fingerprint",
        &fingerprint,
    ];
    let out = run(lang, &fetched, &[]).await;
    assert_eq!(out.ok()["code"], "VALID", "{}", out.out);
    assert_eq!(out.out["receipt_ok"], true);

    // A perpetual license's token has no exp, and still verifies (paseto
    // in Node needs `allowNonExpiring` for that).
    let perpetual = mint(
        &app,
        &with(sale_form(&format!("{sale}-PRO")), "product_id", "dt-pro"),
        "perpetual.tok",
    )
    .await;
    let args = [
        &["validate", "--server", &app.base, "--key", &perpetual.key][..],
        &[
            "--fingerprint",
            &fingerprint,
            "--license-token",
            &perpetual.token_file,
        ],
        &pinned(&key),
    ]
    .concat();
    let out = run(lang, &args, &[]).await;
    assert_eq!(
        out.code, 1,
        "valid, but not activated on this machine: {}",
        out.out
    );
    assert_eq!(out.out["code"], "NOT_ACTIVATED", "{}", out.out);
    assert_eq!(out.out["license_token_ok"], true, "{}", out.out);
    assert_eq!(out.out["license_token_exp"], Value::Null, "{}", out.out);

    // The buyer is refunded: online, the next validation says so, signed.
    let refund = app
        .gumroad(&with(sale_form(&sale), "resource_name", "refund"))
        .await;
    assert_eq!(refund.status, "ok", "{refund}");
    let validate = [&["validate"][..], &base, &pinned(&key)].concat();
    let out = run(lang, &validate, &[]).await;
    assert_eq!(out.code, 1, "not licensed: {}", out.out);
    assert_eq!(out.out["code"], "REFUNDED", "{}", out.out);
    assert_eq!(out.out["valid"], false, "{}", out.out);
    assert_eq!(out.out["receipt_ok"], true, "{}", out.out);

    // Activating again is refused with the same code.
    let activate = [&["activate"][..], &base, &pinned(&key)].concat();
    let out = run(lang, &activate, &[]).await;
    assert_eq!(out.code, 1, "{}", out.out);
    assert_eq!(out.out["refused"], 403, "{}", out.out);
    assert_eq!(out.out["code"], "REFUNDED", "{}", out.out);

    // Offline, the machine file issued before the refund still verifies
    // until its exp (docs/licensing-api.md, "Revocation and offline use").
    run(lang, &offline, &[]).await.ok();
}

async fn checks_cannot_be_skipped(db: Db, lang: Lang) {
    if !lang.available() {
        return;
    }
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let license = mint(
        &app,
        &sale_form(&format!("GUM-FORGED-{lang:?}")),
        "license.tok",
    )
    .await;
    let key = published_key(&app).await;
    let fingerprint = format!("{lang:?}-machine-0002");
    let machine_file = app.dir.join("machine.tok");
    let base = [
        "--server",
        app.base.as_str(),
        "--key",
        &license.key,
        "--fingerprint",
        &fingerprint,
    ];
    let args = [
        &["activate"][..],
        &base,
        &pinned(&key),
        &["--save-machine-file", machine_file.to_str().unwrap()],
    ]
    .concat();
    assert_eq!(run(lang, &args, &[]).await.ok()["code"], "VALID");

    // A replayed receipt: one that does not echo the nonce the recipe
    // expects.
    let validate = [&["validate"][..], &base, &pinned(&key)].concat();
    run(
        lang,
        &validate,
        &[("KEYMINT_RECIPE_TEST_NONCE", "an-older-nonce-0001")],
    )
    .await
    .unverified("nonce");

    let offline = |file: &Path, fingerprint: &str, paserk: &str, kid: Option<&str>| {
        let mut args = vec![
            "offline".to_string(),
            "--fingerprint".into(),
            fingerprint.into(),
            "--machine-file".into(),
            format!("@{}", file.display()),
            "--public-key".into(),
            paserk.into(),
        ];
        if let Some(kid) = kid {
            args.extend(["--kid".into(), kid.into()]);
        }
        args
    };
    let runs = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(lang, &args, &[]).await
    };

    // The genuine file verifies...
    runs(offline(
        &machine_file,
        &fingerprint,
        &key.public_key,
        Some(&key.kid),
    ))
    .await
    .ok();
    // ...for this machine only...
    runs(offline(
        &machine_file,
        "another-machine-01",
        &key.public_key,
        Some(&key.kid),
    ))
    .await
    .unverified("another machine");
    // ...with the right key only...
    let stranger = SigningKey::generate();
    runs(offline(
        &machine_file,
        &fingerprint,
        &stranger.public_paserk(),
        None,
    ))
    .await
    .unverified("");
    runs(offline(
        &machine_file,
        &fingerprint,
        &stranger.public_paserk(),
        Some(stranger.kid()),
    ))
    .await
    .unverified("unknown key");
    // ...and not once a byte of its payload has changed.
    let genuine = std::fs::read_to_string(&machine_file).unwrap();
    let mut bytes = genuine.into_bytes();
    let i = "v4.public.".len() + 40;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = app.dir.join("tampered.tok");
    std::fs::write(&tampered, bytes).unwrap();
    runs(offline(
        &tampered,
        &fingerprint,
        &key.public_key,
        Some(&key.kid),
    ))
    .await
    .unverified("");

    // A genuine receipt is not a machine file, nor a license token one.
    let answer: Value = app
        .client
        .post(app.url("/v1/licenses/validate"))
        .json(&serde_json::json!({"key": license.key, "fingerprint": fingerprint, "nonce": "n0nce-for-typ"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let receipt = app.dir.join("receipt.tok");
    std::fs::write(&receipt, answer["receipt"].as_str().unwrap()).unwrap();
    runs(offline(
        &receipt,
        &fingerprint,
        &key.public_key,
        Some(&key.kid),
    ))
    .await
    .unverified("not a machine file");
    let mut args = offline(&machine_file, &fingerprint, &key.public_key, Some(&key.kid));
    args.extend(["--license-token".into(), format!("@{}", receipt.display())]);
    runs(args).await.unverified("not a license");
}

/// A machine file past its `exp` no longer verifies offline.
async fn expired_machine_files_are_refused(db: Db, lang: Lang) {
    if !lang.available() {
        return;
    }
    let Some(app) = spawn_app_with(db, &[("KEYMINT_LICENSING__MACHINE_FILE_TTL", "2s")]).await
    else {
        return;
    };
    let license = mint(
        &app,
        &sale_form(&format!("GUM-EXP-{lang:?}")),
        "license.tok",
    )
    .await;
    let key = published_key(&app).await;
    let fingerprint = format!("{lang:?}-machine-0003");
    let stored = app.dir.join("machine.tok");
    let stored = stored.to_str().unwrap();
    let args = [
        &["activate", "--server", &app.base, "--key", &license.key][..],
        &["--fingerprint", &fingerprint, "--save-machine-file", stored],
        &pinned(&key),
    ]
    .concat();
    let out = run(lang, &args, &[]).await;
    assert_eq!(out.ok()["machine_file_ok"], true, "{}", out.out);
    let file = format!("@{stored}");
    let offline = [
        &[
            "offline",
            "--fingerprint",
            &fingerprint,
            "--machine-file",
            &file,
        ][..],
        &pinned(&key),
    ]
    .concat();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    run(lang, &offline, &[]).await.unverified("expired");
}

async fn python_expired_machine_file(db: Db) {
    expired_machine_files_are_refused(db, Lang::Python).await
}

async fn node_expired_machine_file(db: Db) {
    expired_machine_files_are_refused(db, Lang::Node).await
}

async fn python_round_trip(db: Db) {
    round_trip(db, Lang::Python).await
}

async fn node_round_trip(db: Db) {
    round_trip(db, Lang::Node).await
}

async fn python_checks_cannot_be_skipped(db: Db) {
    checks_cannot_be_skipped(db, Lang::Python).await
}

async fn node_checks_cannot_be_skipped(db: Db) {
    checks_cannot_be_skipped(db, Lang::Node).await
}

both_databases!(
    python_round_trip,
    node_round_trip,
    python_checks_cannot_be_skipped,
    node_checks_cannot_be_skipped,
    python_expired_machine_file,
    node_expired_machine_file,
);
