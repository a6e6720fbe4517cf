//! License keys: what a buyer types.
//!
//! `{PREFIX}-{TIER}-XXXXX-XXXXX-XXXXX-XXXXX`: twenty Crockford base32
//! characters carry 100 random bits. Parsing is forgiving the way Crockford
//! intended (case-insensitive, `O` reads as `0`, `I` and `L` read as `1`,
//! surrounding spaces ignored) and then strict about shape.

use std::fmt;
use std::str::FromStr;

/// Crockford's base32 alphabet (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Number of random groups and characters per group.
const GROUPS: usize = 4;
const GROUP_LEN: usize = 5;
/// Longest prefix or tier segment accepted.
const MAX_SEGMENT: usize = 16;

/// A license key in canonical form (upper case, dashes, Crockford digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LicenseKey(String);

/// Why a string is not a license key, or a prefix/tier can't make one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LicenseKeyError {
    #[error("a license key looks like PREFIX-TIER-XXXXX-XXXXX-XXXXX-XXXXX")]
    Shape,
    #[error("license key segment {0:?} must be 1-16 letters or digits")]
    Segment(String),
    #[error("license key contains {0:?}, which is not a Crockford base32 character")]
    Character(char),
}

/// Checks a catalog prefix or tier: ASCII letters and digits, 1-16 long.
pub fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_SEGMENT
        && segment.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl LicenseKey {
    /// Generates a fresh key with 100 random bits from the thread CSPRNG.
    pub fn generate(prefix: &str, tier: &str) -> Result<Self, LicenseKeyError> {
        for segment in [prefix, tier] {
            if !valid_segment(segment) {
                return Err(LicenseKeyError::Segment(segment.to_string()));
            }
        }
        let mut random = [0u8; GROUPS * GROUP_LEN];
        rand::fill(&mut random[..]);
        let mut out = format!(
            "{}-{}",
            prefix.to_ascii_uppercase(),
            tier.to_ascii_uppercase()
        );
        for group in random.chunks(GROUP_LEN) {
            out.push('-');
            // Each byte contributes its low five bits: 20 x 5 = 100 bits.
            out.extend(group.iter().map(|b| ALPHABET[(b & 0x1f) as usize] as char));
        }
        Ok(Self(out))
    }

    /// The canonical text of the key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix segment (for example `DT1`).
    pub fn prefix(&self) -> &str {
        self.0.split('-').next().unwrap_or_default()
    }
}

fn crockford_digit(c: char) -> Result<char, LicenseKeyError> {
    let up = c.to_ascii_uppercase();
    let mapped = match up {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    if ALPHABET.contains(&(mapped as u8)) && mapped.is_ascii() {
        Ok(mapped)
    } else {
        Err(LicenseKeyError::Character(c))
    }
}

impl FromStr for LicenseKey {
    type Err = LicenseKeyError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let parts: Vec<&str> = trimmed.split('-').collect();
        if parts.len() != 2 + GROUPS {
            return Err(LicenseKeyError::Shape);
        }
        let mut out = String::with_capacity(trimmed.len());
        for segment in &parts[..2] {
            if !valid_segment(segment) {
                return Err(LicenseKeyError::Segment((*segment).to_string()));
            }
            out.push_str(&segment.to_ascii_uppercase());
            out.push('-');
        }
        for (i, group) in parts[2..].iter().enumerate() {
            if group.chars().count() != GROUP_LEN {
                return Err(LicenseKeyError::Shape);
            }
            for c in group.chars() {
                out.push(crockford_digit(c)?);
            }
            if i + 1 < GROUPS {
                out.push('-');
            }
        }
        Ok(Self(out))
    }
}

/// For readers (such as a database row) that hold the key as an owned
/// string: the same rules as [`FromStr`].
impl TryFrom<String> for LicenseKey {
    type Error = LicenseKeyError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenseKey({})", self.0)
    }
}

impl serde::Serialize for LicenseKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for LicenseKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_key_has_the_documented_shape() {
        let key = LicenseKey::generate("DT1", "core").unwrap();
        let parts: Vec<&str> = key.as_str().split('-').collect();
        assert_eq!(parts[0], "DT1");
        assert_eq!(parts[1], "CORE");
        assert_eq!(parts.len(), 6);
        for group in &parts[2..] {
            assert_eq!(group.len(), 5);
            assert!(group.bytes().all(|b| ALPHABET.contains(&b)));
        }
        assert_eq!(key.prefix(), "DT1");
    }

    #[test]
    fn two_generated_keys_differ() {
        let a = LicenseKey::generate("A", "B").unwrap();
        let b = LicenseKey::generate("A", "B").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn parsing_is_forgiving_about_case_and_confusable_letters() {
        let key: LicenseKey = " dt1-core-abcde-fghjk-mnpqr-oilst ".parse().unwrap();
        assert_eq!(key.as_str(), "DT1-CORE-ABCDE-FGHJK-MNPQR-011ST");
    }

    #[test]
    fn parsing_rejects_bad_shapes() {
        assert_eq!(
            "DT1-CORE-ABCDE".parse::<LicenseKey>(),
            Err(LicenseKeyError::Shape)
        );
        assert_eq!(
            "DT1-CORE-ABCDE-FGHJK-MNPQR-STVWXY".parse::<LicenseKey>(),
            Err(LicenseKeyError::Shape)
        );
        assert_eq!(
            "DT1-CORE-ABCDE-FGHJK-MNPQR-STVWU".parse::<LicenseKey>(),
            Err(LicenseKeyError::Character('U'))
        );
        assert!(matches!(
            "D T-CORE-ABCDE-FGHJK-MNPQR-STVWX".parse::<LicenseKey>(),
            Err(LicenseKeyError::Segment(_))
        ));
        assert!(LicenseKey::generate("", "core").is_err());
        assert!(LicenseKey::generate("DT1", "co-re").is_err());
    }

    proptest! {
        #[test]
        fn generated_keys_round_trip(prefix in "[A-Za-z0-9]{1,16}", tier in "[A-Za-z0-9]{1,16}") {
            let key = LicenseKey::generate(&prefix, &tier).unwrap();
            let parsed: LicenseKey = key.as_str().parse().unwrap();
            prop_assert_eq!(&parsed, &key);
            let lower: LicenseKey = key.as_str().to_lowercase().parse().unwrap();
            prop_assert_eq!(lower, key);
        }

        #[test]
        fn parsing_never_panics(input in "\\PC{0,64}") {
            let _ = input.parse::<LicenseKey>();
        }

        #[test]
        fn parsed_keys_are_canonical(input in "[A-Za-z0-9]{1,4}-[A-Za-z0-9]{1,4}(-[0-9A-Za-z]{5}){4}") {
            if let Ok(key) = input.parse::<LicenseKey>() {
                let again: LicenseKey = key.as_str().parse().unwrap();
                prop_assert_eq!(again, key);
            }
        }
    }
}
