//! The relay: ships the outbox entries that are still pending, oldest first across every
//! shard of the outbox index, and reports how late the oldest one was (`OutboxLagSeconds`).

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use super::delivered;
use crate::binding::BindingDeps;
use crate::domain::{DomainEvent, OutboxEntry};
use crate::store::{
    DueCursor, Expect, PendingEvent, Put, Store, StoreError, StoreExt, Versioned, OUTBOX_SHARDS,
};

/// Entries younger than this are left to the writer that is shipping them right now, so that
/// the relay does not publish them a second time.
pub const RELAY_GRACE: Duration = Duration::minutes(2);

/// Events in one publish (EventBridge's `PutEvents` takes ten entries).
const BATCH: usize = 10;

/// How much one run may do.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// The most entries one run tries to publish.
    pub max_events: usize,
    /// Entries listed at a time from each shard of the index.
    pub page: usize,
    /// No batch starts at or after this instant (an invocation's deadline, less a margin).
    pub until: Option<DateTime<Utc>>,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_events: 1000,
            page: 100,
            until: None,
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// Events published (and marked delivered, unless someone else marked them first).
    pub delivered: usize,
    /// Events the bus did not take; they stay pending for the next run.
    pub failed: usize,
    /// The age of the oldest pending entry when the run began (zero when none was pending).
    pub lag: Duration,
    /// Whether the run saw the end of the outbox (rather than a limit or a failing bus).
    pub finished: bool,
}

/// Ships the pending outbox entries created before [`RELAY_GRACE`] ago, oldest first, within
/// `limits`, and emits `OutboxLagSeconds`. A store failure ends the run (nothing is lost: the
/// entries stay pending).
pub async fn relay(deps: &BindingDeps, limits: &RelayLimits) -> Result<Relayed, StoreError> {
    let now = deps.clock.now();
    let listing = Listing {
        store: &*deps.store,
        until: now - RELAY_GRACE,
        page: limits.page.max(1),
    };
    let mut shards: Vec<Shard> = (0..OUTBOX_SHARDS).map(Shard::new).collect();
    let mut oldest: Option<DateTime<Utc>> = None;
    for shard in &mut shards {
        if let Some(head) = shard.head(&listing).await? {
            oldest = Some(oldest.map_or(head.created_at, |o| o.min(head.created_at)));
        }
    }
    let lag = oldest.map_or(Duration::zero(), |t| (now - t).max(Duration::zero()));
    crate::metrics::gauge(
        "charger",
        "OutboxLagSeconds",
        lag.num_milliseconds() as f64 / 1000.0,
        crate::metrics::Unit::Seconds,
    );
    let mut run = Relayed {
        delivered: 0,
        failed: 0,
        lag,
        finished: false,
    };
    loop {
        let tried = run.delivered + run.failed;
        let out_of_time = limits.until.is_some_and(|u| deps.clock.now() >= u);
        if tried >= limits.max_events || out_of_time {
            break;
        }
        let mut batch = Vec::new();
        while batch.len() < BATCH.min(limits.max_events - tried) {
            match oldest_head(&mut shards, &listing).await? {
                Some(entry) => batch.push(entry),
                None => break,
            }
        }
        if batch.is_empty() {
            run.finished = true;
            break;
        }
        let shipped = deliver(deps, batch).await?;
        run.delivered += shipped.delivered;
        run.failed += shipped.failed;
        if shipped.delivered == 0 && shipped.failed > 0 {
            // The bus takes nothing: leave the rest for the next run.
            break;
        }
    }
    if run.failed > 0 || !run.finished {
        tracing::warn!(
            delivered = run.delivered,
            failed = run.failed,
            lag_seconds = lag.num_seconds(),
            "outbox relay left events pending"
        );
    } else if run.delivered > 0 {
        tracing::info!(
            delivered = run.delivered,
            lag_seconds = lag.num_seconds(),
            "outbox relay shipped pending events"
        );
    }
    Ok(run)
}

/// How the relay reads the index.
struct Listing<'a> {
    store: &'a dyn Store,
    until: DateTime<Utc>,
    page: usize,
}

/// One shard of the outbox index, read page by page.
struct Shard {
    shard: u16,
    listed: VecDeque<PendingEvent>,
    next: Next,
}

enum Next {
    First,
    After(DueCursor),
    Done,
}

impl Shard {
    fn new(shard: u16) -> Self {
        Self {
            shard,
            listed: VecDeque::new(),
            next: Next::First,
        }
    }

    /// The shard's oldest entry not taken yet, reading the next page when needed.
    async fn head(&mut self, listing: &Listing<'_>) -> Result<Option<&PendingEvent>, StoreError> {
        while self.listed.is_empty() {
            let after = match std::mem::replace(&mut self.next, Next::Done) {
                Next::Done => return Ok(None),
                Next::First => None,
                Next::After(cursor) => Some(cursor),
            };
            let page = listing
                .store
                .outbox_pending(self.shard, listing.until, listing.page, after)
                .await?;
            self.listed = page.entries.into();
            self.next = page.next.map_or(Next::Done, Next::After);
        }
        Ok(self.listed.front())
    }
}

/// Takes the oldest entry among every shard's head.
async fn oldest_head(
    shards: &mut [Shard],
    listing: &Listing<'_>,
) -> Result<Option<PendingEvent>, StoreError> {
    let mut best: Option<(usize, DateTime<Utc>, String)> = None;
    for (i, shard) in shards.iter_mut().enumerate() {
        let Some(head) = shard.head(listing).await? else {
            continue;
        };
        let older = best
            .as_ref()
            .is_none_or(|(_, at, id)| (head.created_at, &head.id) < (*at, id));
        if older {
            best = Some((i, head.created_at, head.id.clone()));
        }
    }
    Ok(best.and_then(|(i, _, _)| shards.get_mut(i)?.listed.pop_front()))
}

struct Shipped {
    delivered: usize,
    failed: usize,
}

/// Publishes one batch of listed entries and marks each published one delivered. A batch the
/// bus refuses is retried one event at a time, so that one event it cannot take does not hold
/// back the others.
async fn deliver(deps: &BindingDeps, batch: Vec<PendingEvent>) -> Result<Shipped, StoreError> {
    // The index holds keys only, and may still list an entry delivered a moment ago.
    let mut entries = Vec::with_capacity(batch.len());
    for listed in batch {
        match deps.store.outbox_entry(&listed.id).await? {
            Some(entry) if entry.value.delivered_at.is_none() => entries.push(entry),
            _ => {}
        }
    }
    let mut shipped = Shipped {
        delivered: 0,
        failed: 0,
    };
    if entries.is_empty() {
        return Ok(shipped);
    }
    let events: Vec<DomainEvent> = entries.iter().map(|e| e.value.event.clone()).collect();
    let published = match deps.events.publish(&events).await {
        Ok(()) => entries,
        Err(e) if entries.len() == 1 => {
            tracing::warn!(error = %e, event = %events[0].id, "outbox event not published; retried on the next run");
            shipped.failed = 1;
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, count = entries.len(), "outbox batch not published; trying its events one by one");
            let mut published = Vec::with_capacity(entries.len());
            for entry in entries {
                match deps
                    .events
                    .publish(std::slice::from_ref(&entry.value.event))
                    .await
                {
                    Ok(()) => published.push(entry),
                    Err(e) => {
                        tracing::warn!(error = %e, event = %entry.value.event.id, "outbox event not published; retried on the next run");
                        shipped.failed += 1;
                    }
                }
            }
            published
        }
    };
    shipped.delivered = published.len();
    let now = deps.clock.now();
    for entry in published {
        mark_delivered(&*deps.store, entry, now).await;
    }
    Ok(shipped)
}

/// Marks one published entry delivered. Whoever marked it first wins; if the mark fails, the
/// entry stays pending and is published again (same id) by a later run.
async fn mark_delivered(store: &dyn Store, entry: Versioned<OutboxEntry>, at: DateTime<Utc>) {
    let id = entry.value.event.id.clone();
    let put = Put::new(delivered(entry.value, at), Expect::Version(entry.version));
    match store.commit(vec![put]).await {
        Ok(()) | Err(StoreError::Conflict(_)) => {}
        Err(e) => {
            tracing::warn!(error = %e, event = %id, "published outbox event not marked delivered")
        }
    }
}
