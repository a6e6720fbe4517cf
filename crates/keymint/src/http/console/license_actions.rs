//! The actions on a license in the console (revoke, reinstate, refund,
//! resend, machines, mint by hand), each through the same service as the
//! admin API, each checked for its CSRF token and scopes before anything
//! is done.

use super::*;

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
        Err(e) => admin_refusal(&state, &op, &key, e).await,
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

/// The license's page for an admin action that was refused, with the
/// status the admin API answers the same refusal with
/// (`ApiError::from(AdminError)`); a failure the operator cannot fix by
/// changing the form is the error page.
async fn admin_refusal(state: &AppState, op: &Operator, key: &str, e: AdminError) -> Response {
    match e {
        AdminError::NotFound => {
            show_license(state, op, key, StatusCode::NOT_FOUND, None, None).await
        }
        AdminError::Database(_) | AdminError::Mint(_) => failed(state, Some(op), e),
        refused => {
            let message = refused.to_string();
            let status = crate::http::ApiError::from(refused).status();
            show_license(state, op, key, status, None, Some(&message)).await
        }
    }
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
        Err(e) => admin_refusal(&state, &op, &key, e).await,
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
        Err(e) => admin_refusal(&state, &op, &key, e).await,
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
