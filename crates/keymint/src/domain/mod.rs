//! The typed domain core: the values every layer shares (statuses and
//! kinds stored as text), parsed once at the edge and trusted inside. An
//! unknown stored value is a decode error, never a default
//! (docs/architecture.md, rule 8 "Nothing silent"): prefixed ids
//! ([`LicenseId`], ...), stored statuses and kinds, [`Millis`] for the
//! Unix-millisecond columns and one [`Email`].

mod email;
mod ids;
mod licensing;
mod text_enum;
mod time;

pub use email::{Email, EmailError};
pub(crate) use ids::article;
pub use ids::{
    AdminTokenId, CustomerId, DeliveryId, EmailId, IdError, LicenseEventId, LicenseId, MachineId,
    OrderId, RefundId, SubscriptionEventId, SubscriptionId,
};
pub use licensing::{ClientTextError, Fingerprint, Nonce, machine_text};
pub use text_enum::UnknownValue;
pub(crate) use text_enum::text_column;
pub use time::{Millis, OutOfRange};

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

text_enum::text_enum! {
    /// Where a webhook delivery stands (docs/architecture.md, "State
    /// machines"): `received`, then exactly one of the others.
    DeliveryStatus("delivery status") {
        Received => "received",
        Processed => "processed",
        Duplicate => "duplicate",
        Ignored => "ignored",
        /// Replayable.
        Failed => "failed",
        /// Failed authentication: never replayed.
        Rejected => "rejected",
    }
}

text_enum::text_enum! {
    /// Where an operator's refund stands; only the provider's webhook or
    /// the reconciler ends `pending`.
    RefundStatus("refund status") {
        Pending => "pending",
        Succeeded => "succeeded",
        Failed => "failed",
    }
}

text_enum::text_enum! {
    /// Where an order keymint's checkout started stands; only the
    /// provider's webhook or the reconciler ends `pending_payment`
    /// (docs/checkout.md, "Order states").
    OrderStatus("order status") {
        PendingPayment => "pending_payment",
        /// Paid (or its trial started): the license is minted.
        Paid => "paid",
        /// The provider refused or failed the payment, or was never reached.
        Failed => "failed",
        /// The buyer never paid and the provider closed the checkout.
        Expired => "expired",
    }
}

text_enum::text_enum! {
    /// Where an email in the outbox stands.
    EmailStatus("email status") {
        Pending => "pending",
        Sent => "sent",
        /// Gave up after `email.max_attempts`.
        Dead => "dead",
    }
}

text_enum::text_enum! {
    /// Why an email is sent.
    EmailKind("email kind") {
        /// The first email for a new license.
        LicenseIssued => "license_issued",
        /// An operator's resend.
        LicenseResend => "license_resend",
        /// A subscription renewed: a fresh token.
        LicenseRenewed => "license_renewed",
        /// A buyer asked the portal for a sign-in link (about no license).
        PortalLink => "portal_link",
    }
}

text_enum::text_enum! {
    /// A signing key: `active` verifies (one of them signs), `retired`
    /// does not.
    SigningKeyStatus("signing key status") {
        Active => "active",
        Retired => "retired",
    }
}

#[cfg(test)]
mod tests;
