//! Domain events reach an EventBridge bus (moto) with their stable id, type and source, and a
//! consumer can route them.

use oen_pay::domain::CustomerId;
use oen_pay::events::{DomainEvent, EventSink, EventType, EVENT_SOURCE};
use oen_pay_integration::bus::ConsumedBus;
use serde_json::json;

#[tokio::test]
async fn events_arrive_on_the_bus_with_their_stable_ids() {
    let bus = ConsumedBus::new().await;
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let events: Vec<DomainEvent> = (0..12)
        .map(|i| DomainEvent {
            id: format!("payment.succeeded:Sub{i:013}P000000"),
            kind: EventType::PaymentSucceeded,
            at,
            customer: CustomerId::parse("cust-1").unwrap(),
            data: json!({"amount": 500}),
        })
        .collect();
    bus.sink().publish(&events).await.unwrap();

    let mut seen = Vec::new();
    for envelope in bus.receive(events.len()).await {
        assert_eq!(envelope["source"], EVENT_SOURCE);
        assert_eq!(envelope["detail-type"], "payment.succeeded");
        seen.push(envelope["detail"]["id"].as_str().unwrap().to_owned());
    }
    seen.sort();
    let mut want: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    want.sort();
    assert_eq!(seen, want, "every event once, with its stable id");
    assert!(bus.missing_bus_sink().publish(&events[..1]).await.is_err());
}
