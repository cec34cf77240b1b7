//! Planning: the scheduled run fans out one message per shard of the due index, and each
//! planning message turns one page of its shard into charge messages (plus a continuation), so
//! that no invocation does unbounded work. The first page of a shard also reads the same shard
//! of the one-off charges' due index (`crate::oneoff`): one query, and no message when nothing
//! is due there; so does the shard of the renewal-notice index (`super::notice`), ahead by the
//! notice period.

use chrono::{DateTime, Utc};

use super::{ChargeDeps, WorkError, WorkOutcome};
use crate::queue::WorkMessage;
use crate::store::DueCursor;

/// The scheduled run: one planning message per shard of the due index, as of `now`.
pub async fn schedule(deps: &ChargeDeps, now: DateTime<Utc>) -> Result<usize, WorkError> {
    let messages = WorkMessage::scheduled_run(now);
    deps.queue.enqueue(&messages).await?;
    Ok(messages.len())
}

/// One page of one shard: a charge message per due subscription, and the next page's message.
pub(super) async fn plan_page(
    deps: &ChargeDeps,
    shard: u16,
    now: DateTime<Utc>,
    cursor: Option<DueCursor>,
) -> Result<WorkOutcome, WorkError> {
    let first_page = cursor.is_none();
    let page = deps
        .store
        .due(shard, now, deps.policy.plan_page, cursor)
        .await?;
    let messages = page
        .entries
        .iter()
        .map(|e| WorkMessage::Charge {
            customer: e.customer.clone(),
            plan: e.plan.clone(),
        })
        .collect();
    let next = page.next.map(|n| WorkMessage::plan(shard, now, Some(n)));
    let (enqueued, continued) = enqueue_page(deps, messages, next).await?;
    let (charges, more_charges) = if first_page {
        one_off_page(deps, shard, now, None).await?
    } else {
        (0, false)
    };
    let (notices, more_notices) = if first_page {
        super::notice::notice_page(deps, shard, now, None).await?
    } else {
        (0, false)
    };
    Ok(WorkOutcome::Planned {
        enqueued: enqueued + charges + notices,
        continued: continued || more_charges || more_notices,
    })
}

/// A later page of one shard of the one-off charges' due index.
pub(super) async fn plan_charges_page(
    deps: &ChargeDeps,
    shard: u16,
    now: DateTime<Utc>,
    cursor: Option<DueCursor>,
) -> Result<WorkOutcome, WorkError> {
    let (enqueued, continued) = one_off_page(deps, shard, now, cursor).await?;
    Ok(WorkOutcome::Planned {
        enqueued,
        continued,
    })
}

/// One page of due one-off charges: a reconcile message each, and the next page's message.
/// How many were enqueued, and whether a page follows.
async fn one_off_page(
    deps: &ChargeDeps,
    shard: u16,
    now: DateTime<Utc>,
    cursor: Option<DueCursor>,
) -> Result<(usize, bool), WorkError> {
    let page = deps
        .store
        .charges_due(shard, now, deps.policy.plan_page, cursor)
        .await?;
    let messages = page
        .entries
        .into_iter()
        .map(|e| WorkMessage::ReconcileCharge { charge: e.charge })
        .collect();
    let next = page.next.map(|n| WorkMessage::PlanCharges {
        shard,
        now,
        cursor: Some(n.0),
    });
    enqueue_page(deps, messages, next).await
}

/// Enqueues one page's work and, when a page follows, the message that plans it (one batch).
/// How many work messages, and whether a page follows.
pub(super) async fn enqueue_page(
    deps: &ChargeDeps,
    mut messages: Vec<WorkMessage>,
    next: Option<WorkMessage>,
) -> Result<(usize, bool), WorkError> {
    let enqueued = messages.len();
    let continued = next.is_some();
    messages.extend(next);
    if !messages.is_empty() {
        deps.queue.enqueue(&messages).await?;
    }
    Ok((enqueued, continued))
}
