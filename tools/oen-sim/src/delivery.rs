//! The record of every webhook the simulator sent or meant to send: what it carried, where it
//! went and how each attempt ended, kept for tests and the admin API to read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One webhook (one payload) and every attempt to deliver it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    /// Sequential, starting at 1.
    pub delivery_id: u64,
    /// The checkout-token id the webhook is about.
    pub checkout_id: String,
    /// The exact JSON body sent.
    pub payload: Value,
    /// Where it went (the webhook URL at the first attempt).
    pub url: Option<String>,
    pub state: DeliveryState,
    pub attempts: Vec<DeliveryAttempt>,
    /// Set on the extra copy made by the duplicate knob.
    pub duplicate_of: Option<u64>,
    /// Set on a delivery made by the admin "redeliver" call.
    pub redelivery_of: Option<u64>,
}

impl DeliveryRecord {
    /// True when nothing more will ever be attempted for this delivery.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.state,
            DeliveryState::Delivered
                | DeliveryState::Failed
                | DeliveryState::Dropped
                | DeliveryState::NoUrl
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryState {
    /// Waiting for (or between) attempts.
    Pending,
    /// Held back by the reorder knob.
    Held,
    /// An attempt got a 2xx.
    Delivered,
    /// Every attempt failed; it will never be sent again.
    Failed,
    /// Dropped by the drop knob; never sent.
    Dropped,
    /// No webhook URL was configured; never sent.
    NoUrl,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// 1, 2, 3.
    pub number: u32,
    /// Simulator-clock time the attempt started.
    pub at: DateTime<Utc>,
    /// Real (tokio) milliseconds from the simulator's start to the attempt's start.
    pub elapsed_ms: u64,
    /// Simulator-clock time the attempt got its answer or gave up (timeout, refused, ...).
    pub ended_at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
}

impl DeliveryAttempt {
    /// The HTTP status the receiver answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self.outcome {
            AttemptOutcome::Status { code } => Some(code),
            AttemptOutcome::Error { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum AttemptOutcome {
    /// The receiver answered with this HTTP status.
    Status { code: u16 },
    /// No answer: timeout, refused connection, ...
    Error { message: String },
}
