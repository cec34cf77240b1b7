//! The pure state machine of a charge attempt: given the claimed period, the subscription and
//! how the attempt ended, the period's and subscription's next states, the outcome, the events
//! and the audit entry. One function per way an attempt can end; nothing here does I/O.

use chrono::{DateTime, Utc};

use super::{ChargePolicy, WorkOutcome};
use crate::domain::{
    AnomalyRefund, AuditEntry, ChargePeriod, DomainEvent, PaymentAnomaly, PeriodState, Plan,
    Subscription, SubscriptionStatus, TransactionId,
};

/// How an attempt ended, before it is written down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    Paid {
        transaction: TransactionId,
        auth_code: Option<String>,
        /// Paid by our own charge call now, rather than found paid by asking Oen.
        charged: bool,
        /// What else Oen's listing shows paid for the order (a second payment, a wrong amount).
        anomalies: Vec<PaymentAnomaly>,
    },
    SoftDecline(String),
    HardDecline(String),
    Unknown(String),
    NotSent(String),
    Config(String),
    /// Reconciled to "nothing charged" on a subscription that must not be charged any more.
    Abandoned,
}

impl Settled {
    /// Whether writing this down leaves a second payment to refund.
    pub fn has_refunds_due(&self) -> bool {
        matches!(self, Settled::Paid { anomalies, .. }
            if anomalies.iter().any(|a| a.refund == AnomalyRefund::Pending))
    }
}

/// What a transition starts from, beside the subscription and the settlement.
pub(crate) struct Attempted<'a> {
    pub policy: &'a ChargePolicy,
    pub plan: &'a Plan,
    /// The period as claimed (state `Charging`).
    pub claimed: &'a ChargePeriod,
    /// Its state before the claim.
    pub prior: &'a PeriodState,
    /// Whether this attempt called Oen's charge endpoint (not only asked about the order).
    pub called: bool,
    pub now: DateTime<Utc>,
}

/// What an attempt leaves behind.
#[derive(Debug)]
pub(crate) struct Transition {
    pub period: ChargePeriod,
    /// The subscription's next state; `None` leaves the stored one as it is.
    pub subscription: Option<Subscription>,
    pub outcome: WorkOutcome,
    pub events: Vec<DomainEvent>,
    pub audit: Option<AuditEntry>,
}

impl Transition {
    fn new(period: ChargePeriod, outcome: WorkOutcome) -> Self {
        Self {
            period,
            subscription: None,
            outcome,
            events: Vec::new(),
            audit: None,
        }
    }

    fn with_subscription(mut self, sub: Subscription) -> Self {
        self.subscription = Some(sub);
        self
    }

    fn with_events(mut self, events: Vec<DomainEvent>) -> Self {
        self.events = events;
        self
    }

    fn with_audit(mut self, audit: AuditEntry) -> Self {
        self.audit = Some(audit);
        self
    }
}

/// The period and subscription after an attempt that ended as `settled`.
pub(crate) fn transition(at: &Attempted, mut sub: Subscription, settled: &Settled) -> Transition {
    let mut period = at.claimed.clone();
    period.updated_at = at.now;
    if at.called && !matches!(settled, Settled::NotSent(_) | Settled::Config(_)) {
        period.attempts += 1;
    }
    sub.updated_at = at.now;
    match settled {
        Settled::Paid {
            transaction,
            auth_code,
            charged,
            anomalies,
        } => {
            let next = paid(at, period, sub, transaction, auth_code, *charged);
            with_anomalies(next, anomalies, at.now)
        }
        Settled::SoftDecline(code) => soft_decline(at, period, sub, code),
        Settled::HardDecline(code) => hard_decline(at, period, sub, code),
        Settled::Unknown(reason) => unknown(at, period, sub, reason),
        Settled::NotSent(reason) => not_sent(period, reason),
        Settled::Config(reason) => config_error(at, period, sub, reason),
        Settled::Abandoned => abandoned(at, period, sub),
    }
}

fn paid(
    at: &Attempted,
    mut period: ChargePeriod,
    mut sub: Subscription,
    transaction: &TransactionId,
    auth_code: &Option<String>,
    charged: bool,
) -> Transition {
    period.state = PeriodState::Paid {
        transaction: transaction.clone(),
        auth_code: auth_code.clone(),
        paid_at: at.now,
    };
    period.last_error = None;
    // A payment found late for an older period records it without moving the schedule.
    sub.terms = Some(at.plan.clone());
    if sub.period == period.period {
        sub.period += 1;
        sub.dunning_attempts = 0;
        if sub.status == SubscriptionStatus::Canceled {
            sub.next_action_at = None;
        } else {
            sub.status = SubscriptionStatus::Active;
            sub.next_action_at = Some(at.plan.interval.due_date(sub.anchor, sub.period));
        }
    }
    let detail = format!(
        "order {}, transaction {transaction}, charged now: {charged}",
        period.order_id
    );
    let audit = charger_audit(&sub, at, "payment.succeeded", detail);
    let event = DomainEvent::payment_succeeded(&sub, &period, transaction, !charged, at.now);
    let outcome = WorkOutcome::Paid {
        transaction: transaction.clone(),
        charged,
    };
    Transition::new(period, outcome)
        .with_events(vec![event])
        .with_audit(audit)
        .with_subscription(sub)
}

fn soft_decline(
    at: &Attempted,
    mut period: ChargePeriod,
    mut sub: Subscription,
    code: &str,
) -> Transition {
    if charging_stopped(&sub) {
        return declined_after_cancel(at, period, sub, code, false);
    }
    period.state = PeriodState::Open;
    period.last_error = Some(format!("soft decline {code}"));
    sub.dunning_attempts += 1;
    let failed = DomainEvent::payment_failed(&sub, &period, code, false, at.now);
    let Some(wait) = at.policy.dunning_wait(sub.dunning_attempts) else {
        return dunning_exhausted(at, period, sub, code, failed);
    };
    let retry_at = at.now + wait;
    sub.status = SubscriptionStatus::PastDue;
    sub.next_action_at = Some(retry_at);
    let past_due =
        DomainEvent::subscription_past_due(&sub, &period, sub.dunning_attempts, retry_at, at.now);
    Transition::new(period, WorkOutcome::SoftDeclined { retry_at })
        .with_events(vec![failed, past_due])
        .with_subscription(sub)
}

fn dunning_exhausted(
    at: &Attempted,
    mut period: ChargePeriod,
    mut sub: Subscription,
    code: &str,
    failed: DomainEvent,
) -> Transition {
    period.state = PeriodState::Declined {
        code: code.to_owned(),
        at: at.now,
    };
    sub.status = SubscriptionStatus::Canceled;
    sub.next_action_at = None;
    let canceled = DomainEvent::subscription_canceled_by_dunning(&sub, &period, at.now);
    let detail = format!("dunning exhausted on order {}", period.order_id);
    let audit = charger_audit(&sub, at, "subscription.canceled", detail);
    Transition::new(period, WorkOutcome::Canceled)
        .with_events(vec![failed, canceled])
        .with_audit(audit)
        .with_subscription(sub)
}

fn hard_decline(
    at: &Attempted,
    mut period: ChargePeriod,
    mut sub: Subscription,
    code: &str,
) -> Transition {
    if charging_stopped(&sub) {
        return declined_after_cancel(at, period, sub, code, true);
    }
    period.state = PeriodState::Declined {
        code: code.to_owned(),
        at: at.now,
    };
    period.last_error = Some(format!("hard decline {code}"));
    sub.status = SubscriptionStatus::RequiresPaymentMethod;
    sub.next_action_at = None;
    let events = vec![
        DomainEvent::payment_failed(&sub, &period, code, true, at.now),
        DomainEvent::subscription_requires_payment_method(&sub, &period, code, at.now),
    ];
    Transition::new(period, WorkOutcome::HardDeclined)
        .with_events(events)
        .with_subscription(sub)
}

fn unknown(
    at: &Attempted,
    mut period: ChargePeriod,
    mut sub: Subscription,
    reason: &str,
) -> Transition {
    // A failed reconciliation keeps the age of the unknown and backs off further; a new call
    // that ends unknown starts over.
    let (since, checks) = match at.prior {
        PeriodState::Unknown { since, checks, .. } if !at.called => (*since, checks + 1),
        _ => (at.now, 0),
    };
    let reconcile_at = at.now + at.policy.reconcile_after(checks);
    if at.now - since > at.policy.unknown_alarm_after {
        tracing::error!(order = %period.order_id, since = %since, "charge outcome still unknown: reconcile by hand with Oen");
        crate::metrics::count("charger", "UnknownTooOld");
    }
    period.state = PeriodState::Unknown {
        since,
        reconcile_at,
        checks,
    };
    period.last_error = Some(clipped(reason));
    sub.next_action_at = Some(reconcile_at);
    let events = if at.called {
        vec![DomainEvent::payment_unknown(
            &sub,
            &period,
            reconcile_at,
            at.now,
        )]
    } else {
        Vec::new()
    };
    Transition::new(period, WorkOutcome::Unknown { reconcile_at })
        .with_events(events)
        .with_subscription(sub)
}

/// Nothing reached Oen: back to how it was, with the lease released. The subscription stays
/// due, so the next planning run picks it up again.
fn not_sent(mut period: ChargePeriod, reason: &str) -> Transition {
    period.state = PeriodState::Open;
    period.last_error = Some(clipped(reason));
    Transition::new(period, WorkOutcome::NotSent)
}

fn config_error(
    at: &Attempted,
    mut period: ChargePeriod,
    mut sub: Subscription,
    reason: &str,
) -> Transition {
    tracing::error!(order = %period.order_id, error = %reason, "configuration error: no customer state changed");
    crate::metrics::count("charger", "ConfigError");
    period.state = PeriodState::Open;
    period.last_error = Some(clipped(reason));
    if charging_stopped(&sub) {
        // Nothing was charged and nothing may be: the cancel takes effect.
        sub.status = SubscriptionStatus::Canceled;
        sub.next_action_at = None;
    } else {
        sub.next_action_at = Some(at.now + at.policy.config_error_retry);
    }
    Transition::new(period, WorkOutcome::ConfigError).with_subscription(sub)
}

/// Records what else Oen took for the order, once each, and reports it loudly.
fn with_anomalies(
    mut next: Transition,
    found: &[PaymentAnomaly],
    now: DateTime<Utc>,
) -> Transition {
    for a in found {
        let period = &mut next.period;
        if period
            .anomalies
            .iter()
            .any(|k| k.transaction == a.transaction)
        {
            continue;
        }
        tracing::error!(order = %period.order_id, transaction = %a.transaction, kind = ?a.kind, amount = a.amount, "Oen took money for this order that the period did not ask for");
        crate::metrics::count("charger", "DuplicateCharge");
        period.anomalies.push(a.clone());
        let event = match &next.subscription {
            Some(sub) => DomainEvent::payment_duplicate_detected(sub, period, a, now),
            None => continue,
        };
        next.events.push(event);
    }
    next
}

/// Whether the subscription was canceled, now or at the end of this period, while the attempt
/// ran (the attempt's outcome is written against the subscription as it is at the end).
fn charging_stopped(sub: &Subscription) -> bool {
    sub.status == SubscriptionStatus::Canceled || sub.cancel_at_period_end
}

/// A decline of an attempt that a cancel overtook ends the subscription: no dunning, no wait
/// for a new card, nothing scheduled. A cancel wins over every later outcome but a payment.
fn declined_after_cancel(
    at: &Attempted,
    mut period: ChargePeriod,
    mut sub: Subscription,
    code: &str,
    hard: bool,
) -> Transition {
    period.state = PeriodState::Declined {
        code: code.to_owned(),
        at: at.now,
    };
    period.last_error = Some(format!("declined {code} after a cancel"));
    let mut events = vec![DomainEvent::payment_failed(
        &sub, &period, code, hard, at.now,
    )];
    if sub.status != SubscriptionStatus::Canceled {
        sub.status = SubscriptionStatus::Canceled;
        let reason = "ended at period end";
        events.push(DomainEvent::subscription_canceled(&sub, reason, at.now));
    }
    sub.next_action_at = None;
    Transition::new(period, WorkOutcome::Canceled)
        .with_events(events)
        .with_subscription(sub)
}

fn abandoned(at: &Attempted, mut period: ChargePeriod, mut sub: Subscription) -> Transition {
    period.state = PeriodState::Declined {
        code: "CANCELED".into(),
        at: at.now,
    };
    sub.next_action_at = None;
    if sub.cancel_at_period_end {
        sub.status = SubscriptionStatus::Canceled;
    }
    Transition::new(period, WorkOutcome::Canceled).with_subscription(sub)
}

fn charger_audit(sub: &Subscription, at: &Attempted, action: &str, detail: String) -> AuditEntry {
    AuditEntry::new(
        sub.customer.clone(),
        at.now,
        "charger",
        action,
        None,
        detail,
    )
}

/// An error as kept on the period: short enough for a record and a log line.
fn clipped(reason: &str) -> String {
    reason.chars().take(200).collect()
}
