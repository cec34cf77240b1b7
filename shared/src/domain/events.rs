//! Domain events for the merchant's systems (e-mails, entitlements). Each carries a stable id
//! derived from what happened, so a consumer can de-duplicate redeliveries; each type has one
//! builder here, so an event's id and shape are decided in one place.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    Amount, AnomalyRefund, BindingSession, ChargePeriod, CustomerId, OneOffCharge, OrderId,
    PaymentAnomaly, ReconciliationProgress, ReconciliationReport, SessionState, Subscription,
    TransactionId,
};

/// Every event type the project emits (the EventBridge `DetailType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    CardBound,
    PaymentSucceeded,
    PaymentFailed,
    PaymentUnknown,
    PaymentRefunded,
    PaymentDuplicateDetected,
    SubscriptionPastDue,
    SubscriptionRequiresPaymentMethod,
    SubscriptionCanceled,
    SubscriptionRenewalUpcoming,
    ChargeSucceeded,
    ChargeFailed,
    ChargeUnknown,
    // Daily reconciliation (`crate::reconcile`).
    ReconciliationCompleted,
}

impl EventType {
    pub const ALL: [EventType; 14] = [
        EventType::CardBound,
        EventType::PaymentSucceeded,
        EventType::PaymentFailed,
        EventType::PaymentUnknown,
        EventType::PaymentRefunded,
        EventType::PaymentDuplicateDetected,
        EventType::SubscriptionPastDue,
        EventType::SubscriptionRequiresPaymentMethod,
        EventType::SubscriptionCanceled,
        EventType::SubscriptionRenewalUpcoming,
        EventType::ChargeSucceeded,
        EventType::ChargeFailed,
        EventType::ChargeUnknown,
        EventType::ReconciliationCompleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CardBound => "card.bound",
            EventType::PaymentSucceeded => "payment.succeeded",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentUnknown => "payment.unknown",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::PaymentDuplicateDetected => "payment.duplicate_detected",
            EventType::SubscriptionPastDue => "subscription.past_due",
            EventType::SubscriptionRequiresPaymentMethod => "subscription.requires_payment_method",
            EventType::SubscriptionCanceled => "subscription.canceled",
            EventType::SubscriptionRenewalUpcoming => "subscription.renewal_upcoming",
            EventType::ChargeSucceeded => "charge.succeeded",
            EventType::ChargeFailed => "charge.failed",
            EventType::ChargeUnknown => "charge.unknown",
            EventType::ReconciliationCompleted => "reconciliation.completed",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for EventType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Read back from the outbox: only the names [`EventType::as_str`] writes.
impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event type {name:?}")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    /// Stable: the same happening always gets the same id (`{type}:{what it is about}`).
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub at: DateTime<Utc>,
    pub customer: CustomerId,
    pub data: serde_json::Value,
}

/// What every event about a charge says of its period.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PeriodData<'a, T: Serialize> {
    subscription: &'a str,
    plan: &'a str,
    period: u32,
    order_id: &'a OrderId,
    amount: Amount,
    #[serde(flatten)]
    detail: T,
}

impl DomainEvent {
    fn new(kind: EventType, about: &str, at: DateTime<Utc>, customer: &CustomerId) -> Self {
        Self {
            id: format!("{}:{about}", kind.as_str()),
            kind,
            at,
            customer: customer.clone(),
            data: serde_json::Value::Null,
        }
    }

    fn with(mut self, data: impl Serialize) -> Self {
        // Serialising these plain structs cannot fail; an empty object is a safe fallback.
        self.data = serde_json::to_value(data).unwrap_or_default();
        self
    }

    /// An event about one charge of `period` of `sub`; `about` is what makes it unique.
    fn of_period(
        kind: EventType,
        about: &str,
        sub: &Subscription,
        period: &ChargePeriod,
        at: DateTime<Utc>,
        detail: impl Serialize,
    ) -> Self {
        Self::new(kind, about, at, &sub.customer).with(PeriodData {
            subscription: period.subscription.as_str(),
            plan: sub.plan.as_str(),
            period: period.period,
            order_id: &period.order_id,
            amount: period.amount,
            detail,
        })
    }

    /// `card.bound`, once per binding (a duplicate webhook rebuilds the same event). `None`
    /// while the session is not bound.
    pub fn card_bound(session: &BindingSession) -> Option<Self> {
        let SessionState::Bound {
            last4, bound_at, ..
        } = &session.state
        else {
            return None;
        };
        Some(
            Self::new(
                EventType::CardBound,
                session.reference.as_str(),
                *bound_at,
                &session.customer,
            )
            .with(serde_json::json!({
                "binding": session.reference,
                "plan": session.plan,
                "last4": last4,
            })),
        )
    }

    /// `payment.succeeded`, once per order; `reconciled` when the payment was found by asking
    /// Oen rather than by our own charge call.
    pub fn payment_succeeded(
        sub: &Subscription,
        period: &ChargePeriod,
        transaction: &TransactionId,
        reconciled: bool,
        at: DateTime<Utc>,
    ) -> Self {
        let about = period.order_id.as_str();
        let detail = serde_json::json!({"transaction": transaction, "reconciled": reconciled});
        Self::of_period(EventType::PaymentSucceeded, about, sub, period, at, detail)
    }

    /// `payment.failed`, once per attempt of the order.
    pub fn payment_failed(
        sub: &Subscription,
        period: &ChargePeriod,
        code: &str,
        hard: bool,
        at: DateTime<Utc>,
    ) -> Self {
        let about = attempt_key(period);
        let detail = serde_json::json!({"code": code, "hard": hard});
        Self::of_period(EventType::PaymentFailed, &about, sub, period, at, detail)
    }

    /// `payment.unknown`, once per attempt whose outcome could not be known.
    pub fn payment_unknown(
        sub: &Subscription,
        period: &ChargePeriod,
        reconcile_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Self {
        let about = attempt_key(period);
        let detail = serde_json::json!({"reconcileAt": reconcile_at});
        Self::of_period(EventType::PaymentUnknown, &about, sub, period, at, detail)
    }

    /// `subscription.past_due`, once per dunning retry `retry` (1, 2, …) of the order.
    pub fn subscription_past_due(
        sub: &Subscription,
        period: &ChargePeriod,
        retry: u32,
        retry_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Self {
        let about = format!("{}:{retry}", period.order_id);
        let detail = serde_json::json!({"retryAt": retry_at, "attempt": retry});
        Self::of_period(
            EventType::SubscriptionPastDue,
            &about,
            sub,
            period,
            at,
            detail,
        )
    }

    /// `subscription.requires_payment_method`, after a hard decline of an attempt.
    pub fn subscription_requires_payment_method(
        sub: &Subscription,
        period: &ChargePeriod,
        code: &str,
        at: DateTime<Utc>,
    ) -> Self {
        let about = attempt_key(period);
        let detail = serde_json::json!({"code": code});
        let kind = EventType::SubscriptionRequiresPaymentMethod;
        Self::of_period(kind, &about, sub, period, at, detail)
    }

    /// `subscription.canceled` when dunning ran out on `period`.
    pub fn subscription_canceled_by_dunning(
        sub: &Subscription,
        period: &ChargePeriod,
        at: DateTime<Utc>,
    ) -> Self {
        let detail = serde_json::json!({"reason": "dunning exhausted"});
        let kind = EventType::SubscriptionCanceled;
        Self::of_period(kind, sub.id.as_str(), sub, period, at, detail)
    }

    /// `subscription.canceled` outside a charge attempt (an operator, or the end of a paid
    /// period). A subscription is canceled once, so its id is the event's.
    pub fn subscription_canceled(sub: &Subscription, reason: &str, at: DateTime<Utc>) -> Self {
        Self::new(
            EventType::SubscriptionCanceled,
            sub.id.as_str(),
            at,
            &sub.customer,
        )
        .with(serde_json::json!({"subscription": sub.id, "plan": sub.plan, "reason": reason}))
    }

    /// `subscription.renewal_upcoming`, once per period of a subscription (id
    /// `subscription.renewal_upcoming:{subscription}:{period}`): the coming charge's amount and
    /// product lines, fixed in `period` when the notice opened it, and when it will be made.
    pub fn subscription_renewal_upcoming(
        sub: &Subscription,
        period: &ChargePeriod,
        charge_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Self {
        let about = format!("{}:{}", sub.id, period.period);
        let detail = serde_json::json!({
            "customer": sub.customer,
            "productDetails": period.product_details,
            "chargeAt": charge_at,
        });
        let kind = EventType::SubscriptionRenewalUpcoming;
        Self::of_period(kind, &about, sub, period, at, detail)
    }

    /// `payment.duplicate_detected`, once per transaction Oen took for an order beyond what the
    /// period asked for.
    pub fn payment_duplicate_detected(
        sub: &Subscription,
        period: &ChargePeriod,
        anomaly: &PaymentAnomaly,
        at: DateTime<Utc>,
    ) -> Self {
        let about = format!("{}:{}", period.order_id, anomaly.transaction);
        let detail = serde_json::json!({
            "transaction": anomaly.transaction,
            "transactionAmount": anomaly.amount,
            "kind": anomaly.kind,
            "autoRefund": anomaly.refund == AnomalyRefund::Pending,
        });
        let kind = EventType::PaymentDuplicateDetected;
        Self::of_period(kind, &about, sub, period, at, detail)
    }

    /// `payment.refunded`, once per order (Oen allows one refund per transaction).
    pub fn payment_refunded(
        customer: &CustomerId,
        period: &ChargePeriod,
        transaction: &TransactionId,
        amount: Amount,
        at: DateTime<Utc>,
    ) -> Self {
        Self::new(
            EventType::PaymentRefunded,
            period.order_id.as_str(),
            at,
            customer,
        )
        .with(serde_json::json!({
            "orderId": period.order_id,
            "amount": amount,
            "transaction": transaction,
        }))
    }
}

/// What every event about a one-off charge says of it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChargeData<'a, T: Serialize> {
    charge: &'a str,
    order_id: &'a OrderId,
    amount: Amount,
    reference: Option<&'a str>,
    #[serde(flatten)]
    detail: T,
}

/// Events about one-off charges (`crate::oneoff`).
impl DomainEvent {
    fn of_charge(
        kind: EventType,
        about: &str,
        charge: &OneOffCharge,
        at: DateTime<Utc>,
        detail: impl Serialize,
    ) -> Self {
        Self::new(kind, about, at, &charge.customer).with(ChargeData {
            charge: charge.id.as_str(),
            order_id: &charge.order_id,
            amount: charge.amount,
            reference: charge.reference.as_deref(),
            detail,
        })
    }

    /// `charge.succeeded`, once per one-off charge; `reconciled` when the payment was found by
    /// asking Oen rather than by our own charge call.
    pub fn charge_succeeded(
        charge: &OneOffCharge,
        transaction: &TransactionId,
        reconciled: bool,
        at: DateTime<Utc>,
    ) -> Self {
        let detail = serde_json::json!({"transaction": transaction, "reconciled": reconciled});
        let about = charge.order_id.as_str();
        Self::of_charge(EventType::ChargeSucceeded, about, charge, at, detail)
    }

    /// `charge.failed`, once per attempt of a one-off charge that ended with nothing charged:
    /// a decline (final), or a reconciliation that found nothing at Oen (`not_charged`).
    pub fn charge_failed(charge: &OneOffCharge, code: &str, hard: bool, at: DateTime<Utc>) -> Self {
        let detail = serde_json::json!({"code": code, "hard": hard});
        let about = format!("{}:{}", charge.order_id, charge.attempts);
        Self::of_charge(EventType::ChargeFailed, &about, charge, at, detail)
    }

    /// `payment.refunded` of a one-off charge, once per order like a period's and shaped like
    /// it (`amount` is what was refunded), naming the charge and the merchant's reference too.
    pub fn payment_refunded_of_charge(
        charge: &OneOffCharge,
        transaction: &TransactionId,
        refunded: Amount,
        at: DateTime<Utc>,
    ) -> Self {
        Self::new(
            EventType::PaymentRefunded,
            charge.order_id.as_str(),
            at,
            &charge.customer,
        )
        .with(serde_json::json!({
            "orderId": charge.order_id,
            "amount": refunded,
            "transaction": transaction,
            "charge": charge.id,
            "reference": charge.reference,
        }))
    }

    /// `charge.unknown`, once per attempt of a one-off charge whose outcome could not be known.
    pub fn charge_unknown(
        charge: &OneOffCharge,
        reconcile_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Self {
        let about = format!("{}:{}", charge.order_id, charge.attempts);
        let detail = serde_json::json!({"reconcileAt": reconcile_at});
        Self::of_charge(EventType::ChargeUnknown, &about, charge, at, detail)
    }
}

// Daily reconciliation (`crate::reconcile`).

/// The `customer` of events about the merchant's books as a whole rather than one customer
/// (a customer id is never empty; consumers tell these events by their type).
pub const MERCHANT_SCOPE: &str = "_merchant";

impl DomainEvent {
    /// `reconciliation.completed`, once per run of a day (`{date}:{run}`): a run resumed after a
    /// timeout rebuilds the same event, a deliberate re-run of the day is a new run with its own
    /// event. `None` while the report is not complete.
    pub fn reconciliation_completed(report: &ReconciliationReport) -> Option<Self> {
        let ReconciliationProgress::Complete {
            pages_read,
            completed_at,
        } = report.progress
        else {
            return None;
        };
        let customer = CustomerId::parse(MERCHANT_SCOPE)
            .unwrap_or_else(|_| unreachable!("{MERCHANT_SCOPE} is a valid customer id"));
        let date = report.date.format("%Y-%m-%d").to_string();
        let about = format!("{date}:{}", report.run);
        Some(
            Self::new(
                EventType::ReconciliationCompleted,
                &about,
                completed_at,
                &customer,
            )
            .with(serde_json::json!({
                "date": date,
                "run": report.run,
                "pagesRead": pages_read,
                "counts": report.counts,
                "findings": report.counts.findings(),
            })),
        )
    }
}

/// One attempt of an order: the order id and how many attempts have reached Oen.
fn attempt_key(period: &ChargePeriod) -> String {
    format!("{}:{}", period.order_id, period.attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_reads_back_from_its_name_and_no_other_name_reads() {
        for kind in EventType::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), kind);
        }
        // Every event the outbox may hold reads back, the duplicate report included.
        let duplicate = serde_json::to_string(&EventType::PaymentDuplicateDetected).unwrap();
        assert!(serde_json::from_str::<EventType>(&duplicate).is_ok());
        for name in ["\"payment\"", "\"Payment.Succeeded\"", "\"\"", "1"] {
            assert!(serde_json::from_str::<EventType>(name).is_err(), "{name}");
        }
    }

    #[test]
    fn an_event_reads_back_as_it_was_published() {
        let at = DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap();
        let event = DomainEvent::subscription_canceled(
            &crate::store::contract::subscription("c-json", Some(at)),
            "operator",
            at,
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "subscription.canceled");
        assert_eq!(serde_json::from_value::<DomainEvent>(json).unwrap(), event);
    }
}
