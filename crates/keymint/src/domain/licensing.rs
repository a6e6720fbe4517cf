//! What a buyer's program sends the licensing API, parsed once at the
//! edge: a machine's fingerprint, a nonce, and a machine's descriptive
//! fields (docs/licensing-api.md, "Requests").

use sha2::{Digest, Sha256};

/// Why a value from a program was refused (a 400 that says nothing about
/// any license).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ClientTextError {
    pub field: &'static str,
    pub problem: String,
}

fn refuse(field: &'static str, problem: impl Into<String>) -> ClientTextError {
    ClientTextError {
        field,
        problem: problem.into(),
    }
}

/// A machine's fingerprint: opaque text the program chooses (a hash of a
/// machine id), 8 to 255 characters, no control characters. keymint keeps
/// only [`Fingerprint::hash_for`], never the text, and never logs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub const MIN: usize = 8;
    pub const MAX: usize = 255;

    pub fn parse(text: &str) -> Result<Self, ClientTextError> {
        let n = text.chars().count();
        if !(Self::MIN..=Self::MAX).contains(&n) {
            return Err(refuse(
                "fingerprint",
                format!("must be {} to {} characters, not {n}", Self::MIN, Self::MAX),
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(refuse("fingerprint", "must not contain control characters"));
        }
        Ok(Self(text.to_string()))
    }

    /// The text, for the machine file (which the program compares with its
    /// own): nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database keeps: SHA-256 (hex) over the license key and
    /// the fingerprint, so one machine on two licenses gives two unrelated
    /// values and the table never holds the program's text.
    pub fn hash_for(&self, key: &keymint_license::LicenseKey) -> String {
        let mut h = Sha256::new();
        h.update(key.as_str().as_bytes());
        h.update([0u8]);
        h.update(self.0.as_bytes());
        hex::encode(h.finalize())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint(***)")
    }
}

/// A caller's nonce: 8 to 128 printable ASCII characters, echoed exactly
/// in what keymint signs for that request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    pub const MIN: usize = 8;
    pub const MAX: usize = 128;

    pub fn parse(text: &str) -> Result<Self, ClientTextError> {
        if !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(refuse("nonce", "must be printable ASCII characters only"));
        }
        // All ASCII by now: bytes are characters.
        if !(Self::MIN..=Self::MAX).contains(&text.len()) {
            return Err(refuse(
                "nonce",
                format!(
                    "must be {} to {} printable ASCII characters, not {}",
                    Self::MIN,
                    Self::MAX,
                    text.len()
                ),
            ));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A machine's descriptive text (`name`, `platform`, `hostname`,
/// `app_version`): at most 255 characters, no control characters; empty
/// means absent.
pub fn machine_text(
    field: &'static str,
    text: Option<&str>,
) -> Result<Option<String>, ClientTextError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > 255 {
        return Err(refuse(field, "must be at most 255 characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(refuse(field, "must not contain control characters"));
    }
    Ok(Some(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymint_license::LicenseKey;

    #[test]
    fn fingerprints_are_bounded_and_hashed_per_license() {
        assert!(Fingerprint::parse("1234567").is_err());
        assert!(Fingerprint::parse(&"f".repeat(256)).is_err());
        assert!(Fingerprint::parse("abcdefgh\n").is_err());
        let fp = Fingerprint::parse("abcdefgh").unwrap();
        assert!(Fingerprint::parse(&"é".repeat(255)).is_ok());
        let a = LicenseKey::generate("DT1", "CORE").unwrap();
        let b = LicenseKey::generate("DT1", "CORE").unwrap();
        assert_eq!(fp.hash_for(&a), fp.hash_for(&a));
        assert_ne!(fp.hash_for(&a), fp.hash_for(&b));
        assert!(!fp.hash_for(&a).contains("abcdefgh"));
        assert!(!format!("{fp:?}").contains("abcdefgh"));
    }

    #[test]
    fn nonces_are_printable_ascii_of_bounded_length() {
        assert!(Nonce::parse("1234567").is_err());
        assert!(Nonce::parse(&"n".repeat(129)).is_err());
        assert!(Nonce::parse("abcdefg\u{7f}").is_err());
        assert!(Nonce::parse("abcdéfgh").is_err());
        assert_eq!(Nonce::parse("a b~c!d#").unwrap().as_str(), "a b~c!d#");
        assert!(Nonce::parse(&"n".repeat(128)).is_ok());
    }

    #[test]
    fn machine_text_is_trimmed_bounded_and_printable() {
        assert_eq!(machine_text("name", Some("  ")).unwrap(), None);
        assert_eq!(
            machine_text("name", Some(" laptop ")).unwrap().as_deref(),
            Some("laptop")
        );
        assert!(machine_text("name", Some(&"x".repeat(256))).is_err());
        assert!(machine_text("name", Some("a\u{0}b")).is_err());
    }
}
