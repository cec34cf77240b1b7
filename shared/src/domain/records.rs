//! The records the project keeps. None of them holds a plaintext card token.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Amount, BindingRef, CheckoutId, Ciphertext, CustomerId, DomainEvent, IdempotencyRecord, LinkId,
    OneOffCharge, OrderId, Payer, Plan, PlanId, ProductDetail, ReconciliationReport,
    SubscriptionId, TransactionId,
};

/// A card binding started by `checkout-start`: our reference, whom it is for, and Oen's page id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingSession {
    pub reference: BindingRef,
    pub customer: CustomerId,
    pub plan: PlanId,
    pub created_at: DateTime<Utc>,
    /// Oen's hosted page is valid 10 minutes; so is the session.
    pub expires_at: DateTime<Utc>,
    /// Oen's id of the hosted page, once `POST /checkout-token` answered.
    pub checkout_id: Option<CheckoutId>,
    pub state: SessionState,
    /// The plan's terms when the session started: a token Oen delivers is stored even if the
    /// plan left the catalog meanwhile.
    #[serde(default)]
    pub terms: Option<Plan>,
    /// The payer's e-mail, name and `invoiceInfo` the start link carried (e-invoicing).
    #[serde(default, skip_serializing_if = "Payer::is_empty")]
    pub payer: Payer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    Pending,
    Bound {
        /// SHA-256 of the token, to tell a duplicate webhook from a different token.
        token_fingerprint: String,
        last4: Option<String>,
        bound_at: DateTime<Utc>,
    },
    Failed {
        reason: String,
        failed_at: DateTime<Utc>,
    },
}

impl BindingSession {
    /// Where the binding stands as the customer's return page sees it, at `now`.
    pub fn binding_state(&self, now: DateTime<Utc>) -> BindingState {
        match self.state {
            SessionState::Bound { .. } => BindingState::Bound,
            SessionState::Failed { .. } => BindingState::Failed,
            SessionState::Pending if now > self.expires_at => BindingState::Expired,
            SessionState::Pending => BindingState::Pending,
        }
    }
}

/// A binding's state as reported to the browser (`/checkout/status`) and the dev stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingState {
    /// The hosted page is open; no webhook yet.
    Pending,
    Bound,
    Failed,
    /// The hosted page expired before a card was bound.
    Expired,
}

impl BindingState {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingState::Pending => "pending",
            BindingState::Bound => "bound",
            BindingState::Failed => "failed",
            BindingState::Expired => "expired",
        }
    }
}

impl std::fmt::Display for BindingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A start link's claim on the one binding session it may open, written (put-if-absent) before
/// that session: a replay of the link finds the session, and its hosted page, through it instead
/// of calling Oen again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaim {
    pub link: LinkId,
    /// The session the link opened.
    pub binding: BindingRef,
    /// The link's own `expires`: after it the link is refused anyway, so the claim may go.
    pub link_expires: DateTime<Utc>,
    pub claimed_at: DateTime<Utc>,
}

/// A bound card: the token as KMS ciphertext under the context (merchant, customer, binding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub customer: CustomerId,
    pub binding: BindingRef,
    pub ciphertext: Ciphertext,
    pub token_fingerprint: String,
    pub last4: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The payer of the binding that stored the card: one-off charges of it send them.
    #[serde(default, skip_serializing_if = "Payer::is_empty")]
    pub payer: Payer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// In a trial or paid up.
    Active,
    /// A soft decline; retries are scheduled.
    PastDue,
    /// A hard decline; waiting for the customer to bind a new card.
    RequiresPaymentMethod,
    Canceled,
}

/// A customer's subscription to a plan (one per customer and plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub customer: CustomerId,
    pub plan: PlanId,
    pub status: SubscriptionStatus,
    /// The binding whose card is charged.
    pub card: BindingRef,
    /// Due date of period 0; period n is due at the plan interval × n after it.
    pub anchor: DateTime<Utc>,
    /// The first period not yet paid.
    pub period: u32,
    /// When the charger should next look at this subscription (a due period, a dunning retry, a
    /// reconciliation). `None` keeps it out of the due index.
    pub next_action_at: Option<DateTime<Utc>>,
    /// Soft declines of the current period so far.
    pub dunning_attempts: u32,
    pub cancel_at_period_end: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The plan's terms as last seen in the catalog (at binding, and at each payment): what
    /// the subscription is charged on once its plan is retired.
    #[serde(default)]
    pub terms: Option<Plan>,
    /// A period of the canceled subscription this one replaced (same customer and plan) whose
    /// charge outcome was not known when the customer bound again. It is reconciled before
    /// this subscription is charged; if it turns out paid, this subscription starts when that
    /// period ends.
    #[serde(default)]
    pub carried: Option<CarriedPeriod>,
    /// The last period whose renewal notice went out, or that needs none (charged at once when
    /// the customer bound a card, or early by an operator). While the current period is not
    /// covered, [`Subscription::renewal_awaiting_notice`] lists it in the renewal-notice index.
    #[serde(default)]
    pub renewal_noticed: Option<u32>,
    /// The payer's e-mail, name and `invoiceInfo`, sent with every charge (`userEmail`,
    /// `userName`, `invoiceInfo`) so that Oen can issue the e-invoice. Set from the start link
    /// at binding; a later binding's link updates them ([`Payer::updated_by`]).
    #[serde(default, skip_serializing_if = "Payer::is_empty")]
    pub payer: Payer,
}

impl Subscription {
    /// When the current period's renewal charge is due, if that charge still awaits its
    /// `subscription.renewal_upcoming` notice: an active subscription that is not ending at
    /// period end, with nothing carried over from a replaced one, whose current period is not
    /// covered by [`Self::renewal_noticed`]. The store indexes subscriptions by it (the
    /// renewal-notice index), so every write of a subscription moves, or removes, its entry.
    pub fn renewal_awaiting_notice(&self) -> Option<DateTime<Utc>> {
        let eligible = self.status == SubscriptionStatus::Active
            && !self.cancel_at_period_end
            && self.carried.is_none()
            && self.renewal_noticed.is_none_or(|n| n < self.period);
        if eligible {
            self.next_action_at
        } else {
            None
        }
    }
}

/// An uncertain period carried over from a replaced subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedPeriod {
    pub subscription: SubscriptionId,
    pub period: u32,
    /// When that period ends, were it paid.
    pub paid_until: DateTime<Utc>,
}

/// Where one period's charge stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PeriodState {
    /// No attempt is running; the next one may go ahead (after the protocol's checks).
    Open,
    /// A worker holds the lease and may be talking to Oen right now.
    Charging {
        lease_owner: String,
        lease_until: DateTime<Utc>,
    },
    /// An attempt may have reached Oen and its result is not known: never charge blind.
    Unknown {
        since: DateTime<Utc>,
        reconcile_at: DateTime<Utc>,
        checks: u32,
    },
    /// Paid: Oen's transaction number and auth code.
    Paid {
        transaction: TransactionId,
        auth_code: Option<String>,
        paid_at: DateTime<Utc>,
    },
    /// Declined for good (hard decline, or dunning exhausted).
    Declined { code: String, at: DateTime<Utc> },
}

impl PeriodState {
    /// An attempt may be running or may have reached Oen with its result not known: the
    /// period must be reconciled before anything else happens to it.
    pub fn is_uncertain(&self) -> bool {
        matches!(
            self,
            PeriodState::Charging { .. } | PeriodState::Unknown { .. }
        )
    }
}

/// One period of a subscription and the charge that pays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargePeriod {
    pub subscription: SubscriptionId,
    pub period: u32,
    pub order_id: OrderId,
    pub amount: Amount,
    pub state: PeriodState,
    /// Charge requests that may have reached Oen for this order.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// Refunded amount, once a refund succeeded.
    pub refunded: Option<Amount>,
    /// The product lines charged with `amount`, fixed with it when the period opened. Empty on
    /// periods opened before they were kept; those charge their plan's lines at `amount`.
    #[serde(default)]
    pub product_details: Vec<ProductDetail>,
    /// Paid transactions of this order beyond the one that pays the period, or a paid amount
    /// that differs from the period's: each is reported, and a second payment is refunded.
    #[serde(default)]
    pub anomalies: Vec<PaymentAnomaly>,
    /// The customer charged, so that the period outlives its subscription's record: a
    /// canceled subscription is replaced (new id) when its customer binds a card again, and its
    /// paid periods must stay refundable. Absent on periods opened before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerId>,
}

/// Money Oen took for an order that the period did not ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAnomaly {
    pub transaction: TransactionId,
    /// NT$ Oen reports for the transaction.
    pub amount: i64,
    pub kind: AnomalyKind,
    pub detected_at: DateTime<Utc>,
    pub refund: AnomalyRefund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A second paid transaction for one order: the customer paid twice.
    Duplicate,
    /// The paying transaction's amount is not the period's: reported for a person to decide.
    AmountMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AnomalyRefund {
    /// To be refunded (automatic refunds of duplicates are on).
    Pending,
    Refunded {
        amount: Amount,
        at: DateTime<Utc>,
    },
    /// Oen refused or failed the refund: a person must look (an alarm fired).
    Failed {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Not refunded automatically (a mismatch, or automatic refunds are off).
    Manual,
}

/// Who did what to a customer's card or money, and when. Never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub customer: CustomerId,
    pub at: DateTime<Utc>,
    /// A unique suffix so that entries at the same instant never collide.
    pub id: String,
    pub actor: String,
    pub action: String,
    pub binding: Option<BindingRef>,
    pub detail: String,
}

impl AuditEntry {
    pub fn new(
        customer: CustomerId,
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        binding: Option<BindingRef>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            customer,
            at,
            id: crate::domain::random_alphanumeric(8),
            actor: actor.to_owned(),
            action: action.to_owned(),
            binding,
            detail: detail.into(),
        }
    }
}

/// A domain event in the outbox: written in the same commit as the state change it reports,
/// then shipped to the event bus at least once (`crate::outbox`). Keyed by the event's stable
/// id, so one happening is recorded once however often it is rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub event: DomainEvent,
    pub created_at: DateTime<Utc>,
    /// When the event bus took the event; `None` while it waits to be shipped.
    pub delivered_at: Option<DateTime<Utc>>,
}

impl OutboxEntry {
    /// How long a delivered entry is kept: a rebuilt event with the same id is recognised (and
    /// not shipped again) meanwhile; afterwards the store forgets it.
    pub const KEPT_AFTER_DELIVERY: chrono::Duration = chrono::Duration::days(7);

    pub fn pending(event: DomainEvent, now: DateTime<Utc>) -> Self {
        Self {
            event,
            created_at: now,
            delivered_at: None,
        }
    }
}

/// Any record, as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Session(BindingSession),
    Link(LinkClaim),
    Card(Card),
    Subscription(Subscription),
    Period(ChargePeriod),
    Audit(AuditEntry),
    Outbox(OutboxEntry),
    // One-off charges (`crate::oneoff`).
    Charge(OneOffCharge),
    Idempotency(IdempotencyRecord),
    // Daily reconciliation (`crate::reconcile`).
    Reconciliation(ReconciliationReport),
}

impl Record {
    /// The record's type name, as stored in the `kind` attribute.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Session(_) => "session",
            Record::Link(_) => "link",
            Record::Card(_) => "card",
            Record::Subscription(_) => "subscription",
            Record::Period(_) => "period",
            Record::Audit(_) => "audit",
            Record::Outbox(_) => "outbox",
            Record::Charge(_) => "charge",
            Record::Idempotency(_) => "idempotency",
            // Daily reconciliation (`crate::reconcile`).
            Record::Reconciliation(_) => "reconciliation",
        }
    }

    /// When the store may forget the record (DynamoDB TTL). Sessions outlive their page by a day
    /// so the return page can still read their state; link claims outlive their link by a day,
    /// so that no clock skew lets a link that is still accepted be claimed twice; a delivered
    /// outbox entry is kept [`OutboxEntry::KEPT_AFTER_DELIVERY`]; a pending one never expires;
    /// an idempotency key goes when it expires (its reader checks the expiry too: the store's
    /// removal lags). A one-off charge is a record of money and never expires; neither does a
    /// reconciliation report.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Record::Session(s) => Some(s.expires_at + chrono::Duration::days(1)),
            Record::Link(l) => Some(l.link_expires + chrono::Duration::days(1)),
            Record::Outbox(o) => o
                .delivered_at
                .map(|at| at + OutboxEntry::KEPT_AFTER_DELIVERY),
            Record::Idempotency(i) => Some(i.expires_at),
            _ => None,
        }
    }
}

macro_rules! into_record {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for Record {
            fn from(x: $t) -> Self {
                Record::$v(x)
            }
        }

        impl TryFrom<Record> for $t {
            /// The record, when it is of another type.
            type Error = Record;

            fn try_from(r: Record) -> Result<Self, Record> {
                match r {
                    Record::$v(x) => Ok(x),
                    other => Err(other),
                }
            }
        }
    )*};
}
into_record!(BindingSession => Session, LinkClaim => Link, Card => Card, Subscription => Subscription, ChargePeriod => Period, AuditEntry => Audit, OutboxEntry => Outbox, OneOffCharge => Charge, IdempotencyRecord => Idempotency, ReconciliationReport => Reconciliation);
