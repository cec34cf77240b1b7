//! Planning: the scheduled run fans out one message per shard of the due index, and each
//! planning message turns one page of its shard into charge messages (plus a continuation), so
//! that no invocation does unbounded work.

use chrono::{DateTime, Utc};

use super::{ChargeDeps, WorkError, WorkOutcome};
use crate::queue::WorkMessage;
use crate::store::{DueCursor, DUE_SHARDS};

/// The scheduled run: one planning message per shard of the due index, as of `now`.
pub async fn schedule(deps: &ChargeDeps, now: DateTime<Utc>) -> Result<usize, WorkError> {
    let messages: Vec<WorkMessage> = (0..DUE_SHARDS)
        .map(|s| WorkMessage::plan(s, now, None))
        .collect();
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
    let page = deps
        .store
        .due(shard, now, deps.policy.plan_page, cursor)
        .await?;
    let mut messages: Vec<WorkMessage> = page
        .entries
        .iter()
        .map(|e| WorkMessage::Charge {
            customer: e.customer.clone(),
            plan: e.plan.clone(),
        })
        .collect();
    let enqueued = messages.len();
    let continued = page.next.is_some();
    if let Some(next) = page.next {
        messages.push(WorkMessage::plan(shard, now, Some(next)));
    }
    if !messages.is_empty() {
        deps.queue.enqueue(&messages).await?;
    }
    Ok(WorkOutcome::Planned {
        enqueued,
        continued,
    })
}
