//! Daily reconciliation: Oen's transaction list of one Taipei day against our periods and
//! one-off charges.
//!
//! The charger runs it on its own schedule (00:30 Asia/Taipei by default) for the Taipei day
//! before the scheduled time, and on a manual invoke for a named day. It pages
//! `GET /transactions?start={day}&end={day}` (50 a page) and assesses every transaction
//! (`matching`): orphans, amount mismatches, double charges, refunds we did not make, and
//! payments our records do not show as paid.
//!
//! **The window.** The contract gives `start` and `end` without a format; we send both as the
//! same Taipei calendar date, `yyyy-MM-dd`, taking them as whole Taipei days, both included
//! (the simulator serves exactly that). A transaction whose `createdAt` reads as another Taipei
//! day is left out and not counted, so that a wider window on Oen's side never counts a
//! transaction on two days; one without a readable `createdAt` is taken as Oen listed it.
//!
//! **Progress and resumption.** The report of a day ([`ReconciliationReport`]) is written after
//! every page with the counts, the findings and Oen's token of the next page, by
//! compare-and-set: a run that stops (its invocation's deadline is near, Oen fails, the process
//! dies) leaves a report `reading` from the page it reached, and the next run of that day
//! continues from there instead of starting over. A concurrent run of the same day loses its
//! compare-and-set and stops ([`ReconcileError::Concurrent`]). A report that is not complete is
//! shown as such ([`ReportView::complete`] is false): never as a day with nothing off.
//!
//! **Re-runs.** A scheduled run of a day whose report is complete does nothing (a retried
//! schedule does not reconcile twice). A manual run ([`RunMode::Rerun`]) of a complete day
//! starts a new run (`run` + 1) that replaces the report from the first page; over the same
//! ledger it gives the same counts and findings. `reconciliation.completed` is committed with
//! the complete report (outbox) under the id `reconciliation.completed:{date}:{run}`: a
//! resumed run rebuilds the same event, so one run is announced once; a deliberate re-run is a
//! new happening (its findings may differ: a refund was made since) and is announced under its
//! own run number, so consumers keep the latest run of a day.
//!
//! **Alarms.** A complete run emits the EMF gauge `ReconciliationFindings` (function `charger`)
//! with the number of findings, zero included; the template alarms when it is above zero. A run
//! that fails counts `ReconciliationFailed`.

mod day;
mod matching;
mod view;

#[cfg(test)]
mod tests;

use std::collections::HashSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use thiserror::Error;

use crate::binding::BindingDeps;
use crate::domain::{DomainEvent, ReconciliationProgress, ReconciliationReport, TransactionId};
use crate::oen::{OenError, PageToken, TransactionListQuery};
use crate::outbox;
use crate::store::{Expect, Put, Store, StoreError, StoreExt, Versioned};

pub use day::{day_start, previous_taipei_day, taipei_day};
pub use matching::{assess, OrderRef, OurOrder};
pub use view::{report, ReportView};

/// The function that ships the completion event (and counts a failure to).
const FUNCTION: &str = "charger";

/// Which day to reconcile, and whether a complete report of it is kept or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileJob {
    pub date: NaiveDate,
    pub mode: RunMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// The schedule: finish the day's run, or do nothing when it is complete.
    Scheduled,
    /// A person asked: a complete day is reconciled again, from the first page.
    Rerun,
}

impl ReconcileJob {
    /// The run scheduled at `at`: the Taipei day before.
    pub fn scheduled(at: DateTime<Utc>) -> Self {
        Self {
            date: previous_taipei_day(at),
            mode: RunMode::Scheduled,
        }
    }

    /// A manual run of `date`.
    pub fn rerun(date: NaiveDate) -> Self {
        Self {
            date,
            mode: RunMode::Rerun,
        }
    }
}

/// The only job a schedule's input may name.
pub const RECONCILE_JOB: &str = "reconcile";

/// The reconciliation job a schedule's (or a person's) input names: `{"job":"reconcile"}` with
/// exactly one of `scheduledTime` (the schedule: the Taipei day before it) and `date` (a
/// person: that day, replacing a complete report), and nothing else, so that a misspelt field
/// cannot turn a manual re-run into "yesterday". Why not, in words.
pub fn job_from_input(
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Result<ReconcileJob, String> {
    let job = fields.get("job").cloned().unwrap_or_default();
    if job.as_str() != Some(RECONCILE_JOB) {
        return Err(format!(
            "job {job} is not a job the charger runs (only \"{RECONCILE_JOB}\")"
        ));
    }
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "job" | "scheduledTime" | "date"))
    {
        return Err(format!(
            "a reconcile job takes scheduledTime or date, not {other:?}"
        ));
    }
    match (fields.get("scheduledTime"), fields.get("date")) {
        (Some(time), None) => rfc3339_field("scheduledTime", time).map(ReconcileJob::scheduled),
        (None, Some(date)) => date
            .as_str()
            .filter(|d| d.len() == 10)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(ReconcileJob::rerun)
            .ok_or_else(|| format!("date {date} is not a yyyy-MM-dd calendar date")),
        (Some(_), Some(_)) => Err("a reconcile job takes scheduledTime or date, not both".into()),
        (None, None) => Err("a reconcile job without scheduledTime or date".into()),
    }
}

/// A JSON field holding an RFC 3339 time (as Scheduler renders `<aws.scheduler.scheduled-time>`).
pub fn rfc3339_field(field: &str, value: &serde_json::Value) -> Result<DateTime<Utc>, String> {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{field} {value} is not an RFC 3339 time"))
}

/// How long one invocation may page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileLimits {
    /// No page is asked for later than this before the invocation's deadline, so that a page
    /// and its write usually finish in time. One that does not (Oen slow through the client's
    /// retries) loses only itself: the retry continues from the last page written.
    pub stop_before_deadline: Duration,
    /// At most this many pages per invocation (`None`: as many as the deadline allows).
    pub max_pages: Option<u32>,
}

impl Default for ReconcileLimits {
    fn default() -> Self {
        Self {
            stop_before_deadline: Duration::seconds(25),
            max_pages: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every page read: the report is complete and announced.
    Completed(ReportView),
    /// A scheduled run found the day complete already: nothing done.
    AlreadyComplete(ReportView),
    /// Stopped before the deadline (or the page limit) with pages left; the report is stored
    /// `reading` and the next run continues from the page reached.
    Paused(ReportView),
}

impl RunOutcome {
    pub fn report(&self) -> &ReportView {
        match self {
            RunOutcome::Completed(r) | RunOutcome::AlreadyComplete(r) | RunOutcome::Paused(r) => r,
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ReconcileError {
    /// The day has not ended in Taipei: its list is not final.
    #[error("{date} has not ended in Taipei yet; reconcile it from 00:00 of the next day")]
    DayNotOver { date: NaiveDate },
    /// Oen failed while listing; the pages read before are stored and the next run continues
    /// from `pages_read`.
    #[error("Oen failed listing the transactions of {date} after {pages_read} page(s) (run {run}); the next run continues from there: {error}")]
    Oen {
        date: NaiveDate,
        run: u32,
        pages_read: u32,
        error: OenError,
    },
    /// Another run of the same day wrote the report meanwhile; this one stopped.
    #[error("another run of {date} is writing its report; this one stopped")]
    Concurrent { date: NaiveDate },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs (or continues) the reconciliation of `job.date`.
pub async fn run(
    deps: &BindingDeps,
    job: ReconcileJob,
    deadline: Option<DateTime<Utc>>,
    limits: ReconcileLimits,
) -> Result<RunOutcome, ReconcileError> {
    let result = run_inner(deps, job, deadline, limits).await;
    if let Err(e) = &result {
        tracing::error!(date = %job.date, error = %e, "reconciliation did not complete");
        crate::metrics::count("charger", "ReconciliationFailed");
    }
    result
}

async fn run_inner(
    deps: &BindingDeps,
    job: ReconcileJob,
    deadline: Option<DateTime<Utc>>,
    limits: ReconcileLimits,
) -> Result<RunOutcome, ReconcileError> {
    let now = deps.clock.now();
    if !day::is_over(job.date, now) {
        return Err(ReconcileError::DayNotOver { date: job.date });
    }
    let (mut report, mut version) = match begin(&*deps.store, job, now).await? {
        Begun::Done(view) => return Ok(RunOutcome::AlreadyComplete(view)),
        Begun::Reading(report, version) => (report, version),
    };
    let (mut next_page, mut pages_read) = match &report.progress {
        ReconciliationProgress::Reading {
            next_page,
            pages_read,
        } => (next_page.clone(), *pages_read),
        // begin() hands over reading reports only; a complete one has nothing left to read.
        ReconciliationProgress::Complete { .. } => {
            return Ok(RunOutcome::AlreadyComplete(ReportView::of(&report)))
        }
    };
    let mut seen: HashSet<TransactionId> = HashSet::new();
    let mut pages_now = 0u32;
    loop {
        let out_of_time = deadline
            .is_some_and(|d| deps.clock.now() + limits.stop_before_deadline >= d)
            || limits.max_pages.is_some_and(|max| pages_now >= max);
        if out_of_time {
            tracing::info!(date = %job.date, run = report.run, pages_read, "reconciliation paused; the next run continues");
            return Ok(RunOutcome::Paused(ReportView::of(&report)));
        }
        let query = TransactionListQuery {
            start: job.date,
            end: job.date,
            page: next_page.clone().and_then(PageToken::new),
        };
        let page =
            deps.oen
                .list_transactions(&query)
                .await
                .map_err(|error| ReconcileError::Oen {
                    date: job.date,
                    run: report.run,
                    pages_read,
                    error,
                })?;
        for tx in &page.transactions {
            // A transaction twice in one invocation (a list that shifted under its pages) is
            // counted once.
            if !day::created_on(tx.created_at.as_deref(), job.date) || !seen.insert(tx.id.clone()) {
                continue;
            }
            let ours = our_order(&*deps.store, tx.order_id.as_deref()).await?;
            report.counts.transactions += 1;
            if ours.is_some() {
                report.counts.matched += 1;
            }
            for finding in assess(tx, ours.as_ref()) {
                report.add_finding(finding);
            }
        }
        pages_now += 1;
        pages_read += 1;
        next_page = page.next.map(|t| t.as_str().to_owned());
        let now = deps.clock.now();
        report.updated_at = now;
        report.progress = match &next_page {
            Some(next) => ReconciliationProgress::Reading {
                next_page: Some(next.clone()),
                pages_read,
            },
            None => ReconciliationProgress::Complete {
                pages_read,
                completed_at: now,
            },
        };
        if report.is_complete() {
            complete(deps, &report, version).await?;
            return Ok(RunOutcome::Completed(ReportView::of(&report)));
        }
        save(&*deps.store, &report, version).await?;
        version = version.next();
    }
}

enum Begun {
    Done(ReportView),
    Reading(ReconciliationReport, Expect),
}

/// The report to continue: the stored one while it is reading; a new run when there is none,
/// or when a complete one is to be replaced. Every new run is written before its first page.
async fn begin(
    store: &dyn Store,
    job: ReconcileJob,
    now: DateTime<Utc>,
) -> Result<Begun, ReconcileError> {
    let stored = store.reconciliation(job.date).await?;
    let (run, expect) = match stored {
        Some(Versioned { value, version }) if !value.is_complete() => {
            tracing::info!(date = %job.date, run = value.run, "continuing the day's reconciliation");
            return Ok(Begun::Reading(value, Expect::Version(version)));
        }
        Some(Versioned { value, .. }) if job.mode == RunMode::Scheduled => {
            return Ok(Begun::Done(ReportView::of(&value)));
        }
        Some(Versioned { value, version }) => (value.run + 1, Expect::Version(version)),
        None => (1, Expect::Absent),
    };
    let report = ReconciliationReport::started(job.date, run, now);
    save(store, &report, expect).await?;
    Ok(Begun::Reading(report, expect.next()))
}

/// Writes the report at the version it was read at.
async fn save(
    store: &dyn Store,
    report: &ReconciliationReport,
    expect: Expect,
) -> Result<(), ReconcileError> {
    store
        .commit(vec![Put::new(report.clone(), expect)])
        .await
        .map_err(|e| conflict_is_concurrent(e, report.date))
}

/// Writes the complete report with its `reconciliation.completed` event, ships the event and
/// records the findings metric.
async fn complete(
    deps: &BindingDeps,
    report: &ReconciliationReport,
    expect: Expect,
) -> Result<(), ReconcileError> {
    let events = DomainEvent::reconciliation_completed(report)
        .into_iter()
        .collect();
    let recorded = outbox::commit(deps, vec![Put::new(report.clone(), expect)], events)
        .await
        .map_err(|e| conflict_is_concurrent(e, report.date))?;
    outbox::ship(deps, recorded, FUNCTION).await;
    let findings = report.counts.findings();
    crate::metrics::gauge(
        "charger",
        "ReconciliationFindings",
        f64::from(findings),
        crate::metrics::Unit::Count,
    );
    if findings > 0 {
        tracing::warn!(date = %report.date, run = report.run, counts = ?report.counts, "reconciliation found transactions that do not match our records");
    } else {
        tracing::info!(date = %report.date, run = report.run, counts = ?report.counts, "reconciliation complete; everything matches");
    }
    Ok(())
}

fn conflict_is_concurrent(e: StoreError, date: NaiveDate) -> ReconcileError {
    match e {
        StoreError::Conflict(_) => ReconcileError::Concurrent { date },
        other => ReconcileError::Store(other),
    }
}

/// Our record of the order, or `None` when the order is not ours.
async fn our_order(
    store: &dyn Store,
    order_id: Option<&str>,
) -> Result<Option<OurOrder>, StoreError> {
    Ok(match OrderRef::of(order_id.unwrap_or_default()) {
        OrderRef::Period {
            subscription,
            period,
        } => store
            .period(&subscription, period)
            .await?
            .map(|p| OurOrder::of_period(&p.value)),
        OrderRef::Charge(charge) => store
            .one_off_charge(&charge)
            .await?
            .map(|c| OurOrder::of_charge(&c.value)),
        OrderRef::Foreign => None,
    })
}

trait NextVersion {
    fn next(self) -> Self;
}

impl NextVersion for Expect {
    /// The condition a write following a successful one under `self` must carry.
    fn next(self) -> Self {
        match self {
            Expect::Absent => Expect::Version(1),
            Expect::Version(v) => Expect::Version(v + 1),
        }
    }
}
