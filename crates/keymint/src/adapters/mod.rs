//! Provider adapters: one file per provider kind. An adapter checks a
//! delivery's authenticity on the raw bytes and turns the body into a
//! normalized [`Parsed`] event. Adapters know providers and nothing else.

pub mod gumroad;
pub mod hyperswitch;
pub mod lemonsqueezy;
pub mod paddle;
pub mod polar;
mod scheme;
pub mod signatures;
pub mod standard;
pub mod stripe;

use crate::config::{EndpointConfig, EndpointKind};
use crate::events::Parsed;
pub use scheme::Scheme;
use std::collections::BTreeMap;

/// What an adapter sees of a request: raw bytes and lower-cased headers.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    pub headers: &'a BTreeMap<String, String>,
    /// The URL query string, when authenticating a live request.
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    /// When keymint recorded the delivery (Unix ms): the event time of a
    /// body that carries none. Never the clock at parse time, so a replay
    /// gets the time the event had, not a newer one (docs/architecture.md,
    /// rule 8).
    pub received_at: i64,
}

impl RawRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Why a delivery is not authentic. Carries no detail for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Answer 404, as if the endpoint did not exist (URL-secret schemes).
    Hidden(&'static str),
    /// Answer 401.
    Unauthorized(&'static str),
}

impl AuthError {
    /// The reason, for the delivery row and the log (never the response).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Hidden(r) | Self::Unauthorized(r) => r,
        }
    }
}

/// A body that is authentic but cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    /// A field the event cannot be understood without.
    pub fn missing(field: &str) -> Self {
        Self(format!("missing required field `{field}`"))
    }
}

/// One provider kind.
pub trait Adapter: Send + Sync {
    /// How the provider proves a delivery authentic.
    fn scheme(&self) -> Scheme;
    /// Checks authenticity in constant time, before the body is parsed.
    fn authenticate(
        &self,
        req: &RawRequest<'_>,
        endpoint: &EndpointConfig,
        now_secs: i64,
    ) -> Result<(), AuthError> {
        self.scheme().authenticate(req, endpoint, now_secs)
    }
    /// Parses an authenticated body; a time the body lacks is
    /// `req.received_at`.
    fn parse(&self, req: &RawRequest<'_>) -> Result<Parsed, ParseError>;
    /// Header names and query parameters whose values must not be stored.
    fn secret_query_params(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The adapter for a kind.
pub fn for_kind(kind: EndpointKind) -> Option<&'static dyn Adapter> {
    Some(match kind {
        EndpointKind::Gumroad => &gumroad::Gumroad,
        EndpointKind::Stripe => &stripe::Stripe,
        EndpointKind::Standard => &standard::Standard,
        EndpointKind::Polar => &polar::Polar,
        EndpointKind::Lemonsqueezy => &lemonsqueezy::LemonSqueezy,
        EndpointKind::Paddle => &paddle::Paddle,
        EndpointKind::Hyperswitch => &hyperswitch::Hyperswitch,
    })
}

/// Parses an RFC 3339 time or Unix seconds into Unix milliseconds; `None`
/// when it is neither (callers say which field that was).
/// The event a provider's webhook would have carried for `object` (what
/// the reconciler read from the provider's API), read by that provider's
/// adapter as the webhook would be, so both settle an order the same way.
/// `event_id` makes it apply once however often it is read.
pub fn synthetic(
    kind: EndpointKind,
    event_type: &str,
    object: serde_json::Value,
    event_id: String,
    now_ms: i64,
) -> Result<crate::events::Parsed, ParseError> {
    match kind {
        EndpointKind::Stripe => stripe::parse_event(&serde_json::json!({
            "id": event_id, "type": event_type, "created": now_ms / 1000,
            "data": {"object": object},
        })),
        EndpointKind::Hyperswitch => {
            hyperswitch::parse_payment_event(event_id, event_type, &object)
        }
        EndpointKind::Polar => polar::parse_object(event_id, event_type, &object, now_ms),
        EndpointKind::Paddle => paddle::parse_notification(
            event_id,
            event_type,
            &serde_json::json!({"event_type": event_type, "data": object}),
            now_ms,
        ),
        other => Err(ParseError(format!(
            "keymint reads no {} object back as an event",
            other.as_str()
        ))),
    }
}

pub fn parse_time_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Helpers for reading provider JSON without panicking on odd shapes.
pub mod json {
    use super::ParseError;
    pub use serde_json::Value;

    pub fn parse(body: &[u8]) -> Result<Value, ParseError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ParseError(format!("body is not JSON: {e}")))?;
        if v.is_object() {
            Ok(v)
        } else {
            Err(ParseError("JSON body is not an object".into()))
        }
    }

    /// A non-empty string (numbers are written as text) at a JSON pointer.
    pub fn str_at(v: &Value, ptr: &str) -> Option<String> {
        match v.pointer(ptr)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The keymint order a provider object names in its metadata
    /// (`metadata.keymint_order`, set by keymint's checkout); a value that
    /// is not an order id is no order of ours.
    pub fn keymint_order(o: &Value) -> Option<crate::domain::OrderId> {
        keymint_order_at(o, "/metadata/keymint_order")
    }

    /// The keymint order at `ptr` (Paddle's `custom_data`, Lemon
    /// Squeezy's `meta.custom_data`), when it is an order id.
    pub fn keymint_order_at(v: &Value, ptr: &str) -> Option<crate::domain::OrderId> {
        str_at(v, ptr).and_then(|t| crate::domain::OrderId::parse(&t).ok())
    }

    pub fn required(v: &Value, ptr: &str) -> Result<String, ParseError> {
        str_at(v, ptr).ok_or_else(|| ParseError::missing(ptr))
    }

    /// The value at a pointer that must be there (an object to read on).
    pub fn object<'a>(v: &'a Value, ptr: &str) -> Result<&'a Value, ParseError> {
        v.pointer(ptr).ok_or_else(|| ParseError::missing(ptr))
    }

    /// A currency code at a pointer, upper-cased as licenses record it.
    pub fn currency_at(v: &Value, ptr: &str) -> Option<String> {
        str_at(v, ptr).map(|c| c.to_uppercase())
    }

    /// The subscription status at `ptr` through the provider's mapping; a
    /// status it does not know fails the delivery naming it, never a guess
    /// (docs/architecture.md, rule 8).
    pub fn status_at(
        v: &Value,
        ptr: &str,
        provider: &str,
        mapping: fn(&str) -> Option<crate::subscriptions::Status>,
    ) -> Result<crate::subscriptions::Status, ParseError> {
        let raw = required(v, ptr)?;
        mapping(&raw)
            .ok_or_else(|| ParseError(format!("unknown {provider} subscription status {raw:?}")))
    }

    /// `ids` when there is one; none fails the delivery naming `field`,
    /// where the first would have come from.
    pub fn nonempty(ids: Vec<String>, field: &str) -> Result<Vec<String>, ParseError> {
        if ids.is_empty() {
            Err(ParseError::missing(field))
        } else {
            Ok(ids)
        }
    }

    /// An integer (or integer text, as Paddle sends amounts) at a pointer:
    /// `None` when absent, null or empty; a value that is there but not a
    /// whole number is an error, never read as absent (docs/architecture.md,
    /// rule 8).
    pub fn i64_at(v: &Value, ptr: &str) -> Result<Option<i64>, ParseError> {
        let found = match v.pointer(ptr) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::Number(n)) => n.as_i64(),
            // Not a number: the error below names the field and the value.
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        found
            .map(Some)
            .ok_or_else(|| unreadable(v, ptr, "a whole number"))
    }

    /// The first of `ptrs` that holds an integer.
    pub fn first_i64(v: &Value, ptrs: &[&str]) -> Result<Option<i64>, ParseError> {
        for ptr in ptrs {
            if let Some(n) = i64_at(v, ptr)? {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// A boolean at a pointer: `None` when absent or null (the caller
    /// names the documented default); a value that is there but not a
    /// JSON boolean (`"false"`, `0`) is an error, never read as either.
    pub fn bool_at(v: &Value, ptr: &str) -> Result<Option<bool>, ParseError> {
        match v.pointer(ptr) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(unreadable(v, ptr, "a boolean")),
        }
    }

    /// A time (RFC 3339 text or Unix seconds) at a pointer, in Unix ms:
    /// `None` when absent, null or empty; a value that is there but not a
    /// time is an error, never read as absent.
    pub fn time_at(v: &Value, ptr: &str) -> Result<Option<i64>, ParseError> {
        let found = match v.pointer(ptr) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::Number(n)) => n.as_i64().and_then(|s| s.checked_mul(1000)),
            Some(Value::String(s)) => super::parse_time_ms(s),
            Some(_) => None,
        };
        found.map(Some).ok_or_else(|| unreadable(v, ptr, "a time"))
    }

    /// The first of `ptrs` that holds a time.
    pub fn first_time(v: &Value, ptrs: &[&str]) -> Result<Option<i64>, ParseError> {
        for ptr in ptrs {
            if let Some(t) = time_at(v, ptr)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// The latest time at `ptr` in each of `list`.
    pub fn latest_time(list: &[Value], ptr: &str) -> Result<Option<i64>, ParseError> {
        let mut latest = None;
        for item in list {
            latest = latest.max(time_at(item, ptr)?);
        }
        Ok(latest)
    }

    fn unreadable(v: &Value, ptr: &str, what: &str) -> ParseError {
        // Called only for a value that is there; empty would mean absent.
        let shown = v.pointer(ptr).map(Value::to_string).unwrap_or_default();
        ParseError(format!("field `{ptr}` is not {what}: {shown}"))
    }

    /// The elements of an array at a pointer (none when absent).
    pub fn items<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
        v.pointer(ptr)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            // Item lists only add product ids; an event lacking what it
            // needs fails later, naming the product it could not find.
            .unwrap_or_default()
    }

    /// A provider's customer object (`id`, `email`, `name`) as the event
    /// linking its id to an email.
    pub fn customer(v: &Value) -> Result<crate::events::Event, ParseError> {
        use crate::events::Event;
        Ok(match str_at(v, "/email") {
            Some(email) => Event::Customer {
                customer_ref: required(v, "/id")?,
                email,
                name: str_at(v, "/name"),
            },
            None => Event::Ignored("customer without an email".into()),
        })
    }

    /// The present values, each once, in order.
    pub fn distinct(values: impl IntoIterator<Item = Option<String>>) -> Vec<String> {
        let mut list = Vec::new();
        push_all(&mut list, values);
        list
    }

    /// Appends each present, new value.
    pub fn push_all(list: &mut Vec<String>, values: impl IntoIterator<Item = Option<String>>) {
        for v in values.into_iter().flatten() {
            if !list.contains(&v) {
                list.push(v);
            }
        }
    }
}

/// A catalog product named directly (Stripe Checkout or Hyperswitch
/// metadata `keymint_product`), as opposed to a provider's product id.
pub const CATALOG_ID_PREFIX: &str = "keymint:";

/// Constant-time equality of two byte strings (length may leak, content
/// does not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::json::{bool_at, first_time, i64_at, time_at};
    use serde_json::json;

    #[test]
    fn absent_values_are_none_and_unreadable_ones_are_errors() {
        let v = json!({
            "amount": "1250", "blank": "", "none": null, "float": 12.5, "word": "twelve",
            "at": "2026-01-02T03:04:05Z", "secs": 1_700_000_000, "bad_at": "yesterday",
        });
        assert_eq!(i64_at(&v, "/amount"), Ok(Some(1250)));
        for absent in ["/missing", "/blank", "/none"] {
            assert_eq!(i64_at(&v, absent), Ok(None), "{absent}");
            assert_eq!(time_at(&v, absent), Ok(None), "{absent}");
        }
        // A price of 12.5 is not 12 or nothing: the delivery fails, naming it.
        for bad in ["/float", "/word"] {
            let e = i64_at(&v, bad).unwrap_err();
            assert!(e.0.contains(bad), "{e}");
        }
        assert_eq!(time_at(&v, "/secs"), Ok(Some(1_700_000_000_000)));
        assert_eq!(time_at(&v, "/at"), Ok(Some(1_767_323_045_000)));
        let e = time_at(&v, "/bad_at").unwrap_err();
        assert!(e.0.contains("/bad_at") && e.0.contains("yesterday"), "{e}");
        // The first present one wins; a bad one is not skipped over.
        assert_eq!(
            first_time(&v, &["/missing", "/secs"]),
            Ok(Some(1_700_000_000_000))
        );
        assert!(first_time(&v, &["/bad_at", "/secs"]).is_err());
    }

    #[test]
    fn a_boolean_that_is_not_one_is_an_error_not_a_default() {
        let v = json!({"yes": true, "no": false, "none": null, "text": "false", "zero": 0});
        assert_eq!(bool_at(&v, "/yes"), Ok(Some(true)));
        assert_eq!(bool_at(&v, "/no"), Ok(Some(false)));
        assert_eq!(bool_at(&v, "/none"), Ok(None));
        assert_eq!(bool_at(&v, "/missing"), Ok(None));
        // `"full": "false"` once read as absent, so as a full refund.
        for bad in ["/text", "/zero"] {
            let e = bool_at(&v, bad).unwrap_err();
            assert!(e.0.contains(bad), "{e}");
        }
    }
}
