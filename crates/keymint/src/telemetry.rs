//! Logging: text or JSON lines, filtered by `KEYMINT_LOG` / `RUST_LOG` or
//! `server.log_level`. Request spans carry the request id; nothing logs a
//! secret (query strings are not logged; secrets print as `***`).
//!
//! Text logs are colored only when stderr is a terminal (and `NO_COLOR` is
//! unset), so files and journald get plain text. A value from outside can
//! never forge a log line: in text logs every line an event spans after
//! its first is indented and a carriage return is written `\r`, so only a
//! real event starts a line; when not colored, other control characters
//! (an ESC from a buyer's name) are escaped too. JSON logs are escaped by
//! JSON itself (docs/operations.md, "Logs").

use crate::config::LogFormat;
use std::io::{IsTerminal, Write};
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
        // Not UTF-8 cannot happen here: `Config::load` read the environment
        // with `std::env::vars`, which refuses it.
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()));
    let filter = match from_env {
        Some(f) => parse_filter(&f)?,
        None => {
            parse_filter(level)?;
            parse_filter(&format!("{level},sqlx=warn,tower_http=info"))?
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // Fails only when a subscriber is already installed (tests building
    // several applications in one process); the first one stays.
    let _ = match format {
        LogFormat::Json => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .try_init(),
        LogFormat::Text => {
            let color = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder
                .with_ansi(color)
                .with_writer(move || OneEventPerLine {
                    inner: std::io::stderr(),
                    escape_controls: !color,
                })
                .try_init()
        }
    };
    Ok(())
}

/// A text-log writer that keeps one event from looking like several: the
/// formatter hands it one whole event per `write`.
struct OneEventPerLine<W> {
    inner: W,
    /// Escape every control character but tab and the final newline (when
    /// not coloring; colors are ESC sequences of our own).
    escape_controls: bool,
}

impl<W: Write> Write for OneEventPerLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner
            .write_all(&one_event_per_line(buf, self.escape_controls))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Indents every line after the first, writes `\r` for a carriage return
/// and, with `escape_controls`, `\u{1b}` for other control characters.
fn one_event_per_line(event: &[u8], escape_controls: bool) -> Vec<u8> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (event, &b""[..]),
    };
    let mut out = Vec::with_capacity(event.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\n    "),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b),
            b if escape_controls && (b < 0x20 || b == 0x7f) => {
                out.extend_from_slice(format!("\\u{{{b:x}}}").as_bytes());
            }
            b => out.push(b),
        }
    }
    out.extend_from_slice(end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_never_starts_a_line_of_its_own_making() {
        let out = one_event_per_line(b"INFO email:\nHello Jane\r\nFORGED \x1b[31mred\n", true);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "INFO email:\n    Hello Jane\\r\n    FORGED \\u{1b}[31mred\n"
        );
    }

    #[test]
    fn bare_words_are_not_levels() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("info,keymint=debug").is_ok());
        assert!(parse_filter("loud").unwrap_err().contains("\"loud\""));
        assert!(parse_filter("keymint=loud").is_err());
        assert!(parse_filter(" ").is_err());
    }
}
