//! Licensing: what can happen to a license after it is minted. The pure
//! state machine is [`machine`]; [`transition`] applies one of its steps to
//! a stored license in the caller's transaction. [`service`] is what
//! buyers' programs reach through the licensing API (validation, machines,
//! seat limits), with [`verdict`] its pure decision.

pub mod machine;
pub mod service;
pub mod verdict;

pub use machine::{Cause, NotAllowed, Step};
pub use service::{Licensing, LicensingError};

use crate::store::{Conn, licenses};

/// Who applies a cause, and when.
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    /// `webhook:<endpoint>`, `admin:<token>`, `reconciler`, `sweeper`...
    pub actor: &'a str,
    pub delivery_id: Option<&'a str>,
    /// Unix ms: the operation's one reading of the clock.
    pub now: i64,
    /// The operator's reason; causes with a reason of their own ignore it.
    pub reason: Option<&'a str>,
}

/// Applies `cause` to `license` through the state machine and writes what
/// it decides (status and history) in the caller's transaction; returns
/// the step so callers can answer `NotAllowed` or follow up on a move.
pub async fn transition(
    conn: &mut Conn,
    license: &licenses::License,
    cause: Cause,
    by: &By<'_>,
) -> Result<Step, sqlx::Error> {
    // Decide from the row as it stands, locked, not from the caller's
    // earlier read (docs/architecture.md, "State machines").
    let current = licenses::by_id_for_update(conn, &license.id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let license = &current;
    let state = machine::State::of(license.status, license.status_reason.as_deref());
    let step = machine::apply(state, cause);
    let reason = cause.reason().or(by.reason);
    match step {
        // A move writes its new status, a mark the same one: both store
        // the cause as the status reason and record it in the history.
        Step::Move(_) | Step::Mark => {
            let to = match step {
                Step::Move(to) => to,
                _ => license.status,
            };
            licenses::set_status(
                conn,
                license,
                to,
                cause.action(),
                reason,
                by.actor,
                by.delivery_id,
                by.now,
            )
            .await?;
        }
        Step::Record => {
            licenses::record_event(
                conn,
                &license.id,
                cause.action(),
                Some(license.status),
                license.status,
                reason,
                by.actor,
                by.delivery_id,
                by.now,
            )
            .await?;
        }
        Step::Unchanged | Step::NotAllowed(_) => {}
    }
    Ok(step)
}
