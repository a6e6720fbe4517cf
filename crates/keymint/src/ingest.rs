//! Ingest: record, authenticate, parse, dispatch: the path of every
//! webhook delivery (docs/architecture.md, "Rules" and "Data flow").
//! `replay.rs` runs the same steps from a stored delivery, minus
//! authentication; `redact.rs` decides what a delivery row keeps.

use crate::adapters::{self, AuthError, RawRequest};
use crate::app::AppState;
use crate::dispatcher::{Applied, Source};
use crate::domain::{DeliveryId, DeliveryStatus, Millis};
use crate::events::Parsed;
use crate::store::deliveries::{self, NewDelivery, Outcome, StoredBody};
use crate::store::{self};
use std::collections::BTreeMap;

mod redact;
mod replay;

use redact::shorten_headers;
pub use redact::{REJECTED_HEADER_VALUE, REJECTED_HEADERS_TOTAL, redact_headers, redact_path};
pub use replay::{ReplayError, ReplayFilter, ReplaySummary, replay, replay_failed};

/// What the HTTP layer answers.
#[derive(Debug)]
pub enum IngestResult {
    /// 404 without a body.
    NotFound,
    /// 401.
    Unauthorized,
    /// 503: the delivery could not be recorded or applied; retry.
    Unavailable,
    /// 200 with this body.
    Done {
        delivery_id: DeliveryId,
        applied: Applied,
    },
}

/// A live request as the HTTP layer hands it over.
pub struct Incoming {
    pub endpoint: String,
    pub headers: BTreeMap<String, String>,
    pub query: Option<String>,
    pub path: String,
    pub body: Vec<u8>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
}

pub async fn ingest(state: &AppState, req: Incoming) -> IngestResult {
    let Some(endpoint) = state.config.endpoint(&req.endpoint) else {
        return IngestResult::NotFound;
    };
    let Some(adapter) = adapters::for_kind(endpoint.kind) else {
        // Refused at start-up by config validation; never serve it.
        return IngestResult::NotFound;
    };
    let now = store::now_ms();
    let raw = RawRequest {
        headers: &req.headers,
        query: req.query.as_deref(),
        body: &req.body,
        received_at: now,
    };
    let auth = adapter.authenticate(&raw, endpoint, now / 1000);
    if let Err(e) = &auth
        && !state.rejected.allow(req.source_ip.as_deref())
    {
        // Over this source's budget: answered the same, counted, not kept.
        metrics::counter!("keymint_webhook_rejected_unrecorded_total", "endpoint" => endpoint.name.clone())
            .increment(1);
        tracing::debug!(endpoint = %endpoint.name, reason = e.reason(), "rejected a delivery (not recorded: over the per-source limit)");
        return unauthenticated(e);
    }
    let delivery = std::sync::Arc::new(NewDelivery {
        id: DeliveryId::generate(),
        endpoint: endpoint.name.clone(),
        kind: endpoint.kind.as_str().to_string(),
        received_at: Millis(now),
        source_ip: req.source_ip.clone(),
        user_agent: req.headers.get("user-agent").cloned(),
        request_id: req.request_id.clone(),
        path: redact_path(
            &req.path,
            req.query.as_deref(),
            adapter.secret_query_params(),
        ),
        headers: if auth.is_ok() {
            redact_headers(&req.headers)
        } else {
            redact_headers(&shorten_headers(&req.headers))
        },
        body: if auth.is_ok() {
            StoredBody::whole(req.body)
        } else {
            StoredBody::prefix(&req.body)
        },
        signature_valid: auth.is_ok(),
        status: if auth.is_ok() {
            DeliveryStatus::Received
        } else {
            DeliveryStatus::Rejected
        },
        error: auth.as_ref().err().map(|e| e.reason().to_string()),
    });
    // Record first: nothing is parsed or acted on before this commits.
    if let Err(e) = deliveries::record(&state.store, delivery.clone()).await {
        tracing::error!(endpoint = %endpoint.name, error = %e, "could not record a delivery; answering 503");
        count(&endpoint.name, "unrecorded");
        return IngestResult::Unavailable;
    }
    if let Err(e) = auth {
        tracing::warn!(endpoint = %endpoint.name, delivery_id = %delivery.id, reason = e.reason(), "rejected a delivery");
        count(&endpoint.name, DeliveryStatus::Rejected.as_str());
        return unauthenticated(&e);
    }
    let parsed = adapter.parse(&RawRequest {
        headers: &req.headers,
        query: req.query.as_deref(),
        body: &delivery.body.bytes,
        received_at: delivery.received_at.as_i64(),
    });
    process(state, &endpoint.name, &delivery.id, parsed).await
}

/// The answer to a delivery that failed authentication.
fn unauthenticated(e: &AuthError) -> IngestResult {
    match e {
        AuthError::Hidden(_) => IngestResult::NotFound,
        AuthError::Unauthorized(_) => IngestResult::Unauthorized,
    }
}

/// Parses and dispatches an authenticated, recorded delivery.
pub async fn process(
    state: &AppState,
    endpoint: &str,
    delivery_id: &DeliveryId,
    parsed: Result<Parsed, adapters::ParseError>,
) -> IngestResult {
    let src = Source {
        endpoint,
        delivery_id,
        by_reconciler: false,
    };
    let parsed = match parsed {
        Ok(p) if p.line_items_of.is_some() => fill_line_items(state, endpoint, p).await,
        other => other,
    }
    .and_then(|p| {
        p.validate()
            .map_err(|e| adapters::ParseError(e.to_string()))
    });
    let result = match parsed {
        Ok(parsed) => match state.dispatcher.apply(&src, &parsed).await {
            Ok(applied) => Ok(applied),
            Err(e) if e.is_unavailable() => {
                tracing::error!(endpoint, delivery_id = %delivery_id, error = %e, "database unavailable while applying; answering 503");
                count(endpoint, "unavailable");
                return IngestResult::Unavailable;
            }
            Err(e) => {
                tracing::error!(endpoint, delivery_id = %delivery_id, error = %e, "handler failed");
                let outcome = Outcome::failed(format!("handler error: {e}"));
                Err((
                    parsed_context(&parsed, outcome),
                    format!("handler error: {e}"),
                ))
            }
        },
        Err(e) => {
            tracing::warn!(endpoint, delivery_id = %delivery_id, error = %e, "could not parse an authentic delivery");
            let outcome = Outcome::failed(e.0.clone());
            Err((outcome, e.0))
        }
    };
    let applied = match result {
        Ok(applied) => applied,
        Err((outcome, reason)) => {
            if let Err(e) = deliveries::finish_durably(&state.store, delivery_id, outcome).await {
                // The row stays `received`: the recovery worker or the
                // sender's retry finishes it (docs/architecture.md, rule 1).
                tracing::error!(endpoint, delivery_id = %delivery_id, error = %e, failure = %reason, "could not record a delivery's failure; answering 503");
                count(endpoint, "unavailable");
                return IngestResult::Unavailable;
            }
            Applied::Failed { reason }
        }
    };
    count(endpoint, applied.delivery_status().as_str());
    if matches!(applied, Applied::Ok { .. }) {
        state.outbox_wake.notify_one();
    }
    IngestResult::Done {
        delivery_id: delivery_id.clone(),
        applied,
    }
}

/// Names a Stripe Checkout Session's products by its line items, read from
/// the API when the endpoint has a key (and none is named otherwise).
async fn fill_line_items(
    state: &AppState,
    endpoint: &str,
    mut parsed: Parsed,
) -> Result<Parsed, adapters::ParseError> {
    let Some(session) = parsed.line_items_of.take() else {
        return Ok(parsed);
    };
    let Some(ep) = state.config.endpoint(endpoint) else {
        return Ok(parsed);
    };
    let Some(key) = &ep.api_key else {
        return Ok(parsed);
    };
    match adapters::stripe::fetch_line_items(
        &state.http,
        ep.api_url.as_deref(),
        key.expose(),
        &session,
    )
    .await
    {
        Ok(ids) => {
            if let Some(products) = parsed.product_ids_mut() {
                adapters::json::push_all(products, ids.into_iter().map(Some));
            }
            Ok(parsed)
        }
        Err(e) => Err(adapters::ParseError(format!(
            "could not read the line items of {session}: {e}; replay the delivery once the API answers"
        ))),
    }
}

fn parsed_context(parsed: &Parsed, mut outcome: Outcome) -> Outcome {
    outcome.event_type = Some(parsed.event_type.clone());
    outcome.event_id = Some(parsed.event_id.clone());
    outcome.order_id = parsed.order_id().map(str::to_string);
    outcome
}

fn count(endpoint: &str, status: &str) {
    metrics::counter!("keymint_webhook_deliveries_total", "endpoint" => endpoint.to_string(), "status" => status.to_string())
        .increment(1);
}
