//! The event sink port: where domain events go (EventBridge on AWS, memory in tests and the dev
//! stack). The events themselves are built in [`crate::domain::DomainEvent`].

use std::sync::Mutex;

use async_trait::async_trait;
use thiserror::Error;

pub use crate::domain::{DomainEvent, EventType};

/// The EventBridge `Source` of every event.
pub const EVENT_SOURCE: &str = "oen-pay";

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
