//! The event sink port: where domain events go (EventBridge on AWS, memory in tests and the dev
//! stack). The events themselves are built in [`crate::domain::DomainEvent`].

use std::sync::atomic::{AtomicBool, Ordering};
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
pub struct MemoryEvents {
    published: Mutex<Vec<DomainEvent>>,
    failing: AtomicBool,
}

impl MemoryEvents {
    pub fn all(&self) -> Vec<DomainEvent> {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// While `failing`, every publish fails and keeps nothing: a bus that is down.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl EventSink for MemoryEvents {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(EventError("the event bus is down".into()));
        }
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(events);
        Ok(())
    }
}
