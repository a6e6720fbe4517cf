//! The console's license pages: search, one license, and the actions on
//! it (revoke, reinstate, refund, resend, machines, mint by hand), each
//! through the same service as the admin API.

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    before: String,
}

pub(super) async fn licenses_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Query(q): Query<SearchQuery>,
) -> Response {
    if !op.may(scope::LICENSES_READ) {
        return no_scope(&state, &op, scope::LICENSES_READ);
    }
    let text = q.q.trim().to_lowercase();
    if text.chars().count() > crate::http::admin::params::MOST_FILTER_CHARS {
        return error_page(
            &state,
            Some(&op),
            StatusCode::BAD_REQUEST,
            "Search too long",
            "Search for at most 256 characters.",
        );
    }
    if text.chars().any(char::is_control) {
        return error_page(
            &state,
            Some(&op),
            StatusCode::BAD_REQUEST,
            "Search refused",
            "A search cannot hold control characters.",
        );
    }
    let product = state
        .catalog
        .product(q.product.trim())
        .map(|p| p.id.clone());
    let known_status = q.status.trim().parse::<licenses::LicenseStatus>().is_ok();
    let known_before = crate::domain::LicenseId::parse(q.before.trim()).is_ok();
    let filters = [
        ("product", q.product.trim(), product.is_some()),
        ("status", q.status.trim(), known_status),
        ("page", q.before.trim(), known_before),
    ];
    if let Some(page) = unknown_filters(&state, &op, &filters) {
        return page;
    }
    let status = q.status.parse::<licenses::LicenseStatus>().ok();
    let before = Some(q.before.trim())
        .filter(|b| crate::domain::LicenseId::parse(b).is_ok())
        .map(str::to_string);
    let filter = licenses::Filter {
        email: None,
        order_id: None,
        q: Some(text.clone()).filter(|t| !t.is_empty()),
        product: product.clone(),
        status,
        before,
        limit: PAGE_SIZE,
    };
    let rows = async {
        let mut conn = state.store.conn().await?;
        licenses::search(&mut conn, &filter).await
    };
    let rows = match rows.await {
        Ok(rows) => rows,
        Err(e) => return failed(&state, Some(&op), e),
    };
    let next = next_page(
        "/console/licenses",
        rows.len(),
        rows.last().map(|l| l.id.as_str()),
        &[
            ("q", &text),
            ("product", product.as_deref().unwrap_or("")),
            ("status", status.map_or("", |s| s.as_str())),
        ],
    );
    let list: Vec<Value> = rows
        .iter()
        .map(|l| {
            context! {
                key => l.key.to_string(), product => l.product.clone(),
                status => l.status.as_str(), email => l.email.clone(),
                issued_at => store::format_ms(l.issued_at),
            }
        })
        .collect();
    let may_write = op.may(scope::LICENSES_WRITE);
    render(
        &state,
        StatusCode::OK,
        "licenses.html",
        context! {
            operator => op.name, csrf => op.csrf, page => "licenses",
            licenses => list, q => q.q, status => status.map(|s| s.as_str()),
            statuses => licenses::LicenseStatus::names(), next,
            product, products => state.config.products.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
            may_write,
            products => state.config.products.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        },
    )
}

/// The license page, with a notice or a problem above it.
async fn show_license(
    state: &AppState,
    op: &Operator,
    key: &str,
    status: StatusCode,
    notice: Option<&str>,
    problem: Option<&str>,
) -> Response {
    if !op.may(scope::LICENSES_READ) {
        return no_scope(state, op, scope::LICENSES_READ);
    }
    let not_found = || {
        error_page(
            state,
            Some(op),
            StatusCode::NOT_FOUND,
            "No such license",
            "No license has that key.",
        )
    };
    let Ok(key) = key.parse::<LicenseKey>() else {
        return not_found();
    };
    match admin::license_detail(&state.store, &key).await {
        Ok(Some(d)) => render(
            state,
            status,
            "license.html",
            context! {
                operator => op.name.clone(), csrf => op.csrf.clone(), page => "licenses",
                may_write => op.may(scope::LICENSES_WRITE),
                may_refund => state.config.endpoint(&d.license.source)
                    .is_some_and(crate::provider_api::refunds_configured),
                l => Serde(&d.license),
                history => Serde(&d.history),
                emails => Serde(&d.emails),
                machines => Serde(&d.machines), notice, problem,
            },
        ),
        Ok(None) => not_found(),
        Err(e) => failed(state, Some(op), e),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct LicensePageQuery {
    /// What the action that redirected here did.
    #[serde(default)]
    done: String,
}

/// What an action did, said on the license's page it redirects to (so
/// reloading that page repeats nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    Minted,
    Revoked,
    Reinstated,
    Resent,
    MachineDeactivated,
    MachinesReset,
}

impl Done {
    const ALL: [Self; 6] = [
        Self::Minted,
        Self::Revoked,
        Self::Reinstated,
        Self::Resent,
        Self::MachineDeactivated,
        Self::MachinesReset,
    ];

    fn code(self) -> &'static str {
        match self {
            Self::Minted => "minted",
            Self::Revoked => "revoked",
            Self::Reinstated => "reinstated",
            Self::Resent => "resent",
            Self::MachineDeactivated => "machine_deactivated",
            Self::MachinesReset => "machines_reset",
        }
    }

    fn notice(self) -> &'static str {
        match self {
            Self::Minted => "Minted, and the email is queued.",
            Self::Revoked => "Revoked.",
            Self::Reinstated => "Reinstated.",
            Self::Resent => "The email is queued.",
            Self::MachineDeactivated => "The machine is deactivated.",
            Self::MachinesReset => "Every machine is deactivated.",
        }
    }

    /// The redirect to the license's page saying this.
    fn to(self, key: &str) -> Response {
        Redirect::to(&format!("/console/licenses/{key}?done={}", self.code())).into_response()
    }
}

pub(super) async fn license_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
    Query(q): Query<LicensePageQuery>,
) -> Response {
    let notice = Done::ALL
        .into_iter()
        .find(|d| d.code() == q.done)
        .map(Done::notice);
    show_license(&state, &op, &key, StatusCode::OK, notice, None).await
}

#[derive(Deserialize)]
pub(super) struct StatusForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn change_status(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
    Form(form): Form<StatusForm>,
) -> Response {
    if !op.csrf_matches(&form.csrf) {
        return forged(&state, &op);
    }
    if let Some(refusal) = lacks(&state, &op, &[scope::LICENSES_READ, scope::LICENSES_WRITE]) {
        return refusal;
    }
    let revoke = match form.action.as_str() {
        "revoke" => true,
        "reinstate" => false,
        _ => {
            return show_license(
                &state,
                &op,
                &key,
                StatusCode::BAD_REQUEST,
                None,
                Some("Unknown action."),
            )
            .await;
        }
    };
    let Ok(parsed) = key.parse::<LicenseKey>() else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    match admin::set_status(&state.store, &parsed, revoke, &form.reason, &op.actor()).await {
        Ok(_) => if revoke {
            Done::Revoked
        } else {
            Done::Reinstated
        }
        .to(&key),
        Err(AdminError::NotFound) => {
            show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await
        }
        Err(e @ (AdminError::Invalid { .. } | AdminError::Conflict { .. })) => {
            let status = if matches!(e, AdminError::Invalid { .. }) {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::CONFLICT
            };
            show_license(&state, &op, &key, status, None, Some(&e.to_string())).await
        }
        Err(e) => failed(&state, Some(&op), e),
    }
}

/// Checks an action's form: the session's CSRF token, and `licenses:write`
/// with `licenses:read` (the answer is the license's page); the refusal
/// when any is missing, before anything is done.
fn refused(state: &AppState, op: &Operator, csrf: &str) -> Option<Response> {
    if !op.csrf_matches(csrf) {
        return Some(forged(state, op));
    }
    lacks(state, op, &[scope::LICENSES_READ, scope::LICENSES_WRITE])
}

pub(super) async fn resend(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &op, &form.csrf) {
        return refusal;
    }
    let Ok(parsed) = key.parse::<LicenseKey>() else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    match admin::resend(&state.store, &parsed, false, &op.actor()).await {
        Ok(_) => {
            state.outbox_wake.notify_one();
            Done::Resent.to(&key)
        }
        Err(AdminError::NotFound) => {
            show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await
        }
        Err(e @ AdminError::Conflict { .. }) => {
            show_license(
                &state,
                &op,
                &key,
                StatusCode::CONFLICT,
                None,
                Some(&e.to_string()),
            )
            .await
        }
        Err(e) => failed(&state, Some(&op), e),
    }
}

#[derive(Deserialize)]
pub(super) struct RefundForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn refund(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
    Form(form): Form<RefundForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &op, &form.csrf) {
        return refusal;
    }
    let Ok(parsed) = key.parse::<LicenseKey>() else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    let amount = match form.amount.trim() {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(cents) => Some(cents),
            Err(_) => {
                return show_license(
                    &state,
                    &op,
                    &key,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    None,
                    Some("The amount is a whole number of cents."),
                )
                .await;
            }
        },
    };
    let reason = Some(form.reason.trim()).filter(|r| !r.is_empty());
    match admin::request_refund(&state, &parsed, amount, reason, &op.actor()).await {
        Ok(r) => {
            let notice = match &r.error {
                Some(e) => format!(
                    "Refund {} is pending; the provider has not taken it yet ({e}): the reconciler will settle it.",
                    r.id
                ),
                None => format!(
                    "Refund {} is pending until the provider's webhook settles it.",
                    r.id
                ),
            };
            show_license(&state, &op, &key, StatusCode::ACCEPTED, Some(&notice), None).await
        }
        Err(AdminError::NotFound) => {
            show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await
        }
        Err(
            e @ (AdminError::Invalid { .. }
            | AdminError::Conflict { .. }
            | AdminError::RefundsNotConfigured(_)),
        ) => {
            let status = if matches!(e, AdminError::Invalid { .. }) {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::CONFLICT
            };
            show_license(&state, &op, &key, status, None, Some(&e.to_string())).await
        }
        Err(e) => failed(&state, Some(&op), e),
    }
}

#[derive(Deserialize)]
pub(super) struct MintForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    notes: String,
}

pub(super) async fn mint(
    State(state): State<AppState>,
    Signed(op): Signed,
    Form(form): Form<MintForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &op, &form.csrf) {
        return refusal;
    }
    let optional = |t: &str| Some(t.trim().to_string()).filter(|t| !t.is_empty());
    let req = admin::ManualMint {
        product: form.product.trim().to_string(),
        email: form.email.trim().to_string(),
        name: optional(&form.name),
        order_id: None,
        notes: optional(&form.notes),
    };
    match admin::mint_manual(&state, &req, &op.actor()).await {
        Ok((license, _)) => {
            state.outbox_wake.notify_one();
            // To the new license's page: reloading it mints nothing.
            Done::Minted.to(license.key.as_str())
        }
        Err(
            e @ (AdminError::Invalid { .. }
            | AdminError::UnknownProduct(_)
            | AdminError::Conflict { .. }),
        ) => error_page(
            &state,
            Some(&op),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not minted",
            &e.to_string(),
        ),
        Err(e) => failed(&state, Some(&op), e),
    }
}

/// A machine change's outcome on the license page.
async fn after_machines(
    state: &AppState,
    op: &Operator,
    key: &str,
    done: Result<Done, crate::licensing::LicensingError>,
) -> Response {
    use crate::licensing::LicensingError;
    match done {
        Ok(what) => what.to(key),
        Err(LicensingError::NotFound) => {
            show_license(state, op, key, StatusCode::NOT_FOUND, None, None).await
        }
        Err(e @ LicensingError::NotActivated) => {
            show_license(
                state,
                op,
                key,
                StatusCode::NOT_FOUND,
                None,
                Some(&e.to_string()),
            )
            .await
        }
        Err(e) => failed(state, Some(op), e),
    }
}

pub(super) async fn reset_machines(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(key): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &op, &form.csrf) {
        return refusal;
    }
    let Ok(parsed) = key.parse::<LicenseKey>() else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    let done = state
        .licensing
        .reset(&parsed, &op.actor())
        .await
        .map(|_| Done::MachinesReset);
    after_machines(&state, &op, &key, done).await
}

pub(super) async fn deactivate_machine(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path((key, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &op, &form.csrf) {
        return refusal;
    }
    let (Ok(parsed), Ok(id)) = (
        key.parse::<LicenseKey>(),
        crate::domain::MachineId::parse(&id),
    ) else {
        return show_license(&state, &op, &key, StatusCode::NOT_FOUND, None, None).await;
    };
    let done = state
        .licensing
        .operator_deactivate(&parsed, &id, &op.actor())
        .await
        .map(|()| Done::MachineDeactivated);
    after_machines(&state, &op, &key, done).await
}
