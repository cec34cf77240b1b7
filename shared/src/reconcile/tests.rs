//! The reconciliation over the memory store and a fake Oen whose list pages like the contract
//! says: newest first, 50 a page, the next page named by the last transaction of the page.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::json;

use super::*;
use crate::clock::{Clock, TestClock};
use crate::domain::{
    Amount, AnomalyKind, AnomalyRefund, ChargeId, ChargeState, CheckoutId, EventType, FindingKind,
    MerchantId, OrderId, PaymentAnomaly, PeriodState, TransactionId,
};
use crate::events::MemoryEvents;
use crate::oen::{
    ChargeReceipt, ChargeRequest, CheckoutRequest, OenGateway, RefundRequest, Transaction,
    TransactionPage, TRANSACTIONS_PER_PAGE,
};
use crate::store::contract::{one_off_charge_with_id, period, subscription};
use crate::store::{MemoryStore, Subscription};
use crate::vault::LocalVault;

fn date(d: &str) -> NaiveDate {
    NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()
}

fn utc(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
}

/// The day every test reconciles, and noon of it in Taipei.
const DAY: &str = "2026-11-29";
const NOON: &str = "2026-11-29T04:00:00.000Z";

/// Oen's list of one merchant: answers `GET /transactions` from `ledger` (oldest first, listed
/// newest first), optionally failing one call.
#[derive(Default)]
struct LedgerOen {
    ledger: Mutex<Vec<Transaction>>,
    /// The queries asked, in order.
    asked: Mutex<Vec<TransactionListQuery>>,
    /// The 1-based list call that fails (as Oen's 500 F0001 after the client's retries).
    fail_call: Mutex<Option<usize>>,
}

impl LedgerOen {
    fn add(&self, id: &str, order: &str, amount: i64, status: &str, refunded: i64, at: &str) {
        let tx = serde_json::from_value(json!({
            "id": id, "transactionId": format!("{id:0>27}"), "orderId": order, "amount": amount,
            "status": status, "refundAmount": refunded, "createdAt": at,
        }))
        .unwrap();
        self.ledger.lock().unwrap().push(tx);
    }

    fn asked(&self) -> Vec<TransactionListQuery> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait]
impl OenGateway for LedgerOen {
    fn merchant_id(&self) -> &MerchantId {
        unreachable!("the reconciliation never asks for the merchant id")
    }

    async fn create_checkout(&self, _: &CheckoutRequest) -> Result<CheckoutId, OenError> {
        unreachable!("the reconciliation never binds cards")
    }

    async fn charge(&self, _: &ChargeRequest) -> Result<ChargeReceipt, OenError> {
        unreachable!("the reconciliation never charges")
    }

    async fn order_transactions(
        &self,
        _: &crate::domain::OrderId,
    ) -> Result<Vec<Transaction>, OenError> {
        unreachable!("the reconciliation reads the list, not orders")
    }

    async fn transaction(&self, _: &TransactionId) -> Result<Transaction, OenError> {
        unreachable!("the reconciliation reads the list, not transactions")
    }

    async fn refund(&self, _: &RefundRequest) -> Result<(), OenError> {
        unreachable!("the reconciliation never refunds")
    }

    async fn list_transactions(
        &self,
        query: &TransactionListQuery,
    ) -> Result<TransactionPage, OenError> {
        let call = {
            let mut asked = self.asked.lock().unwrap();
            asked.push(query.clone());
            asked.len()
        };
        if *self.fail_call.lock().unwrap() == Some(call) {
            return Err(OenError::Transient {
                status: 500,
                message: "System error".into(),
            });
        }
        let ledger = self.ledger.lock().unwrap();
        let newest_first: Vec<&Transaction> = ledger.iter().rev().collect();
        let from = match &query.page {
            None => 0,
            Some(token) => {
                newest_first
                    .iter()
                    .position(|t| t.id.as_str() == token.as_str())
                    .expect("a token the list gave")
                    + 1
            }
        };
        let rest = &newest_first[from..];
        let page: Vec<Transaction> = rest
            .iter()
            .take(TRANSACTIONS_PER_PAGE)
            .map(|t| (*t).clone())
            .collect();
        let next = (rest.len() > TRANSACTIONS_PER_PAGE)
            .then(|| page.last().and_then(|t| PageToken::new(t.id.as_str())))
            .flatten();
        Ok(TransactionPage {
            transactions: page,
            next,
        })
    }
}

struct World {
    deps: BindingDeps,
    store: Arc<MemoryStore>,
    oen: Arc<LedgerOen>,
    events: Arc<MemoryEvents>,
    clock: TestClock,
    sub: Subscription,
}

impl World {
    /// GIVEN no records, an empty Oen list, and the clock at 00:30 Taipei the day after DAY.
    fn new() -> Self {
        let clock = TestClock::at(utc("2026-11-29T16:30:00Z"));
        let oen = Arc::new(LedgerOen::default());
        let events = Arc::new(MemoryEvents::default());
        let store = Arc::new(MemoryStore::new());
        let deps = crate::dev::binding_deps(
            store.clone(),
            Arc::new(LocalVault::random()),
            oen.clone(),
            events.clone(),
            Arc::new(clock.clone()),
        );
        Self {
            deps,
            store,
            oen,
            events,
            clock,
            sub: subscription("cust-1", None),
        }
    }

    /// GIVEN period `n` of the subscription, paid by `transaction` (NT$500); its order id.
    async fn paid_period(&self, n: u32, transaction: &str) -> String {
        let p = period(
            &self.sub,
            n,
            PeriodState::Paid {
                transaction: TransactionId::parse(transaction).unwrap(),
                auth_code: None,
                paid_at: utc(NOON),
            },
        );
        let order = p.order_id.to_string();
        self.put(p).await;
        order
    }

    async fn put(&self, record: impl Into<crate::domain::Record>) {
        self.store
            .commit(vec![Put::new(record, Expect::Absent)])
            .await
            .unwrap();
    }

    async fn run(&self, job: ReconcileJob) -> Result<RunOutcome, ReconcileError> {
        run(&self.deps, job, None, ReconcileLimits::default()).await
    }

    async fn stored(&self) -> ReportView {
        report(&*self.store, date(DAY)).await.unwrap().unwrap()
    }

    fn completion_events(&self) -> Vec<crate::domain::DomainEvent> {
        self.events
            .all()
            .into_iter()
            .filter(|e| e.kind == EventType::ReconciliationCompleted)
            .collect()
    }
}

fn scheduled() -> ReconcileJob {
    ReconcileJob::scheduled(utc("2026-11-29T16:30:00Z"))
}

fn kinds_of(view: &ReportView) -> Vec<(FindingKind, String)> {
    view.findings
        .iter()
        .map(|f| (f.kind, f.transaction.to_string()))
        .collect()
}

#[tokio::test]
async fn a_day_where_everything_matches_completes_with_no_findings_and_announces_it() {
    // GIVEN two paid periods, a paid one-off charge, and a declined foreign attempt at Oen.
    let w = World::new();
    let first = w.paid_period(0, "P0001").await;
    let second = w.paid_period(1, "P0002").await;
    let charge_id = ChargeId::generate();
    let mut charge = one_off_charge_with_id(charge_id.clone(), "cust-1", None);
    charge.state = ChargeState::Paid {
        transaction: TransactionId::parse("P0003").unwrap(),
        auth_code: None,
        paid_at: utc(NOON),
    };
    let charge_order = OrderId::for_one_off(&charge_id).to_string();
    w.put(charge).await;
    w.oen.add("P0001", &first, 500, "charged", 0, NOON);
    w.oen.add("P0002", &second, 500, "claimed", 0, NOON);
    w.oen.add("P0003", &charge_order, 150, "charged", 0, NOON);
    w.oen.add("P0004", "someone-else", 99, "failed", 0, NOON);

    // WHEN the 00:30 run reconciles the day before.
    let outcome = w.run(scheduled()).await.unwrap();

    // THEN every transaction is seen, ours are matched, nothing is off.
    let RunOutcome::Completed(view) = outcome else {
        panic!("not completed: {outcome:?}")
    };
    assert_eq!(view.date, date(DAY));
    assert!(view.complete);
    assert_eq!(
        (
            view.counts.transactions,
            view.counts.matched,
            view.finding_count
        ),
        (4, 3, 0)
    );
    assert!(view.findings.is_empty());
    assert_eq!(w.oen.asked()[0].start, date(DAY));
    assert_eq!(w.oen.asked()[0].end, date(DAY));
    assert_eq!(w.oen.asked()[0].page, None);
    // AND reconciliation.completed went out once with the counts.
    let events = w.completion_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "reconciliation.completed:2026-11-29:1");
    assert_eq!(events[0].data["counts"]["transactions"], 4);
    assert_eq!(events[0].data["findings"], 0);
    assert_eq!(w.stored().await, view);
}

#[tokio::test]
async fn each_kind_of_discrepancy_is_found_exactly_once() {
    // GIVEN paid periods 0..=4 and, at Oen: their payments, an orphan, a mismatched amount, a
    // second payment of period 2, a refund of period 3 we never made, and a payment of
    // period 5 that we still hold as unknown.
    let w = World::new();
    let o0 = w.paid_period(0, "P0000").await;
    let o1 = w.paid_period(1, "P0001").await;
    let o2 = w.paid_period(2, "P0002").await;
    let o3 = w.paid_period(3, "P0003").await;
    let unknown = period(
        &w.sub,
        5,
        PeriodState::Unknown {
            since: utc(NOON),
            reconcile_at: utc(NOON),
            checks: 1,
        },
    );
    let o5 = unknown.order_id.to_string();
    w.put(unknown).await;
    w.oen.add("P0000", &o0, 500, "charged", 0, NOON);
    w.oen.add("P0001", &o1, 650, "charged", 0, NOON);
    w.oen.add("P0002", &o2, 500, "charged", 0, NOON);
    w.oen.add("P0022", &o2, 500, "charged", 0, NOON);
    w.oen.add("P0003", &o3, 500, "refunded", 200, NOON);
    w.oen.add("P0005", &o5, 500, "charged", 0, NOON);
    w.oen.add("P0009", "not-our-order", 777, "charged", 0, NOON);

    let view = w.run(scheduled()).await.unwrap().report().clone();

    let mut found = kinds_of(&view);
    found.sort();
    assert_eq!(
        found,
        [
            (FindingKind::Orphan, "P0009".into()),
            (FindingKind::AmountMismatch, "P0001".into()),
            (FindingKind::DoubleCharge, "P0022".into()),
            (FindingKind::ForeignRefund, "P0003".into()),
            (FindingKind::Unsettled, "P0005".into()),
        ]
    );
    let c = view.counts;
    assert_eq!(
        (c.transactions, c.matched, c.orphans, c.amount_mismatches),
        (7, 6, 1, 1)
    );
    assert_eq!(
        (c.double_charges, c.foreign_refunds, c.unsettled),
        (1, 1, 1)
    );
    let mismatch = view
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::AmountMismatch)
        .unwrap();
    assert_eq!(
        (mismatch.amount, mismatch.expected_amount),
        (650, Some(500))
    );
    assert_eq!(mismatch.order_id, o1);
    assert_eq!(w.completion_events()[0].data["findings"], 5);
}

#[tokio::test]
async fn a_duplicate_the_charger_refunded_is_a_double_charge_but_not_a_foreign_refund() {
    let w = World::new();
    let mut p = period(
        &w.sub,
        0,
        PeriodState::Paid {
            transaction: TransactionId::parse("P0001").unwrap(),
            auth_code: None,
            paid_at: utc(NOON),
        },
    );
    p.anomalies.push(PaymentAnomaly {
        transaction: TransactionId::parse("P0002").unwrap(),
        amount: 500,
        kind: AnomalyKind::Duplicate,
        detected_at: utc(NOON),
        refund: AnomalyRefund::Refunded {
            amount: Amount::new(500).unwrap(),
            at: utc(NOON),
        },
    });
    let order = p.order_id.to_string();
    w.put(p).await;
    w.oen.add("P0001", &order, 500, "charged", 0, NOON);
    w.oen.add("P0002", &order, 500, "refunded", 500, NOON);

    let view = w.run(scheduled()).await.unwrap().report().clone();

    assert_eq!(
        kinds_of(&view),
        [(FindingKind::DoubleCharge, "P0002".into())]
    );
}

/// GIVEN `n` paid periods at Oen, with an orphan at each of the listed positions (oldest 0).
async fn world_with_pages(n: u32, orphans_at: &[u32]) -> World {
    let w = World::new();
    for i in 0..n {
        let id = format!("P{i:04}");
        if orphans_at.contains(&i) {
            w.oen
                .add(&id, &format!("foreign{i}"), 100, "charged", 0, NOON);
        } else {
            let order = w.paid_period(i, &id).await;
            w.oen.add(&id, &order, 500, "charged", 0, NOON);
        }
    }
    w
}

#[tokio::test]
async fn paging_across_page_boundaries_counts_every_transaction_once() {
    // 120 transactions listed newest first: pages 119..70, 69..20, 19..0. Orphans on both
    // sides of each boundary.
    let w = world_with_pages(120, &[70, 69, 20, 19, 0, 119]).await;

    let view = w.run(scheduled()).await.unwrap().report().clone();

    assert!(view.complete);
    assert_eq!(view.pages_read, 3);
    assert_eq!(
        (
            view.counts.transactions,
            view.counts.matched,
            view.counts.orphans
        ),
        (120, 114, 6)
    );
    let mut orphans: Vec<String> = view
        .findings
        .iter()
        .map(|f| f.transaction.to_string())
        .collect();
    orphans.sort();
    assert_eq!(
        orphans,
        ["P0000", "P0019", "P0020", "P0069", "P0070", "P0119"]
    );
    let pages: Vec<Option<String>> = w
        .oen
        .asked()
        .iter()
        .map(|q| q.page.as_ref().map(|p| p.to_string()))
        .collect();
    assert_eq!(pages, [None, Some("P0070".into()), Some("P0020".into())]);
}

#[tokio::test]
async fn exactly_fifty_transactions_are_one_page() {
    let w = world_with_pages(50, &[0, 49]).await;

    let view = w.run(scheduled()).await.unwrap().report().clone();

    assert_eq!(
        (
            view.pages_read,
            view.counts.transactions,
            view.counts.orphans
        ),
        (1, 50, 2)
    );
    assert_eq!(w.oen.asked().len(), 1);
}

#[tokio::test]
async fn an_oen_failure_mid_paging_leaves_a_resumable_report_that_is_not_complete() {
    // GIVEN 120 transactions and an Oen that fails the second page.
    let w = world_with_pages(120, &[100, 30]).await;
    *w.oen.fail_call.lock().unwrap() = Some(2);

    // WHEN the run meets the failure.
    let err = w.run(scheduled()).await.unwrap_err();

    // THEN it says where it stopped; the stored report is marked incomplete with the first
    // page's counts, and nothing was announced.
    assert!(
        matches!(
            &err,
            ReconcileError::Oen {
                pages_read: 1,
                run: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("after 1 page(s)"), "{err}");
    let half = w.stored().await;
    assert!(!half.complete);
    assert_eq!(half.completed_at, None);
    assert_eq!(
        (
            half.pages_read,
            half.counts.transactions,
            half.counts.orphans
        ),
        (1, 50, 1)
    );
    assert!(w.completion_events().is_empty());

    // WHEN the retry runs.
    let view = w.run(scheduled()).await.unwrap().report().clone();

    // THEN it continues from the second page: nothing read twice, nothing missed.
    let pages: Vec<Option<String>> = w
        .oen
        .asked()
        .iter()
        .map(|q| q.page.as_ref().map(|p| p.to_string()))
        .collect();
    assert_eq!(
        pages,
        [
            None,
            Some("P0070".into()),
            Some("P0070".into()),
            Some("P0020".into())
        ]
    );
    assert!(view.complete);
    assert_eq!(view.run, 1);
    assert_eq!((view.counts.transactions, view.counts.orphans), (120, 2));
    assert_eq!(w.completion_events().len(), 1);
}

#[tokio::test]
async fn a_run_that_reaches_its_page_limit_pauses_and_the_next_one_finishes() {
    let w = world_with_pages(120, &[5]).await;
    let one_page = ReconcileLimits {
        max_pages: Some(1),
        ..ReconcileLimits::default()
    };

    let first = run(&w.deps, scheduled(), None, one_page).await.unwrap();
    let RunOutcome::Paused(paused) = first else {
        panic!("not paused: {first:?}")
    };
    assert_eq!((paused.complete, paused.pages_read), (false, 1));
    let second = run(&w.deps, scheduled(), None, one_page).await.unwrap();
    assert!(matches!(second, RunOutcome::Paused(ref v) if v.pages_read == 2));
    let third = run(&w.deps, scheduled(), None, one_page).await.unwrap();

    let RunOutcome::Completed(view) = third else {
        panic!("not completed: {third:?}")
    };
    assert_eq!((view.counts.transactions, view.counts.orphans), (120, 1));
    assert_eq!(w.oen.asked().len(), 3);
}

#[tokio::test]
async fn no_page_is_asked_for_when_the_deadline_is_too_close() {
    let w = world_with_pages(10, &[]).await;
    let deadline = w.clock.now() + Duration::seconds(10);

    let outcome = run(
        &w.deps,
        scheduled(),
        Some(deadline),
        ReconcileLimits::default(),
    )
    .await
    .unwrap();

    assert!(matches!(outcome, RunOutcome::Paused(ref v) if v.pages_read == 0 && !v.complete));
    assert!(w.oen.asked().is_empty());
    let later = run(&w.deps, scheduled(), None, ReconcileLimits::default()).await;
    assert_eq!(later.unwrap().report().counts.transactions, 10);
}

#[tokio::test]
async fn a_scheduled_retry_of_a_complete_day_does_nothing_and_a_rerun_replaces_it_identically() {
    let w = world_with_pages(60, &[3, 55]).await;
    let first = w.run(scheduled()).await.unwrap().report().clone();

    let retried = w.run(scheduled()).await.unwrap();
    assert!(matches!(retried, RunOutcome::AlreadyComplete(ref v) if *v == first));
    assert_eq!(w.oen.asked().len(), 2, "no page read again");

    w.clock.advance(Duration::hours(3));
    let rerun = w.run(ReconcileJob::rerun(date(DAY))).await.unwrap();
    let RunOutcome::Completed(second) = rerun else {
        panic!("not completed: {rerun:?}")
    };
    assert_eq!(second.run, 2);
    assert_eq!(second.counts, first.counts);
    assert_eq!(second.findings, first.findings);
    assert_eq!(w.stored().await, second);
    let ids: Vec<String> = w.completion_events().into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [
            "reconciliation.completed:2026-11-29:1",
            "reconciliation.completed:2026-11-29:2"
        ]
    );
}

#[tokio::test]
async fn the_day_is_taipei_midnight_to_midnight() {
    // GIVEN Oen lists, for the day, transactions at its first and last second in Taipei, and
    // (as a wider window would) one a millisecond before and one at the next midnight.
    let w = World::new();
    w.oen.add(
        "P0001",
        "before",
        100,
        "charged",
        0,
        "2026-11-28T15:59:59.999Z",
    );
    w.oen.add(
        "P0002",
        "first",
        100,
        "charged",
        0,
        "2026-11-28T16:00:00.000Z",
    );
    w.oen.add(
        "P0003",
        "last",
        100,
        "charged",
        0,
        "2026-11-29T15:59:59.000Z",
    );
    w.oen.add(
        "P0004",
        "after",
        100,
        "charged",
        0,
        "2026-11-29T16:00:00.000Z",
    );

    let view = w.run(scheduled()).await.unwrap().report().clone();

    let mut seen: Vec<String> = view.findings.iter().map(|f| f.order_id.clone()).collect();
    seen.sort();
    assert_eq!(seen, ["first", "last"]);
    assert_eq!(view.counts.transactions, 2);
}

#[tokio::test]
async fn a_day_that_has_not_ended_in_taipei_is_refused() {
    let w = World::new();
    w.clock.set(utc("2026-11-29T15:59:59Z"));

    let err = w.run(ReconcileJob::rerun(date(DAY))).await.unwrap_err();

    assert_eq!(err, ReconcileError::DayNotOver { date: date(DAY) });
    assert!(w.oen.asked().is_empty());
    assert_eq!(report(&*w.store, date(DAY)).await.unwrap(), None);
}

#[tokio::test]
async fn a_concurrent_run_of_the_same_day_stops_instead_of_overwriting() {
    let w = world_with_pages(60, &[]).await;
    let one_page = ReconcileLimits {
        max_pages: Some(1),
        ..ReconcileLimits::default()
    };
    run(&w.deps, scheduled(), None, one_page).await.unwrap();
    // Someone else's run writes the report meanwhile.
    let stored = w.store.reconciliation(date(DAY)).await.unwrap().unwrap();
    let mut theirs = stored.value.clone();
    theirs.updated_at += Duration::seconds(1);
    w.store
        .commit(vec![Put::new(theirs, Expect::Version(stored.version))])
        .await
        .unwrap();
    // A run that read the report before that write loses the compare-and-set.
    let err = save(&*w.store, &stored.value, Expect::Version(stored.version))
        .await
        .unwrap_err();
    assert_eq!(err, ReconcileError::Concurrent { date: date(DAY) });
}

#[test]
fn the_report_view_is_camel_case_json_with_the_date_as_written() {
    let mut report = ReconciliationReport::started(date(DAY), 1, utc(NOON));
    report.add_finding(crate::domain::Finding {
        kind: FindingKind::DoubleCharge,
        transaction: TransactionId::parse("P20261129AB12CD34").unwrap(),
        order_id: "AbCdEfGhIjKlMnOpP000001".into(),
        status: "charged".into(),
        amount: 500,
        expected_amount: Some(500),
        refund_amount: None,
        recorded_transaction: Some(TransactionId::parse("P20261129ZZ12CD34").unwrap()),
        created_at: Some(NOON.into()),
    });
    let json = serde_json::to_value(ReportView::of(&report)).unwrap();
    assert_eq!(json["date"], "2026-11-29");
    assert_eq!(json["complete"], false);
    assert_eq!(json["counts"]["doubleCharges"], 1);
    assert_eq!(json["findingCount"], 1);
    assert_eq!(json["findings"][0]["kind"], "double_charge");
    assert_eq!(
        json["findings"][0]["recordedTransaction"],
        "P20261129ZZ12CD34"
    );
    assert_eq!(json["findingsTruncated"], false);
    let back: ReportView = serde_json::from_value(json).unwrap();
    assert_eq!(back, ReportView::of(&report));
}

#[test]
fn findings_beyond_the_listed_maximum_are_counted_not_listed() {
    let mut report = ReconciliationReport::started(date(DAY), 1, utc(NOON));
    for i in 0..crate::domain::MAX_LISTED_FINDINGS + 3 {
        report.add_finding(crate::domain::Finding {
            kind: FindingKind::Orphan,
            transaction: TransactionId::parse(&format!("P{i:06}")).unwrap(),
            order_id: "x".into(),
            status: "charged".into(),
            amount: 1,
            expected_amount: None,
            refund_amount: None,
            recorded_transaction: None,
            created_at: None,
        });
    }
    let view = ReportView::of(&report);
    assert_eq!(view.findings.len(), crate::domain::MAX_LISTED_FINDINGS);
    assert_eq!(
        view.finding_count as usize,
        crate::domain::MAX_LISTED_FINDINGS + 3
    );
    assert!(view.findings_truncated);
}
