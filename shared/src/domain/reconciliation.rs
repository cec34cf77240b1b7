//! The daily reconciliation's record (`crate::reconcile`): one report per Taipei calendar day,
//! written page by page while Oen's transaction list is read, complete once the last page is in.
//! It names transactions, orders and amounts, never a card token.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::TransactionId;

/// How many findings a report lists. The counts stay exact beyond it; the list is cut so that
/// the record stays far below DynamoDB's 400 KB item limit however bad a day was.
pub const MAX_LISTED_FINDINGS: usize = 200;

/// One Taipei day's reconciliation of Oen's transaction list against our periods and one-off
/// charges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationReport {
    /// The Taipei calendar day whose transactions (by creation time) were read.
    pub date: NaiveDate,
    /// 1 for the day's first run, one more for every deliberate re-run; a run resumed after a
    /// timeout or an Oen error keeps its number.
    pub run: u32,
    pub progress: ReconciliationProgress,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub counts: ReconciliationCounts,
    /// The findings in the order they were found, at most [`MAX_LISTED_FINDINGS`].
    pub findings: Vec<Finding>,
}

impl ReconciliationReport {
    /// A run that has read no page yet.
    pub fn started(date: NaiveDate, run: u32, now: DateTime<Utc>) -> Self {
        Self {
            date,
            run,
            progress: ReconciliationProgress::Reading {
                next_page: None,
                pages_read: 0,
            },
            started_at: now,
            updated_at: now,
            counts: ReconciliationCounts::default(),
            findings: Vec::new(),
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self.progress, ReconciliationProgress::Complete { .. })
    }

    /// Counts a finding, and lists it while the list has room.
    pub fn add_finding(&mut self, finding: Finding) {
        self.counts.count(finding.kind);
        if self.findings.len() < MAX_LISTED_FINDINGS {
            self.findings.push(finding);
        }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReconciliationProgress {
    /// Pages are being read; the counts and findings are those of the pages read so far.
    /// `next_page` is Oen's token of the first page not yet read (`None` with no page read:
    /// the first page).
    Reading {
        next_page: Option<String>,
        pages_read: u32,
    },
    /// Every page was read: the report is final for this run.
    Complete {
        pages_read: u32,
        completed_at: DateTime<Utc>,
    },
}

/// What a run counted. `transactions` is every transaction of the day Oen listed; `matched` the
/// ones whose order is one of ours; each finding kind counts its findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationCounts {
    pub transactions: u32,
    pub matched: u32,
    pub orphans: u32,
    pub amount_mismatches: u32,
    pub double_charges: u32,
    pub foreign_refunds: u32,
    pub unsettled: u32,
}

impl ReconciliationCounts {
    /// Every finding of every kind: zero on a day with nothing off.
    pub fn findings(&self) -> u32 {
        self.orphans
            + self.amount_mismatches
            + self.double_charges
            + self.foreign_refunds
            + self.unsettled
    }

    fn count(&mut self, kind: FindingKind) {
        let counter = match kind {
            FindingKind::Orphan => &mut self.orphans,
            FindingKind::AmountMismatch => &mut self.amount_mismatches,
            FindingKind::DoubleCharge => &mut self.double_charges,
            FindingKind::ForeignRefund => &mut self.foreign_refunds,
            FindingKind::Unsettled => &mut self.unsettled,
        };
        *counter += 1;
    }
}

/// What is off about one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Money Oen took under an order that is none of our periods or one-off charges.
    Orphan,
    /// The paying transaction of one of our orders is not the amount we asked for.
    AmountMismatch,
    /// A paid transaction of one of our orders other than the one that pays it: the customer
    /// paid twice.
    DoubleCharge,
    /// A refund on a transaction of ours that our records do not show us making.
    ForeignRefund,
    /// Paid at Oen while our record of the order does not say paid (still unknown, open or
    /// declined with us).
    Unsettled,
}

/// One finding: the transaction, its order and the amounts. Never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: FindingKind,
    /// Oen's `P…` transaction number.
    pub transaction: TransactionId,
    /// The transaction's `orderId` as Oen lists it (cut to 64 characters; empty when absent).
    pub order_id: String,
    /// Oen's status of the transaction (`charged`, `refunded`, …).
    pub status: String,
    /// NT$ of the transaction at Oen.
    pub amount: i64,
    /// NT$ our record of the order asked for, where we have one.
    pub expected_amount: Option<i64>,
    /// NT$ Oen reports refunded on the transaction, where any.
    pub refund_amount: Option<i64>,
    /// The transaction our record says pays the order, where it names one.
    pub recorded_transaction: Option<TransactionId>,
    /// When Oen says the transaction was created, as Oen wrote it.
    pub created_at: Option<String>,
}
