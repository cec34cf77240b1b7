//! The two dead-letter queues and what an operator does with them: look at what waits there,
//! and redrive it.
//!
//! - **charge**: planning and charge messages the charger failed on five times (the charge
//!   queue's redrive policy). Each body is a [`WorkMessage`]; redriving sends it back to the
//!   charge queue as it is. That is safe for every kind: a charge message runs the exactly-once
//!   protocol again (a settled period is not charged again, an unknown one is read at Oen
//!   first), and planning only enqueues messages that are themselves safe to repeat.
//! - **schedule**: scheduled runs EventBridge Scheduler could not deliver to the charger after
//!   its retries. Each body is the schedule's input, as the charger would have received it
//!   (`{"scheduledTime":…}`, or the reconciliation's `{"job":"reconcile",…}`); Scheduler's
//!   message attributes say why it failed. SQS cannot move these anywhere useful (the charger is
//!   not fed by a queue for them), so a redrive puts on the charge queue the work the run would
//!   have started: one planning message per due-index shard as of the run's time, or the
//!   reconciliation of its day ([`WorkMessage::Reconcile`]). The outbox relay of a missed run
//!   is left to the next scheduled run, which relays everything pending.
//!
//! A redrive sends first and deletes after: a failure between the two leaves the message in
//! the dead-letter queue as well as on the charge queue, and the duplicate is harmless for the
//! reasons above. A message whose body is none of these is kept where it is and reported with
//! the reason; nothing is guessed.

mod memory;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::ops::OpsError;
use crate::queue::{WorkMessage, WorkQueue};
use crate::reconcile::{self, RunMode};

pub use memory::MemoryDeadLetters;

/// Which dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterQueue {
    /// The charge queue's: planning and charge messages.
    Charge,
    /// The schedules': scheduled runs Scheduler could not deliver.
    Schedule,
}

impl DeadLetterQueue {
    pub const ALL: [DeadLetterQueue; 2] = [DeadLetterQueue::Charge, DeadLetterQueue::Schedule];

    pub fn name(self) -> &'static str {
        match self {
            DeadLetterQueue::Charge => "charge",
            DeadLetterQueue::Schedule => "schedule",
        }
    }

    pub fn parse(name: &str) -> Result<Self, OpsError> {
        match name {
            "charge" => Ok(DeadLetterQueue::Charge),
            "schedule" => Ok(DeadLetterQueue::Schedule),
            other => Err(OpsError::NotFound(format!(
                "no dead-letter queue {:?}: they are \"charge\" and \"schedule\"",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// One message as received from a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadMessage {
    pub id: String,
    /// What deletes this receipt of it (SQS's receipt handle).
    pub receipt: String,
    pub body: String,
    /// When it was first sent to the queue it came from.
    pub sent_at: Option<DateTime<Utc>>,
    /// How many times it has been received (from the dead-letter queue, after it was moved).
    pub receive_count: Option<u32>,
    /// Its message attributes, string values (Scheduler's error code and message).
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DeadLetterError(pub String);

/// The dead-letter queues (SQS on AWS, memory in the dev stack and tests).
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// About how many messages are in the queue, received ones not yet deleted included
    /// (SQS's `ApproximateNumberOfMessages` plus `…NotVisible`).
    async fn depth(&self, queue: DeadLetterQueue) -> Result<u64, DeadLetterError>;
    /// Up to `max` (at most 10) messages, hidden from other receivers for `hide`; a zero
    /// `hide` only looks.
    async fn receive(
        &self,
        queue: DeadLetterQueue,
        max: usize,
        hide: StdDuration,
    ) -> Result<Vec<DeadMessage>, DeadLetterError>;
    /// Deletes the received messages.
    async fn delete(
        &self,
        queue: DeadLetterQueue,
        receipts: &[String],
    ) -> Result<(), DeadLetterError>;
}

/// What a dead message becomes on the charge queue, or why it is kept.
pub fn revive(queue: DeadLetterQueue, body: &str) -> Result<Vec<WorkMessage>, String> {
    match queue {
        DeadLetterQueue::Charge => serde_json::from_str::<WorkMessage>(body)
            .map(|m| vec![m])
            .map_err(|e| format!("not a charge queue message ({e})")),
        DeadLetterQueue::Schedule => {
            let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(body) else {
                return Err("not a JSON object, so not a schedule's input".into());
            };
            if fields.contains_key("job") {
                let job = reconcile::job_from_input(&fields)?;
                return Ok(vec![WorkMessage::Reconcile {
                    date: job.date,
                    rerun: job.mode == RunMode::Rerun,
                }]);
            }
            match (fields.get("scheduledTime"), fields.len()) {
                (Some(time), 1) => Ok(WorkMessage::scheduled_run(reconcile::rfc3339_field(
                    "scheduledTime",
                    time,
                )?)),
                _ => {
                    Err("neither a scheduled run's input ({\"scheduledTime\":…}) nor a job".into())
                }
            }
        }
    }
}

/// What a redrive would do with a message, in words.
pub fn describe(queue: DeadLetterQueue, body: &str) -> String {
    match revive(queue, body) {
        Ok(messages) => match messages.as_slice() {
            [WorkMessage::Charge { customer, plan }] => {
                format!("charge the due period of {customer} / {plan}")
            }
            [WorkMessage::Plan { shard, now, .. }] if queue == DeadLetterQueue::Charge => {
                format!("plan shard {shard} as of {}", seconds(now))
            }
            [WorkMessage::Reconcile { date, .. }] => format!("reconcile the Taipei day {date}"),
            [WorkMessage::Plan { now, .. }, ..] => {
                format!("plan every shard as of {} (the missed run)", seconds(now))
            }
            [one] => format!("send back: {}", one.kind()),
            many => format!("send back {} messages", many.len()),
        },
        Err(why) => format!("kept: {why}"),
    }
}

fn seconds(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The operations on the dead-letter queues, shared by the merchant API and the dev stack.
#[derive(Clone)]
pub struct DeadLetterOps {
    pub letters: Arc<dyn DeadLetters>,
    /// The charge queue, where redriven work goes.
    pub queue: Arc<dyn WorkQueue>,
}

/// The most messages a listing shows (one receive).
pub const LIST_MAX: usize = 10;
/// The most messages one redrive request moves; the CLI asks again until none are left.
pub const REDRIVE_MAX: usize = 100;
/// How long a message received for a redrive is hidden from other receivers: a kept one
/// reappears after it, and a failed redrive is simply repeated.
pub const REDRIVE_HIDE: StdDuration = StdDuration::from_secs(60);
/// A redrive request stops receiving after this long (API Gateway answers 504 at 30 s).
pub const REDRIVE_BUDGET: StdDuration = StdDuration::from_secs(15);

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    pub queue: DeadLetterQueue,
    /// SQS's approximate count of the messages in the queue (hidden ones included).
    pub approximate_messages: u64,
    /// Up to [`LIST_MAX`] of them: SQS samples, so this may show fewer than wait.
    pub messages: Vec<DeadMessageView>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadMessageView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_count: Option<u32>,
    pub attributes: BTreeMap<String, String>,
    /// The body: JSON when it is JSON, else the text.
    pub body: Value,
    /// What a redrive would do with it.
    pub redrive: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedriveView {
    pub queue: DeadLetterQueue,
    /// Messages moved (their work is on the charge queue, they are gone from this one).
    pub moved: usize,
    /// Messages left where they were, and why.
    pub kept: Vec<KeptView>,
    /// SQS's approximate count of the messages still waiting (kept ones included).
    pub remaining: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeptView {
    pub id: String,
    pub reason: String,
}

fn unavailable(what: &str, e: DeadLetterError) -> OpsError {
    OpsError::Unavailable(format!("{what}: {e}"))
}

impl DeadLetterOps {
    /// The queue's depth and a sample of up to `limit` (default and most [`LIST_MAX`])
    /// messages, left visible to everyone.
    pub async fn list(&self, queue: &str, limit: Option<&str>) -> Result<DeadLetterView, OpsError> {
        let queue = DeadLetterQueue::parse(queue)?;
        let limit = parse_count("limit", limit, LIST_MAX)?;
        let approximate_messages = self
            .letters
            .depth(queue)
            .await
            .map_err(|e| unavailable("the dead-letter queue's depth", e))?;
        let received = if limit == 0 {
            Vec::new()
        } else {
            self.letters
                .receive(queue, limit, StdDuration::ZERO)
                .await
                .map_err(|e| unavailable("the dead-letter queue", e))?
        };
        let messages = received
            .into_iter()
            .map(|m| DeadMessageView {
                redrive: describe(queue, &m.body),
                body: serde_json::from_str(&m.body).unwrap_or(Value::String(m.body)),
                id: m.id,
                sent_at: m.sent_at,
                receive_count: m.receive_count,
                attributes: m.attributes,
            })
            .collect();
        Ok(DeadLetterView {
            queue,
            approximate_messages,
            messages,
        })
    }

    /// Moves up to `max` (default and most [`REDRIVE_MAX`]) messages' work to the charge
    /// queue, deleting each after its work is sent.
    pub async fn redrive(&self, queue: &str, max: Option<u64>) -> Result<RedriveView, OpsError> {
        let queue = DeadLetterQueue::parse(queue)?;
        let max = match max {
            None => REDRIVE_MAX,
            Some(n) if (1..=REDRIVE_MAX as u64).contains(&n) => n as usize,
            Some(n) => {
                return Err(OpsError::InvalidRequest(format!(
                    "max {n} is out of range (1 to {REDRIVE_MAX})"
                )))
            }
        };
        let started = std::time::Instant::now();
        let mut moved = 0;
        let mut kept = Vec::new();
        while moved + kept.len() < max && started.elapsed() < REDRIVE_BUDGET {
            let want = (max - moved - kept.len()).min(LIST_MAX);
            let batch = self
                .letters
                .receive(queue, want, REDRIVE_HIDE)
                .await
                .map_err(|e| unavailable("the dead-letter queue", e))?;
            if batch.is_empty() {
                break;
            }
            let mut work = Vec::new();
            let mut receipts = Vec::new();
            for m in batch {
                match revive(queue, &m.body) {
                    Ok(messages) => {
                        work.extend(messages);
                        receipts.push(m.receipt);
                    }
                    Err(reason) => {
                        tracing::warn!(queue = queue.name(), message = %m.id, %reason, "dead letter kept");
                        kept.push(KeptView { id: m.id, reason });
                    }
                }
            }
            if !work.is_empty() {
                self.queue.enqueue(&work).await.map_err(|e| {
                    OpsError::Unavailable(format!(
                        "the charge queue refused the redriven work: {e}"
                    ))
                })?;
            }
            if !receipts.is_empty() {
                self.letters.delete(queue, &receipts).await.map_err(|e| {
                    // Their work is on the charge queue already; the next redrive sends it
                    // again, which the charger absorbs.
                    unavailable("deleting redriven messages", e)
                })?;
                moved += receipts.len();
            }
        }
        let remaining = self
            .letters
            .depth(queue)
            .await
            .map_err(|e| unavailable("the dead-letter queue's depth", e))?;
        tracing::info!(
            queue = queue.name(),
            moved,
            kept = kept.len(),
            remaining,
            "dead letters redriven"
        );
        Ok(RedriveView {
            queue,
            moved,
            kept,
            remaining,
        })
    }
}

fn parse_count(name: &str, value: Option<&str>, most: usize) -> Result<usize, OpsError> {
    match value {
        None => Ok(most),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= most => Ok(n),
            _ => Err(OpsError::InvalidRequest(format!(
                "{name} must be a whole number from 0 to {most}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests;
