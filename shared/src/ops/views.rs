//! What the operations answer: typed JSON views (camelCase) of our records. A view never
//! holds a card token or its ciphertext: a card is its last four digits.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{
    Card, ChargePeriod, OrderId, PeriodState, Subscription, SubscriptionStatus, TransactionId,
};

/// A minted start link.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    pub url: String,
    pub customer: String,
    pub plan: String,
    pub expires_at: DateTime<Utc>,
}

/// A bound card, as far as anyone outside the charger may know it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CardView {
    pub last4: Option<String>,
    pub bound_at: DateTime<Utc>,
    /// Plans whose subscription charges this card.
    pub charged_for: Vec<String>,
}

impl CardView {
    pub fn of(card: &Card, subscriptions: &[Subscription]) -> Self {
        Self {
            last4: card.last4.clone(),
            bound_at: card.created_at,
            charged_for: subscriptions
                .iter()
                .filter(|s| s.card == card.binding)
                .map(|s| s.plan.to_string())
                .collect(),
        }
    }
}

/// Where one period's charge stands.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PeriodStatus {
    Open,
    Charging,
    Unknown,
    Paid,
    Declined,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PeriodView {
    pub period: u32,
    pub order_id: OrderId,
    pub amount: u32,
    pub status: PeriodStatus,
    /// Oen's `P…` number of the paying transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<TransactionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded: Option<u32>,
    pub updated_at: DateTime<Utc>,
}

impl From<&ChargePeriod> for PeriodView {
    fn from(p: &ChargePeriod) -> Self {
        let (status, transaction, paid_at, decline_code) = match &p.state {
            PeriodState::Open => (PeriodStatus::Open, None, None, None),
            PeriodState::Charging { .. } => (PeriodStatus::Charging, None, None, None),
            PeriodState::Unknown { .. } => (PeriodStatus::Unknown, None, None, None),
            PeriodState::Paid {
                transaction,
                paid_at,
                ..
            } => (
                PeriodStatus::Paid,
                Some(transaction.clone()),
                Some(*paid_at),
                None,
            ),
            PeriodState::Declined { code, .. } => {
                (PeriodStatus::Declined, None, None, Some(code.clone()))
            }
        };
        Self {
            period: p.period,
            order_id: p.order_id.clone(),
            amount: p.amount.ntd(),
            status,
            transaction,
            paid_at,
            decline_code,
            attempts: p.attempts,
            refunded: p.refunded.map(|a| a.ntd()),
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    pub id: String,
    pub customer: String,
    pub plan: String,
    pub status: SubscriptionStatus,
    pub cancel_at_period_end: bool,
    /// The first period not yet paid.
    pub current_period: u32,
    /// When the charger looks at it next (a due charge, a retry, a reconciliation).
    pub next_action_at: Option<DateTime<Utc>>,
    pub anchor: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last four digits of the card it charges, when known.
    pub card_last4: Option<String>,
    /// The latest periods, newest first.
    pub recent_periods: Vec<PeriodView>,
}

impl SubscriptionView {
    pub fn of(s: &Subscription, card: Option<&Card>, periods: &[ChargePeriod]) -> Self {
        Self {
            id: s.id.to_string(),
            customer: s.customer.to_string(),
            plan: s.plan.to_string(),
            status: s.status,
            cancel_at_period_end: s.cancel_at_period_end,
            current_period: s.period,
            next_action_at: s.next_action_at,
            anchor: s.anchor,
            created_at: s.created_at,
            updated_at: s.updated_at,
            card_last4: card.and_then(|c| c.last4.clone()),
            recent_periods: periods.iter().map(PeriodView::from).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    pub customer: String,
    pub subscriptions: Vec<SubscriptionView>,
    pub cards: Vec<CardView>,
}

/// A refund as recorded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefundView {
    pub order_id: OrderId,
    /// Oen's `P…` number of the refunded transaction.
    pub transaction: TransactionId,
    /// NT$ refunded.
    pub refunded: u32,
    /// NT$ the period was charged.
    pub charged: u32,
    /// True when this answers a repeat of a refund recorded before (nothing was sent to Oen).
    pub replayed: bool,
}
