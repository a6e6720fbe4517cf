//! Operator refunds as the admin API and `keymint license refund` show them.

use crate::store::{self, refunds::Refund};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A refund as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefundOut {
    pub id: String,
    pub status: String,
    pub endpoint: String,
    pub payment_ref: String,
    pub amount_cents: Option<i64>,
    pub provider_refund_id: Option<String>,
    pub error: Option<String>,
    pub requested_by: String,
    pub created_at: String,
}

impl From<Refund> for RefundOut {
    fn from(r: Refund) -> Self {
        Self {
            id: r.id.to_string(),
            status: r.status.to_string(),
            endpoint: r.endpoint,
            payment_ref: r.payment_ref,
            amount_cents: r.amount_cents,
            provider_refund_id: r.provider_refund_id,
            error: r.error,
            requested_by: r.requested_by,
            created_at: store::format_ms(r.created_at),
        }
    }
}
