//! The sweeper's step: subscription licenses whose paid period plus grace
//! has ended without a renewal expire (the `PeriodEnded` cause of the
//! license state machine); a canceled subscription becomes `expired` with
//! them. Each row is re-checked under its lock, so replicas agree.

use super::{Count, DispatchError, Dispatcher};
use crate::domain::Millis;
use crate::licensing::{self, By, Cause, Step};
use crate::store::subscriptions as subs;
use crate::store::{self, licenses};
use crate::subscriptions::{self as machine, Status};

impl Dispatcher {
    /// Expires subscription licenses whose paid period plus grace has
    /// ended (the sweeper's tick). Returns how many it expired.
    pub async fn sweep(&self, limit: i64) -> Result<usize, DispatchError> {
        self.sweep_at(store::now_ms(), limit).await
    }

    /// [`Self::sweep`] as if the time were `now` (Unix ms).
    pub async fn sweep_at(&self, now: i64, limit: i64) -> Result<usize, DispatchError> {
        let due = {
            let mut conn = self.store.conn().await?;
            subs::due_for_expiry(&mut conn, now, self.grace_ms(), limit).await?
        };
        let by = By {
            actor: "sweeper",
            delivery_id: None,
            now,
            reason: None,
        };
        let mut done = 0;
        for candidate in due {
            let mut tx = self.store.begin().await?;
            let (mut row, _) = subs::lock_or_create(
                &mut tx,
                self.store.backend(),
                &candidate.source,
                &candidate.subscription_id,
                candidate.last_event_at.as_i64(),
                now,
            )
            .await?;
            let state = row.state();
            if machine::grants_access(&state, now, self.grace_ms()) {
                continue;
            }
            let Some(license) = (match &row.license_id {
                Some(id) => licenses::by_id(&mut tx, id).await?,
                None => None,
            }) else {
                continue;
            };
            // Decided before anything is written: a license the period's
            // end does not move (held, revoked) leaves the row untouched.
            let cause = Cause::PeriodEnded;
            let current =
                licensing::machine::State::of(license.status, license.status_reason.as_deref());
            if !matches!(licensing::machine::apply(current, cause), Step::Move(_)) {
                continue;
            }
            let from = row.status;
            if state.status == Status::Canceled {
                row.status = Status::Expired;
                row.cancel_at_period_end = 0;
                row.updated_at = Millis(now);
                subs::save(&mut tx, &row).await?;
            }
            subs::record_event(
                &mut tx,
                &subs::SubscriptionEvent {
                    id: crate::domain::SubscriptionEventId::generate(),
                    subscription_id: row.id.clone(),
                    at: Millis(now),
                    received_at: Millis(now),
                    event_type: "keymint.period_ended".into(),
                    result: "applied".into(),
                    from_status: Some(from),
                    to_status: row.status,
                    period_end: row.current_period_end,
                    actor: "sweeper".into(),
                    delivery_id: None,
                },
            )
            .await?;
            licensing::transition(&mut tx, &license, cause, &by).await?;
            tx.commit().await?;
            Count::SubscriptionLicenseExpired.record();
            done += 1;
        }
        Ok(done)
    }
}
