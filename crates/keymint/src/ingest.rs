//! Ingest: record, authenticate, parse, dispatch: the path of every
//! webhook delivery (docs/architecture.md, "Rules" and "Data flow"). Replay
//! runs the same steps from a stored delivery, minus authentication.

use crate::adapters::{self, AuthError, RawRequest};
use crate::app::AppState;
use crate::dispatcher::{Applied, Source};
use crate::events::Parsed;
use crate::store::deliveries::{self, NewDelivery, Outcome, StoredBody, status};
use crate::store::{self};
use std::collections::BTreeMap;

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
        delivery_id: String,
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

/// Header names never stored in clear.
fn is_secret_header(name: &str) -> bool {
    matches!(name, "authorization" | "cookie" | "proxy-authorization")
        || name.contains("secret")
        || name.contains("token")
        || name.contains("api-key")
        || name.contains("apikey")
}

/// Headers as stored: secrets replaced by `***`.
pub fn redact_headers(headers: &BTreeMap<String, String>) -> String {
    let redacted: BTreeMap<&str, &str> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                if is_secret_header(k) {
                    "***"
                } else {
                    v.as_str()
                },
            )
        })
        .collect();
    serde_json::to_string(&redacted).expect("string map serializes")
}

/// The longest header value kept on a rejected delivery; a longer one (a
/// forged signature header with thousands of entries) keeps its start and
/// its size, so forensics stay bounded like the body's prefix.
pub const REJECTED_HEADER_VALUE: usize = 256;

/// The most header bytes (names and values) kept on a rejected delivery;
/// the headers past it are only counted.
pub const REJECTED_HEADERS_TOTAL: usize = 4096;

/// Headers as a rejected delivery keeps them: each value cut to
/// [`REJECTED_HEADER_VALUE`] bytes (on a character boundary, marked with
/// the size it had), and no more than [`REJECTED_HEADERS_TOTAL`] bytes in
/// all, the rest replaced by one entry saying how many were left out.
fn shorten_headers(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    let (mut used, mut left_out, mut left_bytes) = (0usize, 0usize, 0usize);
    for (k, v) in headers {
        let value = if v.len() <= REJECTED_HEADER_VALUE {
            v.clone()
        } else {
            let mut end = REJECTED_HEADER_VALUE;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}... ({} bytes)", &v[..end], v.len())
        };
        if used + k.len() + value.len() > REJECTED_HEADERS_TOTAL {
            left_out += 1;
            left_bytes += k.len() + v.len();
            continue;
        }
        used += k.len() + value.len();
        kept.insert(k.clone(), value);
    }
    if left_out > 0 {
        kept.insert(
            "keymint-omitted".into(),
            format!("{left_out} more headers ({left_bytes} bytes)"),
        );
    }
    kept
}

/// The path as stored: the values of secret query parameters replaced.
pub fn redact_path(path: &str, query: Option<&str>, secret_params: &[&str]) -> String {
    let Some(query) = query else {
        return path.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| {
            // `split` always yields a first part.
            let name = pair.split('=').next().unwrap_or_default();
            // A name that does not decode is compared as it was sent.
            let decoded: String = serde_urlencoded::from_str::<Vec<(String, String)>>(pair)
                .ok()
                .and_then(|v| v.into_iter().next())
                .map(|(k, _)| k)
                .unwrap_or_else(|| name.to_string());
            if secret_params.contains(&decoded.as_str()) {
                format!("{name}=***")
            } else {
                pair.to_string()
            }
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
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
    let delivery = NewDelivery {
        id: store::new_id("dlv"),
        endpoint: endpoint.name.clone(),
        kind: endpoint.kind.as_str().to_string(),
        received_at: now,
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
            status::RECEIVED
        } else {
            status::REJECTED
        },
        error: auth.as_ref().err().map(|e| e.reason().to_string()),
    };
    // Record first: nothing is parsed or acted on before this commits.
    if let Err(e) = deliveries::record(&state.store, &delivery).await {
        tracing::error!(endpoint = %endpoint.name, error = %e, "could not record a delivery; answering 503");
        count(&endpoint.name, "unrecorded");
        return IngestResult::Unavailable;
    }
    if let Err(e) = auth {
        tracing::warn!(endpoint = %endpoint.name, delivery_id = %delivery.id, reason = e.reason(), "rejected a delivery");
        count(&endpoint.name, status::REJECTED);
        return unauthenticated(&e);
    }
    let parsed = adapter.parse(&RawRequest {
        headers: &req.headers,
        query: req.query.as_deref(),
        body: &delivery.body.bytes,
        received_at: delivery.received_at,
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
    delivery_id: &str,
    parsed: Result<Parsed, adapters::ParseError>,
) -> IngestResult {
    let src = Source {
        endpoint,
        delivery_id,
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
                tracing::error!(endpoint, delivery_id, error = %e, "database unavailable while applying; answering 503");
                count(endpoint, "unavailable");
                return IngestResult::Unavailable;
            }
            Err(e) => {
                tracing::error!(endpoint, delivery_id, error = %e, "handler failed");
                let outcome = Outcome {
                    status: status::FAILED,
                    error: Some(format!("handler error: {e}")),
                    ..Outcome::default()
                };
                Err((
                    parsed_context(&parsed, outcome),
                    format!("handler error: {e}"),
                ))
            }
        },
        Err(e) => {
            tracing::warn!(endpoint, delivery_id, error = %e, "could not parse an authentic delivery");
            let outcome = Outcome {
                status: status::FAILED,
                error: Some(e.0.clone()),
                ..Outcome::default()
            };
            Err((outcome, e.0))
        }
    };
    let applied = match result {
        Ok(applied) => applied,
        Err((outcome, reason)) => {
            if let Err(e) = record_failure(state, delivery_id, &outcome).await {
                // The row stays `received`: the recovery worker or the
                // sender's retry finishes it (docs/architecture.md, rule 1).
                tracing::error!(endpoint, delivery_id, error = %e, failure = %reason, "could not record a delivery's failure; answering 503");
                count(endpoint, "unavailable");
                return IngestResult::Unavailable;
            }
            Applied::Failed { reason }
        }
    };
    count(endpoint, delivery_status(&applied));
    if matches!(applied, Applied::Ok { .. }) {
        state.outbox_wake.notify_one();
    }
    IngestResult::Done {
        delivery_id: delivery_id.to_string(),
        applied,
    }
}

/// Writes a failed outcome on the delivery row.
async fn record_failure(
    state: &AppState,
    delivery_id: &str,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    let mut conn = state.store.writer().await?;
    deliveries::finish(&mut conn, delivery_id, outcome, store::now_ms()).await?;
    Ok(())
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

fn delivery_status(applied: &Applied) -> &'static str {
    match applied {
        Applied::Ok { .. } => status::PROCESSED,
        Applied::Duplicate { .. } => status::DUPLICATE,
        Applied::Ignored { .. } => status::IGNORED,
        Applied::NoMint { .. } | Applied::Failed { .. } => status::FAILED,
    }
}

fn count(endpoint: &str, status: &str) {
    metrics::counter!("keymint_webhook_deliveries_total", "endpoint" => endpoint.to_string(), "status" => status.to_string())
        .increment(1);
}

/// Why a delivery cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("delivery not found")]
    NotFound,
    #[error("delivery {0} failed authentication and is never replayed")]
    NotAuthentic(String),
    #[error("endpoint {0:?} is no longer configured")]
    UnknownEndpoint(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Re-runs a stored delivery through the current code and catalog. A
/// delivery that already took effect answers `duplicate` untouched.
pub async fn replay(state: &AppState, delivery_id: &str) -> Result<IngestResult, ReplayError> {
    let d = {
        let mut conn = state.store.conn().await?;
        deliveries::get(&mut conn, delivery_id)
            .await?
            .ok_or(ReplayError::NotFound)?
    };
    if d.signature_valid != Some(1) {
        return Err(ReplayError::NotAuthentic(d.id));
    }
    if d.status == status::PROCESSED || d.status == status::DUPLICATE {
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
            received_at: d.received_at,
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
            progress(summary.replayed, &id);
            after = id;
        }
    }
}
