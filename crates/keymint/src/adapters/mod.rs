//! Provider adapters: one file per provider kind. An adapter checks a
//! delivery's authenticity on the raw bytes and turns the body into a
//! normalized [`Parsed`] event. Adapters know providers and nothing else.

pub mod gumroad;
pub mod signatures;

use crate::config::{EndpointKind, Secret};
use crate::events::Parsed;
use std::collections::BTreeMap;

/// What an adapter sees of a request: raw bytes and lower-cased headers.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    pub headers: &'a BTreeMap<String, String>,
    /// The URL query string, when authenticating a live request.
    pub query: Option<&'a str>,
    pub body: &'a [u8],
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

/// One provider kind.
pub trait Adapter: Send + Sync {
    /// Checks authenticity in constant time, before the body is parsed.
    fn authenticate(
        &self,
        req: &RawRequest<'_>,
        secrets: &[Secret],
        now_secs: i64,
    ) -> Result<(), AuthError>;
    /// Parses an authenticated body.
    fn parse(&self, req: &RawRequest<'_>) -> Result<Parsed, ParseError>;
    /// Header names and query parameters whose values must not be stored.
    fn secret_query_params(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The adapter for a kind, when this version supports it.
pub fn for_kind(kind: EndpointKind) -> Option<&'static dyn Adapter> {
    match kind {
        EndpointKind::Gumroad => Some(&gumroad::Gumroad),
        _ => None,
    }
}

/// Constant-time equality of two byte strings (length may leak, content
/// does not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}
