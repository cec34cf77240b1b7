//! The charging invariants, proven against moto (DynamoDB, KMS) and the Oen simulator: after
//! every scenario, "exactly one charged transaction per paid period, none for an unpaid one, and
//! our records agree with Oen's ledger".

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use oen_pay::charging::{self, WorkOutcome};
use oen_pay::clock::Clock;
use oen_pay::dev;
use oen_pay::domain::{taipei_date, CustomerId, OrderId, PlanId};
use oen_pay::queue::WorkMessage;
use oen_pay::store::{Expect, PeriodState, Put, StoreExt, SubscriptionStatus};
use oen_pay_integration::stack::{stack, stack_with, worker, Stack};
use oen_sim::{cards, ForceTarget, ForcedOutcome};

#[tokio::test]
async fn pays_one_period_after_another_with_month_ends_clamped() {
    let s = stack().await;
    s.bind("cust-1", "premium", cards::SUCCESS).await;
    let mut due_dates = Vec::new();
    for _ in 0..4 {
        let sub = s.sub("cust-1", "premium").await;
        let due = sub.next_action_at.unwrap();
        due_dates.push(taipei_date(due));
        s.clock.set(due);
        let outcomes = s.run().await;
        assert!(
            matches!(
                outcomes.as_slice(),
                [WorkOutcome::Paid { charged: true, .. }]
            ),
            "{outcomes:?}"
        );
        // Running again in the same minute finds nothing due.
        assert!(s.run().await.is_empty());
    }
    assert_eq!(
        due_dates,
        ["2027/01/31", "2027/02/28", "2027/03/31", "2027/04/30"]
    );
    let sub = s.sub("cust-1", "premium").await;
    assert_eq!(sub.period, 4);
    assert_eq!(taipei_date(sub.next_action_at.unwrap()), "2027/05/31");
    assert_eq!(s.sim.ledger().len(), 4);
    s.assert_ledger_agrees(&[("cust-1", "premium")]).await;
    let paid: Vec<_> = s
        .events
        .all()
        .into_iter()
        .filter(|e| e.kind == "payment.succeeded")
        .map(|e| e.id)
        .collect();
    assert_eq!(paid.len(), 4);
}

#[tokio::test]
async fn a_trial_delays_the_first_charge() {
    let s = stack().await;
    s.bind("cust-t", "trial", cards::SUCCESS).await;
    assert!(s.run().await.is_empty());
    s.advance(Duration::days(13));
    // The first charge after the trial is announced (RENEWAL_NOTICE_DAYS), not charged early.
    let first_due = s.sub("cust-t", "trial").await.next_action_at.unwrap();
    assert_eq!(
        s.run().await,
        [WorkOutcome::Noticed {
            period: 0,
            charge_at: first_due
        }]
    );
    assert!(s.sim.ledger().is_empty());
    s.advance(Duration::days(1));
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { .. }]
    ));
    s.assert_ledger_agrees(&[("cust-t", "trial")]).await;
}

#[tokio::test]
async fn a_soft_decline_is_retried_on_the_dunning_schedule_with_the_same_order() {
    let s = stack().await;
    s.bind("cust-s", "premium", &cards::succeeds_after_failures(1))
        .await;
    let outcomes = s.run().await;
    assert!(
        matches!(outcomes.as_slice(), [WorkOutcome::SoftDeclined { .. }]),
        "{outcomes:?}"
    );
    let sub = s.sub("cust-s", "premium").await;
    assert_eq!(sub.status, SubscriptionStatus::PastDue);
    assert_eq!(sub.next_action_at, Some(s.clock.now() + Duration::days(1)));
    s.advance(Duration::hours(23));
    assert!(s.run().await.is_empty(), "retried before the schedule");
    s.advance(Duration::hours(1));
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { charged: true, .. }]
    ));
    let sub = s.sub("cust-s", "premium").await;
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.dunning_attempts, 0);
    assert_eq!(
        s.ledger_for(&OrderId::for_period(&sub.id, 0)),
        ["failed", "charged"]
    );
    s.assert_ledger_agrees(&[("cust-s", "premium")]).await;
}

#[tokio::test]
async fn exhausted_dunning_cancels_without_a_charge() {
    let s = stack().await;
    s.bind("cust-x", "premium", cards::DECLINE_T0004_INSUFFICIENT_FUNDS)
        .await;
    let mut outcomes = s.run().await;
    for wait in [1, 3, 5, 7] {
        s.advance(Duration::days(wait));
        outcomes.extend(s.run().await);
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, WorkOutcome::SoftDeclined { .. }))
            .count(),
        4,
        "{outcomes:?}"
    );
    assert_eq!(outcomes.last(), Some(&WorkOutcome::Canceled));
    let sub = s.sub("cust-x", "premium").await;
    assert_eq!(sub.status, SubscriptionStatus::Canceled);
    assert_eq!(sub.next_action_at, None);
    s.advance(Duration::days(60));
    assert!(s.run().await.is_empty());
    assert_eq!(s.ledger_for(&OrderId::for_period(&sub.id, 0)).len(), 5);
    assert!(s
        .events
        .all()
        .iter()
        .any(|e| e.kind == "subscription.canceled"));
    s.assert_ledger_agrees(&[("cust-x", "premium")]).await;
}

#[tokio::test]
async fn a_hard_decline_waits_for_a_new_card_and_rebinding_resumes() {
    let s = stack().await;
    s.bind("cust-h", "premium", cards::DECLINE_T0003_EXPIRED)
        .await;
    assert_eq!(s.run().await, [WorkOutcome::HardDeclined]);
    let sub = s.sub("cust-h", "premium").await;
    assert_eq!(sub.status, SubscriptionStatus::RequiresPaymentMethod);
    s.advance(Duration::days(30));
    assert!(s.run().await.is_empty(), "a hard decline is never retried");
    s.bind("cust-h", "premium", cards::SUCCESS).await;
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { charged: true, .. }]
    ));
    let after = s.sub("cust-h", "premium").await;
    assert_eq!(after.id, sub.id);
    assert_eq!(after.status, SubscriptionStatus::Active);
    assert_eq!(
        s.ledger_for(&OrderId::for_period(&sub.id, 0)),
        ["failed", "charged"]
    );
    s.assert_ledger_agrees(&[("cust-h", "premium")]).await;
}

/// Unknown outcome, then reconciliation to "paid" without a second charge.
async fn unknown_then_reconciled_paid(s: &Stack, customer: &str, settle: impl Fn()) {
    let outcomes = s.run().await;
    let [WorkOutcome::Unknown { reconcile_at }] = outcomes.as_slice() else {
        panic!("{outcomes:?}")
    };
    assert_eq!(*reconcile_at, s.clock.now() + Duration::minutes(5));
    let sub = s.sub(customer, "premium").await;
    assert!(matches!(
        s.period_state(&sub, 0).await,
        PeriodState::Unknown { .. }
    ));
    assert!(
        s.run().await.is_empty(),
        "an unknown period is not touched before its reconcile time"
    );
    settle();
    s.advance(Duration::minutes(5));
    let outcomes = s.run().await;
    assert!(
        matches!(
            outcomes.as_slice(),
            [WorkOutcome::Paid { charged: false, .. }]
        ),
        "{outcomes:?}"
    );
    assert_eq!(
        s.sim.ledger().len(),
        1,
        "reconciled without a second charge"
    );
    s.assert_ledger_agrees(&[(customer, "premium")]).await;
}

#[tokio::test]
async fn c026_that_later_commits_is_reconciled_to_paid() {
    let s = stack().await;
    s.bind("cust-c", "premium", cards::UNKNOWN_C026_THEN_CHARGED)
        .await;
    unknown_then_reconciled_paid(&s, "cust-c", || {
        s.sim.settle_pending();
    })
    .await;
}

#[tokio::test]
async fn gateway_timeout_after_commit_is_reconciled_to_paid() {
    let s = stack().await;
    s.bind("cust-g", "premium", cards::GATEWAY_TIMEOUT_AFTER_COMMIT)
        .await;
    unknown_then_reconciled_paid(&s, "cust-g", || {}).await;
}

#[tokio::test]
async fn a_connection_dropped_after_commit_is_reconciled_to_paid() {
    let s = stack().await;
    s.bind("cust-d", "premium", cards::CONNECTION_DROP_AFTER_COMMIT)
        .await;
    unknown_then_reconciled_paid(&s, "cust-d", || {}).await;
}

#[tokio::test]
async fn c026_that_later_fails_allows_a_new_attempt_under_the_same_order() {
    let s = stack().await;
    s.bind("cust-f", "premium", cards::SUCCESS).await;
    s.sim.force_next(
        ForceTarget::AnyCharge,
        ForcedOutcome::Unknown {
            settles: oen_sim::Settle::Failed,
        },
    );
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Unknown { .. }]
    ));
    s.sim.settle_pending();
    s.advance(Duration::minutes(5));
    // Reconciled as declined: a decline like any other, retried when dunning says.
    let outcomes = s.run().await;
    let [WorkOutcome::SoftDeclined { retry_at }] = outcomes.as_slice() else {
        panic!("expected a soft decline, got {outcomes:?}");
    };
    s.clock.set(*retry_at);
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { charged: true, .. }]
    ));
    let sub = s.sub("cust-f", "premium").await;
    assert_eq!(
        s.ledger_for(&OrderId::for_period(&sub.id, 0)),
        ["failed", "charged"]
    );
    s.assert_ledger_agrees(&[("cust-f", "premium")]).await;
}

#[tokio::test]
async fn a_lagging_order_query_keeps_the_period_unknown_until_it_catches_up() {
    let s = stack().await;
    s.bind("cust-l", "premium", cards::GATEWAY_TIMEOUT_AFTER_COMMIT)
        .await;
    s.sim.set_consistency_lag(StdDuration::from_secs(3600));
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Unknown { .. }]
    ));
    s.advance(Duration::minutes(5));
    // Oen still shows `charging`: never charge, back off further.
    let outcomes = s.run().await;
    let [WorkOutcome::Unknown { reconcile_at }] = outcomes.as_slice() else {
        panic!("{outcomes:?}")
    };
    assert_eq!(*reconcile_at, s.clock.now() + Duration::hours(1));
    let sub = s.sub("cust-l", "premium").await;
    assert!(matches!(
        s.period_state(&sub, 0).await,
        PeriodState::Unknown { checks: 1, .. }
    ));
    s.sim.advance_clock(StdDuration::from_secs(3601));
    s.advance(Duration::hours(1));
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { charged: false, .. }]
    ));
    s.assert_ledger_agrees(&[("cust-l", "premium")]).await;
}

#[tokio::test]
async fn duplicate_deliveries_and_duplicate_planners_charge_once() {
    let s = stack().await;
    for i in 0..5 {
        s.bind(&format!("cust-{i}"), "premium", cards::SUCCESS)
            .await;
    }
    // Two planners in the same minute, and every charge message delivered twice.
    charging::schedule(&s.deps, s.clock.now()).await.unwrap();
    charging::schedule(&s.deps, s.clock.now()).await.unwrap();
    let mut plans = Vec::new();
    while let Some(m) = s.queue.pop() {
        plans.push(m);
    }
    for m in &plans {
        charging::handle(&s.deps, m, &worker("planner"))
            .await
            .unwrap();
    }
    let charges: Vec<WorkMessage> = s.queue.drain();
    assert_eq!(charges.len(), 10, "each planner enqueued each subscription");
    let mut outcomes = Vec::new();
    for m in charges.iter().chain(charges.iter()) {
        outcomes.push(
            charging::handle(&s.deps, m, &worker("worker-1"))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, WorkOutcome::Paid { .. }))
            .count(),
        5
    );
    assert_eq!(s.sim.ledger().len(), 5);
    let subs: Vec<(String, &str)> = (0..5).map(|i| (format!("cust-{i}"), "premium")).collect();
    let subs: Vec<(&str, &str)> = subs.iter().map(|(c, p)| (c.as_str(), *p)).collect();
    s.assert_ledger_agrees(&subs).await;
}

/// Workers arriving while the first is at Oen. The first claims the period before the others
/// start: moto's PutItem reads, checks and writes without a lock, so two simultaneous claims of
/// one item can both succeed there, which DynamoDB rules out. The free-for-all race runs on the
/// memory store (the soak's racing workers).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_arriving_while_the_first_is_at_oen_charge_once() {
    let s = Arc::new(stack().await);
    s.bind("cust-r", "premium", cards::SUCCESS).await;
    // A slow Oen keeps the first worker in flight while the others arrive.
    s.sim.set_latency(StdDuration::from_millis(1500));
    let customer = CustomerId::parse("cust-r").unwrap();
    let plan = PlanId::parse("premium").unwrap();
    let message = WorkMessage::Charge {
        customer: customer.clone(),
        plan: plan.clone(),
    };
    let spawn = |w: usize| {
        let s = s.clone();
        let m = message.clone();
        tokio::spawn(async move {
            charging::handle(&s.deps, &m, &worker(&format!("worker-{w}")))
                .await
                .unwrap()
        })
    };
    let mut tasks = vec![spawn(0)];
    let store = &s.deps.adapters.store;
    let sub = store.subscription(&customer, &plan).await.unwrap().unwrap();
    let claimed = std::time::Instant::now();
    while !store
        .recent_periods(&sub.value.id, 5)
        .await
        .unwrap()
        .iter()
        .any(|p| matches!(p.value.state, PeriodState::Charging { .. }))
    {
        assert!(
            claimed.elapsed() < StdDuration::from_secs(30),
            "never claimed"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    tasks.extend((1..6).map(spawn));
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, WorkOutcome::Paid { charged: true, .. }))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, WorkOutcome::Paid { .. } | WorkOutcome::Skipped(_))),
        "{outcomes:?}"
    );
    assert_eq!(s.sim.ledger().len(), 1);
    s.assert_ledger_agrees(&[("cust-r", "premium")]).await;
}

#[tokio::test]
async fn a_worker_that_vanished_holding_the_lease_is_reconciled_not_recharged() {
    let s = stack().await;
    let order = vanished_after_oen_charged(&s, "cust-k").await;
    assert!(
        s.run()
            .await
            .iter()
            .all(|o| matches!(o, WorkOutcome::Skipped(_))),
        "the lease is still held"
    );
    s.advance(Duration::seconds(61));
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { charged: false, .. }]
    ));
    assert_eq!(s.ledger_for(&order), ["charged"]);
    s.assert_ledger_agrees(&[("cust-k", "premium")]).await;
}

#[tokio::test]
async fn a_second_payment_found_on_an_einvoice_domain_is_refunded_with_its_lines() {
    // The vanished worker's order was paid twice; Oen issued e-invoices for both, so the
    // automatic refund of the second must name what it refunds (Oen refuses it otherwise).
    let s = stack().await;
    let order = vanished_after_oen_charged(&s, "cust-dup-inv").await;
    let second = s.sim.inject_second_payment(order.as_str()).unwrap();
    s.sim.set_einvoice(true);
    s.advance(Duration::seconds(61));
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { charged: false, .. }]
    ));
    let ledger = s.sim.ledger_for_order(order.as_str());
    let refunds: Vec<(&str, &str, i64)> = ledger
        .iter()
        .map(|e| {
            let which = if e.id == second { "second" } else { "first" };
            (which, e.status.as_str(), e.refund_amount)
        })
        .collect();
    assert_eq!(
        refunds,
        [("first", "charged", 0), ("second", "refunded", 500)]
    );
}

#[tokio::test]
async fn a_listing_that_lags_the_vanished_workers_charge_is_not_taken_for_no_attempt() {
    let s = stack().await;
    // Oen's order listing shows a transaction only two minutes after it was made.
    s.sim.freeze_clock(true);
    s.sim.set_clock(s.clock.now());
    s.sim.set_listing_delay(StdDuration::from_secs(120));
    let order = vanished_after_oen_charged(&s, "cust-lag").await;
    // The lease has run out, but the listing is too young to trust: unknown, never a charge.
    s.advance(Duration::seconds(61));
    s.sim.set_clock(s.clock.now());
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Unknown { .. }]
    ));
    assert_eq!(s.ledger_for(&order), ["charged"], "not charged twice");
    // Once the listing shows it, the period is reconciled to paid.
    s.advance(Duration::minutes(6));
    s.sim.set_clock(s.clock.now());
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { charged: false, .. }]
    ));
    assert_eq!(s.ledger_for(&order), ["charged"]);
    s.assert_ledger_agrees(&[("cust-lag", "premium")]).await;
}

/// A worker claimed the customer's first period, Oen charged it, and the worker died before it
/// wrote anything down (a crash simulated by a claim whose holder never writes back;
/// tests/tests/killed_worker.rs does the same with a real SIGKILL). Its lease ends in 60 s.
async fn vanished_after_oen_charged(s: &Stack, customer: &str) -> OrderId {
    s.bind(customer, "premium", cards::SUCCESS).await;
    let sub = s.sub(customer, "premium").await;
    let order = OrderId::for_period(&sub.id, 0);
    assert!(s.sim.ledger().is_empty());
    let claim = oen_pay::store::ChargePeriod {
        subscription: sub.id.clone(),
        period: 0,
        order_id: order.clone(),
        amount: oen_pay::domain::Amount::new(500).unwrap(),
        state: PeriodState::Charging {
            lease_owner: "dead-worker".into(),
            lease_until: s.clock.now() + Duration::seconds(60),
        },
        attempts: 0,
        last_error: None,
        updated_at: s.clock.now(),
        refunded: None,
        product_details: Vec::new(),
        anomalies: Vec::new(),
        customer: Some(sub.customer.clone()),
    };
    s.deps
        .store
        .commit(vec![Put::new(claim, Expect::Absent)])
        .await
        .unwrap();
    let card_token = s.sim.create_token(cards::SUCCESS);
    let plan = dev::dev_plans().lookup("premium").unwrap().clone();
    s.deps
        .oen
        .charge(&oen_pay::oen::ChargeRequest {
            token: oen_pay::domain::CardToken::parse(&card_token).unwrap(),
            order_id: order.clone(),
            amount: plan.amount,
            product_details: plan.product_details(),
            user_id: None,
            payer: Default::default(),
            note: None,
            send_within: None,
        })
        .await
        .unwrap();
    order
}

/// Serves the secret JSON; the first reads return a key Oen has since regenerated.
struct Rotated {
    reads: std::sync::atomic::AtomicUsize,
}

#[oen_pay::async_trait::async_trait]
impl oen_pay::secrets::FetchSecret for Rotated {
    async fn fetch(&self) -> Result<String, oen_pay::secrets::SecretError> {
        let n = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(dev::dev_secret_json(if n == 0 {
            "regenerated-old-api-key"
        } else {
            dev::DEV_API_TOKEN
        }))
    }
}

#[tokio::test]
async fn a_rotated_api_key_mid_run_is_reread_with_no_customer_impact() {
    let fetcher = Arc::new(Rotated { reads: 0.into() });
    struct Shared(Arc<Rotated>);
    #[oen_pay::async_trait::async_trait]
    impl oen_pay::secrets::FetchSecret for Shared {
        async fn fetch(&self) -> Result<String, oen_pay::secrets::SecretError> {
            self.0.fetch().await
        }
    }
    let secrets = Arc::new(oen_pay::secrets::CachedSecrets::new(
        Shared(fetcher.clone()),
        StdDuration::from_secs(300),
    ));
    let s = stack_with(secrets).await;
    for i in 0..3 {
        s.bind(&format!("cust-a{i}"), "premium", cards::SUCCESS)
            .await;
    }
    let outcomes = s.run().await;
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, WorkOutcome::Paid { charged: true, .. }))
            .count(),
        3,
        "{outcomes:?}"
    );
    assert_eq!(
        fetcher.reads.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one read, one forced refresh"
    );
    for i in 0..3 {
        assert_eq!(
            s.sub(&format!("cust-a{i}"), "premium").await.status,
            SubscriptionStatus::Active
        );
    }
    s.assert_ledger_agrees(&[
        ("cust-a0", "premium"),
        ("cust-a1", "premium"),
        ("cust-a2", "premium"),
    ])
    .await;
}

#[tokio::test]
async fn configuration_errors_change_no_customer_state() {
    let s = stack().await;
    s.bind("cust-v", "premium", cards::SUCCESS).await;
    s.sim.force_next(
        ForceTarget::AnyCharge,
        ForcedOutcome::Respond {
            code: "V0001".into(),
            http_status: 400,
            message: Some("PRODUCT_AMOUNT_NOT_MATCH".into()),
        },
    );
    assert_eq!(s.run().await, [WorkOutcome::ConfigError]);
    let sub = s.sub("cust-v", "premium").await;
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.dunning_attempts, 0);
    assert!(matches!(s.period_state(&sub, 0).await, PeriodState::Open));
    s.advance(Duration::hours(1));
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { .. }]
    ));
    s.assert_ledger_agrees(&[("cust-v", "premium")]).await;
}

#[tokio::test]
async fn refunds_once_and_cancels_at_period_end() {
    let s = stack().await;
    s.bind("cust-o", "premium", cards::SUCCESS).await;
    s.run().await;
    let customer = CustomerId::parse("cust-o").unwrap();
    let plan = PlanId::parse("premium").unwrap();
    let refunded = charging::refund(
        &s.deps,
        &customer,
        &plan,
        0,
        None,
        Some("customer asked".into()),
    )
    .await
    .unwrap();
    assert_eq!(refunded.ntd(), 500);
    let again = charging::refund(&s.deps, &customer, &plan, 0, None, None)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already refunded"), "{again}");
    assert_eq!(s.sim.ledger()[0].refund_amount, 500);
    charging::cancel(&s.deps, &customer, &plan, true)
        .await
        .unwrap();
    let sub = s.sub("cust-o", "premium").await;
    s.clock.set(sub.next_action_at.unwrap());
    assert_eq!(s.run().await, [WorkOutcome::Canceled]);
    assert_eq!(
        s.sub("cust-o", "premium").await.status,
        SubscriptionStatus::Canceled
    );
    assert_eq!(
        s.sim.ledger().len(),
        1,
        "no renewal after cancel-at-period-end"
    );
}

#[tokio::test]
async fn charge_now_uses_the_same_protocol() {
    let s = stack().await;
    s.bind("cust-n", "trial", cards::SUCCESS).await;
    let (c, p) = (
        CustomerId::parse("cust-n").unwrap(),
        PlanId::parse("trial").unwrap(),
    );
    assert!(matches!(
        charging::charge_now(&s.deps, &c, &p, &worker("operator"))
            .await
            .unwrap(),
        WorkOutcome::Paid { .. }
    ));
    // Twice in a row charges the next period, never the same one twice.
    assert!(matches!(
        charging::charge_now(&s.deps, &c, &p, &worker("operator"))
            .await
            .unwrap(),
        WorkOutcome::Paid { .. }
    ));
    assert_eq!(s.sub("cust-n", "trial").await.period, 2);
    s.assert_ledger_agrees(&[("cust-n", "trial")]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn no_charging_log_line_carries_a_card_token() {
    let logs = oen_pay_integration::logs::capture();
    let s = stack().await;
    for (i, card) in [
        cards::SUCCESS,
        cards::UNKNOWN_C026_THEN_CHARGED,
        cards::DECLINE_T0002_CVV,
        cards::DECLINE_T0004_INSUFFICIENT_FUNDS,
        cards::CONNECTION_DROP_AFTER_COMMIT,
    ]
    .iter()
    .enumerate()
    {
        s.bind(&format!("cust-log{i}"), "premium", card).await;
    }
    s.run().await;
    s.sim.settle_pending();
    s.advance(Duration::minutes(5));
    s.run().await;
    let text = logs.text();
    assert!(
        text.contains("period settled"),
        "nothing was logged: {text}"
    );
    for entry in s.sim.ledger() {
        assert!(
            !text.contains(&entry.token),
            "a card token reached the logs"
        );
    }
    assert!(
        !text.contains(dev::DEV_API_TOKEN),
        "the API key reached the logs"
    );
}

#[tokio::test]
async fn planning_pages_through_a_crowded_shard_with_continuations() {
    let mut s = stack().await;
    s.deps.policy.plan_page = 3;
    for i in 0..40 {
        s.bind(&format!("cust-p{i:02}"), "premium", cards::SUCCESS)
            .await;
    }
    charging::schedule(&s.deps, s.clock.now()).await.unwrap();
    let mut continued = 0;
    let mut paid = 0;
    while let Some(m) = s.queue.pop() {
        match charging::handle(&s.deps, &m, &worker("w")).await.unwrap() {
            WorkOutcome::Planned {
                enqueued,
                continued: more,
            } => {
                assert!(enqueued <= 3);
                continued += usize::from(more);
            }
            WorkOutcome::Paid { .. } => paid += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(paid, 40);
    assert!(continued > 0, "no page was continued");
    let subs: Vec<String> = (0..40).map(|i| format!("cust-p{i:02}")).collect();
    let subs: Vec<(&str, &str)> = subs.iter().map(|c| (c.as_str(), "premium")).collect();
    s.assert_ledger_agrees(&subs).await;
}

/// Oen acts on the refund, but the answer is lost on the way back.
struct LostRefundAnswer(Arc<dyn oen_pay::oen::OenGateway>);

#[oen_pay::async_trait::async_trait]
impl oen_pay::oen::OenGateway for LostRefundAnswer {
    fn merchant_id(&self) -> &oen_pay::domain::MerchantId {
        self.0.merchant_id()
    }
    async fn create_checkout(
        &self,
        req: &oen_pay::oen::CheckoutRequest,
    ) -> Result<oen_pay::domain::CheckoutId, oen_pay::oen::OenError> {
        self.0.create_checkout(req).await
    }
    async fn charge(
        &self,
        req: &oen_pay::oen::ChargeRequest,
    ) -> Result<oen_pay::oen::ChargeReceipt, oen_pay::oen::OenError> {
        self.0.charge(req).await
    }
    async fn order_transactions(
        &self,
        order: &OrderId,
    ) -> Result<Vec<oen_pay::oen::Transaction>, oen_pay::oen::OenError> {
        self.0.order_transactions(order).await
    }
    async fn transaction(
        &self,
        id: &oen_pay::domain::TransactionId,
    ) -> Result<oen_pay::oen::Transaction, oen_pay::oen::OenError> {
        self.0.transaction(id).await
    }
    async fn refund(
        &self,
        req: &oen_pay::oen::RefundRequest,
    ) -> Result<(), oen_pay::oen::OenError> {
        self.0.refund(req).await?;
        Err(oen_pay::oen::OenError::Unknown(
            "timed out: the answer was lost".into(),
        ))
    }
    async fn list_transactions(
        &self,
        query: &oen_pay::oen::TransactionListQuery,
    ) -> Result<oen_pay::oen::TransactionPage, oen_pay::oen::OenError> {
        self.0.list_transactions(query).await
    }
}

#[tokio::test]
async fn a_refund_whose_answer_was_lost_is_read_back_not_resent() {
    let mut s = stack().await;
    s.bind("cust-rf", "premium", cards::SUCCESS).await;
    s.run().await;
    s.deps.oen = Arc::new(LostRefundAnswer(s.deps.oen.clone()));
    let (c, p) = (
        CustomerId::parse("cust-rf").unwrap(),
        PlanId::parse("premium").unwrap(),
    );
    let refunded = charging::refund(
        &s.deps,
        &c,
        &p,
        0,
        Some(oen_pay::domain::Amount::new(200).unwrap()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(refunded.ntd(), 200, "the refund Oen made is recorded");
    let ledger = s.sim.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].refund_amount, 200, "refunded once, not resent");
    let err = charging::refund(&s.deps, &c, &p, 0, None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already refunded"), "{err}");
}

#[tokio::test]
async fn canceling_now_still_reconciles_an_unknown_charge_but_never_charges_again() {
    let s = stack().await;
    s.bind("cust-cu", "premium", cards::UNKNOWN_C026_THEN_FAILED)
        .await;
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Unknown { .. }]
    ));
    let (c, p) = (
        CustomerId::parse("cust-cu").unwrap(),
        PlanId::parse("premium").unwrap(),
    );
    charging::cancel(&s.deps, &c, &p, false).await.unwrap();
    let sub = s.sub("cust-cu", "premium").await;
    assert_eq!(sub.status, SubscriptionStatus::Canceled);
    assert!(
        sub.next_action_at.is_some(),
        "the unknown charge is still to be reconciled"
    );
    s.sim.settle_pending();
    s.advance(Duration::minutes(5));
    // Oen says the attempt failed: on a canceled subscription that ends it, with no new charge.
    assert_eq!(s.run().await, [WorkOutcome::Canceled]);
    let sub = s.sub("cust-cu", "premium").await;
    assert_eq!(sub.next_action_at, None);
    s.advance(Duration::days(40));
    assert!(s.run().await.is_empty());
    assert_eq!(s.ledger_for(&OrderId::for_period(&sub.id, 0)), ["failed"]);
    s.assert_ledger_agrees(&[("cust-cu", "premium")]).await;
}
