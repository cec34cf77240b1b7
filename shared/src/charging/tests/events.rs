//! Events are never lost: what charging and the operator actions commit reaches the bus
//! through the outbox, even when the bus fails or the worker dies before publishing, and always
//! under the id the event was recorded with.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;

use super::*;
use crate::charging::{cancel, refund};
use crate::domain::DomainEvent;
use crate::events::{EventError, EventSink};
use crate::outbox::{self, RelayLimits, Relayed, RELAY_GRACE};
use crate::store::contract::list_outbox;

/// A bus whose every other publish fails.
struct EveryOtherFails {
    inner: Arc<MemoryEvents>,
    calls: AtomicUsize,
}

#[async_trait]
impl EventSink for EveryOtherFails {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventError> {
        if self.calls.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            return Err(EventError("throttled".into()));
        }
        self.inner.publish(events).await
    }
}

/// A process that dies in the middle of publishing.
struct DiesWhilePublishing;

#[async_trait]
impl EventSink for DiesWhilePublishing {
    async fn publish(&self, _: &[DomainEvent]) -> Result<(), EventError> {
        panic!("the process died while publishing");
    }
}

impl World {
    /// The relay's next run, once the writers' grace has passed.
    async fn relay_later(&self) -> Relayed {
        self.clock.advance(RELAY_GRACE + Duration::seconds(1));
        outbox::relay(&self.deps, &RelayLimits::default())
            .await
            .unwrap()
    }

    /// The ids of the entries still pending.
    async fn pending(&self) -> Vec<String> {
        let until = self.clock.now() + Duration::days(1);
        let listed = list_outbox(&*self.deps.store, until, 100).await;
        listed.into_iter().map(|e| e.id).collect()
    }

    fn published_ids(&self) -> Vec<String> {
        self.events.all().into_iter().map(|e| e.id).collect()
    }
}

#[tokio::test]
async fn a_charge_whose_event_the_bus_refused_is_delivered_by_the_next_relay_run() {
    // GIVEN a bus that is down WHEN a due period is charged
    let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    w.events.set_failing(true);
    let outcome = w.work().await.unwrap();
    // THEN the charge stands, and its event waits in the outbox
    assert!(matches!(outcome, WorkOutcome::Paid { .. }), "{outcome:?}");
    assert!(w.events.all().is_empty());
    let order = OrderId::for_period(&w.sub().await.value.id, 0);
    let id = format!("payment.succeeded:{order}");
    assert_eq!(w.pending().await, std::slice::from_ref(&id));
    // WHEN the bus is back and the relay runs THEN it is published under that id, once
    w.events.set_failing(false);
    let run = w.relay_later().await;
    assert_eq!((run.delivered, run.failed), (1, 0));
    assert_eq!(w.published_ids(), [id]);
    assert!(w.pending().await.is_empty());
    assert_eq!(w.relay_later().await.delivered, 0);
    assert_eq!(w.published_ids().len(), 1);
}

#[tokio::test]
async fn a_worker_that_dies_while_publishing_leaves_its_events_to_the_relay() {
    // GIVEN a worker whose process dies right after the outcome was committed
    let w = World::new(ScriptedOen::default().charging(soft("T0004"))).await;
    let mut dying = w.deps.clone();
    dying.events = Arc::new(DiesWhilePublishing);
    let message = WorkMessage::Charge {
        customer: w.customer.clone(),
        plan: w.plan.clone(),
    };
    let died = tokio::spawn(async move { handle(&dying, &message, &ctx()).await }).await;
    assert!(died.unwrap_err().is_panic());
    // THEN the decline is recorded, and both its events reach the bus on the relay's next run
    assert_eq!(w.sub().await.value.status, SubscriptionStatus::PastDue);
    assert!(w.events.all().is_empty());
    let run = w.relay_later().await;
    assert_eq!(run.delivered, 2);
    assert_eq!(w.event_types(), ["payment.failed", "subscription.past_due"]);
    assert!(w.pending().await.is_empty());
}

#[tokio::test]
async fn operator_actions_whose_events_the_bus_refused_are_delivered_later() {
    // GIVEN a paid period and a bus that is down
    let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    w.work().await.unwrap();
    w.events.set_failing(true);
    // WHEN the operator refunds it and cancels the subscription
    let amount = refund(&w.deps, &w.customer, &w.plan, 0, None, None).await;
    assert_eq!(amount.unwrap().ntd(), 500);
    cancel(&w.deps, &w.customer, &w.plan, false).await.unwrap();
    assert_eq!(w.pending().await.len(), 2);
    // THEN the relay delivers both once the bus is back
    w.events.set_failing(false);
    assert_eq!(w.relay_later().await.delivered, 2);
    assert_eq!(
        w.event_types(),
        [
            "payment.succeeded",
            "payment.refunded",
            "subscription.canceled"
        ]
    );
}

#[tokio::test]
async fn under_a_flaky_bus_every_event_is_published_and_only_under_its_recorded_id() {
    // GIVEN a card that keeps declining softly and a bus that fails every other publish
    let mut oen = ScriptedOen::default();
    for _ in 0..5 {
        oen = oen.charging(soft("T0001"));
    }
    let mut w = World::new(oen).await;
    w.deps.events = Arc::new(EveryOtherFails {
        inner: w.events.clone(),
        calls: AtomicUsize::new(0),
    });
    // WHEN dunning runs its course, with the relay after each attempt
    for _ in 0..5 {
        w.work().await.unwrap();
        w.relay_later().await;
        if let Some(next) = w.sub().await.value.next_action_at {
            w.clock.set(next.max(w.clock.now()));
        }
    }
    while !w.pending().await.is_empty() {
        w.relay_later().await;
    }
    // THEN every recorded event is published, each id for one event only, as recorded
    let mut by_id: BTreeMap<String, Vec<DomainEvent>> = BTreeMap::new();
    for e in w.events.all() {
        by_id.entry(e.id.clone()).or_default().push(e);
    }
    let mut recorded = Vec::new();
    for (id, published) in &by_id {
        let entry = w.deps.store.outbox_entry(id).await.unwrap();
        let entry = entry.unwrap_or_else(|| panic!("{id} published but never recorded"));
        assert!(published.iter().all(|e| *e == entry.value.event), "{id}");
        recorded.push(entry.value.event.kind.to_string());
    }
    assert_eq!(by_id.len(), 5 + 4 + 1, "5 failures, 4 past dues, 1 cancel");
    assert_eq!(
        recorded
            .iter()
            .filter(|t| *t == "subscription.canceled")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_decline_after_a_new_card_is_written_though_its_past_due_id_was_seen_before() {
    // GIVEN a soft decline (subscription.past_due for retry 1 recorded), then a new card,
    // which starts the dunning count over on the same order
    let w = World::new(
        ScriptedOen::default()
            .charging(soft("T0001"))
            .charging(soft("T0001")),
    )
    .await;
    w.work().await.unwrap();
    w.update_sub(|s| {
        s.status = SubscriptionStatus::Active;
        s.dunning_attempts = 0;
        s.next_action_at = Some(t0() + Duration::hours(1));
    })
    .await;
    w.clock.set(t0() + Duration::hours(1));
    // WHEN the new card declines softly too
    let outcome = w.work().await.unwrap();
    // THEN the outcome is written (the repeated event id does not block it) and the event
    // that id names is not published a second time
    assert!(
        matches!(outcome, WorkOutcome::SoftDeclined { .. }),
        "{outcome:?}"
    );
    let sub = w.sub().await.value;
    assert_eq!(
        (sub.status, sub.dunning_attempts),
        (SubscriptionStatus::PastDue, 1)
    );
    let ids = w.published_ids();
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "{ids:?}");
    assert_eq!(
        w.event_types(),
        ["payment.failed", "subscription.past_due", "payment.failed"]
    );
}
