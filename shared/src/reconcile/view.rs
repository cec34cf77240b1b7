//! The report as the merchant API (`GET /v1/reconciliation/{date}`), the CLI and the dev stack
//! show it.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Finding, ReconciliationCounts, ReconciliationProgress, ReconciliationReport};
use crate::store::{Store, StoreError, StoreExt};

/// A day's report, JSON in camelCase:
/// `{"date":"2026-11-29","run":1,"complete":true,"pagesRead":3,"startedAt":…,"completedAt":…,
///   "counts":{"transactions":…,"matched":…,"orphans":…,"amountMismatches":…,"doubleCharges":…,
///   "foreignRefunds":…,"unsettled":…},"findingCount":…,"findings":[{"kind":"orphan",
///   "transaction":"P…","orderId":…,"status":…,"amount":…,"expectedAmount":…,
///   "refundAmount":…,"recordedTransaction":…,"createdAt":…}],"findingsTruncated":false}`.
/// A report that is not complete says so (`complete: false`): its counts cover the pages read
/// so far and must not be read as the day's. It reads back from that JSON too (the CLI reads
/// the API's answer with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportView {
    /// The Taipei day, `yyyy-MM-dd`.
    pub date: NaiveDate,
    pub run: u32,
    pub complete: bool,
    pub pages_read: u32,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub counts: ReconciliationCounts,
    /// Every finding counted, listed or not.
    pub finding_count: u32,
    pub findings: Vec<Finding>,
    /// More findings were counted than the report lists.
    pub findings_truncated: bool,
}

impl ReportView {
    pub fn of(report: &ReconciliationReport) -> Self {
        let (complete, pages_read, completed_at) = match &report.progress {
            ReconciliationProgress::Reading { pages_read, .. } => (false, *pages_read, None),
            ReconciliationProgress::Complete {
                pages_read,
                completed_at,
            } => (true, *pages_read, Some(*completed_at)),
        };
        let finding_count = report.counts.findings();
        Self {
            date: report.date,
            run: report.run,
            complete,
            pages_read,
            started_at: report.started_at,
            completed_at,
            counts: report.counts,
            finding_count,
            findings: report.findings.clone(),
            findings_truncated: usize::try_from(finding_count)
                .is_ok_and(|n| n > report.findings.len()),
        }
    }
}

/// The report of a Taipei day (`None` when the day was never reconciled), complete or not.
pub async fn report(store: &dyn Store, date: NaiveDate) -> Result<Option<ReportView>, StoreError> {
    Ok(store
        .reconciliation(date)
        .await?
        .map(|r| ReportView::of(&r.value)))
}
