//! The pure transition, outcome by outcome.

use chrono::Duration;

use super::*;
use crate::charging::transition::{transition, Attempted, Settled};
use crate::domain::Plan;

/// One way an attempt can end, and what it must leave behind.
struct Row {
    name: &'static str,
    settled: Settled,
    called: bool,
    /// The subscription's dunning retries before this attempt.
    dunning_before: u32,
    outcome: &'static str,
    status: SubscriptionStatus,
    attempts: u32,
    events: &'static [&'static str],
}

fn outcome_name(o: &WorkOutcome) -> &'static str {
    match o {
        WorkOutcome::Paid { charged: true, .. } => "paid by our call",
        WorkOutcome::Paid { charged: false, .. } => "found paid",
        WorkOutcome::SoftDeclined { .. } => "soft declined",
        WorkOutcome::HardDeclined => "hard declined",
        WorkOutcome::Canceled => "canceled",
        WorkOutcome::Unknown { .. } => "unknown",
        WorkOutcome::NotSent => "not sent",
        WorkOutcome::ConfigError => "config error",
        WorkOutcome::Planned { .. } | WorkOutcome::Skipped(_) => "other",
        // One-off charges' outcomes; a period never ends so.
        WorkOutcome::Declined { .. } | WorkOutcome::Released => "one-off",
        // A renewal notice; a charge never ends so.
        WorkOutcome::Noticed { .. } => "notice",
        // A day's reconciliation; a charge never ends so.
        WorkOutcome::Reconciled { .. } => "reconciliation",
    }
}

fn rows() -> Vec<Row> {
    use SubscriptionStatus::*;
    let paid = |charged| Settled::Paid {
        transaction: tx_id(1),
        auth_code: None,
        charged,
        anomalies: Vec::new(),
    };
    let row = |name, settled, called, dunning_before, outcome, status, attempts, events| Row {
        name,
        settled,
        called,
        dunning_before,
        outcome,
        status,
        attempts,
        events,
    };
    vec![
        row(
            "charged now",
            paid(true),
            true,
            2,
            "paid by our call",
            Active,
            1,
            &["payment.succeeded"],
        ),
        row(
            "found paid",
            paid(false),
            false,
            0,
            "found paid",
            Active,
            0,
            &["payment.succeeded"],
        ),
        row(
            "first soft decline",
            Settled::SoftDecline("T0001".into()),
            true,
            0,
            "soft declined",
            PastDue,
            1,
            &["payment.failed", "subscription.past_due"],
        ),
        row(
            "soft decline, dunning exhausted",
            Settled::SoftDecline("T0004".into()),
            true,
            4,
            "canceled",
            Canceled,
            1,
            &["payment.failed", "subscription.canceled"],
        ),
        row(
            "hard decline",
            Settled::HardDecline("T0003".into()),
            true,
            0,
            "hard declined",
            RequiresPaymentMethod,
            1,
            &["payment.failed", "subscription.requires_payment_method"],
        ),
        row(
            "unknown after a call",
            Settled::Unknown("C026".into()),
            true,
            0,
            "unknown",
            Active,
            1,
            &["payment.unknown"],
        ),
        row(
            "never sent",
            Settled::NotSent("refused".into()),
            true,
            0,
            "not sent",
            Active,
            0,
            &[],
        ),
        row(
            "configuration error",
            Settled::Config("A0001".into()),
            true,
            0,
            "config error",
            Active,
            0,
            &[],
        ),
    ]
}

#[test]
fn each_outcome_moves_period_and_subscription_as_the_policy_says() {
    let policy = ChargePolicy::default();
    let plan = premium();
    for row in rows() {
        // GIVEN a claimed period 0 of an active (or dunning) subscription
        let mut sub = sample_subscription();
        sub.dunning_attempts = row.dunning_before;
        let claimed = claimed_period(&sub);
        let at = Attempted {
            policy: &policy,
            plan: &plan,
            claimed: &claimed,
            prior: &PeriodState::Open,
            called: row.called,
            now: t0(),
        };
        // WHEN the attempt settles
        let next = transition(&at, sub.clone(), &row.settled);
        // THEN
        let name = row.name;
        assert_eq!(outcome_name(&next.outcome), row.outcome, "{name}");
        let status = next.subscription.as_ref().map_or(sub.status, |s| s.status);
        assert_eq!(status, row.status, "{name}");
        assert_eq!(next.period.attempts, row.attempts, "{name}");
        let kinds: Vec<String> = next.events.iter().map(|e| e.kind.to_string()).collect();
        assert_eq!(kinds, row.events, "{name}");
        assert!(
            !matches!(next.period.state, PeriodState::Charging { .. }),
            "{name}: the lease is always released"
        );
    }
}

fn premium() -> Plan {
    let plans = crate::dev::dev_plans();
    plans
        .get(&PlanId::parse("premium").unwrap())
        .cloned()
        .unwrap()
}

#[test]
fn a_failed_reconciliation_keeps_the_unknowns_age_and_backs_off() {
    let policy = ChargePolicy::default();
    let plan = premium();
    let sub = sample_subscription();
    let claimed = claimed_period(&sub);
    let since = t0() - Duration::days(4);
    let prior = PeriodState::Unknown {
        since,
        reconcile_at: t0(),
        checks: 1,
    };
    let at = Attempted {
        policy: &policy,
        plan: &plan,
        claimed: &claimed,
        prior: &prior,
        called: false,
        now: t0(),
    };
    let next = transition(&at, sub, &Settled::Unknown("order query failed".into()));
    assert_eq!(
        next.period.state,
        PeriodState::Unknown {
            since,
            reconcile_at: t0() + Duration::days(1),
            checks: 2,
        }
    );
    assert!(next.events.is_empty(), "no new attempt, no new event");
}

#[test]
fn the_policy_table_reads_as_documented() {
    let p = ChargePolicy::default();
    assert_eq!(p.dunning_wait(0), None);
    assert_eq!(p.dunning_wait(1), Some(Duration::days(1)));
    assert_eq!(p.dunning_wait(4), Some(Duration::days(7)));
    assert_eq!(p.dunning_wait(5), None);
    assert_eq!(p.reconcile_after(0), Duration::minutes(5));
    assert_eq!(p.reconcile_after(1), Duration::hours(1));
    assert_eq!(p.reconcile_after(9), Duration::days(1));
    assert!(p.has_time_for_attempt(None, t0()));
    assert!(!p.has_time_for_attempt(Some(t0() + Duration::seconds(44)), t0()));
    assert!(p.has_time_for_attempt(Some(t0() + Duration::seconds(45)), t0()));
    // No request leaves later than Oen's 29 s plus the margin before the lease (or the
    // invocation, whichever ends first) ends.
    let lease = p.lease_until(t0());
    assert_eq!(lease, t0() + Duration::seconds(90));
    assert_eq!(p.send_deadline(lease, None), t0() + Duration::seconds(51));
    let soon = Some(t0() + Duration::seconds(60));
    assert_eq!(p.send_deadline(lease, soon), t0() + Duration::seconds(21));
    assert!(!p.listing_trusted(t0(), t0() + Duration::seconds(299)));
    assert!(p.listing_trusted(t0(), t0() + Duration::minutes(5)));
}

fn claimed_period(sub: &Subscription) -> ChargePeriod {
    ChargePeriod {
        subscription: sub.id.clone(),
        period: 0,
        order_id: OrderId::for_period(&sub.id, 0),
        amount: crate::domain::Amount::new(500).unwrap(),
        state: PeriodState::Charging {
            lease_owner: "test".into(),
            lease_until: t0() + Duration::minutes(1),
        },
        attempts: 0,
        last_error: None,
        updated_at: t0(),
        refunded: None,
        product_details: Vec::new(),
        anomalies: Vec::new(),
        customer: Some(sub.customer.clone()),
    }
}
