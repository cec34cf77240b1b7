//! Domain events reach an EventBridge bus (moto) with their stable id, type and source, and a
//! consumer can route them.

use oen_pay::aws::EventBridgeSink;
use oen_pay::domain::CustomerId;
use oen_pay::events::{DomainEvent, EventSink, EventType, EVENT_SOURCE};
use oen_pay_integration::{aws_config, unique_name};
use serde_json::{json, Value};

#[tokio::test]
async fn events_arrive_on_the_bus_with_their_stable_ids() {
    let aws = aws_config().await;
    let eb = aws_sdk_eventbridge::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let bus = unique_name("oen-pay-events");
    eb.create_event_bus().name(&bus).send().await.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(unique_name("consumer"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    eb.put_rule()
        .name("all-oen-pay")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": [EVENT_SOURCE]}).to_string())
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("all-oen-pay")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

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
    EventBridgeSink::new(eb.clone(), bus.clone())
        .publish(&events)
        .await
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            let envelope: Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
            assert_eq!(envelope["source"], EVENT_SOURCE);
            assert_eq!(envelope["detail-type"], "payment.succeeded");
            seen.push(envelope["detail"]["id"].as_str().unwrap().to_owned());
        }
        if seen.len() == events.len() {
            break;
        }
    }
    seen.sort();
    let mut want: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    want.sort();
    assert_eq!(seen, want, "every event once, with its stable id");
    assert!(EventBridgeSink::new(eb, "no-such-bus".to_owned())
        .publish(&events[..1])
        .await
        .is_err());
}
