//! A period carried over from a canceled subscription that the customer replaced by binding
//! again. Its charge may have reached Oen, so it is reconciled like any unknown period, and
//! never charged again; the new subscription waits for it. If it turns out paid, the new
//! subscription starts when that paid period ends, so the customer never pays twice for the
//! same time.

use chrono::{DateTime, Utc};

use super::attempt::Attempt;
use super::transition::Settled;
use super::worker::{self, Claimed};
use super::{ChargeDeps, WorkContext, WorkError, WorkOutcome};
use crate::domain::{CarriedPeriod, PeriodState, Plan, Subscription, SubscriptionStatus};
use crate::store::{Expect, Put, StoreError, StoreExt, Versioned};

/// Reconciles the carried period of `sub`, then points the subscription at what comes next.
pub(super) async fn reconcile(
    deps: &ChargeDeps,
    sub: Versioned<Subscription>,
    carried: CarriedPeriod,
    plan: &Plan,
    ctx: &WorkContext,
    now: DateTime<Utc>,
) -> Result<WorkOutcome, WorkError> {
    let lease_until = deps.policy.lease_until(now);
    let (id, n) = (&carried.subscription, carried.period);
    let outcome = match worker::claim_existing(deps, id, n, ctx, lease_until, now).await? {
        Claimed::Yes(claim) => {
            let attempt = Attempt {
                deps,
                plan,
                period: claim.period,
                version: claim.version,
                prior: claim.prior,
                customer: sub.value.customer.clone(),
                // Another subscription's record: the attempt writes the old period only.
                sub: sub.clone(),
                ctx,
            };
            // "Nothing charged" ends the old order; it is never charged again.
            let settled = worker::ask_oen_first(&attempt)
                .await
                .unwrap_or(Settled::Abandoned);
            attempt.settle(settled).await?
        }
        Claimed::Nothing(reason) => WorkOutcome::Skipped(reason),
        Claimed::EndsNow(_) => WorkOutcome::Skipped("carried period is not to be charged"),
    };
    follow(deps, &sub, &carried, now).await?;
    Ok(outcome)
}

/// Moves the subscription on from the carried period as it now stands.
async fn follow(
    deps: &ChargeDeps,
    sub: &Versioned<Subscription>,
    carried: &CarriedPeriod,
    now: DateTime<Utc>,
) -> Result<(), WorkError> {
    let old = deps
        .store
        .period(&carried.subscription, carried.period)
        .await?;
    let mut next = sub.value.clone();
    match old.map(|p| p.value.state) {
        Some(PeriodState::Unknown { reconcile_at, .. }) => {
            next.next_action_at = Some(reconcile_at);
        }
        Some(PeriodState::Charging { lease_until, .. }) => {
            next.next_action_at = Some(lease_until);
        }
        Some(PeriodState::Paid { .. }) => {
            // The old period is paid: this subscription's first period starts when it ends.
            next.carried = None;
            if next.period == 0 && next.anchor < carried.paid_until {
                next.anchor = carried.paid_until;
            }
            next.next_action_at = Some(next.anchor);
        }
        None | Some(PeriodState::Open | PeriodState::Declined { .. }) => {
            next.carried = None;
            next.next_action_at = Some(next.anchor);
        }
    }
    if next.carried.is_none() && next.status == SubscriptionStatus::Canceled {
        // Canceled meanwhile: nothing more to look at.
        next.next_action_at = None;
    }
    if next == sub.value {
        return Ok(());
    }
    next.updated_at = now;
    let put = Put::new(next, Expect::Version(sub.version));
    match deps.store.commit(vec![put]).await {
        Ok(()) => Ok(()),
        // Someone changed the subscription meanwhile: the next look starts over from here.
        Err(StoreError::Conflict(_)) => Err(WorkError::Retry(
            "the subscription changed while its carried period was reconciled".into(),
        )),
        Err(e) => Err(e.into()),
    }
}
