//! Prefixed ids (`lic_01J...`): one newtype per kind of row, so a delivery
//! id can never be passed where a license id is meant. Each is generated
//! once (a prefix and a ULID), parsed once at the edge (prefix and charset
//! checked), and stored as text through the `sqlx::Any` driver.

/// Text that is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {} {what} id (expected {prefix}_ followed by letters and digits)", article(.what))]
pub struct IdError {
    pub what: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

/// "a" or "an" before `word`, by its first letter.
pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The longest id accepted: a prefix, `_` and a 26-character ULID fit
/// with room to spare; anything longer is not ours.
const MAX_LEN: usize = 64;

/// Whether `text` is `prefix_` followed by 1 or more ASCII letters and
/// digits (ULIDs are Crockford base 32), within [`MAX_LEN`].
pub(crate) fn well_formed(prefix: &str, text: &str) -> bool {
    text.len() <= MAX_LEN
        && text
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|body| !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric()))
}

macro_rules! prefixed_id {
    ($($(#[$meta:meta])* $name:ident($prefix:literal, $what:literal);)+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id: the prefix and a ULID (sortable by creation).
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, ::ulid::Ulid::generate()))
            }

            /// Checks the prefix and the characters.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                if well_formed($prefix, text) {
                    Ok(Self(text.to_string()))
                } else {
                    Err(IdError {
                        what: $what,
                        prefix: $prefix,
                        value: text.to_string(),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).map_err(::serde::de::Error::custom)
            }
        }

        $crate::domain::text_column!($name, $name::parse);

        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .description(Some(concat!("a ", $what, " id: ", $prefix, "_ and a ULID")))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {}
    )+};
}

prefixed_id! {
    /// A license (`licenses.id`).
    LicenseId("lic", "license");
    /// One entry of a license's history (`license_events.id`).
    LicenseEventId("lev", "license event");
    /// A webhook delivery, authentic or not (`deliveries.id`).
    DeliveryId("dlv", "delivery");
    /// An operator's refund (`refunds.id`, the provider's idempotency key).
    RefundId("ref", "refund");
    /// A checkout keymint started; the provider's idempotency key, and
    /// the capability `GET /v1/checkout/{id}` answers to.
    OrderId("ord", "order");
    /// keymint's row for a provider subscription (`subscriptions.id`); the
    /// provider's own id is `subscription_id`, a plain string.
    SubscriptionId("sub", "subscription");
    /// One event of a subscription's history (`subscription_events.id`).
    SubscriptionEventId("sev", "subscription event");
    /// A customer (`customers.id`).
    CustomerId("cus", "customer");
    /// An email in the outbox (`outbox.id`).
    EmailId("eml", "email");
    /// An admin token (`admin_tokens.id`).
    AdminTokenId("tok", "admin token");
    /// A machine a license is activated on (`machines.id`).
    MachineId("mch", "machine");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_carry_their_prefix() {
        let id = LicenseId::generate();
        assert!(id.as_str().starts_with("lic_"), "{id}");
        assert_eq!(LicenseId::parse(id.as_str()).unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<LicenseId>(&json).unwrap(), id);
    }

    #[test]
    fn the_wrong_prefix_or_characters_are_refused_with_the_value() {
        let dlv = DeliveryId::generate();
        let err = LicenseId::parse(dlv.as_str()).unwrap_err();
        assert_eq!(err.what, "license");
        assert!(err.to_string().contains(dlv.as_str()), "{err}");
        for bad in [
            "",
            "lic",
            "lic_",
            "lic-01J",
            "lic_01J 9",
            "lic_01J\n",
            "LIC_01J",
            "xlic_01J",
        ] {
            assert!(LicenseId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(LicenseId::parse(&format!("lic_{}", "A".repeat(80))).is_err());
        assert!(serde_json::from_str::<RefundId>("\"lic_01J\"").is_err());
    }
}
