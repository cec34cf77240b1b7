//! The store contract for daily reconciliation reports (`crate::reconcile`): one report per
//! Taipei day, read back whole, replaced only by compare-and-set.

use chrono::NaiveDate;

use super::t0;
use crate::domain::{
    Finding, FindingKind, ReconciliationProgress, ReconciliationReport, TransactionId,
};
use crate::store::*;

/// A complete report of `date` with one finding of every kind.
pub fn reconciliation_report(date: NaiveDate) -> ReconciliationReport {
    let mut report = ReconciliationReport::started(date, 2, t0());
    for (i, kind) in [
        FindingKind::Orphan,
        FindingKind::AmountMismatch,
        FindingKind::DoubleCharge,
        FindingKind::ForeignRefund,
        FindingKind::Unsettled,
    ]
    .into_iter()
    .enumerate()
    {
        report.add_finding(Finding {
            kind,
            transaction: TransactionId::parse(&format!("P2026112{i}AB12CD34")).unwrap(),
            order_id: format!("order{i}"),
            status: "refunded".into(),
            amount: 500 + i as i64,
            expected_amount: (i > 0).then_some(500),
            refund_amount: (i == 3).then_some(200),
            recorded_transaction: (i == 2)
                .then(|| TransactionId::parse("P20261120AB12CD34").unwrap()),
            created_at: Some("2026-11-29T04:00:00.000Z".into()),
        });
    }
    report.counts.transactions = 120;
    report.counts.matched = 117;
    report.progress = ReconciliationProgress::Complete {
        pages_read: 3,
        completed_at: t0() + chrono::Duration::minutes(1),
    };
    report
}

pub async fn a_reconciliation_report_round_trips_and_is_replaced_by_compare_and_set(
    store: impl Store,
) {
    let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    let other_day = day.succ_opt().unwrap();
    let mut reading = ReconciliationReport::started(day, 1, t0());
    reading.progress = ReconciliationProgress::Reading {
        next_page: Some("P20261129AB12CD34".into()),
        pages_read: 1,
    };
    store
        .commit(vec![Put::new(reading.clone(), Expect::Absent)])
        .await
        .unwrap();
    let stored = store.reconciliation(day).await.unwrap().unwrap();
    assert_eq!((stored.value, stored.version), (reading.clone(), 1));
    assert_eq!(store.reconciliation(other_day).await.unwrap(), None);

    // A second first run of the day is refused; the complete report replaces the one it read.
    let again = store
        .commit(vec![Put::new(reading.clone(), Expect::Absent)])
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let complete = reconciliation_report(day);
    store
        .commit(vec![Put::new(complete.clone(), Expect::Version(1))])
        .await
        .unwrap();
    let stale = store
        .commit(vec![Put::new(reading, Expect::Version(1))])
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let stored = store.reconciliation(day).await.unwrap().unwrap();
    assert_eq!((stored.value, stored.version), (complete, 2));
    assert_eq!(
        Record::Reconciliation(reconciliation_report(day)).expires_at(),
        None,
        "a report is never forgotten"
    );
}
