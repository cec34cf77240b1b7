//! `charger`: one function, two triggers.
//! - An EventBridge schedule: its event's `time` is "now"; the planner puts one planning
//!   message per due-index shard on the queue, then the outbox relay publishes the domain
//!   events still pending (those whose writer could not ship them) until shortly before the
//!   invocation's deadline.
//! - SQS batches (`ReportBatchItemFailures`): planning messages page through the due index and
//!   enqueue charge messages; charge messages run the exactly-once protocol of
//!   `oen_pay::charging`. A message that should be retried is reported as a batch item failure,
//!   and so is one whose task panicked.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use oen_pay::charging::{self, ChargeDeps, WorkContext, WorkError, WorkOutcome};
use oen_pay::chrono::{DateTime, Duration, Utc};
use oen_pay::outbox::{self, RelayLimits};
use oen_pay::queue::WorkMessage;
use serde_json::Value;
use tokio::sync::Semaphore;

/// Messages of one SQS batch processed at once (Oen's load is bounded further by the event
/// source mapping's `MaximumConcurrency`).
pub const DEFAULT_CONCURRENCY: usize = oen_pay::config::DEFAULT_CHARGER_CONCURRENCY;

/// The relay starts no batch of events later than this before the invocation's deadline.
const RELAY_MARGIN: Duration = Duration::seconds(10);

#[derive(Debug, thiserror::Error)]
pub enum ChargerError {
    #[error("unrecognised event: neither an SQS batch nor a scheduled event with a time")]
    Unrecognised,
    #[error("scheduled run failed: {0}")]
    Schedule(String),
}

impl From<ChargerError> for lambda_runtime::Diagnostic {
    fn from(e: ChargerError) -> Self {
        let error_type = match e {
            ChargerError::Unrecognised => "ChargerError::Unrecognised",
            ChargerError::Schedule(_) => "ChargerError::Schedule",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// Dispatches a Lambda event.
pub async fn handle(
    deps: Arc<ChargeDeps>,
    concurrency: usize,
    event: LambdaEvent<Value>,
) -> Result<Value, ChargerError> {
    // A zero deadline (a hand-made context) means none is known.
    let deadline = (event.context.deadline > 0)
        .then(|| DateTime::<Utc>::from_timestamp_millis(event.context.deadline as i64))
        .flatten();
    let owner = event.context.request_id.clone();
    let payload = event.payload;
    if payload.get("Records").is_some() {
        let batch: SqsEvent =
            serde_json::from_value(payload).map_err(|_| ChargerError::Unrecognised)?;
        let response = handle_batch(deps, concurrency, batch, &owner, deadline).await;
        return serde_json::to_value(response).map_err(|_| ChargerError::Unrecognised);
    }
    let time = payload
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or(ChargerError::Unrecognised)?
        .with_timezone(&Utc);
    // Planning first: it is quick, and charging must not wait behind a backlog of events.
    let planned = charging::schedule(&deps, time).await;
    let relayed = relay(&deps, deadline).await;
    let planned = planned.map_err(|e| ChargerError::Schedule(e.to_string()))?;
    tracing::info!(shards = planned, now = %time, "planning enqueued");
    Ok(serde_json::json!({"plannedShards": planned, "eventsRelayed": relayed}))
}

/// Publishes the outbox's pending events; how many were. A failure is logged and counted, and
/// does not fail the invocation: the entries wait for the next scheduled run.
async fn relay(deps: &ChargeDeps, deadline: Option<DateTime<Utc>>) -> usize {
    let limits = RelayLimits {
        until: deadline.map(|d| d - RELAY_MARGIN),
        ..RelayLimits::default()
    };
    match outbox::relay(deps, &limits).await {
        Ok(relayed) => relayed.delivered,
        Err(e) => {
            tracing::error!(error = %e, "outbox relay failed; pending events wait for the next scheduled run");
            oen_pay::metrics::count("charger", "OutboxRelayFailed");
            0
        }
    }
}

/// Runs every message of a batch with bounded concurrency and reports the ones to retry.
pub async fn handle_batch(
    deps: Arc<ChargeDeps>,
    concurrency: usize,
    batch: SqsEvent,
    owner: &str,
    deadline: Option<DateTime<Utc>>,
) -> SqsBatchResponse {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    // Task ids lead back to message ids, also from a task that panicked.
    let mut message_ids = HashMap::new();
    for record in batch.records {
        let id = record.message_id.clone().unwrap_or_default();
        let deps = deps.clone();
        let permits = permits.clone();
        let ctx = WorkContext {
            owner: format!("{owner}/{id}"),
            deadline,
        };
        let message_id = id.clone();
        let task = tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let message: Result<WorkMessage, _> = serde_json::from_str(record.body.as_deref().unwrap_or(""));
            match message {
                Ok(m) => charging::handle(&deps, &m, &ctx).await,
                Err(e) => {
                    // A message we cannot read will never become readable: drop it, loudly.
                    tracing::error!(message_id = %id, error = %e, "unreadable work message dropped");
                    Ok(WorkOutcome::Skipped("unreadable message"))
                }
            }
        });
        message_ids.insert(task.id(), message_id);
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (task, joined) = match joined {
            Ok((task, result)) => (task, Ok(result)),
            Err(e) => (e.id(), Err(e)),
        };
        // Never missing; were it, the empty identifier would fail the whole batch, still safe.
        let id = message_ids.remove(&task).unwrap_or_default();
        match joined {
            // Oen never saw the request: let SQS redeliver it after the visibility timeout
            // instead of waiting for the next scheduled run.
            Ok(Ok(WorkOutcome::NotSent)) => failures.push(id),
            Ok(Ok(outcome)) => tracing::debug!(?outcome, "work done"),
            Ok(Err(WorkError::Retry(reason))) => {
                tracing::warn!(message_id = %id, reason = %reason, "work handed back to the queue");
                failures.push(id);
            }
            // A panic is a bug, not a verdict on the message: hand it back like any retry.
            // Whatever the task had claimed, the next worker reconciles with Oen once the lease
            // runs out.
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "worker task failed; work handed back to the queue");
                failures.push(id);
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}
