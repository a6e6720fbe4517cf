//! Operator actions shared by the admin API and the CLI, one file per
//! concern: tokens ([`tokens`]), manual mints ([`mint`]), status changes
//! and resends ([`status`]), refund requests ([`refund`]), a license's
//! detail ([`detail`]). This file holds their one error type.

mod detail;
mod mint;
mod refund;
mod status;
mod tokens;

pub use detail::license_detail;
pub use mint::{MANUAL, ManualMint, mint_manual};
pub use refund::request_refund;
pub use status::{resend, set_status};
pub use tokens::{TOKEN_PREFIX, create_token, hash_token, scope};

use crate::fulfilment::MintError;
use crate::text;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("unknown product {0:?}")]
    UnknownProduct(String),
    /// Input that breaks a rule; `code` names the rule.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("license not found")]
    NotFound,
    /// The request conflicts with the current state; `code` says how.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The license's endpoint has no refund API configured: the
    /// operator's to fix, not a reason to retry.
    #[error("{0}")]
    RefundsNotConfigured(String),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl AdminError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The stable code a client sees.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownProduct(_) => "unknown_product",
            Self::Invalid { code, .. } | Self::Conflict { code, .. } => code,
            Self::NotFound => "license_not_found",
            Self::RefundsNotConfigured(_) => "refunds_not_configured",
            Self::Mint(_) | Self::Database(_) => "internal",
        }
    }
}

impl From<text::ControlCharacter> for AdminError {
    fn from(e: text::ControlCharacter) -> Self {
        Self::invalid("control_character", e.to_string())
    }
}
