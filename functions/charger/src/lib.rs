//! `charger`: one function, two kinds of trigger (their payloads: `trigger`).
//! - A schedule (EventBridge Scheduler's input, an EventBridge rule's scheduled event, or a
//!   manual `{}`): the scheduled time is "now"; the planner puts one planning message per
//!   due-index shard on the queue, then the outbox relay publishes the domain events still
//!   pending (those whose writer could not ship them) until shortly before the invocation's
//!   deadline.
//! - The daily reconciliation (`{"job":"reconcile",…}`, its own schedule or a person):
//!   `oen_pay::reconcile` pages Oen's transaction list of one Taipei day against our records,
//!   storing its progress after every page. A run that must stop before the invocation's
//!   deadline with pages left fails the invocation (`ChargerError::Reconcile`), so that
//!   Lambda's retry of the asynchronous invocation continues from the page reached; so does a
//!   run that Oen failed. It runs here, not in a function of its own, so that the Oen caller
//!   stays in the fixed-egress network.
//! - SQS batches (`ReportBatchItemFailures`): planning messages page through the due index and
//!   enqueue charge messages; charge messages run the exactly-once protocol of
//!   `oen_pay::charging`. A message that should be retried is reported as a batch item failure,
//!   and so is one whose task panicked.

pub mod deadline;
pub mod trigger;

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use oen_pay::charging::{self, ChargeDeps, WorkContext, WorkError, WorkOutcome};
use oen_pay::chrono::{DateTime, Duration, Utc};
use oen_pay::config::{ChargerConfig, Config, ConfigError, OenConfig, Vars};
use oen_pay::outbox::{self, RelayLimits};
use oen_pay::queue::WorkMessage;
use oen_pay::reconcile::{self, ReconcileJob, ReconcileLimits, RunOutcome};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::trigger::{Trigger, UnrecognisedEvent};

/// Messages of one SQS batch processed at once (Oen's load is bounded further by the event
/// source mapping's `MaximumConcurrency`).
pub const DEFAULT_CONCURRENCY: usize = oen_pay::config::DEFAULT_CHARGER_CONCURRENCY;

/// The relay starts no batch of events later than this before the invocation's deadline.
const RELAY_MARGIN: Duration = Duration::seconds(10);

/// Everything the charger reads from its environment, once per cold start, and nothing else.
#[derive(Debug, Clone)]
pub struct Configuration {
    pub config: Config,
    pub oen: OenConfig,
    pub charger: ChargerConfig,
}

impl Configuration {
    pub fn read(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            config: Config::read(vars)?,
            oen: OenConfig::read(vars)?,
            charger: ChargerConfig::read(vars)?,
        })
    }
}

/// What an invocation works with besides the adapters, fixed per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Messages of one SQS batch worked on at once.
    pub concurrency: usize,
    /// The function's timeout, standing in for a runtime deadline that cannot be believed
    /// (see `deadline`).
    pub function_timeout: Option<Duration>,
}

impl Settings {
    pub fn from_config(config: &ChargerConfig) -> Self {
        Self {
            concurrency: config.concurrency,
            function_timeout: config.function_timeout,
        }
    }

    /// `concurrency` messages at once, and no function timeout known.
    pub fn with_concurrency(concurrency: usize) -> Self {
        Self {
            concurrency,
            function_timeout: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChargerError {
    #[error(transparent)]
    Unrecognised(#[from] UnrecognisedEvent),
    #[error("scheduled run failed: {0}")]
    Schedule(String),
    #[error("the batch response could not be written: {0}")]
    Response(String),
    #[error("reconciliation not complete: {0}")]
    Reconcile(String),
}

impl From<ChargerError> for lambda_runtime::Diagnostic {
    fn from(e: ChargerError) -> Self {
        let error_type = match e {
            ChargerError::Unrecognised(_) => "ChargerError::Unrecognised",
            ChargerError::Schedule(_) => "ChargerError::Schedule",
            ChargerError::Response(_) => "ChargerError::Response",
            ChargerError::Reconcile(_) => "ChargerError::Reconcile",
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
    settings: Settings,
    event: LambdaEvent<Value>,
) -> Result<Value, ChargerError> {
    let arrived = deps.clock.now();
    let deadline =
        deadline::invocation_deadline(event.context.deadline, arrived, settings.function_timeout);
    let owner = event.context.request_id.clone();
    let time = match trigger::parse(event.payload)? {
        Trigger::Batch(batch) => {
            let response = handle_batch(deps, settings.concurrency, batch, &owner, deadline).await;
            return serde_json::to_value(response)
                .map_err(|e| ChargerError::Response(e.to_string()));
        }
        Trigger::Schedule(time) => time.unwrap_or(arrived),
        Trigger::Reconcile(job) => return run_reconciliation(&deps, job, deadline).await,
    };
    // Planning first: it is quick, and charging must not wait behind a backlog of events.
    let planned = charging::schedule(&deps, time).await;
    let relayed = relay(&deps, deadline).await;
    let planned = planned.map_err(|e| ChargerError::Schedule(e.to_string()))?;
    tracing::info!(shards = planned, now = %time, "planning enqueued");
    Ok(serde_json::json!({"plannedShards": planned, "eventsRelayed": relayed}))
}

/// Runs (or continues) a day's reconciliation. Paused with pages left, or stopped by Oen or the
/// store, it fails the invocation so that its retry continues from the stored page.
async fn run_reconciliation(
    deps: &ChargeDeps,
    job: ReconcileJob,
    deadline: Option<DateTime<Utc>>,
) -> Result<Value, ChargerError> {
    let outcome = reconcile::run(deps, job, deadline, ReconcileLimits::default())
        .await
        .map_err(|e| ChargerError::Reconcile(e.to_string()))?;
    let (status, view) = match outcome {
        RunOutcome::Completed(view) => ("completed", view),
        RunOutcome::AlreadyComplete(view) => ("already_complete", view),
        RunOutcome::Paused(view) => {
            return Err(ChargerError::Reconcile(format!(
                "{} paused before the invocation's deadline after {} page(s) (run {}); the retry continues from there",
                view.date, view.pages_read, view.run
            )))
        }
    };
    Ok(serde_json::json!({"reconciliation": status, "report": view}))
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
