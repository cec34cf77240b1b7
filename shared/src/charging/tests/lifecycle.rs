//! Exactly once across a subscription's life: what happens around a charge (a cancel, a price
//! change, a retired plan, a card that no longer decrypts) must not charge twice, charge the
//! wrong amount, or charge a canceled customer.

use std::sync::Arc;

use chrono::Duration;

use super::*;
use crate::domain::{AnomalyKind, AnomalyRefund, Catalog, Ciphertext};
use crate::store::Store;

/// An Oen whose charge call lets `during` happen (a cancel, say) before it answers.
struct DuringCharge {
    inner: Arc<ScriptedOen>,
    store: Arc<dyn Store>,
    customer: CustomerId,
    plan: PlanId,
    cancel_at_period_end: bool,
}

#[async_trait]
impl OenGateway for DuringCharge {
    fn merchant_id(&self) -> &MerchantId {
        self.inner.merchant_id()
    }
    async fn create_checkout(&self, r: &CheckoutRequest) -> Result<CheckoutId, OenError> {
        self.inner.create_checkout(r).await
    }
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeReceipt, OenError> {
        // The operator cancels while Oen is working on the charge.
        let sub = self.store.subscription(&self.customer, &self.plan).await;
        let sub = sub.unwrap().unwrap();
        let mut s = sub.value.clone();
        if self.cancel_at_period_end {
            s.cancel_at_period_end = true;
        } else {
            s.status = SubscriptionStatus::Canceled;
        }
        let put = Put::new(s, Expect::Version(sub.version));
        self.store.commit(vec![put]).await.unwrap();
        self.inner.charge(req).await
    }
    async fn order_transactions(&self, o: &OrderId) -> Result<Vec<Transaction>, OenError> {
        self.inner.order_transactions(o).await
    }
    async fn transaction(&self, id: &TransactionId) -> Result<Transaction, OenError> {
        self.inner.transaction(id).await
    }
    async fn refund(&self, r: &RefundRequest) -> Result<(), OenError> {
        self.inner.refund(r).await
    }

    async fn list_transactions(
        &self,
        q: &crate::oen::TransactionListQuery,
    ) -> Result<crate::oen::TransactionPage, OenError> {
        self.inner.list_transactions(q).await
    }
}

/// GIVEN a world whose Oen cancels the subscription during the charge call.
async fn canceled_during_charge(answer: Result<ChargeReceipt, OenError>, at_end: bool) -> World {
    let mut w = World::new(ScriptedOen::default().charging(answer)).await;
    w.deps.adapters.oen = Arc::new(DuringCharge {
        inner: w.oen.clone(),
        store: w.deps.store.clone(),
        customer: w.customer.clone(),
        plan: w.plan.clone(),
        cancel_at_period_end: at_end,
    });
    w
}

#[tokio::test]
async fn a_decline_after_a_cancel_never_brings_the_subscription_back() {
    let hard = Err(OenError::HardDecline {
        code: "T0003".into(),
        message: String::new(),
    });
    for (name, answer, at_end) in [
        ("soft decline, canceled now", soft("T0001"), false),
        ("hard decline, canceled now", hard.clone(), false),
        ("soft decline, canceled at period end", soft("T0001"), true),
        ("hard decline, canceled at period end", hard, true),
    ] {
        // GIVEN a cancel that lands while Oen is declining the charge
        let w = canceled_during_charge(answer, at_end).await;
        // WHEN the worker writes the decline down
        let outcome = w.work().await.unwrap();
        // THEN the subscription is canceled, not past due or waiting for a card, and nothing
        // is scheduled that could charge it again
        let sub = w.sub().await.value;
        assert_eq!(
            sub.status,
            SubscriptionStatus::Canceled,
            "{name}: {outcome:?}"
        );
        assert_eq!(sub.next_action_at, None, "{name}");
        assert_eq!(outcome, WorkOutcome::Canceled, "{name}");
        w.clock.advance(Duration::days(30));
        assert!(w.work().await.is_ok());
        assert_eq!(w.oen.charge_calls(), 1, "{name}: never charged again");
    }
}

#[tokio::test]
async fn a_payment_that_lands_after_a_cancel_is_recorded_and_the_cancel_stands() {
    let w = canceled_during_charge(paid_receipt(1), false).await;
    let outcome = w.work().await.unwrap();
    assert!(
        matches!(outcome, WorkOutcome::Paid { charged: true, .. }),
        "{outcome:?}"
    );
    assert!(matches!(
        w.period(0).await.unwrap().state,
        PeriodState::Paid { .. }
    ));
    let sub = w.sub().await.value;
    assert_eq!(
        (sub.status, sub.next_action_at),
        (SubscriptionStatus::Canceled, None)
    );
}

#[tokio::test]
async fn a_price_change_applies_from_the_next_period_not_to_a_retry() {
    // GIVEN a soft decline of period 0 at NT$500
    let oen = ScriptedOen::default()
        .charging(soft("T0001"))
        .charging(paid_receipt(1))
        .charging(paid_receipt(2));
    let mut w = World::new(oen).await;
    let WorkOutcome::SoftDeclined { retry_at } = w.work().await.unwrap() else {
        panic!("expected a soft decline")
    };
    // WHEN the merchant raises the price to NT$600 before the retry
    w.deps.adapters.plans = Catalog::parse(
        r#"[{"id":"premium","description":"Premium plan","amount":600,"intervalMonths":1}]"#,
    )
    .unwrap();
    w.clock.set(retry_at);
    assert!(matches!(w.work().await.unwrap(), WorkOutcome::Paid { .. }));
    // THEN the retry charges the period's NT$500, and the next period NT$600
    w.clock.set(w.sub().await.value.next_action_at.unwrap());
    assert!(matches!(w.work().await.unwrap(), WorkOutcome::Paid { .. }));
    let charged = w.oen.charged.lock().unwrap().clone();
    assert_eq!(charged, [(500, 500), (500, 500), (600, 600)]);
    assert_eq!(w.period(0).await.unwrap().amount.ntd(), 500);
    assert_eq!(w.period(1).await.unwrap().amount.ntd(), 600);
}

#[tokio::test]
async fn a_retired_plan_keeps_charging_and_reconciling_on_its_terms() {
    // GIVEN an unknown attempt, then the plan is removed from the catalog
    let oen = ScriptedOen::default()
        .with_order(Ok(vec![tx(5, "charged")]))
        .charging(paid_receipt(6));
    let mut w = World::new(oen).await;
    w.leave_period(
        PeriodState::Unknown {
            since: t0(),
            reconcile_at: t0(),
            checks: 0,
        },
        1,
    )
    .await;
    w.deps.adapters.plans = Catalog::parse(
        r#"[{"id":"other","description":"Another plan","amount":100,"intervalMonths":1}]"#,
    )
    .unwrap();
    // WHEN the worker reconciles THEN Oen is asked and the period settles as paid
    let outcome = w.work().await.unwrap();
    assert!(
        matches!(outcome, WorkOutcome::Paid { charged: false, .. }),
        "{outcome:?}"
    );
    // AND the next period is charged on the terms the subscription was opened with
    let sub = w.sub().await.value;
    assert_eq!(
        sub.next_action_at,
        Some(crate::domain::taipei_time(2026, 2, 28, 9, 0))
    );
    w.clock.set(sub.next_action_at.unwrap());
    assert!(matches!(
        w.work().await.unwrap(),
        WorkOutcome::Paid { charged: true, .. }
    ));
    assert_eq!(*w.oen.charged.lock().unwrap(), [(500, 500)]);
}

#[tokio::test]
async fn a_card_that_no_longer_decrypts_waits_as_a_configuration_error() {
    // GIVEN a stored card whose ciphertext does not decrypt under its context
    let w = World::new(ScriptedOen::default()).await;
    let sub = w.sub().await.value;
    let card = w
        .deps
        .store
        .card(&w.customer, &sub.card)
        .await
        .unwrap()
        .unwrap();
    let mut broken = card.value.clone();
    broken.ciphertext = Ciphertext(vec![7; 40]);
    let put = Put::new(broken, Expect::Version(card.version));
    w.deps.store.commit(vec![put]).await.unwrap();
    // WHEN the worker runs THEN no Oen call, the message is done with (not handed back to
    // the queue to end in the dead-letter queue), and the period waits
    assert_eq!(w.work().await.unwrap(), WorkOutcome::ConfigError);
    assert_eq!(w.oen.charge_calls(), 0);
    let sub = w.sub().await.value;
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.next_action_at, Some(t0() + Duration::hours(1)));
}

#[tokio::test]
async fn a_listing_too_young_to_trust_keeps_a_vanished_attempt_unknown() {
    // GIVEN a worker that claimed the period and vanished; its lease ended a second ago, so
    // its charge may have reached Oen a few seconds before
    let w = World::new(ScriptedOen::default().with_order(Ok(vec![]))).await;
    w.leave_period(
        PeriodState::Charging {
            lease_owner: "gone".into(),
            lease_until: t0() - Duration::seconds(1),
        },
        0,
    )
    .await;
    // WHEN Oen's listing shows nothing yet
    let outcome = w.work().await.unwrap();
    // THEN nothing is charged: the period is unknown until the listing is old enough to trust
    assert!(
        matches!(outcome, WorkOutcome::Unknown { .. }),
        "{outcome:?}"
    );
    assert_eq!(w.oen.charge_calls(), 0);
}

#[tokio::test]
async fn a_worker_leaves_no_charge_request_after_its_send_deadline() {
    // GIVEN a worker whose invocation ends before Oen's 29 s plus a margin would fit
    let w = World::new(ScriptedOen::default()).await;
    let rushed = WorkContext {
        owner: "late".into(),
        deadline: Some(t0() + Duration::seconds(30)),
    };
    let message = WorkMessage::Charge {
        customer: w.customer.clone(),
        plan: w.plan.clone(),
    };
    // WHEN it handles the message THEN it hands the work back unclaimed, no request sent
    assert!(handle(&w.deps, &message, &rushed).await.is_err());
    assert_eq!(w.oen.charge_calls(), 0);
    assert!(w.period(0).await.is_none());
}

#[tokio::test]
async fn an_unknown_charge_outlives_a_cancel_and_a_new_binding() {
    for old_paid in [true, false] {
        // GIVEN an attempt whose outcome is unknown, then a cancel now, then the customer binds
        // a new card for the same plan (a new subscription, new order ids)
        let listing = if old_paid {
            vec![tx(5, "charged")]
        } else {
            vec![]
        };
        let oen = ScriptedOen::default()
            .with_order(Ok(listing))
            .charging(paid_receipt(6));
        let w = World::new(oen).await;
        w.leave_period(due_unknown(), 1).await;
        let old = w.sub().await.value;
        crate::charging::cancel(&w.deps, &w.customer, &w.plan, false)
            .await
            .unwrap();
        w.bind_again().await;
        let new = w.sub().await.value;
        assert_ne!(new.id, old.id, "a new subscription");
        // WHEN the worker looks at the customer's subscription
        w.work().await.unwrap();
        // THEN the old order is reconciled with Oen first and never charged
        assert_eq!((w.oen.order_calls(), w.oen.charge_calls()), (1, 0));
        let old_state = w.deps.store.period(&old.id, 0).await.unwrap().unwrap();
        let sub = w.sub().await.value;
        assert_eq!(sub.carried, None, "old_paid {old_paid}");
        if old_paid {
            assert!(matches!(old_state.value.state, PeriodState::Paid { .. }));
            // AND the new subscription starts when the paid period ends: no double charge
            let paid_until = crate::domain::taipei_time(2026, 2, 28, 9, 0);
            assert_eq!(sub.next_action_at, Some(paid_until));
            assert_eq!(w.work().await.unwrap(), WorkOutcome::Skipped("not due"));
            w.clock.set(paid_until);
        } else {
            assert!(matches!(
                old_state.value.state,
                PeriodState::Declined { .. }
            ));
            assert_eq!(sub.next_action_at, Some(t0()));
        }
        // AND the new subscription is charged once, on its own order
        let paid = w.work().await.unwrap();
        assert!(
            matches!(paid, WorkOutcome::Paid { charged: true, .. }),
            "{paid:?}"
        );
        assert_eq!(w.oen.charge_calls(), 1);
        assert!(w.period(0).await.is_some_and(|p| p.subscription == new.id));
    }
}

fn paid_tx(n: u32, amount: i64) -> Transaction {
    Transaction {
        amount,
        ..tx(n, "charged")
    }
}

/// GIVEN an unknown attempt whose order Oen lists as `listing`, WHEN the worker reconciles it.
async fn reconciled_with(listing: Vec<Transaction>, auto_refund: bool) -> World {
    let mut w = World::new(ScriptedOen::default().with_order(Ok(listing))).await;
    w.deps.policy.auto_refund_duplicates = auto_refund;
    w.leave_period(due_unknown(), 2).await;
    let outcome = w.work().await.unwrap();
    assert!(
        matches!(outcome, WorkOutcome::Paid { charged: false, .. }),
        "{outcome:?}"
    );
    w
}

#[tokio::test]
async fn a_second_payment_of_one_order_is_reported_and_refunded_once() {
    let w = reconciled_with(vec![paid_tx(1, 500), paid_tx(2, 500)], true).await;
    // THEN the period is paid by one transaction, the other is recorded, reported and refunded
    let p = w.period(0).await.unwrap();
    assert!(matches!(&p.state, PeriodState::Paid { transaction, .. } if *transaction == tx_id(1)));
    let [dup] = p.anomalies.as_slice() else {
        panic!("one anomaly expected: {:?}", p.anomalies)
    };
    assert_eq!(
        (dup.transaction.clone(), dup.kind),
        (tx_id(2), AnomalyKind::Duplicate)
    );
    assert!(matches!(dup.refund, AnomalyRefund::Refunded { amount, .. } if amount.ntd() == 500));
    assert_eq!(*w.oen.refunds.lock().unwrap(), [(tx_id(2), Some(500))]);
    assert!(w
        .event_types()
        .contains(&"payment.duplicate_detected".to_owned()));
    // AND nothing is refunded again when the period's refunds are looked at again
    let sub = w.sub().await.value;
    let plan = crate::dev::dev_plans().lookup("premium").unwrap().clone();
    crate::charging::anomalies::refund_pending(&w.deps, &sub.id, 0, &plan).await;
    assert_eq!(w.oen.refunds.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn with_automatic_refunds_off_a_second_payment_is_reported_only() {
    let w = reconciled_with(vec![paid_tx(1, 500), paid_tx(2, 500)], false).await;
    let p = w.period(0).await.unwrap();
    assert_eq!(p.anomalies.len(), 1);
    assert_eq!(p.anomalies[0].refund, AnomalyRefund::Manual);
    assert!(w.oen.refunds.lock().unwrap().is_empty());
    assert!(w
        .event_types()
        .contains(&"payment.duplicate_detected".to_owned()));
}

#[tokio::test]
async fn a_payment_of_another_amount_is_reported_for_a_person() {
    let w = reconciled_with(vec![paid_tx(1, 450)], true).await;
    let p = w.period(0).await.unwrap();
    let [odd] = p.anomalies.as_slice() else {
        panic!("one anomaly expected: {:?}", p.anomalies)
    };
    assert_eq!((odd.kind, odd.amount), (AnomalyKind::AmountMismatch, 450));
    assert_eq!(odd.refund, AnomalyRefund::Manual);
    assert!(w.oen.refunds.lock().unwrap().is_empty());
}
