//! The console's license pages: search, one license, and what an action
//! that redirects back to it says (the actions are in
//! `license_actions.rs`).

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
pub(super) async fn show_license(
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
    pub(super) fn to(self, key: &str) -> Response {
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
