//! Replaying stored deliveries, one or every failed one: the same steps as
//! a live delivery from the stored row, minus authentication, at the time
//! the delivery was received.

use super::{IngestResult, process};
use crate::adapters::{self, RawRequest};
use crate::app::AppState;
use crate::dispatcher::Applied;
use crate::domain::{DeliveryId, DeliveryStatus};
use crate::store::deliveries;
use crate::store::{self};
use std::collections::BTreeMap;

/// Why a delivery cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("delivery not found")]
    NotFound,
    #[error("delivery {0} failed authentication and is never replayed")]
    NotAuthentic(DeliveryId),
    #[error("endpoint {0:?} is no longer configured")]
    UnknownEndpoint(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Re-runs a stored delivery through the current code and catalog. A
/// delivery that already took effect answers `duplicate` untouched.
pub async fn replay(
    state: &AppState,
    delivery_id: &DeliveryId,
) -> Result<IngestResult, ReplayError> {
    let d = {
        let mut conn = state.store.conn().await?;
        deliveries::get(&mut conn, delivery_id)
            .await?
            .ok_or(ReplayError::NotFound)?
    };
    if d.signature_valid != Some(1) {
        return Err(ReplayError::NotAuthentic(d.id));
    }
    if matches!(
        d.status,
        DeliveryStatus::Processed | DeliveryStatus::Duplicate
    ) {
        let license_key = match &d.license_id {
            Some(id) => {
                let mut conn = state.store.conn().await?;
                store::licenses::by_id(&mut conn, id).await?.map(|l| l.key)
            }
            None => None,
        };
        return Ok(IngestResult::Done {
            delivery_id: d.id,
            applied: Applied::Duplicate { license_key },
        });
    }
    let endpoint = state
        .config
        .endpoint(&d.endpoint)
        .ok_or_else(|| ReplayError::UnknownEndpoint(d.endpoint.clone()))?;
    let adapter = adapters::for_kind(endpoint.kind)
        .ok_or_else(|| ReplayError::UnknownEndpoint(d.endpoint.clone()))?;
    // Corrupt stored headers fail the delivery with the reason (and leave
    // it replayable once the row is repaired): parsing without them could
    // read a JSON body as a form, or miss an event id, and act differently
    // from the first time.
    let parsed = match serde_json::from_str::<BTreeMap<String, String>>(&d.headers) {
        Ok(headers) => adapter.parse(&RawRequest {
            headers: &headers,
            query: None,
            body: &d.body,
            received_at: d.received_at.as_i64(),
        }),
        Err(e) => Err(adapters::ParseError(format!(
            "the stored headers of delivery {} are not a JSON object of strings ({e}); repair the row to replay it",
            d.id
        ))),
    };
    Ok(process(state, &endpoint.name, &d.id, parsed).await)
}

/// Which failed deliveries a bulk replay takes.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub endpoint: Option<String>,
    /// Received at or after (Unix ms).
    pub since: Option<i64>,
    /// Start after this delivery id (a previous call's `next_after`).
    pub after: Option<String>,
    /// At most this many deliveries.
    pub limit: Option<usize>,
}

/// What a bulk replay did, by answer.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ReplaySummary {
    pub replayed: usize,
    pub ok: usize,
    pub duplicate: usize,
    pub ignored: usize,
    #[serde(rename = "logged-no-mint")]
    pub no_mint: usize,
    /// Failed again (the reason is on each delivery).
    pub error: usize,
    /// The database was unavailable; these stay failed.
    pub unavailable: usize,
    /// Set when `limit` stopped the run: pass it as `after` to continue.
    pub next_after: Option<String>,
}

/// Replays every failed, authentic delivery that `filter` selects, oldest
/// first, calling `progress(done, delivery id)` after each.
pub async fn replay_failed(
    state: &AppState,
    filter: &ReplayFilter,
    mut progress: impl FnMut(usize, &str),
) -> Result<ReplaySummary, ReplayError> {
    const PAGE: i64 = 200;
    let mut summary = ReplaySummary::default();
    // No cursor: from the first id (every id sorts after "").
    let mut after = filter.after.clone().unwrap_or_default();
    loop {
        let page = {
            let mut conn = state.store.conn().await?;
            deliveries::failed_page(
                &mut conn,
                filter.endpoint.as_deref(),
                filter.since,
                &after,
                PAGE,
            )
            .await?
        };
        if page.is_empty() {
            return Ok(summary);
        }
        for id in page {
            if filter.limit.is_some_and(|l| summary.replayed >= l) {
                summary.next_after = Some(after);
                return Ok(summary);
            }
            let result = match replay(state, &id).await {
                Ok(r) => r,
                // Its endpoint is gone: nothing to do for it now.
                Err(ReplayError::UnknownEndpoint(_) | ReplayError::NotAuthentic(_)) => {
                    IngestResult::Done {
                        delivery_id: id.clone(),
                        applied: Applied::Failed {
                            reason: String::new(),
                        },
                    }
                }
                Err(e) => return Err(e),
            };
            summary.replayed += 1;
            match result {
                IngestResult::Done { applied, .. } => match applied {
                    Applied::Ok { .. } => summary.ok += 1,
                    Applied::Duplicate { .. } => summary.duplicate += 1,
                    Applied::Ignored { .. } => summary.ignored += 1,
                    Applied::NoMint { .. } => summary.no_mint += 1,
                    Applied::Failed { .. } => summary.error += 1,
                },
                _ => summary.unavailable += 1,
            }
            progress(summary.replayed, id.as_str());
            after = id.to_string();
        }
    }
}
