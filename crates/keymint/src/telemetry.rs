//! Logging: text or JSON lines, filtered by `KEYMINT_LOG` / `RUST_LOG` or
//! `server.log_level`. Request spans carry the request id; nothing logs a
//! secret (query strings are not logged; secrets print as `***`).

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// The level names a filter may use.
pub const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Parses a log filter: a level (`info`), or comma-separated directives,
/// each a level or `target=level` (`info,keymint=debug`). A bare word that
/// is not a level is refused: the filter library would read `loud` as "log
/// everything of a target named loud", which silences everything else.
pub fn parse_filter(text: &str) -> Result<EnvFilter, String> {
    let mut any = false;
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        any = true;
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level.trim(),
            Some(_) => return Err(format!("{directive:?} has no target before '='")),
            None => directive,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            let within = if level == text.trim() {
                String::new()
            } else {
                format!(" (in {text:?})")
            };
            return Err(format!(
                "{level:?}{within} is not a level ({}); a filter is a level or directives like \"info,keymint=debug\"",
                LEVELS.join(", ")
            ));
        }
    }
    if !any {
        return Err(format!(
            "the filter is empty; use a level ({})",
            LEVELS.join(", ")
        ));
    }
    EnvFilter::builder()
        .parse(text)
        .map_err(|e| format!("{text:?} is not a log filter: {e}"))
}

/// Installs the global subscriber. `KEYMINT_LOG`, else `RUST_LOG` (when set and not
/// empty), replaces `level` (checked by `Config::load`, so an error here is a race).
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let from_env = ["KEYMINT_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()));
    let filter = match from_env {
        Some(f) => parse_filter(&f)?,
        None => {
            parse_filter(level)?;
            parse_filter(&format!("{level},sqlx=warn,tower_http=info"))?
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_words_are_not_levels() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("info,keymint=debug").is_ok());
        assert!(parse_filter("loud").unwrap_err().contains("\"loud\""));
        assert!(parse_filter("keymint=loud").is_err());
        assert!(parse_filter(" ").is_err());
    }
}
