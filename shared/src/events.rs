//! Domain events for the merchant's systems (e-mails, entitlements). Each carries a stable id
//! derived from what happened, so a consumer can de-duplicate redeliveries.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

/// The EventBridge `Source` of every event.
pub const EVENT_SOURCE: &str = "oen-pay";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainEvent {
    /// Stable: the same happening always gets the same id (e.g. `card.bound:{binding}`).
    pub id: String,
    /// `card.bound`, `payment.succeeded`, `payment.failed`, `subscription.past_due`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub at: DateTime<Utc>,
    pub customer: String,
    pub data: serde_json::Value,
}

impl DomainEvent {
    pub fn new(
        kind: &str,
        stable_key: &str,
        at: DateTime<Utc>,
        customer: &str,
        data: serde_json::Value,
    ) -> Self {
        Self {
            id: format!("{kind}:{stable_key}"),
            kind: kind.to_owned(),
            at,
            customer: customer.to_owned(),
            data,
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("events could not be published: {0}")]
pub struct EventError(pub String);

#[async_trait]
pub trait EventSink: Send + Sync {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventError>;
}

/// Keeps events in memory (tests, the dev stack).
#[derive(Default)]
pub struct MemoryEvents(Mutex<Vec<DomainEvent>>);

impl MemoryEvents {
    pub fn all(&self) -> Vec<DomainEvent> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl EventSink for MemoryEvents {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(events);
        Ok(())
    }
}

/// Publishes to an EventBridge bus, `DetailType` = the event type, `Detail` = the event.
pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeSink {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }
}

#[async_trait]
impl EventSink for EventBridgeSink {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventError> {
        // PutEvents takes at most 10 entries.
        for chunk in events.chunks(10) {
            let mut req = self.client.put_events();
            for e in chunk {
                let detail = serde_json::to_string(e).map_err(|err| EventError(err.to_string()))?;
                req = req.entries(
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(EVENT_SOURCE)
                        .detail_type(&e.kind)
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
