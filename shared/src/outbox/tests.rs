//! The outbox on in-memory adapters: what a commit records, what shipping and the relay
//! deliver, in which order, and what a failing bus leaves pending.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::clock::{Clock, TestClock};
use crate::events::{EventError, EventSink, MemoryEvents};
use crate::oen::OenGateway;
use crate::store::contract::{event_ids_in_shard, list_outbox, outbox_entry, subscription, t0};
use crate::store::{MemoryStore, SubscriptionStatus};
use crate::vault::LocalVault;

/// A bus that refuses the events named in `refused`, and any batch holding one.
#[derive(Default)]
struct PickyBus {
    published: Mutex<Vec<DomainEvent>>,
    refused: Mutex<BTreeSet<String>>,
    calls: Mutex<usize>,
}

#[async_trait]
impl EventSink for PickyBus {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventError> {
        *self.calls.lock().unwrap() += 1;
        let refused = self.refused.lock().unwrap();
        if let Some(e) = events.iter().find(|e| refused.contains(&e.id)) {
            return Err(EventError(format!("{} refused", e.id)));
        }
        self.published.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

impl PickyBus {
    fn ids(&self) -> Vec<String> {
        let published = self.published.lock().unwrap();
        published.iter().map(|e| e.id.clone()).collect()
    }
}

struct World {
    deps: BindingDeps,
    clock: TestClock,
}

/// GIVEN an empty store, a clock at t0 and `bus`.
fn world(bus: Arc<dyn EventSink>) -> World {
    let clock = TestClock::at(t0());
    let oen: Arc<dyn OenGateway> = Arc::new(
        crate::dev::local_oen("http://127.0.0.1:9", crate::dev::dev_secrets("t")).unwrap(),
    );
    let deps = crate::dev::binding_deps(
        Arc::new(MemoryStore::new()),
        Arc::new(LocalVault::random()),
        oen,
        bus,
        Arc::new(clock.clone()),
    );
    World { deps, clock }
}

impl World {
    /// Every entry still pending, oldest first per shard.
    async fn pending(&self) -> Vec<String> {
        let until = self.clock.now() + Duration::days(1);
        let listed = list_outbox(&*self.deps.store, until, 100).await;
        listed.into_iter().map(|e| e.id).collect()
    }

    /// Records `ids` in the outbox at `created`, without shipping them (a writer that died).
    async fn record(&self, ids: &[String], created: DateTime<Utc>) {
        let puts = ids
            .iter()
            .map(|id| Put::new(outbox_entry(id, created), Expect::Absent))
            .collect();
        self.deps.store.commit(puts).await.unwrap();
    }

    async fn relay(&self, limits: RelayLimits) -> Relayed {
        relay(&self.deps, &limits).await.unwrap()
    }
}

fn event(id: &str) -> DomainEvent {
    outbox_entry(id, t0()).event
}

#[tokio::test]
async fn a_commit_records_its_events_and_shipping_delivers_them() {
    let bus = Arc::new(MemoryEvents::default());
    let w = world(bus.clone());
    let sub = subscription("c-ship", None);
    let events = vec![event("a:1"), event("b:1")];
    let recorded = commit(&w.deps, vec![Put::new(sub, Expect::Absent)], events.clone())
        .await
        .unwrap();
    assert_eq!(w.pending().await.len(), 2, "recorded with the state change");
    ship(&w.deps, recorded, "test").await;
    assert_eq!(bus.all(), events);
    assert!(
        w.pending().await.is_empty(),
        "shipping marks them delivered"
    );
    let stored = w.deps.store.outbox_entry("a:1").await.unwrap().unwrap();
    assert_eq!(stored.value.delivered_at, Some(t0()));
}

#[tokio::test]
async fn a_commit_that_conflicts_writes_neither_the_state_nor_the_events() {
    let w = world(Arc::new(MemoryEvents::default()));
    let sub = subscription("c-stale", None);
    let err = commit(
        &w.deps,
        vec![Put::new(sub, Expect::Version(3))],
        vec![event("c:1")],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(w.deps.store.outbox_entry("c:1").await.unwrap().is_none());
}

#[tokio::test]
async fn an_event_already_recorded_is_not_recorded_again_and_the_state_change_lands() {
    // GIVEN an event recorded and delivered with a subscription
    let bus = Arc::new(MemoryEvents::default());
    let w = world(bus.clone());
    let mut sub = subscription("c-again", None);
    let put = Put::new(sub.clone(), Expect::Absent);
    let first = commit(&w.deps, vec![put], vec![event("same:1")]).await;
    ship(&w.deps, first.unwrap(), "test").await;
    // WHEN a later change of the subscription rebuilds that event beside a new one
    sub.status = SubscriptionStatus::Canceled;
    let put = Put::new(sub.clone(), Expect::Version(1));
    let events = vec![event("same:1"), event("new:1")];
    let recorded = commit(&w.deps, vec![put], events).await.unwrap();
    // THEN the change and the new event land, and the old event is published once
    let ids: Vec<_> = recorded.events().map(|e| e.id.clone()).collect();
    assert_eq!(ids, ["new:1"]);
    ship(&w.deps, recorded, "test").await;
    let read = w.deps.store.subscription(&sub.customer, &sub.plan).await;
    assert_eq!(read.unwrap().unwrap().value, sub);
    let published: Vec<_> = bus.all().into_iter().map(|e| e.id).collect();
    assert_eq!(published, ["same:1", "new:1"]);
}

#[tokio::test]
async fn what_a_failing_bus_did_not_take_the_next_relay_run_delivers_under_the_same_id() {
    // GIVEN a commit whose events the bus refused
    let bus = Arc::new(MemoryEvents::default());
    let w = world(bus.clone());
    bus.set_failing(true);
    let events = vec![event("d:1"), event("d:2")];
    let put = Put::new(subscription("c-d", None), Expect::Absent);
    let recorded = commit(&w.deps, vec![put], events.clone()).await.unwrap();
    ship(&w.deps, recorded, "test").await;
    assert!(bus.all().is_empty());
    // WHEN the bus is back and the relay runs after the writer's grace
    bus.set_failing(false);
    w.clock.advance(Duration::minutes(1));
    let early = w.relay(RelayLimits::default()).await;
    assert_eq!(early.delivered, 0, "a writer may still be shipping them");
    w.clock.advance(RELAY_GRACE);
    let run = w.relay(RelayLimits::default()).await;
    // THEN the stored events are published, once, as they were built
    assert_eq!((run.delivered, run.failed, run.finished), (2, 0, true));
    assert_eq!(run.lag, Duration::minutes(1) + RELAY_GRACE);
    assert_eq!(bus.all(), events);
    assert!(w.pending().await.is_empty());
    let again = w.relay(RelayLimits::default()).await;
    assert_eq!((again.delivered, again.lag), (0, Duration::zero()));
    assert_eq!(bus.all().len(), 2);
}

#[tokio::test]
async fn the_relay_delivers_oldest_first_across_shards_page_by_page_within_its_limit() {
    // GIVEN 30 pending entries over several shards, in no order of shard or id
    let bus = Arc::new(PickyBus::default());
    let w = world(bus.clone());
    let mut expected = Vec::new();
    for i in 0..30u32 {
        let id = format!("e:{:02}", (i * 7) % 30);
        let created = t0() - Duration::minutes(60) + Duration::seconds(i64::from((i * 11) % 30));
        w.record(std::slice::from_ref(&id), created).await;
        expected.push((created, id));
    }
    expected.sort();
    let shards: BTreeSet<_> = expected
        .iter()
        .map(|(_, id)| crate::store::outbox_shard_of(id))
        .collect();
    assert!(shards.len() > 4, "the entries spread over shards");
    let oldest_first: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    // WHEN the relay runs with one-entry pages and room for 12 events, then again
    let limits = RelayLimits {
        max_events: 12,
        page: 1,
        until: None,
    };
    let first = w.relay(limits.clone()).await;
    assert_eq!((first.delivered, first.finished), (12, false));
    assert_eq!(first.lag, Duration::minutes(60));
    assert_eq!(bus.ids(), oldest_first[..12]);
    let rest = w
        .relay(RelayLimits {
            max_events: 100,
            ..limits
        })
        .await;
    // THEN everything is published once, oldest first, in batches the bus takes
    assert_eq!((rest.delivered, rest.finished), (18, true));
    assert_eq!(bus.ids(), oldest_first);
    assert!(w.pending().await.is_empty());
    assert_eq!(*bus.calls.lock().unwrap(), 2 + 2, "10 + 2, then 10 + 8");
}

#[tokio::test]
async fn an_event_the_bus_refuses_does_not_hold_back_the_others_and_stays_pending() {
    let bus = Arc::new(PickyBus::default());
    let w = world(bus.clone());
    let ids = event_ids_in_shard(2, 5);
    w.record(&ids, t0() - Duration::hours(1)).await;
    bus.refused.lock().unwrap().insert(ids[2].clone());
    let run = w.relay(RelayLimits::default()).await;
    assert_eq!((run.delivered, run.failed), (4, 1));
    assert_eq!(w.pending().await, [ids[2].clone()]);
    let mut delivered = bus.ids();
    delivered.sort();
    let mut others: Vec<_> = ids.iter().filter(|id| **id != ids[2]).cloned().collect();
    others.sort();
    assert_eq!(delivered, others);
}

#[tokio::test]
async fn a_bus_that_is_down_ends_the_run_and_leaves_everything_pending() {
    let bus = Arc::new(MemoryEvents::default());
    let w = world(bus.clone());
    let ids: Vec<String> = (0..25).map(|i| format!("down:{i}")).collect();
    w.record(&ids, t0() - Duration::hours(3)).await;
    bus.set_failing(true);
    let run = w.relay(RelayLimits::default()).await;
    assert_eq!((run.delivered, run.failed, run.finished), (0, 10, false));
    assert_eq!(run.lag, Duration::hours(3));
    assert_eq!(w.pending().await.len(), 25);
    bus.set_failing(false);
    let run = w.relay(RelayLimits::default()).await;
    assert_eq!((run.delivered, run.finished), (25, true));
}

#[tokio::test]
async fn the_relay_starts_no_batch_after_its_deadline() {
    let bus = Arc::new(MemoryEvents::default());
    let w = world(bus.clone());
    w.record(&["late:1".to_owned()], t0() - Duration::hours(1))
        .await;
    let limits = RelayLimits {
        until: Some(t0()),
        ..RelayLimits::default()
    };
    let run = w.relay(limits).await;
    assert_eq!((run.delivered, run.finished), (0, false));
    assert_eq!(run.lag, Duration::hours(1), "the lag is still measured");
    assert_eq!(w.pending().await.len(), 1);
}
