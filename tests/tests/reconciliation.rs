//! The daily reconciliation end to end: the charger charges real subscriptions (moto's DynamoDB
//! and KMS, the simulator as Oen), money then moves at Oen outside our code, and the charger's
//! reconcile job, invoked as Lambda would with the template's schedule Input, finds exactly
//! that in the day's list.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use lambda_runtime::{Context, LambdaEvent};
use oen_pay::clock::Clock;
use oen_pay::domain::{taipei_time, EventType, FindingKind, OrderId};
use oen_pay::reconcile::{self, ReportView};
use oen_pay_integration::repo_root;
use oen_pay_integration::stack::{stack, Stack};
use oen_sim::{cards, ForceTarget};
use serde_json::{json, Value};

/// Every transaction of these tests is made on 31 January 2027, Taipei.
fn the_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2027, 1, 31).unwrap()
}

/// A stack whose simulator clock stands still at the stack's clock (10:00 Taipei on the day),
/// so that every transaction's creation time is known.
async fn frozen_stack() -> Stack {
    let s = stack().await;
    s.sim.freeze_clock(true);
    s.sim.set_clock(s.clock.now());
    s
}

async fn invoke(s: &Stack, payload: Value) -> Result<Value, charger::ChargerError> {
    let mut context = Context::default();
    context.request_id = "req-reconcile".into();
    context.deadline = (s.clock.now().timestamp_millis() + 60_000) as u64;
    charger::handle(
        Arc::new(s.deps.clone()),
        charger::Settings::with_concurrency(4),
        LambdaEvent::new(payload, context),
    )
    .await
}

/// The template's reconcile schedule Input, rendered by Scheduler at `at`.
fn scheduled_input(at: DateTime<Utc>) -> Value {
    let sample = std::fs::read_to_string(repo_root().join("events/charger-reconcile.json"));
    let mut input: Value = serde_json::from_str(&sample.unwrap()).unwrap();
    input["scheduledTime"] = at.to_rfc3339().into();
    input
}

/// 00:30 Taipei on the day after: the schedule's run, on both clocks.
fn run_time(s: &Stack) -> DateTime<Utc> {
    let at = taipei_time(2027, 2, 1, 0, 30);
    s.clock.set(at);
    s.sim.set_clock(at);
    at
}

/// Binds `customers` and charges their first period through the charger (its schedule, then
/// its work messages). The P… number of each customer's payment.
async fn charge(s: &Stack, customers: &[&str]) -> Vec<String> {
    for c in customers {
        s.bind(c, "premium", cards::SUCCESS).await;
    }
    let out = invoke(s, json!({"scheduledTime": s.clock.now().to_rfc3339()}))
        .await
        .unwrap();
    assert_eq!(out["plannedShards"], 16);
    s.drain().await;
    let mut paid = Vec::new();
    for c in customers {
        let sub = s.sub(c, "premium").await;
        let order = OrderId::for_period(&sub.id, 0);
        let ledger = s.sim.ledger_for_order(order.as_str());
        assert_eq!(ledger.len(), 1, "{c} charged once");
        paid.push(ledger[0].id.clone());
    }
    s.assert_ledger_agrees(
        &customers
            .iter()
            .map(|c| (*c, "premium"))
            .collect::<Vec<_>>(),
    )
    .await;
    paid
}

fn findings(view: &ReportView) -> Vec<(FindingKind, String)> {
    let mut f: Vec<(FindingKind, String)> = view
        .findings
        .iter()
        .map(|f| (f.kind, f.transaction.to_string()))
        .collect();
    f.sort();
    f
}

#[tokio::test]
async fn an_orphan_a_mismatch_a_double_charge_and_a_foreign_refund_are_each_found_once() {
    // GIVEN four subscriptions charged by the charger on the day.
    let s = frozen_stack().await;
    let paid = charge(&s, &["cust-a", "cust-b", "cust-c", "cust-d"]).await;
    let order_c = OrderId::for_period(&s.sub("cust-c", "premium").await.id, 0);
    // AND money moving at Oen outside our code, the same day.
    s.sim.advance_clock(std::time::Duration::from_secs(60));
    let orphan = s.sim.inject_paid("ShopifyOrder4711", 990).unwrap();
    s.sim.inject_amount(&paid[1], 650).unwrap();
    let double = s.sim.inject_second_payment(order_c.as_str()).unwrap();
    s.sim.inject_refund(&paid[3], Some(100)).unwrap();

    // WHEN the schedule runs the reconciliation at 00:30 the next day.
    let at = run_time(&s);
    let answer = invoke(&s, scheduled_input(at)).await.unwrap();

    // THEN each is found exactly once, and nothing else.
    assert_eq!(answer["reconciliation"], "completed", "{answer}");
    let view = reconcile::report(&*s.deps.store, the_day())
        .await
        .unwrap()
        .unwrap();
    assert!(view.complete);
    assert_eq!(
        findings(&view),
        [
            (FindingKind::Orphan, orphan.clone()),
            (FindingKind::AmountMismatch, paid[1].clone()),
            (FindingKind::DoubleCharge, double.clone()),
            (FindingKind::ForeignRefund, paid[3].clone()),
        ]
    );
    let c = view.counts;
    assert_eq!((c.transactions, c.matched), (6, 5));
    assert_eq!(
        (
            c.orphans,
            c.amount_mismatches,
            c.double_charges,
            c.foreign_refunds,
            c.unsettled
        ),
        (1, 1, 1, 1, 0)
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
    let refund = view
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::ForeignRefund)
        .unwrap();
    assert_eq!(refund.refund_amount, Some(100));
    // The report and the answer never carry a card token.
    let text = answer.to_string();
    for entry in s.sim.ledger() {
        if !entry.token.is_empty() {
            assert!(!text.contains(&entry.token), "a token in the answer");
        }
    }
    // AND reconciliation.completed went out with the counts.
    let completed: Vec<_> = s
        .events
        .all()
        .into_iter()
        .filter(|e| e.kind == EventType::ReconciliationCompleted)
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].id, "reconciliation.completed:2027-01-31:1");
    assert_eq!(completed[0].data["counts"]["doubleCharges"], 1);
    assert_eq!(completed[0].data["findings"], 4);

    // WHEN the schedule's retry comes, and then a person re-runs the day.
    let retry = invoke(&s, scheduled_input(at)).await.unwrap();
    assert_eq!(retry["reconciliation"], "already_complete", "{retry}");
    let manual = std::fs::read_to_string(repo_root().join("events/charger-reconcile-date.json"));
    let mut manual: Value = serde_json::from_str(&manual.unwrap()).unwrap();
    manual["date"] = "2027-01-31".into();
    let rerun = invoke(&s, manual).await.unwrap();

    // THEN the re-run replaces the report with the same findings, under a new run.
    assert_eq!(rerun["reconciliation"], "completed", "{rerun}");
    let again = reconcile::report(&*s.deps.store, the_day())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.run, 2);
    assert_eq!(
        (again.counts, findings(&again)),
        (view.counts, findings(&view))
    );
    assert_eq!(
        s.events
            .all()
            .iter()
            .filter(|e| e.kind == EventType::ReconciliationCompleted)
            .count(),
        2
    );
}

#[tokio::test]
async fn more_than_a_page_is_read_whole_and_the_day_ends_at_taipei_midnight() {
    // GIVEN two real charges and 58 orphans on the day (60: two pages), one orphan at
    // 23:59:59 Taipei and one at 00:00:00 the next day.
    let s = frozen_stack().await;
    charge(&s, &["cust-a", "cust-b"]).await;
    let mut orphans = Vec::new();
    for i in 0..57 {
        s.sim.advance_clock(std::time::Duration::from_secs(1));
        orphans.push(s.sim.inject_paid(&format!("elsewhere{i}"), 100).unwrap());
    }
    s.sim
        .set_clock(taipei_time(2027, 1, 31, 23, 59) + Duration::seconds(59));
    let last_second = s.sim.inject_paid("lastSecond", 100).unwrap();
    orphans.push(last_second.clone());
    s.sim.set_clock(taipei_time(2027, 2, 1, 0, 0));
    let next_day = s.sim.inject_paid("nextDay", 100).unwrap();

    let at = run_time(&s);
    let answer = invoke(&s, scheduled_input(at)).await.unwrap();

    assert_eq!(answer["reconciliation"], "completed", "{answer}");
    let view = reconcile::report(&*s.deps.store, the_day())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.pages_read, 2);
    assert_eq!(
        (
            view.counts.transactions,
            view.counts.matched,
            view.counts.orphans
        ),
        (60, 2, 58)
    );
    let mut found: Vec<String> = view
        .findings
        .iter()
        .map(|f| f.transaction.to_string())
        .collect();
    found.sort();
    orphans.sort();
    assert_eq!(found, orphans, "every orphan once, none of the next day");
    assert!(!found.contains(&next_day));

    // The next day's run finds its first-second orphan, and nothing of the day before.
    s.clock.set(taipei_time(2027, 2, 2, 0, 30));
    s.sim.set_clock(taipei_time(2027, 2, 2, 0, 30));
    invoke(&s, scheduled_input(s.clock.now())).await.unwrap();
    let next = reconcile::report(&*s.deps.store, NaiveDate::from_ymd_opt(2027, 2, 1).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(findings(&next), [(FindingKind::Orphan, next_day)]);
    assert_eq!(next.counts.transactions, 1);
}

#[tokio::test]
async fn an_oen_error_mid_paging_fails_the_run_keeps_its_page_and_the_retry_finishes() {
    // GIVEN 60 transactions of the day (two pages), and Oen failing the second page.
    let s = frozen_stack().await;
    charge(&s, &["cust-a"]).await;
    for i in 0..59 {
        s.sim.advance_clock(std::time::Duration::from_secs(1));
        s.sim.inject_paid(&format!("elsewhere{i}"), 100).unwrap();
    }
    let at = run_time(&s);
    // The first page answers; the second fails on every attempt of the client's retries.
    let first_page = invoke_with_failing_second_page(&s, at).await;

    // THEN the invocation failed, saying where it stopped; the stored report is not complete.
    let message = first_page.to_string();
    assert!(message.contains("after 1 page(s)"), "{message}");
    let half = reconcile::report(&*s.deps.store, the_day())
        .await
        .unwrap()
        .unwrap();
    assert!(!half.complete);
    assert_eq!((half.pages_read, half.counts.transactions), (1, 50));
    assert!(s
        .events
        .all()
        .iter()
        .all(|e| e.kind != EventType::ReconciliationCompleted));

    // WHEN Lambda retries the invocation.
    let answer = invoke(&s, scheduled_input(at)).await.unwrap();

    // THEN it continues from the second page: the day is whole, nothing counted twice.
    assert_eq!(answer["reconciliation"], "completed", "{answer}");
    let view = reconcile::report(&*s.deps.store, the_day())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((view.run, view.pages_read), (1, 2));
    assert_eq!(
        (
            view.counts.transactions,
            view.counts.matched,
            view.counts.orphans
        ),
        (60, 1, 59)
    );
}

/// Runs the schedule's reconciliation with the simulator failing every listing after the
/// first page (F0001, as often as the client retries), then lets it answer again.
async fn invoke_with_failing_second_page(s: &Stack, at: DateTime<Utc>) -> charger::ChargerError {
    let one_page = reconcile::ReconcileLimits {
        max_pages: Some(1),
        ..Default::default()
    };
    // Read the first page the way the job does, then make Oen fail.
    let job = reconcile::ReconcileJob::scheduled(at);
    let paused = reconcile::run(&s.deps, job, None, one_page).await.unwrap();
    assert!(matches!(paused, reconcile::RunOutcome::Paused(ref v) if v.pages_read == 1));
    s.sim.force_next_times(
        ForceTarget::TransactionList,
        serde_json::from_value(json!({"kind": "respond", "code": "F0001", "httpStatus": 500}))
            .unwrap(),
        10,
    );
    let err = invoke(s, scheduled_input(at)).await.unwrap_err();
    s.sim.clear_forced();
    err
}

#[tokio::test]
async fn an_invocation_too_close_to_its_deadline_pauses_fails_and_its_retry_reconciles() {
    let s = frozen_stack().await;
    let paid = charge(&s, &["cust-a"]).await;
    let at = run_time(&s);
    let mut context = Context::default();
    context.request_id = "req-late".into();
    // Twenty seconds left: less than the margin a page needs.
    context.deadline = (s.clock.now().timestamp_millis() + 20_000) as u64;

    let err = charger::handle(
        Arc::new(s.deps.clone()),
        charger::Settings::with_concurrency(1),
        LambdaEvent::new(scheduled_input(at), context),
    )
    .await
    .unwrap_err();

    assert!(
        err.to_string()
            .contains("paused before the invocation's deadline after 0 page(s)"),
        "{err}"
    );
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "ChargerError::Reconcile"
    );
    let stored = reconcile::report(&*s.deps.store, the_day())
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.complete);
    let answer = invoke(&s, scheduled_input(at)).await.unwrap();
    assert_eq!(answer["reconciliation"], "completed", "{answer}");
    assert_eq!(answer["report"]["counts"]["matched"], 1);
    assert_eq!(answer["report"]["findingCount"], 0, "{answer} ({paid:?})");
}

/// A reconciliation Scheduler could not deliver, redriven from its dead-letter queue
/// (`oen_pay::deadletter`), arrives as a message on the charge queue: too close to the
/// deadline it is handed back to SQS, and its redelivery reconciles the day.
#[tokio::test]
async fn a_redriven_reconciliation_on_the_queue_is_handed_back_when_late_and_then_completes() {
    let s = frozen_stack().await;
    charge(&s, &["cust-a"]).await;
    run_time(&s);
    let message = oen_pay::queue::WorkMessage::Reconcile {
        date: the_day(),
        rerun: false,
    };
    let batch = json!({"Records": [{
        "messageId": "m-reconcile",
        "receiptHandle": "r",
        "body": serde_json::to_string(&message).unwrap(),
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:ap-northeast-1:123456789012:charges",
        "awsRegion": "ap-northeast-1"
    }]});
    let deliver = |seconds_left: i64| {
        let mut context = Context::default();
        context.request_id = format!("req-{seconds_left}");
        context.deadline = (s.clock.now().timestamp_millis() + seconds_left * 1000) as u64;
        charger::handle(
            Arc::new(s.deps.clone()),
            charger::Settings::with_concurrency(1),
            LambdaEvent::new(batch.clone(), context),
        )
    };
    let late = deliver(20).await.unwrap();
    assert_eq!(
        late["batchItemFailures"],
        json!([{"itemIdentifier": "m-reconcile"}]),
        "{late}"
    );
    assert!(!reconcile::report(&*s.deps.store, the_day())
        .await
        .unwrap()
        .is_some_and(|r| r.complete));
    let redelivered = deliver(60).await.unwrap();
    assert_eq!(redelivered["batchItemFailures"], json!([]), "{redelivered}");
    let view = reconcile::report(&*s.deps.store, the_day())
        .await
        .unwrap()
        .unwrap();
    assert!(view.complete);
    assert_eq!(view.counts.matched, 1);
}
