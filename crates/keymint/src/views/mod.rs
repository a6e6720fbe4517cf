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
