//! Flow 4: scheduled charging, exactly once per subscription period.
//!
//! Oen has no idempotency, so the protocol is ours:
//! - every attempt of a period reuses the period's stable order id;
//! - a worker claims the period with a conditional write (a lease) before it calls Oen;
//! - whenever an earlier attempt may have reached Oen (an earlier attempt at all, an unknown
//!   outcome, or a lease whose holder vanished), the worker first reads
//!   `GET /order/{orderId}/transactions`: paid settles without charging, anything in flight
//!   stays unknown, and only "none" or "all failed" allows a new attempt;
//! - `C026`, 504, timeouts and dropped connections after sending make the period unknown, and
//!   unknown periods are reconciled with back-off, never charged blind;
//! - the outcome and the subscription's next state are written in one transaction.
//!
//! The parts: [`policy`](ChargePolicy) (how long to wait after what), `plan` (the due index
//! into messages), `worker` (claim → ask Oen → charge), `transition` (the pure state machine:
//! one function per outcome), `attempt` (writing an outcome down), `operations` (what an
//! operator does: charge now, cancel, refund) and `notice` (renewal notices ahead of charges).

mod anomalies;
mod attempt;
mod carried;
mod notice;
mod operations;
mod plan;
mod policy;
mod transition;
mod worker;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::binding::BindingDeps;
use crate::domain::TransactionId;
use crate::queue::{QueueError, WorkMessage, WorkQueue};
use crate::store::{DueCursor, StoreError};

pub use operations::{
    cancel, cancel_subscription, charge_now, refund, refund_one_off, refund_period, resume,
    resume_subscription, OperationError, Refundable,
};
pub use plan::schedule;
pub use policy::ChargePolicy;

/// What charging needs: the adapters the binding flows use, plus the work queue and the
/// charging policy. It derefs to the shared adapters, so `deps.store` reads as before.
#[derive(Clone)]
pub struct ChargeDeps {
    pub adapters: BindingDeps,
    pub queue: Arc<dyn WorkQueue>,
    pub policy: ChargePolicy,
    /// The function these run in, the `Function` of the metrics an operator's cancel or
    /// refund records (events its writer could not publish): `charger` unless said otherwise.
    pub function: &'static str,
}

impl ChargeDeps {
    pub fn new(adapters: BindingDeps, queue: Arc<dyn WorkQueue>, policy: ChargePolicy) -> Self {
        Self {
            adapters,
            queue,
            policy,
            function: "charger",
        }
    }

    /// The same, run by `function` (the merchant API's operations).
    pub fn in_function(mut self, function: &'static str) -> Self {
        self.function = function;
        self
    }
}

impl std::ops::Deref for ChargeDeps {
    type Target = BindingDeps;

    fn deref(&self) -> &BindingDeps {
        &self.adapters
    }
}

impl std::ops::DerefMut for ChargeDeps {
    fn deref_mut(&mut self) -> &mut BindingDeps {
        &mut self.adapters
    }
}

/// Who is working and until when.
#[derive(Debug, Clone)]
pub struct WorkContext {
    /// Identifies the lease holder (the Lambda request id, a process id, …).
    pub owner: String,
    /// When this invocation will be stopped, if it will.
    pub deadline: Option<DateTime<Utc>>,
}

/// What became of one unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkOutcome {
    Planned {
        enqueued: usize,
        continued: bool,
    },
    /// Nothing to do (not due, already settled, someone else holds the lease).
    Skipped(&'static str),
    Paid {
        transaction: TransactionId,
        charged: bool,
    },
    SoftDeclined {
        retry_at: DateTime<Utc>,
    },
    HardDeclined,
    Canceled,
    Unknown {
        reconcile_at: DateTime<Utc>,
    },
    /// The request never reached Oen; the period is free again for a prompt retry.
    NotSent,
    /// Our configuration is wrong; nothing about the customer changed.
    ConfigError,
    /// A one-off charge reconciled to a decline: final.
    Declined {
        code: String,
    },
    /// A one-off charge reconciled to "nothing was charged": released to its key.
    Released,
    /// `subscription.renewal_upcoming` was recorded for `period`, charged at `charge_at`.
    Noticed {
        period: u32,
        charge_at: DateTime<Utc>,
    },
    /// The Taipei day's reconciliation is complete.
    Reconciled {
        date: chrono::NaiveDate,
    },
}

#[derive(Debug, Error)]
pub enum WorkError {
    /// Worth retrying later (the message goes back to the queue).
    #[error("retry later: {0}")]
    Retry(String),
}

impl From<StoreError> for WorkError {
    fn from(e: StoreError) -> Self {
        WorkError::Retry(e.to_string())
    }
}

impl From<QueueError> for WorkError {
    fn from(e: QueueError) -> Self {
        WorkError::Retry(e.to_string())
    }
}

/// Handles one message from the queue.
pub async fn handle(
    deps: &ChargeDeps,
    message: &WorkMessage,
    ctx: &WorkContext,
) -> Result<WorkOutcome, WorkError> {
    match message {
        WorkMessage::Plan { shard, now, cursor } => {
            plan::plan_page(deps, *shard, *now, cursor.clone().map(DueCursor)).await
        }
        WorkMessage::Charge { customer, plan } => {
            worker::charge(deps, customer, plan, ctx, worker::Trigger::Schedule).await
        }
        WorkMessage::PlanCharges { shard, now, cursor } => {
            plan::plan_charges_page(deps, *shard, *now, cursor.clone().map(DueCursor)).await
        }
        WorkMessage::ReconcileCharge { charge } => {
            let deps = crate::oneoff::OneOffDeps::new(&deps.adapters, &deps.policy, "charger");
            crate::oneoff::reconcile(&deps, charge, ctx).await
        }
        WorkMessage::PlanNotices { shard, now, cursor } => {
            notice::plan_notices_page(deps, *shard, *now, cursor.clone().map(DueCursor)).await
        }
        WorkMessage::Notice { customer, plan } => notice::notify(deps, customer, plan).await,
        WorkMessage::Reconcile { date, rerun } => reconcile_day(deps, *date, *rerun, ctx).await,
    }
}

/// A day's reconciliation from the queue: finished (or already complete) is done; paused
/// with pages left, or stopped by Oen or the store, goes back to the queue, and its retry
/// continues from the page stored.
async fn reconcile_day(
    deps: &ChargeDeps,
    date: chrono::NaiveDate,
    rerun: bool,
    ctx: &WorkContext,
) -> Result<WorkOutcome, WorkError> {
    use crate::reconcile::{self, ReconcileJob, ReconcileLimits, RunMode, RunOutcome};
    let job = ReconcileJob {
        date,
        mode: if rerun {
            RunMode::Rerun
        } else {
            RunMode::Scheduled
        },
    };
    match reconcile::run(deps, job, ctx.deadline, ReconcileLimits::default()).await {
        Ok(RunOutcome::Completed(_) | RunOutcome::AlreadyComplete(_)) => {
            Ok(WorkOutcome::Reconciled { date })
        }
        Ok(RunOutcome::Paused(view)) => Err(WorkError::Retry(format!(
            "the reconciliation of {date} paused after {} page(s); its retry continues",
            view.pages_read
        ))),
        Err(e) => Err(WorkError::Retry(e.to_string())),
    }
}
