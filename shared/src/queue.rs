//! The work queue between the planner and the charge workers (SQS on AWS).

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::{ChargeId, CustomerId, PlanId};
use crate::store::DueCursor;

/// One unit of work. Planning is itself fanned out through the queue, one page of one shard of
/// the due index per message, so that no invocation does unbounded work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkMessage {
    /// Plan one page of one shard of the due index as of `now`.
    Plan {
        shard: u16,
        now: DateTime<Utc>,
        cursor: Option<String>,
    },
    /// Look at one subscription: charge its due period, or reconcile an unknown one.
    Charge { customer: CustomerId, plan: PlanId },
    /// Plan one more page of one shard of the one-off charges' due index (the first page is
    /// read with the subscriptions' by `Plan`).
    PlanCharges {
        shard: u16,
        now: DateTime<Utc>,
        cursor: Option<String>,
    },
    /// Reconcile one one-off charge whose holder vanished or whose outcome is unknown.
    ReconcileCharge { charge: ChargeId },
    /// Plan one more page of one shard of the renewal-notice index (the first page is read
    /// with the subscriptions' by `Plan`).
    PlanNotices {
        shard: u16,
        now: DateTime<Utc>,
        cursor: Option<String>,
    },
    /// Send one subscription's `subscription.renewal_upcoming`, if it is still due.
    Notice { customer: CustomerId, plan: PlanId },
    /// Reconcile one Taipei day against Oen's transaction list: a scheduled reconciliation that
    /// Scheduler could not deliver, redriven (`crate::deadletter`). `rerun` replaces a complete
    /// report (a person's run) instead of leaving it.
    Reconcile { date: NaiveDate, rerun: bool },
}

impl WorkMessage {
    /// What a scheduled run enqueues: one planning message per due-index shard, as of `now`.
    pub fn scheduled_run(now: DateTime<Utc>) -> Vec<Self> {
        (0..crate::store::DUE_SHARDS)
            .map(|s| WorkMessage::plan(s, now, None))
            .collect()
    }

    /// Its `kind`, as in its JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            WorkMessage::Plan { .. } => "plan",
            WorkMessage::Charge { .. } => "charge",
            WorkMessage::PlanCharges { .. } => "plan_charges",
            WorkMessage::ReconcileCharge { .. } => "reconcile_charge",
            WorkMessage::PlanNotices { .. } => "plan_notices",
            WorkMessage::Notice { .. } => "notice",
            WorkMessage::Reconcile { .. } => "reconcile",
        }
    }

    pub fn plan(shard: u16, now: DateTime<Utc>, cursor: Option<DueCursor>) -> Self {
        WorkMessage::Plan {
            shard,
            now,
            cursor: cursor.map(|c| c.0),
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("work could not be enqueued: {0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn enqueue(&self, messages: &[WorkMessage]) -> Result<(), QueueError>;
}

/// A queue in memory: tests, the dev stack and the benchmark drain it themselves.
#[derive(Default)]
pub struct MemoryQueue(Mutex<VecDeque<WorkMessage>>);

impl MemoryQueue {
    pub fn pop(&self) -> Option<WorkMessage> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    pub fn drain(&self) -> Vec<WorkMessage> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn enqueue(&self, messages: &[WorkMessage]) -> Result<(), QueueError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(messages.iter().cloned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_a_stable_json_shape() {
        let m = WorkMessage::Charge {
            customer: CustomerId::parse("c1").unwrap(),
            plan: PlanId::parse("premium").unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"kind":"charge","customer":"c1","plan":"premium"}"#
        );
        let p = WorkMessage::plan(3, DateTime::from_timestamp(0, 0).unwrap(), None);
        let back: WorkMessage = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let r = WorkMessage::ReconcileCharge {
            charge: ChargeId::parse("AAAAAAAAAAAAAAAAAAAA").unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"kind":"reconcile_charge","charge":"AAAAAAAAAAAAAAAAAAAA"}"#
        );
        assert!(serde_json::from_str::<WorkMessage>(
            r#"{"kind":"charge","customer":"bad id","plan":"p"}"#
        )
        .is_err());
    }
}
