//! Amazon EventBridge adapter of the event sink.

use async_trait::async_trait;

use crate::events::{DomainEvent, EventError, EventSink, EVENT_SOURCE};

/// Publishes to an EventBridge bus, `DetailType` = the event type, `Detail` = the event.
pub struct EventBridgeSink {
    client: super::lazy::LazyClient<aws_sdk_eventbridge::Client>,
    bus: String,
}

impl EventBridgeSink {
    pub fn new(
        client: impl Into<super::lazy::LazyClient<aws_sdk_eventbridge::Client>>,
        bus: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            bus: bus.into(),
        }
    }
}

#[async_trait]
impl EventSink for EventBridgeSink {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventError> {
        // PutEvents takes at most 10 entries.
        for chunk in events.chunks(10) {
            let mut req = self.client.get().await.put_events();
            for e in chunk {
                let detail = serde_json::to_string(e).map_err(|err| EventError(err.to_string()))?;
                req = req.entries(
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(EVENT_SOURCE)
                        .detail_type(e.kind.as_str())
                        .detail(detail)
                        .build(),
                );
            }
            let out = req.send().await.map_err(|e| {
                EventError(format!(
                    "PutEvents: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                ))
            })?;
            if out.failed_entry_count() > 0 {
                return Err(EventError(format!(
                    "PutEvents rejected {} of {} entries",
                    out.failed_entry_count(),
                    chunk.len()
                )));
            }
        }
        Ok(())
    }
}
