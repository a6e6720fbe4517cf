//! The signed-in buyer's page and what they may do from it: download a
//! license file, have the license emailed again, deactivate a machine
//! within the key's budget, manage a subscription. Each action first
//! checks that the license belongs to the signed-in email.

use super::*;
use crate::admin::{self, AdminError};
use crate::domain::MachineId;
use crate::licensing::LicensingError;
use crate::portal::holdings;
use crate::provider_api::{BillingPortalError, license_billing_portal};
use crate::store::licenses::{self, License};
use keymint_license::LicenseKey;
use minijinja::value::Serde;

/// The actor recorded for what a buyer does in the portal.
const ACTOR: &str = crate::store::machines::PORTAL_ACTOR;

pub(super) async fn licenses_page(
    state: &AppState,
    buyer: &Buyer,
    notice: Option<&str>,
    problem: Option<&str>,
) -> Response {
    let status = if problem.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    match holdings::of(state, &buyer.email).await {
        Ok(list) => render(
            state,
            status,
            "licenses.html",
            context! {
                buyer => buyer.email.clone(), csrf => buyer.csrf.clone(),
                holdings => Serde(&list), notice, problem,
            },
        ),
        Err(e) => failed(state, Some(buyer), e),
    }
}

/// The buyer's license with this key; `Err` is the page to answer
/// (another email's license is as unknown as a key that does not exist).
async fn own_license(state: &AppState, buyer: &Buyer, key: &str) -> Result<License, Response> {
    let not_found = || {
        error_page(
            state,
            Some(buyer),
            StatusCode::NOT_FOUND,
            "No such license",
            "None of your licenses has this key.",
            false,
        )
    };
    let key: LicenseKey = key.parse().map_err(|_| not_found())?;
    let found = async {
        let mut conn = state.store.conn().await?;
        licenses::by_key(&mut conn, &key).await
    };
    match found.await {
        Ok(Some(l)) if l.email == buyer.email => Ok(l),
        Ok(_) => Err(not_found()),
        Err(e) => Err(failed(state, Some(buyer), e)),
    }
}

/// What an action did, said on the page it redirects to (so reloading
/// that page repeats nothing).
#[derive(Debug, Clone, Copy)]
pub(super) enum Done {
    Resent,
    Deactivated,
}

impl Done {
    fn code(self) -> &'static str {
        match self {
            Self::Resent => "resent",
            Self::Deactivated => "deactivated",
        }
    }

    pub(super) fn parse(code: &str) -> Option<Self> {
        [Self::Resent, Self::Deactivated]
            .into_iter()
            .find(|d| d.code() == code)
    }

    pub(super) fn notice(self, buyer: &Buyer) -> String {
        match self {
            Self::Resent => format!("Your license is on its way to {}.", buyer.email),
            Self::Deactivated => "The machine is deactivated; its seat is free.".into(),
        }
    }
}

/// The redirect after an action: back to the licenses, at this one.
fn done(what: Done, license: &License) -> Response {
    Redirect::to(&format!(
        "/portal?done={}#license-{}",
        what.code(),
        license.key
    ))
    .into_response()
}

/// Checks an action's form: the request budget, the session's CSRF token
/// and that the license is the buyer's.
async fn checked(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    buyer: &Buyer,
    csrf: &str,
    key: &str,
) -> Result<License, Response> {
    if let Some(resp) = over_limit(state, headers, peer) {
        return Err(resp);
    }
    if !buyer.csrf_matches(csrf) {
        return Err(forged(state, Some(buyer)));
    }
    own_license(state, buyer, key).await
}

/// The license file: the signed token, which the buyer's program checks
/// offline with the seller's public key.
pub(super) async fn license_file(
    State(state): State<AppState>,
    Signed(buyer): Signed,
    Path(key): Path<String>,
) -> Response {
    let license = match own_license(&state, &buyer, &key).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    if license.status == crate::domain::LicenseStatus::Revoked {
        return error_page(
            &state,
            Some(&buyer),
            StatusCode::CONFLICT,
            "License revoked",
            "This license was revoked, so there is no license file to download.",
            false,
        );
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}-license.txt\"", license.product),
            ),
        ],
        format!("{}\n", license.token),
    )
        .into_response()
}

pub(super) async fn resend(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Signed(buyer): Signed,
    Path(key): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let license = match checked(&state, &headers, peer, &buyer, &form.csrf, &key).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    match admin::resend(&state.store, &license.key, false, ACTOR).await {
        Ok(_) => {
            state.outbox_wake.notify_one();
            done(Done::Resent, &license)
        }
        Err(AdminError::Conflict { .. }) => {
            licenses_page(
                &state,
                &buyer,
                None,
                Some("This license was revoked, so it is not emailed again."),
            )
            .await
        }
        Err(e) => failed(&state, Some(&buyer), e),
    }
}

pub(super) async fn deactivate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Signed(buyer): Signed,
    Path((key, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let license = match checked(&state, &headers, peer, &buyer, &form.csrf, &key).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let gone = "That machine is no longer active on this license.";
    let Ok(id) = id.parse::<MachineId>() else {
        return licenses_page(&state, &buyer, None, Some(gone)).await;
    };
    match state.licensing.buyer_deactivate(&license.key, &id).await {
        Ok(()) => {
            metrics::counter!("keymint_machines_deactivated_total").increment(1);
            done(Done::Deactivated, &license)
        }
        Err(LicensingError::NotActivated | LicensingError::NotFound) => {
            licenses_page(&state, &buyer, None, Some(gone)).await
        }
        Err(e @ LicensingError::DeactivationLimit { .. }) => {
            licenses_page(&state, &buyer, None, Some(&e.to_string())).await
        }
        Err(e) => failed(&state, Some(&buyer), e),
    }
}

/// "Manage subscription" for a Stripe license: a billing-portal session
/// opened through Stripe's API, then a redirect to it.
pub(super) async fn manage(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Signed(buyer): Signed,
    Path(key): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let license = match checked(&state, &headers, peer, &buyer, &form.csrf, &key).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let back = format!("{}/portal", state.config.portal.base_url());
    match license_billing_portal(
        &state.store,
        &state.http,
        &state.config,
        &license,
        Some(&back),
    )
    .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(BillingPortalError::NotAvailable(_)) => {
            licenses_page(
                &state,
                &buyer,
                None,
                Some("This subscription cannot be managed here; contact the seller."),
            )
            .await
        }
        Err(e) => {
            tracing::warn!(error = %e, "portal: the billing portal did not open");
            licenses_page(
                &state,
                &buyer,
                None,
                Some("The payment provider did not open its page just now. Try again in a moment."),
            )
            .await
        }
    }
}
