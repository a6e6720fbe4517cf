//! The console's delivery pages: the log, one delivery, and replays
//! through the same service as the admin API.

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct DeliveryQuery {
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    status: String,
    /// Received within this long before now: `1h`, `24h`, `7d` or `30d`.
    #[serde(default)]
    within: String,
    #[serde(default)]
    before: String,
}

/// The time filters the deliveries page offers, as (value, label, ms).
const WITHIN: &[(&str, &str, i64)] = &[
    ("1h", "the last hour", 3_600_000),
    ("24h", "the last 24 hours", 86_400_000),
    ("7d", "the last 7 days", 7 * 86_400_000),
    ("30d", "the last 30 days", 30 * 86_400_000),
];

pub(super) async fn deliveries_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Query(q): Query<DeliveryQuery>,
) -> Response {
    deliveries_view(&state, &op, &q, StatusCode::OK, None).await
}

/// The deliveries list, with a notice above it.
async fn deliveries_view(
    state: &AppState,
    op: &Operator,
    q: &DeliveryQuery,
    status_code: StatusCode,
    notice: Option<&str>,
) -> Response {
    use crate::domain::{DeliveryId, DeliveryStatus};
    if !op.may(scope::DELIVERIES_READ) {
        return no_scope(state, op, scope::DELIVERIES_READ);
    }
    let endpoint = state
        .config
        .endpoint(q.endpoint.trim())
        .map(|e| e.name.clone());
    let status = q.status.parse::<DeliveryStatus>().ok();
    let before = Some(q.before.trim())
        .filter(|b| DeliveryId::parse(b).is_ok())
        .map(str::to_string);
    let within = WITHIN.iter().find(|(v, _, _)| *v == q.within.trim());
    let filters = [
        ("endpoint", q.endpoint.trim(), endpoint.is_some()),
        ("status", q.status.trim(), status.is_some()),
        ("time", q.within.trim(), within.is_some()),
        ("page", q.before.trim(), before.is_some()),
    ];
    if let Some(page) = unknown_filters(state, op, &filters) {
        return page;
    }
    let filter = store::deliveries::Filter {
        endpoint: endpoint.clone(),
        status,
        since: within.map(|(_, _, ms)| store::now_ms() - ms),
        until: None,
        before,
        limit: PAGE_SIZE,
    };
    let rows = async {
        let mut conn = state.store.conn().await?;
        store::deliveries::list(&mut conn, &filter).await
    };
    let rows = match rows.await {
        Ok(rows) => rows,
        Err(e) => return failed(state, Some(op), e),
    };
    let next = next_page(
        "/console/deliveries",
        rows.len(),
        rows.last().map(|d| d.id.as_str()),
        &[
            ("endpoint", endpoint.as_deref().unwrap_or("")),
            ("status", status.map_or("", |s| s.as_str())),
            ("within", within.map_or("", |(v, _, _)| v)),
        ],
    );
    let list: Vec<crate::views::DeliveryOut> = rows
        .into_iter()
        .map(crate::views::DeliveryOut::summary)
        .collect();
    let endpoints: Vec<String> = state
        .config
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    render(
        state,
        status_code,
        "deliveries.html",
        context! {
            operator => op.name.clone(), csrf => op.csrf.clone(), page => "deliveries",
            may_write => op.may(scope::DELIVERIES_WRITE),
            deliveries => Serde(&list), endpoints, statuses => DeliveryStatus::names(),
            endpoint, status => status.map(|s| s.as_str()), next, notice,
            within => within.map(|(v, _, _)| *v),
            withins => WITHIN.iter().map(|(v, label, _)| context! { value => *v, label => *label }).collect::<Vec<_>>(),
        },
    )
}

/// The delivery page, with a notice above it.
async fn delivery_view(
    state: &AppState,
    op: &Operator,
    id: &str,
    notice: Option<&str>,
) -> Response {
    if !op.may(scope::DELIVERIES_READ) {
        return no_scope(state, op, scope::DELIVERIES_READ);
    }
    let not_found = || {
        error_page(
            state,
            Some(op),
            StatusCode::NOT_FOUND,
            "No such delivery",
            "No delivery has that id.",
        )
    };
    let Ok(id) = crate::domain::DeliveryId::parse(id) else {
        return not_found();
    };
    let found = async {
        let mut conn = state.store.conn().await?;
        let Some(d) = store::deliveries::get(&mut conn, &id).await? else {
            return Ok(None);
        };
        let key = match &d.license_id {
            Some(l) => licenses::by_id(&mut conn, l)
                .await?
                .map(|l| l.key.to_string()),
            None => None,
        };
        Ok::<_, sqlx::Error>(Some((d, key)))
    };
    let (d, license_key) = match found.await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return failed(state, Some(op), e),
    };
    let d = match crate::views::DeliveryOut::full(d) {
        Ok(d) => d,
        Err(e) => return failed(state, Some(op), e),
    };
    let headers: Vec<(String, String)> = d
        .headers
        .as_ref()
        .and_then(|h| h.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // A JSON body pretty-printed; anything else as it came.
    let body = d
        .body
        .as_deref()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| b.to_string())
        })
        .unwrap_or_default();
    let may_replay = op.may(scope::DELIVERIES_WRITE)
        && d.status != crate::domain::DeliveryStatus::Rejected
        && d.signature_valid != Some(false);
    render(
        state,
        StatusCode::OK,
        "delivery.html",
        context! {
            operator => op.name.clone(), csrf => op.csrf.clone(), page => "deliveries",
            d => Serde(&d), headers, body, license_key, may_replay, notice,
        },
    )
}

pub(super) async fn delivery_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(id): Path<String>,
) -> Response {
    delivery_view(&state, &op, &id, None).await
}

pub(super) async fn replay_one(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    use crate::ingest::{IngestResult, ReplayError};
    if !op.csrf_matches(&form.csrf) {
        return forged(&state, &op);
    }
    // The answer is a deliveries page: both scopes, before anything is
    // done.
    if let Some(refusal) = lacks(
        &state,
        &op,
        &[scope::DELIVERIES_READ, scope::DELIVERIES_WRITE],
    ) {
        return refusal;
    }
    let Ok(parsed) = crate::domain::DeliveryId::parse(&id) else {
        return delivery_view(&state, &op, &id, None).await;
    };
    let notice = match crate::ingest::replay(&state, &parsed).await {
        Ok(IngestResult::Done { applied, .. }) => {
            state.outbox_wake.notify_one();
            match applied.reason() {
                Some(why) => format!("Replayed: {} ({why}).", applied.response_status()),
                None => format!("Replayed: {}.", applied.response_status()),
            }
        }
        Ok(_) => "The replay could not be applied now; try again.".to_string(),
        Err(ReplayError::NotFound) => return delivery_view(&state, &op, &id, None).await,
        Err(ReplayError::Database(e)) => return failed(&state, Some(&op), e),
        Err(e) => format!("Not replayed: {e}."),
    };
    delivery_view(&state, &op, &id, Some(&notice)).await
}

#[derive(Deserialize)]
pub(super) struct ReplayFailedForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    endpoint: String,
}

pub(super) async fn replay_failed(
    State(state): State<AppState>,
    Signed(op): Signed,
    Form(form): Form<ReplayFailedForm>,
) -> Response {
    if !op.csrf_matches(&form.csrf) {
        return forged(&state, &op);
    }
    // The answer is a deliveries page: both scopes, before anything is
    // done.
    if let Some(refusal) = lacks(
        &state,
        &op,
        &[scope::DELIVERIES_READ, scope::DELIVERIES_WRITE],
    ) {
        return refusal;
    }
    let named = form.endpoint.trim();
    let endpoint = state.config.endpoint(named).map(|e| e.name.clone());
    if !named.is_empty() && endpoint.is_none() {
        let q = DeliveryQuery::default();
        let problem = format!("No endpoint is named {named:?}; nothing was replayed.");
        return deliveries_view(&state, &op, &q, StatusCode::BAD_REQUEST, Some(&problem)).await;
    }
    let filter = crate::ingest::ReplayFilter {
        endpoint: endpoint.clone(),
        since: None,
        after: None,
        limit: Some(500),
    };
    let notice = match crate::ingest::replay_failed(&state, &filter, |_, _| {}).await {
        Ok(s) => {
            state.outbox_wake.notify_one();
            format!(
                "Replayed {}: {} ok, {} duplicate, {} ignored, {} not mapped, {} failed again, {} not applied (database unavailable){}.",
                s.replayed,
                s.ok,
                s.duplicate,
                s.ignored,
                s.no_mint,
                s.error,
                s.unavailable,
                if s.next_after.is_some() {
                    "; more remain: replay again"
                } else {
                    ""
                }
            )
        }
        Err(crate::ingest::ReplayError::Database(e)) => return failed(&state, Some(&op), e),
        Err(e) => format!("Not replayed: {e}."),
    };
    let q = DeliveryQuery {
        endpoint: endpoint.unwrap_or_default(),
        ..DeliveryQuery::default()
    };
    deliveries_view(&state, &op, &q, StatusCode::OK, Some(&notice)).await
}
