//! The pure domain: values that can only be built valid.

mod events;
mod ids;
mod money;
mod oneoff;
mod payer;
mod plan;
// Daily reconciliation (`crate::reconcile`).
mod reconciliation;
mod records;
mod token;

pub use events::{DomainEvent, EventType};
pub(crate) use ids::random_alphanumeric;
pub use ids::{
    BindingRef, CheckoutId, CustomerId, LinkId, MerchantId, OrderId, PlanId, SubscriptionId,
    TransactionId,
};
pub use money::Amount;
pub use oneoff::{
    ChargeId, ChargeState, IdempotencyKey, IdempotencyRecord, OneOffCharge, StoredReply,
};
pub use payer::{Email, InvoiceInfo, Payer, PayerError, PayerName, MAX_NAME_CHARS};
pub use plan::{taipei, taipei_date, taipei_time, Catalog, Interval, Plan, ProductDetail};
pub use records::{
    AnomalyKind, AnomalyRefund, AuditEntry, BindingSession, BindingState, Card, CarriedPeriod,
    ChargePeriod, LinkClaim, OutboxEntry, PaymentAnomaly, PeriodState, Record, SessionState,
    Subscription, SubscriptionStatus,
};
// Daily reconciliation (`crate::reconcile`).
pub use reconciliation::{
    Finding, FindingKind, ReconciliationCounts, ReconciliationProgress, ReconciliationReport,
    MAX_LISTED_FINDINGS,
};
pub use token::{CardToken, Ciphertext};
