//! Writing an attempt down: the period's outcome, the subscription's next state and the
//! events (in the outbox) in one transaction, then the events shipped. A concurrent change to
//! the subscription (a new card, say) is re-read and the transition applied again; the
//! period's lease must still be ours.

use chrono::{DateTime, Utc};

use super::transition::{transition, Attempted, Settled};
use super::{ChargeDeps, WorkContext, WorkError, WorkOutcome};
use crate::domain::{ChargePeriod, CustomerId, PeriodState, Plan, Subscription};
use crate::outbox;
use crate::store::{Expect, Put, StoreError, StoreExt, Versioned};

/// A claimed period and what is needed to write its outcome.
pub(super) struct Attempt<'a> {
    pub deps: &'a ChargeDeps,
    pub plan: &'a Plan,
    /// The period as claimed (state `Charging`).
    pub period: ChargePeriod,
    pub version: u64,
    /// Its state before the claim.
    pub prior: PeriodState,
    pub customer: CustomerId,
    /// The subscription as read before the claim (the claim does not change it): the outcome
    /// is written against it, and only a conflict makes us read it again.
    pub sub: Versioned<Subscription>,
    pub ctx: &'a WorkContext,
}

impl Attempt<'_> {
    /// When this attempt's claim on the period ends.
    pub fn lease_until(&self) -> DateTime<Utc> {
        match self.period.state {
            PeriodState::Charging { lease_until, .. } => lease_until,
            // A claimed period is always `Charging`; an already-ended lease sends nothing.
            _ => self.deps.clock.now(),
        }
    }

    /// After Oen's charge endpoint was called.
    pub async fn settle_after_call(self, settled: Settled) -> Result<WorkOutcome, WorkError> {
        self.write(settled, true).await
    }

    /// Without a charge call (the order query settled it, or it was never sent).
    pub async fn settle(self, settled: Settled) -> Result<WorkOutcome, WorkError> {
        self.write(settled, false).await
    }

    /// Our own failure before Oen was called: free the period, try again later.
    pub async fn release_for_retry(self, reason: String) -> Result<WorkOutcome, WorkError> {
        tracing::error!(order = %self.period.order_id, error = %reason, "charge attempt abandoned before calling Oen");
        let _ = self.write(Settled::NotSent(reason.clone()), false).await;
        Err(WorkError::Retry(reason))
    }

    async fn write(self, settled: Settled, called: bool) -> Result<WorkOutcome, WorkError> {
        let mut known = Some(self.sub.clone());
        for _ in 0..3 {
            let sub = match known.take() {
                Some(sub) => sub,
                None => self.reread_subscription().await?,
            };
            let at = Attempted {
                policy: &self.deps.policy,
                plan: self.plan,
                claimed: &self.period,
                prior: &self.prior,
                called,
                now: self.deps.clock.now(),
            };
            let next = transition(&at, sub.value.clone(), &settled);
            let mut puts = vec![Put::new(next.period, Expect::Version(self.version))];
            // A subscription started over (new id) while this attempt ran: leave it alone.
            if let Some(s) = next
                .subscription
                .filter(|s| s.id == self.period.subscription)
            {
                puts.push(Put::new(s, Expect::Version(sub.version)));
            }
            if let Some(a) = next.audit {
                puts.push(Put::new(a, Expect::Absent));
            }
            match outbox::commit(self.deps, puts, next.events).await {
                Ok(recorded) => {
                    self.log(&next.outcome, &settled);
                    outbox::ship(self.deps, recorded, "charger").await;
                    return Ok(next.outcome);
                }
                Err(StoreError::Conflict(_)) => self.check_lease_held().await?,
                Err(e) => {
                    // The period stays claimed; after the lease, the next worker asks Oen.
                    tracing::error!(order = %self.period.order_id, error = %e, "outcome not written; the period will be reconciled");
                    return Err(e.into());
                }
            }
        }
        Err(WorkError::Retry("the subscription kept changing".into()))
    }

    async fn reread_subscription(&self) -> Result<Versioned<Subscription>, WorkError> {
        self.deps
            .store
            .subscription(&self.customer, &self.plan.id)
            .await?
            .ok_or_else(|| WorkError::Retry("subscription vanished during a charge".into()))
    }

    /// After a conflict: if the lease is lost, whoever holds it reconciles; otherwise the
    /// subscription changed and the caller retries with a fresh read.
    async fn check_lease_held(&self) -> Result<(), WorkError> {
        let current = self
            .deps
            .store
            .period(&self.period.subscription, self.period.period)
            .await?;
        if current.map(|p| p.version) != Some(self.version) {
            tracing::error!(order = %self.period.order_id, "lease lost before the outcome was written; the next worker reconciles");
            return Err(WorkError::Retry("lease lost".into()));
        }
        Ok(())
    }

    fn log(&self, outcome: &WorkOutcome, settled: &Settled) {
        let (order, owner) = (&self.period.order_id, &self.ctx.owner);
        match outcome {
            WorkOutcome::Unknown { .. } => {
                tracing::warn!(order = %order, owner = %owner, detail = ?settled, "charge outcome unknown; will reconcile")
            }
            _ => {
                tracing::info!(order = %order, owner = %owner, outcome = ?outcome, "period settled")
            }
        }
    }
}
