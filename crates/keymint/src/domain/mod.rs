//! The typed domain core: the values every layer shares (statuses and
//! kinds stored as text), parsed once at the edge and trusted inside. An
//! unknown stored value is a decode error, never a default
//! (docs/architecture.md, rule 8 "Nothing silent").

mod text_enum;

pub use text_enum::UnknownValue;

text_enum::text_enum! {
    /// Where a license stands; the transitions between them are
    /// [`crate::licensing::machine`] (docs/architecture.md, "State machines").
    LicenseStatus("license status") {
        Active => "active",
        /// Held: a dispute is open, an operator's refund is pending, or
        /// the subscription is paused.
        Suspended => "suspended",
        /// For good: refund, lost dispute, operator.
        Revoked => "revoked",
        /// Time ran out, or the subscription ended.
        Expired => "expired",
    }
}
