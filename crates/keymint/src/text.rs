//! Text that comes from outside (webhook bodies, admin requests, the CLI):
//! one rule for both databases. PostgreSQL refuses a NUL in a text column
//! and SQLite stores it, so the same input must be judged here, before the
//! store sees it, or the two backends would disagree (docs/architecture.md,
//! "Input text").
//!
//! - Identifiers and addresses (ids, emails, keys, currencies): a control
//!   character cannot belong there, so one is an error naming the field.
//! - Free text shown to people (names, notes, reasons): control characters
//!   are cleaned (a line break in a one-line field becomes a space), so a
//!   value can never forge a new line in a log or an email header.

/// A value that cannot be accepted, with the field it came in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} contains a control character")]
pub struct ControlCharacter {
    pub field: String,
}

/// Accepts an identifier-like value only without control characters.
pub fn check_identifier(field: &str, value: &str) -> Result<(), ControlCharacter> {
    if value.chars().any(char::is_control) {
        Err(ControlCharacter {
            field: field.to_string(),
        })
    } else {
        Ok(())
    }
}

/// One line of free text (a buyer's name): every control character,
/// line breaks included, becomes a space; runs of spaces are folded and
/// the ends trimmed.
pub fn clean_line(value: &str) -> String {
    let replaced: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    replaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Several lines of free text (an operator's notes): `\n` and `\t` are
/// kept (`\r\n` becomes `\n`), every other control character is dropped.
pub fn clean_multiline(value: &str) -> String {
    value
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identifiers_refuse_nul_and_line_breaks() {
        assert!(check_identifier("sale_id", "SALE-1").is_ok());
        assert!(check_identifier("email", "jané@example.com").is_ok());
        let e = check_identifier("sale_id", "NUL\0SALE").unwrap_err();
        assert_eq!(e.to_string(), "sale_id contains a control character");
        assert!(check_identifier("email", "a@b.c\r\nBcc: x@y.z").is_err());
        assert!(check_identifier("id", "tab\there").is_err());
        assert!(check_identifier("id", "del\u{7f}").is_err());
    }

    #[test]
    fn one_line_text_loses_its_breaks() {
        assert_eq!(clean_line("Jane\r\nFORGED line"), "Jane FORGED line");
        assert_eq!(clean_line("  Ja\0ne  Doe "), "Ja ne Doe");
        assert_eq!(clean_line("Zoë Ångström"), "Zoë Ångström");
    }

    #[test]
    fn notes_keep_line_breaks_only() {
        assert_eq!(clean_multiline("a\r\nb\0c\u{1b}[31m\td"), "a\nbc[31m\td");
    }

    proptest! {
        #[test]
        fn cleaned_text_has_no_control_characters(s in "\\PC*|[\\x00-\\x1f\\x7f ]*") {
            let line = clean_line(&s);
            prop_assert!(!line.chars().any(char::is_control));
            prop_assert!(check_identifier("x", &line).is_ok());
            let multi = clean_multiline(&s);
            prop_assert!(!multi.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
        }
    }
}
