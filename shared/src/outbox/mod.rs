//! The outbox: a state change and its domain events commit together, and every event reaches
//! the event bus at least once, under its stable id.
//!
//! - [`commit`] writes one [`OutboxEntry`] per event (put-if-absent, keyed by the event's id)
//!   in the same store transaction as the state change. An id already in the outbox is the
//!   same happening recorded before: it is not recorded again, and the state change still
//!   lands.
//! - [`ship`], right after the commit, publishes those events and marks their entries
//!   delivered. It is best effort: if the bus fails or the process dies first, the entries stay
//!   pending.
//! - [`relay`], run by the charger on every scheduled invocation, publishes whatever is still
//!   pending, oldest first, and marks it delivered; a failed publish leaves the entries for the
//!   next run, so an event is retried until the bus takes it.
//!
//! Every publish sends the stored event itself, never one rebuilt later, so a redelivery has
//! the same id and the same content and consumers de-duplicate it by `detail.id`. A delivered
//! entry is kept a week ([`OutboxEntry::KEPT_AFTER_DELIVERY`]) and then expires.

mod relay;

#[cfg(test)]
mod tests;

use crate::binding::BindingDeps;
use crate::domain::{DomainEvent, OutboxEntry};
use crate::store::{Expect, Put, Store, StoreError, StoreExt};

pub use relay::{relay, RelayLimits, Relayed, RELAY_GRACE};

/// The outbox entries one commit wrote, to be shipped.
#[derive(Debug, Default)]
#[must_use = "ship the recorded events, or the relay delivers them only on its next run"]
pub struct Recorded(Vec<OutboxEntry>);

impl Recorded {
    pub fn events(&self) -> impl Iterator<Item = &DomainEvent> {
        self.0.iter().map(|e| &e.event)
    }
}

/// Commits `puts` together with an outbox entry for each of `events`: all of them, or nothing.
/// An event whose id is already in the outbox is left out (logged); any other conflict is the
/// caller's, as from [`Store::commit`].
pub async fn commit(
    deps: &BindingDeps,
    puts: Vec<Put>,
    events: Vec<DomainEvent>,
) -> Result<Recorded, StoreError> {
    let now = deps.clock.now();
    let mut entries: Vec<OutboxEntry> = Vec::with_capacity(events.len());
    for event in events {
        if entries.iter().any(|e| e.event.id == event.id) {
            tracing::warn!(event = %event.id, "one commit built the same event twice; recorded once");
            continue;
        }
        entries.push(OutboxEntry::pending(event, now));
    }
    if entries.is_empty() {
        return deps.store.commit(puts).await.map(|()| Recorded::default());
    }
    loop {
        let mut all = puts.clone();
        all.extend(entries.iter().map(|e| Put::new(e.clone(), Expect::Absent)));
        match deps.store.commit(all).await {
            Ok(()) => return Ok(Recorded(entries)),
            Err(StoreError::Conflict(why)) => {
                let before = entries.len();
                entries = not_yet_recorded(&*deps.store, entries).await?;
                // Nothing of ours was in the way: the conflict is about the state change.
                if entries.len() == before {
                    return Err(StoreError::Conflict(why));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The entries whose event id is not in the outbox yet.
async fn not_yet_recorded(
    store: &dyn Store,
    entries: Vec<OutboxEntry>,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut fresh = Vec::with_capacity(entries.len());
    for entry in entries {
        if store.outbox_entry(&entry.event.id).await?.is_some() {
            tracing::warn!(event = %entry.event.id, "event already in the outbox; not recorded again");
        } else {
            fresh.push(entry);
        }
    }
    Ok(fresh)
}

/// Publishes what [`commit`] recorded and marks it delivered. Best effort: what fails stays
/// pending, and the relay ships it. `function` names who counts a failure.
pub async fn ship(deps: &BindingDeps, recorded: Recorded, function: &str) {
    let Recorded(entries) = recorded;
    if entries.is_empty() {
        return;
    }
    let events: Vec<DomainEvent> = entries.iter().map(|e| e.event.clone()).collect();
    if let Err(e) = deps.events.publish(&events).await {
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        tracing::warn!(error = %e, events = ?ids, "domain events not published now; the outbox relay ships them");
        crate::metrics::count(function, "EventsNotPublished");
        return;
    }
    let now = deps.clock.now();
    let delivered = entries
        .into_iter()
        .map(|e| Put::new(delivered(e, now), Expect::Version(1)))
        .collect();
    if let Err(e) = deps.store.commit(delivered).await {
        // Published, but still pending: the relay publishes them again, under the same ids.
        tracing::warn!(error = %e, count = events.len(), "published events not marked delivered");
    }
}

/// The entry as delivered at `at`: off the pending index, kept until its TTL.
fn delivered(mut entry: OutboxEntry, at: chrono::DateTime<chrono::Utc>) -> OutboxEntry {
    entry.delivered_at = Some(at);
    entry
}
