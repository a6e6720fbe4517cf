//! `keymint serve` and `keymint check-config`.

use crate::app::Application;
use crate::config::Config;
use crate::store;
use std::process::ExitCode;

pub(super) async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let app = Application::build(config).await?;
    let state = app.state();
    tracing::info!(
        addr = %app.addr(),
        database = state.store.backend().as_str(),
        kid = state.keyring.at_start().map_or("", |k| k.kid()),
        // Empty only for a server that signs with no key, which `serve` refuses.
        public_key = state.keyring.at_start().map(|k| k.public_paserk()).unwrap_or_default(),
        startup_ms = started.elapsed().as_millis() as u64,
        "keymint is listening on http://{}", app.addr()
    );
    if state.config.endpoints.is_empty() {
        tracing::warn!(
            "no [[endpoints]] configured: webhooks will answer 404 (see keymint.example.toml)"
        );
    }
    if state.config.email.provider == crate::config::EmailProvider::Log {
        // The default, so everything works before email is set up: but no
        // buyer gets an email, and each one (license key included) is
        // written to this log instead.
        tracing::warn!(
            "email.provider is \"log\": emails are written to this log, not sent; set [email] provider to postmark or smtp (see keymint.example.toml)"
        );
    }
    app.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        // A handler that cannot be installed must not stop the server at
        // once: it then waits for SIGTERM only.
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C; stop keymint with SIGTERM");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

pub(super) async fn check_config(path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    // Every problem in one run, the database's included; nothing is
    // written (an existing SQLite file is opened read-only).
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (config, mut problems) = match Config::load_all(path, &env) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("{} problem(s):\n{problems}", problems.0.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    // A key that would stop `serve` is reported here too.
    problems.extend(crate::signing::check_keys(&config));
    // So are template overrides that do not parse.
    let templates = config.templates_dir();
    if let Err(e) = crate::notify::templates::Templates::load(templates.as_deref()) {
        problems.push(format!("email.templates_dir: {e}"));
    }
    if let Err(e) = crate::http::pages::Pages::load(templates.as_deref()) {
        problems.push(format!("email.templates_dir: {e}"));
    }
    let url = config.database_url();
    let url_has_problem = problems.iter().any(|p| p.starts_with("database.url"));
    if !url_has_problem {
        match store::check_reachable(url.expose(), config.database.acquire_timeout).await {
            Ok(None) => {}
            // The same refusal `serve` would make (docs/deploy.md).
            Ok(Some(settings)) => problems.push(format!(
                "database.url: {}",
                crate::app::StartError::NotDurable(settings)
            )),
            Err(e) => {
                let why = store::describe_connect_error(url.expose(), &e);
                problems.push(format!(
                    "database.url: unreachable: {}",
                    why.trim_start_matches("database: ")
                        .trim_end_matches(" (database.url)")
                ));
            }
        }
    }
    if !problems.is_empty() {
        eprintln!(
            "{} problem(s):\n{}",
            problems.len(),
            crate::config::ConfigProblems(problems)
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "configuration ok: {} endpoint(s), {} product(s), {} database",
        config.endpoints.len(),
        config.products.len(),
        store::Backend::from_url(url.expose())?.as_str()
    );
    Ok(ExitCode::SUCCESS)
}
