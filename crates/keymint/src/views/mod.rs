//! The shapes keymint answers with: every JSON document the admin API
//! returns and the CLI prints, in one place so the two cannot drift apart
//! and the test suite can deserialize answers into the server's own types.
//! Nothing here knows HTTP; `http/` wraps these in responses.

mod deliveries;
mod licenses;
mod refunds;
mod subscriptions;

pub use deliveries::{DeliveryOut, DeliveryPage, WebhookResponse};
pub use licenses::{
    EmailOut, HistoryOut, LicenseDetail, LicenseOne, LicenseOut, LicensePage, MintedOut, Queued,
    license_detail,
};
pub use refunds::RefundOut;
pub use subscriptions::{
    SubscriptionDetail, SubscriptionEventOut, SubscriptionOut, SubscriptionPage,
};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error answer: a message for people and a stable
/// `code` for programs (docs/admin-api.md, "Error codes", lists them).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs: stable, lower_snake_case
    /// (`not_found`, `refunds_not_configured`, ...). It comes first, as
    /// webhook senders have always seen it.
    pub code: String,
    /// What went wrong, for people; its wording may change.
    pub error: String,
}

/// A stored value keymint wrote but cannot read back. It is shown as an
/// error (a logged 500, a failed command), never replaced by a default
/// that would show a different record (docs/architecture.md, rule 8).
#[derive(Debug, thiserror::Error)]
#[error("{what} {id}: the stored {field} cannot be read: {reason}")]
pub struct Corrupt {
    /// The kind of record (`license`, `delivery`).
    pub what: &'static str,
    pub id: String,
    /// The column that cannot be read.
    pub field: &'static str,
    pub reason: String,
}

/// Why a view could not be built from the store.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

#[cfg(test)]
mod tests;
