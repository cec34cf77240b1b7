//! An EventBridge bus on moto with a consumer: a rule for every `oen-pay` event, targeting an
//! SQS queue the test reads, as a merchant's system would subscribe.

use aws_sdk_sqs::types::QueueAttributeName;
use oen_pay::aws::EventBridgeSink;
use oen_pay::events::EVENT_SOURCE;
use serde_json::{json, Value};

use crate::{aws_config, unique_name};

pub struct ConsumedBus {
    pub events: aws_sdk_eventbridge::Client,
    pub name: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl ConsumedBus {
    /// A new bus whose `oen-pay` events land on a new queue.
    pub async fn new() -> Self {
        let aws = aws_config().await;
        let events = aws_sdk_eventbridge::Client::new(&aws);
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let name = unique_name("oen-pay-events");
        events.create_event_bus().name(&name).send().await.unwrap();
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
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        events
            .put_rule()
            .name("all-oen-pay")
            .event_bus_name(&name)
            .event_pattern(json!({"source": [EVENT_SOURCE]}).to_string())
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("all-oen-pay")
            .event_bus_name(&name)
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
        Self {
            events,
            name,
            sqs,
            queue_url,
        }
    }

    /// The project's sink on this bus.
    pub fn sink(&self) -> EventBridgeSink {
        EventBridgeSink::new(self.events.clone(), self.name.clone())
    }

    /// The sink on a bus that does not exist: every publish fails.
    pub fn missing_bus_sink(&self) -> EventBridgeSink {
        EventBridgeSink::new(self.events.clone(), "no-such-bus".to_owned())
    }

    /// The envelopes of the events delivered so far, up to `expected` (a few reads at most).
    pub async fn receive(&self, expected: usize) -> Vec<Value> {
        let mut envelopes = Vec::new();
        for _ in 0..20 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            for m in out.messages.unwrap_or_default() {
                envelopes.push(serde_json::from_str(m.body.as_deref().unwrap()).unwrap());
            }
            if envelopes.len() >= expected {
                break;
            }
        }
        envelopes
    }
}
