//! An email address, judged by one rule wherever one enters keymint: the
//! admin API's manual mints, buyers in webhook events, and the config's
//! addresses (docs/architecture.md, "Input text").

/// A lower-cased email address that passed [`Email::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// Text that is not an email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an email address")]
pub struct EmailError(pub String);

impl Email {
    /// One `@` between a non-empty local part and a dotted domain, no
    /// whitespace or control characters, at most 254 bytes; surrounding
    /// spaces are trimmed and the address is lower-cased (keymint matches
    /// buyers by email).
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        let email = text.trim();
        let mut parts = email.split('@');
        let shaped = matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(l), Some(d), None)
                if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        );
        if shaped
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.len() <= 254
        {
            Ok(Self(email.to_lowercase()))
        } else {
            Err(EmailError(email.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`: a name for a buyer who gave none.
    pub fn local_part(&self) -> &str {
        // `parse` guarantees exactly one `@`.
        self.0.split('@').next().unwrap_or_default()
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::str::FromStr for Email {
    type Err = EmailError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        let e = Email::parse("  Jane.Doe@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "jane.doe@example.com");
        assert_eq!(e.local_part(), "jane.doe");
    }

    #[test]
    fn what_is_not_an_address_is_refused_with_the_value() {
        for bad in [
            "",
            "@",
            "a@",
            "@b.co",
            "a@b",
            "a@.b",
            "a@b.",
            "a@@b.co",
            "a@b@c.co",
            "a b@c.co",
            "a\u{0}b@example.com",
            "a\nb@example.com",
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("is not an email address"),
                "{bad:?}"
            );
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
        assert!(serde_json::from_str::<Email>("\"nobody\"").is_err());
    }
}
