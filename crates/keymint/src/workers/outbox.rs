//! The outbox sender: claims due emails under a lease, sends them without
//! holding any lock, then records the result; failures back off
//! exponentially with jitter until `email.max_attempts`, then the row is
//! `dead` for an operator to look at.

use crate::app::AppState;
use crate::notify::templates::{LicenseContext, PortalLinkContext};
use crate::notify::{self, Email, SendError};
use crate::store::{self, licenses, outbox};
use std::time::Duration;
use tokio::sync::watch;

/// Rows claimed per round.
const BATCH: i64 = 16;

/// Sends every email due now; returns how many were attempted.
pub async fn run_once(state: &AppState) -> Result<usize, sqlx::Error> {
    let (_keep, never) = watch::channel(false);
    run_until(state, &never).await
}

/// Sends emails due now until none is left or `stop` flips. A stop is
/// looked at before every send, so a stopping process finishes at most the
/// send in flight whatever the backlog; rows it had claimed but not sent
/// are handed back at once for another replica (docs/operations.md,
/// "Stopping").
///
/// A round claims up to [`BATCH`] rows and reads their licenses in one
/// write, sends them one by one holding no lock, and records every result
/// in one write: a crash between a send and that write sends the email
/// again once the lease runs out, as before (at least once). After a full
/// round the next claims at once, without first reading whether any is due.
pub async fn run_until(
    state: &AppState,
    stop: &watch::Receiver<bool>,
) -> Result<usize, sqlx::Error> {
    let mut total = 0;
    let mut full = false;
    loop {
        if *stop.borrow() {
            return Ok(total);
        }
        let claimed = claim(state, full).await?;
        if claimed.is_empty() {
            return Ok(total);
        }
        full = claimed.len() as i64 == BATCH;
        let mut done = Vec::with_capacity(claimed.len());
        let mut claimed = claimed.into_iter();
        let mut stopped = false;
        while let Some((row, about)) = claimed.next() {
            if *stop.borrow() {
                let mut conn = state.store.writer().await?;
                outbox::release(&mut conn, &row.id).await?;
                for (rest, _) in claimed.by_ref() {
                    outbox::release(&mut conn, &rest.id).await?;
                }
                stopped = true;
                break;
            }
            total += 1;
            let completion = deliver(state, &row, &about).await;
            done.push((row, completion));
        }
        let done = done.into_iter().map(|(row, c)| (row.id, c)).collect();
        outbox::complete_durably(&state.store, done).await?;
        if stopped {
            return Ok(total);
        }
    }
}

async fn claim(
    state: &AppState,
    after_full_round: bool,
) -> Result<Vec<(outbox::OutboxRow, outbox::About)>, sqlx::Error> {
    let now = store::now_ms();
    let lease_ms = i64::try_from(state.config.email.lease.as_millis()).unwrap_or(i64::MAX / 2);
    // A read first, so an idle poll never takes the write lock; after a
    // full round more are likely due, and the claim itself tells.
    if !after_full_round && !outbox::any_due(&mut *state.store.conn().await?, now).await? {
        return Ok(Vec::new());
    }
    outbox::claim_durably(&state.store, now, now + lease_ms, BATCH).await
}

/// Renders and sends one claimed email; how it ended.
async fn deliver(
    state: &AppState,
    row: &outbox::OutboxRow,
    about: &outbox::About,
) -> outbox::Completion {
    let email = match about {
        outbox::About::License(Some(license)) => render(state, row, license),
        outbox::About::Link(Some(link)) => render_link(state, row, link),
        outbox::About::License(None) => Err(SendError {
            permanent: true,
            message: "license not found".into(),
        }),
        outbox::About::Link(None) => Err(SendError {
            permanent: true,
            message: "sign-in link not found".into(),
        }),
    };
    // No connection or lock is held while the provider is called.
    let result = match email {
        Ok(email) => state.mailer.send(&email).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(message_id) => {
            metrics::counter!("keymint_emails_sent_total", "kind" => row.kind.as_str())
                .increment(1);
            tracing::info!(email_id = %row.id, license_id = ?row.license_id, kind = %row.kind, "email sent");
            outbox::Completion::Sent { message_id }
        }
        Err(e) => {
            metrics::counter!("keymint_emails_failed_total", "kind" => row.kind.as_str())
                .increment(1);
            let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX);
            if e.permanent || attempts >= state.config.email.max_attempts {
                metrics::counter!("keymint_emails_dead_total").increment(1);
                tracing::error!(email_id = %row.id, license_id = ?row.license_id, attempts, error = %e, "email is dead; an operator must resend it");
                outbox::Completion::Dead { error: e.message }
            } else {
                let delay = notify::backoff(
                    attempts,
                    state.config.email.retry_base,
                    state.config.email.retry_max,
                );
                let next =
                    store::now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                tracing::warn!(email_id = %row.id, attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "email failed; will retry");
                outbox::Completion::Retry {
                    error: e.message,
                    next_attempt_at: next,
                }
            }
        }
    }
}

fn render(
    state: &AppState,
    row: &outbox::OutboxRow,
    license: &licenses::License,
) -> Result<Email, SendError> {
    let product_name = state
        .catalog
        .product(&license.product)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| license.product.clone());
    let ctx = LicenseContext {
        name: license.name.clone(),
        email: license.email.clone(),
        product_id: license.product.clone(),
        product_name,
        tier: license.tier.clone(),
        key: license.key.to_string(),
        token: license.token.clone(),
        expires_at: license.expires_at.map(store::format_ms),
        max_machines: license.max_machines,
        resend: row.kind == outbox::EmailKind::LicenseResend,
        renewal: row.kind == outbox::EmailKind::LicenseRenewed,
        portal_url: state
            .config
            .portal
            .enabled
            .then(|| format!("{}/portal", state.config.portal.base_url())),
    };
    addressed(row, &license.name, state.templates.render_license(&ctx))
}

/// The email of a row, once rendered; a template that fails to render is
/// tried again later (an operator may fix an override).
fn addressed(
    row: &outbox::OutboxRow,
    to_name: &str,
    rendered: Result<notify::templates::Rendered, notify::templates::TemplateError>,
) -> Result<Email, SendError> {
    let rendered = rendered.map_err(|e| SendError {
        permanent: false,
        message: e.to_string(),
    })?;
    Ok(Email {
        to: row.to_email.clone(),
        to_name: to_name.to_string(),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
    })
}

/// A portal sign-in link's email: the token derived again from the link's
/// id with the key named on its row (never stored). A link that expired
/// before it could be sent is not sent.
fn render_link(
    state: &AppState,
    row: &outbox::OutboxRow,
    link: &store::portal::Link,
) -> Result<Email, SendError> {
    let permanent = |message: String| SendError {
        permanent: true,
        message,
    };
    if link.expires_at <= store::now_ms() {
        return Err(permanent(
            "the sign-in link expired before it could be sent".into(),
        ));
    }
    let key = state
        .keyring
        .key(&link.kid)
        .map_err(|e| permanent(format!("the link's signing key: {e}")))?;
    let cfg = &state.config.portal;
    let ctx = PortalLinkContext {
        email: link.email.clone(),
        link: format!(
            "{}/portal/sign-in/{}",
            cfg.base_url(),
            crate::portal::link_token(&key, &link.id)
        ),
        minutes: u64::try_from((link.expires_at - link.created_at) / 60_000).unwrap_or(0),
        seller_name: cfg.seller_name.clone(),
        support_email: cfg.support_email.clone(),
    };
    addressed(row, "", state.templates.render_portal_link(&ctx))
}

/// Runs until `shutdown` flips, waking every `email.poll_interval` or when
/// `wake` is notified (a new email was queued).
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let interval = state.config.email.poll_interval;
    loop {
        let sleep = match run_until(&state, &shutdown).await {
            Ok(_) => interval,
            Err(e) => {
                tracing::warn!(error = %e, "outbox worker could not reach the database");
                interval.max(Duration::from_secs(1))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = state.outbox_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
