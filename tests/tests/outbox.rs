//! The outbox on DynamoDB (moto): events committed while the bus was down reach EventBridge on
//! the relay's next run under their stable ids, and the relay delivers oldest first, page by
//! page through the index.

use std::sync::Arc;

use chrono::Duration;
use oen_pay::clock::Clock;
use oen_pay::domain::OrderId;
use oen_pay::events::EventSink;
use oen_pay::outbox::{self, RelayLimits, RELAY_GRACE};
use oen_pay::store::contract::outbox_entry;
use oen_pay::store::{outbox_shard_of, Expect, Put, StoreExt};
use oen_pay_integration::bus::ConsumedBus;
use oen_pay_integration::stack::stack;
use oen_sim::cards;

#[tokio::test]
async fn events_committed_while_the_bus_was_down_reach_eventbridge_on_the_next_relay_run() {
    // GIVEN a bus that cannot be reached WHEN a card is bound and charged
    let bus = ConsumedBus::new().await;
    let mut s = stack().await;
    let down: Arc<dyn EventSink> = Arc::new(bus.missing_bus_sink());
    s.binding.events = down.clone();
    s.deps.events = down;
    let binding = s.bind("cust-down", "premium", cards::SUCCESS).await;
    s.run().await;
    // THEN both changes stand and their events wait in the outbox
    let sub = s.sub("cust-down", "premium").await;
    assert_eq!(sub.period, 1);
    let bound = format!("card.bound:{binding}");
    let paid = format!("payment.succeeded:{}", OrderId::for_period(&sub.id, 0));
    for id in [&bound, &paid] {
        let entry = s.deps.store.outbox_entry(id).await.unwrap().unwrap();
        assert_eq!(entry.value.delivered_at, None, "{id}");
    }
    assert!(bus.receive(1).await.is_empty());
    // WHEN the bus is back and the relay runs after the writers' grace
    s.deps.events = Arc::new(bus.sink());
    s.advance(RELAY_GRACE + Duration::seconds(1));
    let run = outbox::relay(&s.deps, &RelayLimits::default())
        .await
        .unwrap();
    // THEN each event arrives once, under the id it was recorded with, oldest first
    assert_eq!((run.delivered, run.failed, run.finished), (2, 0, true));
    let envelopes = bus.receive(2).await;
    let ids: Vec<&str> = envelopes
        .iter()
        .map(|e| e["detail"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bound.as_str(), paid.as_str()]);
    assert_eq!(envelopes[1]["detail-type"], "payment.succeeded");
    for id in [&bound, &paid] {
        let entry = s.deps.store.outbox_entry(id).await.unwrap().unwrap();
        assert!(entry.value.delivered_at.is_some(), "{id}");
    }
    let again = outbox::relay(&s.deps, &RelayLimits::default())
        .await
        .unwrap();
    assert_eq!(again.delivered, 0);
    s.assert_ledger_agrees(&[("cust-down", "premium")]).await;
}

#[tokio::test]
async fn the_relay_delivers_oldest_first_page_by_page_through_dynamodb() {
    // GIVEN 24 pending entries in several shards and one delivered entry, in DynamoDB
    let s = stack().await;
    let now = s.clock.now();
    let mut expected = Vec::new();
    for i in 0..24u32 {
        let id = format!("payment.failed:Sub{:013}P000000:1", (i * 5) % 24);
        let created = now - Duration::hours(2) + Duration::seconds(i64::from((i * 7) % 24));
        let put = Put::new(outbox_entry(&id, created), Expect::Absent);
        s.deps.store.commit(vec![put]).await.unwrap();
        expected.push((created, id));
    }
    let mut delivered = outbox_entry("card.bound:old", now - Duration::hours(3));
    delivered.delivered_at = Some(now - Duration::hours(3));
    let put = Put::new(delivered, Expect::Absent);
    s.deps.store.commit(vec![put]).await.unwrap();
    expected.sort();
    let oldest_first: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    let shards: std::collections::BTreeSet<_> =
        oldest_first.iter().map(|id| outbox_shard_of(id)).collect();
    assert!(shards.len() > 4, "the entries spread over shards");
    // WHEN the relay lists two entries at a time and may ship 15, then runs again
    let limits = RelayLimits {
        max_events: 15,
        page: 2,
        until: None,
    };
    let first = outbox::relay(&s.deps, &limits).await.unwrap();
    assert_eq!((first.delivered, first.finished), (15, false));
    assert_eq!(first.lag, Duration::hours(2));
    let rest = outbox::relay(&s.deps, &limits).await.unwrap();
    // THEN every pending entry is published once, oldest first, and the delivered one never
    assert_eq!((rest.delivered, rest.finished), (9, true));
    let published: Vec<String> = s.events.all().into_iter().map(|e| e.id).collect();
    assert_eq!(published, oldest_first);
    let last = outbox::relay(&s.deps, &limits).await.unwrap();
    assert_eq!((last.delivered, last.lag), (0, Duration::zero()));
}
