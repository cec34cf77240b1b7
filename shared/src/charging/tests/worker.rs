//! The worker: claim, ask Oen first when needed, charge.

use chrono::Duration;

use super::*;
use crate::charging::{cancel, charge_now};

#[tokio::test]
async fn a_due_period_is_charged_once_and_the_next_one_scheduled() {
    // GIVEN a subscription due now WHEN the worker runs twice
    let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    let first = w.work().await.unwrap();
    let second = w.work().await.unwrap();
    // THEN one charge call, period 0 paid, period 1 due a month later, no second charge
    assert_eq!(
        first,
        WorkOutcome::Paid {
            transaction: tx_id(1),
            charged: true
        }
    );
    assert_eq!(second, WorkOutcome::Skipped("not due"));
    assert_eq!((w.oen.charge_calls(), w.oen.order_calls()), (1, 0));
    assert!(matches!(
        w.period(0).await.unwrap().state,
        PeriodState::Paid { .. }
    ));
    let sub = w.sub().await.value;
    assert_eq!(sub.period, 1);
    assert_eq!(
        sub.next_action_at,
        Some(crate::domain::taipei_time(2026, 2, 28, 9, 0))
    );
    assert_eq!(w.event_types(), ["payment.succeeded"]);
}

#[tokio::test]
async fn the_order_is_queried_before_any_attempt_after_the_first() {
    // Each row: GIVEN the period as an earlier worker left it, and what Oen's order listing
    // says; THEN the outcome, and whether a new charge call was made.
    let expired_lease = PeriodState::Charging {
        lease_owner: "gone".into(),
        lease_until: t0() - Duration::seconds(1),
    };
    let long_expired_lease = PeriodState::Charging {
        lease_owner: "gone".into(),
        lease_until: t0() - Duration::minutes(10),
    };
    let due_unknown = PeriodState::Unknown {
        since: t0() - Duration::hours(1),
        reconcile_at: t0(),
        checks: 0,
    };
    // (name, period state, attempts so far, Oen's listing, outcome, charge calls)
    type Case = (
        &'static str,
        PeriodState,
        u32,
        Vec<Transaction>,
        &'static str,
        u32,
    );
    let cases: Vec<Case> = vec![
        (
            "vanished holder, Oen paid",
            expired_lease.clone(),
            0,
            vec![tx(7, "charged")],
            "paid",
            0,
        ),
        (
            "vanished holder, nothing at Oen yet",
            expired_lease,
            0,
            vec![],
            "unknown",
            0,
        ),
        (
            "holder vanished long ago, nothing at Oen",
            long_expired_lease,
            0,
            vec![],
            "paid",
            1,
        ),
        (
            "unknown, Oen paid",
            due_unknown.clone(),
            1,
            vec![tx(7, "charged")],
            "paid",
            0,
        ),
        (
            "unknown, still charging",
            due_unknown.clone(),
            1,
            vec![tx(7, "charging")],
            "unknown",
            0,
        ),
        (
            "unknown, declined after all",
            due_unknown,
            1,
            vec![tx(7, "failed")],
            "declined",
            0,
        ),
        (
            "soft-declined before, nothing new",
            PeriodState::Open,
            1,
            vec![tx(7, "failed")],
            "paid",
            1,
        ),
    ];
    for (name, state, attempts, listing, want, charges) in cases {
        let oen = ScriptedOen::default()
            .with_order(Ok(listing))
            .charging(paid_receipt(2));
        let w = World::new(oen).await;
        w.leave_period(state, attempts).await;
        let outcome = w.work().await.unwrap();
        let got = match outcome {
            WorkOutcome::Paid { .. } => "paid",
            WorkOutcome::Unknown { .. } => "unknown",
            WorkOutcome::SoftDeclined { .. } => "declined",
            _ => "other",
        };
        assert_eq!(got, want, "{name}: {outcome:?}");
        assert_eq!(
            w.oen.order_calls(),
            1,
            "{name}: the order is asked about first"
        );
        assert_eq!(w.oen.charge_calls(), charges, "{name}: charge calls");
    }
}

#[tokio::test]
async fn a_period_not_to_be_touched_is_skipped_without_asking_oen() {
    let live_lease = PeriodState::Charging {
        lease_owner: "other".into(),
        lease_until: t0() + Duration::seconds(30),
    };
    let later_unknown = PeriodState::Unknown {
        since: t0(),
        reconcile_at: t0() + Duration::minutes(5),
        checks: 0,
    };
    let paid = PeriodState::Paid {
        transaction: tx_id(3),
        auth_code: None,
        paid_at: t0(),
    };
    for (state, why) in [
        (live_lease, "another worker holds the lease"),
        (
            later_unknown,
            "unknown period not yet due for reconciliation",
        ),
        (paid, "period already paid"),
    ] {
        let w = World::new(ScriptedOen::default()).await;
        w.leave_period(state, 1).await;
        assert_eq!(w.work().await.unwrap(), WorkOutcome::Skipped(why));
        assert_eq!((w.oen.charge_calls(), w.oen.order_calls()), (0, 0), "{why}");
    }
}

#[tokio::test]
async fn a_worker_without_time_for_an_attempt_hands_the_work_back_unclaimed() {
    let w = World::new(ScriptedOen::default()).await;
    let rushed = WorkContext {
        owner: "late".into(),
        deadline: Some(t0() + Duration::seconds(5)),
    };
    let message = WorkMessage::Charge {
        customer: w.customer.clone(),
        plan: w.plan.clone(),
    };
    let err = handle(&w.deps, &message, &rushed).await.unwrap_err();
    assert!(err.to_string().contains("too little time"), "{err}");
    assert!(w.period(0).await.is_none(), "nothing claimed");
}

#[tokio::test]
async fn soft_declines_follow_the_dunning_schedule_then_cancel() {
    // GIVEN a card that keeps declining softly WHEN the worker runs at each retry date
    let mut oen = ScriptedOen::default();
    for _ in 0..5 {
        oen = oen.charging(soft("T0001"));
    }
    let w = World::new(oen).await;
    let mut retries = Vec::new();
    for _ in 0..4 {
        match w.work().await.unwrap() {
            WorkOutcome::SoftDeclined { retry_at } => {
                retries.push((retry_at - w.clock.now()).num_days());
                w.clock.set(retry_at);
            }
            other => panic!("expected a soft decline, got {other:?}"),
        }
        assert_eq!(w.sub().await.value.status, SubscriptionStatus::PastDue);
    }
    // THEN retries come 1, 3, 5 and 7 days apart, and the fifth decline cancels
    assert_eq!(retries, [1, 3, 5, 7]);
    assert_eq!(w.work().await.unwrap(), WorkOutcome::Canceled);
    let sub = w.sub().await.value;
    assert_eq!(
        (sub.status, sub.next_action_at),
        (SubscriptionStatus::Canceled, None)
    );
    assert_eq!(w.oen.charge_calls(), 5);
    let types = w.event_types();
    assert_eq!(types.iter().filter(|t| *t == "payment.failed").count(), 5);
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "subscription.past_due")
            .count(),
        4
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("subscription.canceled")
    );
    let ids: std::collections::BTreeSet<_> = w.events.all().into_iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), types.len(), "every event has its own stable id");
}

#[tokio::test]
async fn a_canceled_subscription_with_an_unknown_charge_is_reconciled_never_charged() {
    // GIVEN an unknown attempt, then a cancel now
    let w = World::new(ScriptedOen::default().with_order(Ok(vec![]))).await;
    w.leave_period(due_unknown(), 1).await;
    cancel(&w.deps, &w.customer, &w.plan, false).await.unwrap();
    let sub = w.sub().await.value;
    assert_eq!(sub.status, SubscriptionStatus::Canceled);
    assert!(sub.next_action_at.is_some(), "still due for reconciliation");
    // WHEN the worker reconciles and Oen has nothing for the order
    assert_eq!(w.work().await.unwrap(), WorkOutcome::Canceled);
    // THEN the period is closed and no charge was made
    assert_eq!(w.oen.charge_calls(), 0);
    assert!(matches!(
        w.period(0).await.unwrap().state,
        PeriodState::Declined { .. }
    ));
    assert_eq!(w.sub().await.value.next_action_at, None);
}

#[tokio::test]
async fn cancel_at_period_end_lets_the_paid_period_run_out_then_cancels() {
    let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    w.work().await.unwrap();
    cancel(&w.deps, &w.customer, &w.plan, true).await.unwrap();
    assert_eq!(w.sub().await.value.status, SubscriptionStatus::Active);
    w.clock.set(w.sub().await.value.next_action_at.unwrap());
    assert_eq!(w.work().await.unwrap(), WorkOutcome::Canceled);
    assert_eq!(w.sub().await.value.status, SubscriptionStatus::Canceled);
    assert_eq!(w.oen.charge_calls(), 1, "no renewal");
    assert_eq!(
        w.event_types().last().map(String::as_str),
        Some("subscription.canceled")
    );
}

#[tokio::test]
async fn a_missing_card_is_a_configuration_error_that_changes_no_customer_state() {
    let w = World::new(ScriptedOen::default()).await;
    w.update_sub(|s| s.card = BindingRef::generate()).await;
    assert_eq!(w.work().await.unwrap(), WorkOutcome::ConfigError);
    let sub = w.sub().await.value;
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.next_action_at, Some(t0() + Duration::hours(1)));
    assert_eq!(w.period(0).await.unwrap().state, PeriodState::Open);
    assert_eq!(w.oen.charge_calls(), 0);
}

#[tokio::test]
async fn charge_now_ignores_the_schedule_but_not_the_protocol() {
    let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    w.update_sub(|s| s.next_action_at = Some(t0() + Duration::days(10)))
        .await;
    assert_eq!(w.work().await.unwrap(), WorkOutcome::Skipped("not due"));
    let forced = charge_now(&w.deps, &w.customer, &w.plan, &ctx())
        .await
        .unwrap();
    assert!(matches!(forced, WorkOutcome::Paid { charged: true, .. }));
    assert_eq!(w.sub().await.value.period, 1);
    assert_eq!(w.work().await.unwrap(), WorkOutcome::Skipped("not due"));
    assert_eq!(w.oen.charge_calls(), 1);
}
