//! Renewal notices on in-memory adapters: `subscription.renewal_upcoming` goes out once per
//! period, the notice period before the charge, through the scheduled planning.

use chrono::Duration;

use super::*;
use crate::domain::{Catalog, DomainEvent};

const NOTICE: &str = "subscription.renewal_upcoming";

impl World {
    /// One scheduled run at the clock's time: planning, then every message it led to.
    async fn run(&self) -> Vec<WorkOutcome> {
        schedule(&self.deps, self.clock.now()).await.unwrap();
        let mut outcomes = Vec::new();
        while let Some(message) = self.queue.pop() {
            outcomes.push(handle(&self.deps, &message, &ctx()).await.unwrap());
        }
        outcomes
    }

    fn notices(&self) -> Vec<DomainEvent> {
        let all = self.events.all();
        all.into_iter().filter(|e| e.kind == NOTICE).collect()
    }

    /// The first period was due at once when the card was bound: it is not announced.
    async fn first_period_due_at_once(&self) {
        self.update_sub(|s| s.renewal_noticed = Some(0)).await;
    }

    /// Period 0 paid by the run at t0; when period 1 is charged.
    async fn pay_first_period(&self) -> DateTime<Utc> {
        self.first_period_due_at_once().await;
        let outcomes = self.run().await;
        assert!(outcomes
            .iter()
            .any(|o| matches!(o, WorkOutcome::Paid { .. })));
        let sub = self.sub().await.value;
        assert_eq!(sub.period, 1);
        sub.next_action_at.unwrap()
    }
}

#[tokio::test]
async fn a_renewal_is_announced_once_a_week_ahead_and_again_for_the_next_period() {
    // GIVEN a monthly subscription whose period 0 was paid at t0
    let oen = ScriptedOen::default()
        .charging(paid_receipt(1))
        .charging(paid_receipt(2));
    let w = World::new(oen).await;
    let renewal = w.pay_first_period().await;
    assert!(w.notices().is_empty(), "the first charge is no renewal");

    // WHEN planning runs a second before the notice period: nothing
    w.clock
        .set(renewal - Duration::days(7) - Duration::seconds(1));
    w.run().await;
    assert!(w.notices().is_empty());

    // WHEN it runs a week before the charge, and again twice
    w.clock.set(renewal - Duration::days(7));
    let outcomes = w.run().await;
    w.run().await;
    w.clock.advance(Duration::days(3));
    w.run().await;

    // THEN one notice, with the coming charge's terms and time
    assert!(outcomes.contains(&WorkOutcome::Noticed {
        period: 1,
        charge_at: renewal
    }));
    let notices = w.notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let sub = w.sub().await.value;
    let n = &notices[0];
    assert_eq!(n.id, format!("{NOTICE}:{}:1", sub.id));
    assert_eq!(n.customer, w.customer);
    assert_eq!(n.at, renewal - Duration::days(7));
    assert_eq!(n.data["subscription"], sub.id.as_str());
    assert_eq!(n.data["customer"], "cust-1");
    assert_eq!(n.data["plan"], "premium");
    assert_eq!(n.data["period"], 1);
    assert_eq!(n.data["amount"], 500);
    assert_eq!(n.data["productDetails"][0]["unitPrice"], 500);
    assert_eq!(n.data["productDetails"][0]["quantity"], 1);
    let charge_at: DateTime<Utc> = serde_json::from_value(n.data["chargeAt"].clone()).unwrap();
    assert_eq!(charge_at, renewal);
    assert_eq!(w.oen.charge_calls(), 1, "a notice charges nothing");

    // WHEN the renewal is charged and the next one comes within a week
    w.clock.set(renewal);
    w.run().await;
    let next = w.sub().await.value.next_action_at.unwrap();
    assert_eq!(w.sub().await.value.period, 2);
    w.clock.set(next - Duration::days(7));
    w.run().await;
    w.run().await;

    // THEN exactly one more notice, for period 2
    let ids: Vec<String> = w.notices().into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [
            format!("{NOTICE}:{}:1", sub.id),
            format!("{NOTICE}:{}:2", sub.id)
        ]
    );
    assert_eq!(w.oen.charged.lock().unwrap().clone(), [(500, 500); 2]);
}

#[tokio::test]
async fn duplicate_notice_messages_record_one_event() {
    let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    let renewal = w.pay_first_period().await;
    w.clock.set(renewal - Duration::days(2));
    let message = WorkMessage::Notice {
        customer: w.customer.clone(),
        plan: w.plan.clone(),
    };
    let first = handle(&w.deps, &message, &ctx()).await.unwrap();
    let again = handle(&w.deps, &message, &ctx()).await.unwrap();
    assert!(matches!(first, WorkOutcome::Noticed { period: 1, .. }));
    assert_eq!(again, WorkOutcome::Skipped("no renewal awaits a notice"));
    assert_eq!(w.notices().len(), 1);
}

#[tokio::test]
async fn no_notice_for_a_subscription_canceled_or_ending_at_period_end() {
    for at_period_end in [true, false] {
        // GIVEN a paid period 0, then a cancel (at period end, or now)
        let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
        let renewal = w.pay_first_period().await;
        cancel(&w.deps, &w.customer, &w.plan, at_period_end)
            .await
            .unwrap();
        // WHEN planning runs through the notice period and the renewal date
        for days in [7, 3, 0] {
            w.clock.set(renewal - Duration::days(days));
            w.run().await;
        }
        // THEN no notice, and no charge
        assert!(w.notices().is_empty(), "at period end: {at_period_end}");
        assert_eq!(w.oen.charge_calls(), 1);
        assert_eq!(w.sub().await.value.status, SubscriptionStatus::Canceled);
    }
}

#[tokio::test]
async fn a_notice_is_sent_after_a_period_end_cancel_is_undone_but_not_during_it() {
    let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    let renewal = w.pay_first_period().await;
    cancel(&w.deps, &w.customer, &w.plan, true).await.unwrap();
    w.clock.set(renewal - Duration::days(6));
    w.run().await;
    assert!(w.notices().is_empty());
    // The customer changes their mind (what a resume does to the record).
    w.update_sub(|s| s.cancel_at_period_end = false).await;
    w.run().await;
    assert_eq!(w.notices().len(), 1);
}

#[tokio::test]
async fn an_operator_charging_early_moves_the_notice_to_the_next_period() {
    // GIVEN period 1 due in a month, not yet announced
    let oen = ScriptedOen::default()
        .charging(paid_receipt(1))
        .charging(paid_receipt(2));
    let w = World::new(oen).await;
    let renewal = w.pay_first_period().await;
    // WHEN an operator charges it ten days early
    w.clock.set(renewal - Duration::days(10));
    let early = charge_now(&w.deps, &w.customer, &w.plan, &ctx()).await;
    assert!(matches!(early, Ok(WorkOutcome::Paid { .. })), "{early:?}");
    // THEN planning through period 1's notice period announces nothing: it is paid
    for days in [7, 1] {
        w.clock.set(renewal - Duration::days(days));
        w.run().await;
    }
    assert!(w.notices().is_empty());
    // AND period 2 is announced a week before its own date
    let sub = w.sub().await.value;
    assert_eq!(sub.period, 2);
    let next = sub.next_action_at.unwrap();
    w.clock.set(next - Duration::days(7) - Duration::seconds(1));
    w.run().await;
    assert!(w.notices().is_empty());
    w.clock.set(next - Duration::days(7));
    w.run().await;
    let notices = w.notices();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].id, format!("{NOTICE}:{}:2", sub.id));
}

#[tokio::test]
async fn the_charge_is_what_the_notice_announced_even_after_a_price_change() {
    let oen = ScriptedOen::default()
        .charging(paid_receipt(1))
        .charging(paid_receipt(2))
        .charging(paid_receipt(3));
    let mut w = World::new(oen).await;
    let renewal = w.pay_first_period().await;
    w.clock.set(renewal - Duration::days(7));
    w.run().await;
    // WHEN the merchant raises the price after the notice
    w.deps.adapters.plans = Catalog::parse(
        r#"[{"id":"premium","description":"Premium plan","amount":600,"intervalMonths":1}]"#,
    )
    .unwrap();
    w.clock.set(renewal);
    w.run().await;
    let next = w.sub().await.value.next_action_at.unwrap();
    w.clock.set(next - Duration::days(7));
    w.run().await;
    w.clock.set(next);
    w.run().await;
    // THEN period 1 is charged the NT$500 announced, period 2 announced and charged NT$600
    let amounts: Vec<_> = w
        .notices()
        .iter()
        .map(|n| n.data["amount"].clone())
        .collect();
    assert_eq!(amounts, [500, 600]);
    let charged = w.oen.charged.lock().unwrap().clone();
    assert_eq!(charged, [(500, 500), (500, 500), (600, 600)]);
}

#[tokio::test]
async fn a_past_due_subscription_is_not_announced_and_a_new_card_pays_at_once_unannounced() {
    // GIVEN period 1 announced, then soft-declined
    let oen = ScriptedOen::default()
        .charging(paid_receipt(1))
        .charging(soft("T0004"))
        .charging(paid_receipt(2));
    let w = World::new(oen).await;
    let renewal = w.pay_first_period().await;
    w.clock.set(renewal - Duration::days(7));
    w.run().await;
    w.clock.set(renewal);
    w.run().await;
    assert_eq!(w.sub().await.value.status, SubscriptionStatus::PastDue);
    // WHEN the customer binds a new card, which pays period 1 at once
    w.clock.advance(Duration::hours(2));
    w.bind_again().await;
    w.run().await;
    let sub = w.sub().await.value;
    assert_eq!(sub.period, 2);
    // THEN one notice for period 1 only, so far; period 2 is announced on its own schedule
    assert_eq!(w.notices().len(), 1);
    w.clock.set(sub.next_action_at.unwrap() - Duration::days(7));
    w.run().await;
    let ids: Vec<String> = w.notices().into_iter().map(|e| e.id).collect();
    assert_eq!(ids.last().unwrap(), &format!("{NOTICE}:{}:2", sub.id));
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn a_card_bound_again_after_a_cancel_starts_a_subscription_due_at_once_unannounced() {
    let oen = ScriptedOen::default()
        .charging(paid_receipt(1))
        .charging(paid_receipt(2));
    let w = World::new(oen).await;
    let renewal = w.pay_first_period().await;
    cancel(&w.deps, &w.customer, &w.plan, false).await.unwrap();
    w.clock.set(renewal - Duration::days(3));
    w.bind_again().await;
    let sub = w.sub().await.value;
    assert_eq!((sub.period, sub.renewal_noticed), (0, Some(0)));
    w.run().await;
    assert!(w.notices().is_empty());
    assert_eq!(
        w.oen.charge_calls(),
        2,
        "the new subscription is charged at once"
    );
}

#[tokio::test]
async fn with_notices_off_no_renewal_is_announced() {
    let oen = ScriptedOen::default()
        .charging(paid_receipt(1))
        .charging(paid_receipt(2));
    let mut w = World::new(oen).await;
    w.deps.policy.renewal_notice = None;
    let renewal = w.pay_first_period().await;
    for days in [7, 1, 0] {
        w.clock.set(renewal - Duration::days(days));
        w.run().await;
    }
    assert!(w.notices().is_empty());
    assert_eq!(w.oen.charge_calls(), 2, "charging goes on");
}

#[tokio::test]
async fn notices_go_as_many_days_ahead_as_configured() {
    let mut w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    w.deps.policy.renewal_notice = Some(Duration::days(3));
    let renewal = w.pay_first_period().await;
    w.clock.set(renewal - Duration::days(4));
    w.run().await;
    assert!(w.notices().is_empty());
    w.clock.set(renewal - Duration::days(3));
    w.run().await;
    assert_eq!(w.notices().len(), 1);
}

#[tokio::test]
async fn a_renewal_first_planned_when_already_due_is_charged_without_a_late_notice() {
    // GIVEN notices were off until the very moment the renewal is due
    let oen = ScriptedOen::default()
        .charging(paid_receipt(1))
        .charging(paid_receipt(2));
    let mut w = World::new(oen).await;
    w.deps.policy.renewal_notice = None;
    let renewal = w.pay_first_period().await;
    w.deps.policy.renewal_notice = Some(Duration::days(7));
    w.clock.set(renewal);
    // WHEN planning runs THEN it charges, and announces nothing after the fact
    let outcomes = w.run().await;
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, WorkOutcome::Paid { .. })));
    assert!(w.notices().is_empty(), "{outcomes:?}");
    assert_eq!(w.sub().await.value.period, 2);
}
