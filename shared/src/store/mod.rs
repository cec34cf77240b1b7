//! The store port: every record the project keeps, and the conditional writes the
//! exactly-once protocol is built on.
//!
//! All writes go through [`Store::commit`], which applies a list of puts atomically, each with a
//! condition: [`Expect::Absent`] (put-if-absent) or [`Expect::Version`] (compare-and-set on the
//! record's version, which every successful put increments). A lease on a charge period is a
//! compare-and-set like any other. If any condition fails, nothing is written and the caller gets
//! [`StoreError::Conflict`].
//!
//! Three sharded indexes list work without a scan: [`Store::due`] the subscriptions whose next
//! action has come, [`Store::outbox_pending`] the outbox entries (domain events committed with
//! their state change) that have not reached the event bus yet, and [`Store::charges_due`] the
//! one-off charges whose running attempt's lease ends or whose unknown outcome is due for
//! reconciliation. A fourth, [`Store::renewals_due`], lists the subscriptions whose coming
//! renewal charge has not been announced yet (`subscription.renewal_upcoming`).

mod memory;

#[cfg(any(test, feature = "testing"))]
pub mod contract;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::domain::{
    BindingRef, ChargeId, CustomerId, IdempotencyKey, LinkId, MerchantId, PlanId, SubscriptionId,
};

pub use crate::domain::{
    AuditEntry, BindingSession, Card, ChargePeriod, ChargeState, IdempotencyRecord, LinkClaim,
    OneOffCharge, OutboxEntry, PeriodState, ReconciliationReport, Record, SessionState,
    Subscription, SubscriptionStatus,
};
pub use memory::MemoryStore;

/// Due-date index shards. Subscriptions spread over them by a hash of their id, so that one busy
/// day never lands on a single partition.
pub const DUE_SHARDS: u16 = 16;

/// Outbox index shards. Every commit that emits an event adds a pending entry and its delivery
/// removes it; spread by a hash of the event id, that traffic never lands on one partition.
pub const OUTBOX_SHARDS: u16 = 16;

/// Where a record lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Session(BindingRef),
    Link(LinkId),
    Card {
        customer: CustomerId,
        binding: BindingRef,
    },
    Subscription {
        customer: CustomerId,
        plan: PlanId,
    },
    Period {
        subscription: SubscriptionId,
        period: u32,
    },
    Audit {
        customer: CustomerId,
        sort: String,
    },
    /// An outbox entry, by its event's stable id.
    Outbox(String),
    // One-off charges (`crate::oneoff`).
    /// A one-off charge, by its id.
    Charge(ChargeId),
    /// A merchant's idempotency key.
    Idempotency {
        merchant: MerchantId,
        key: IdempotencyKey,
    },
    // Daily reconciliation (`crate::reconcile`).
    /// The reconciliation report of a Taipei calendar day.
    Reconciliation(chrono::NaiveDate),
}

impl Record {
    /// Where the record lives.
    pub fn key(&self) -> Key {
        match self {
            Record::Session(s) => Key::Session(s.reference.clone()),
            Record::Link(l) => Key::Link(l.link.clone()),
            Record::Card(c) => Key::Card {
                customer: c.customer.clone(),
                binding: c.binding.clone(),
            },
            Record::Subscription(s) => s.key(),
            Record::Period(p) => p.key(),
            Record::Audit(a) => Key::Audit {
                customer: a.customer.clone(),
                sort: format!("{}#{}", a.at.format("%Y-%m-%dT%H:%M:%S%.6fZ"), a.id),
            },
            Record::Outbox(o) => Key::Outbox(o.event.id.clone()),
            Record::Charge(c) => Key::Charge(c.id.clone()),
            Record::Idempotency(i) => Key::Idempotency {
                merchant: i.merchant.clone(),
                key: i.key.clone(),
            },
            // Daily reconciliation (`crate::reconcile`).
            Record::Reconciliation(r) => Key::Reconciliation(r.date),
        }
    }
}

impl Subscription {
    pub fn key(&self) -> Key {
        Key::Subscription {
            customer: self.customer.clone(),
            plan: self.plan.clone(),
        }
    }
}

impl ChargePeriod {
    pub fn key(&self) -> Key {
        Key::Period {
            subscription: self.subscription.clone(),
            period: self.period,
        }
    }
}

/// A record with the version the store holds it at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// The condition of one put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Put-if-absent: the record must not exist. It is stored at version 1.
    Absent,
    /// Compare-and-set: the record must be at this version. It is stored at version + 1.
    Version(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    pub record: Record,
    pub expect: Expect,
}

impl Put {
    pub fn new(record: impl Into<Record>, expect: Expect) -> Self {
        Self {
            record: record.into(),
            expect,
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StoreError {
    /// A condition failed: someone else wrote first. Nothing was written.
    #[error("conflicting write: {0}")]
    Conflict(String),
    /// The store failed or could not be reached. Nothing is known to have been written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back (schema drift or corruption).
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// The write is not one the store can make (e.g. too many items in one transaction).
    #[error("invalid write: {0}")]
    Invalid(String),
}

/// One subscription that is due (or whose unknown charge is due for reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEntry {
    pub customer: CustomerId,
    pub plan: PlanId,
    pub due_at: DateTime<Utc>,
}

/// One outbox entry not yet delivered, as its index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// The event's stable id: [`Key::Outbox`] reads the entry.
    pub id: String,
    pub created_at: DateTime<Utc>,
}

/// Where a page of the due index (or the outbox index) ended, opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCursor(pub String);

/// One page of an index, and where the next one starts (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub entries: Vec<T>,
    pub next: Option<DueCursor>,
}

impl<T> Page<T> {
    /// The same page with each entry read by `read`, or its first error.
    pub fn try_map<U, E>(self, read: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            entries: self
                .entries
                .into_iter()
                .map(read)
                .collect::<Result<_, _>>()?,
            next: self.next,
        })
    }
}

pub type DuePage = Page<DueEntry>;
pub type OutboxPage = Page<PendingEvent>;

/// One one-off charge whose running attempt's lease ends, or whose unknown outcome is due for
/// reconciliation (`crate::oneoff`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeDue {
    pub charge: ChargeId,
    pub due_at: DateTime<Utc>,
}

pub type ChargeDuePage = Page<ChargeDue>;

/// The most puts one [`Store::commit`] takes (DynamoDB's TransactWriteItems limit is 100;
/// the domain needs a handful).
pub const MAX_PUTS: usize = 25;

/// The shape every adapter's `commit` accepts: 1 to [`MAX_PUTS`] puts, each record once.
pub fn check_commit(puts: &[Put]) -> Result<(), StoreError> {
    if puts.is_empty() || puts.len() > MAX_PUTS {
        return Err(StoreError::Invalid(format!(
            "a commit takes 1 to {MAX_PUTS} puts, not {}",
            puts.len()
        )));
    }
    let keys: std::collections::BTreeSet<Key> = puts.iter().map(|p| p.record.key()).collect();
    if keys.len() != puts.len() {
        return Err(StoreError::Invalid(
            "a commit may write each record once".into(),
        ));
    }
    Ok(())
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError>;

    /// Applies every put or none.
    async fn commit(&self, puts: Vec<Put>) -> Result<(), StoreError>;

    /// Subscriptions of `shard` due at or before `now`, oldest first, `limit` at most a page.
    async fn due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DuePage, StoreError>;

    /// Outbox entries of `shard` not yet delivered and created at or before `until`, oldest
    /// first, `limit` at most a page. Delivering an entry (a put with `delivered_at`) takes it
    /// off this list.
    async fn outbox_pending(
        &self,
        shard: u16,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<OutboxPage, StoreError>;

    // One-off charges (`crate::oneoff`).

    /// Every card of `customer`, in no particular order.
    async fn cards_of(&self, customer: &CustomerId) -> Result<Vec<Versioned<Card>>, StoreError>;

    /// One-off charges of `shard` whose `next_action_at` is at or before `now`, oldest first,
    /// `limit` at most a page: the janitor's work. Shards by [`charge_shard_of`].
    async fn charges_due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<ChargeDuePage, StoreError>;

    // Renewal notices (`crate::charging::notice`).

    /// Subscriptions of `shard` (by [`shard_of`]) whose renewal charge awaits its notice
    /// ([`Subscription::renewal_awaiting_notice`]) and is due at or before `until`, soonest
    /// first, `limit` at most a page. The planner asks with `until` = now + the notice period.
    async fn renewals_due(
        &self,
        shard: u16,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DuePage, StoreError>;

    // End of renewal notices.

    // ---- Lookups of the merchant API (`crate::ops`) ----

    /// Every card and subscription of `customer` (they share one partition), in key order.
    async fn customer_records(&self, customer: &CustomerId) -> Result<CustomerRecords, StoreError>;

    /// The subscription whose id is `id`, whatever its customer and plan. Subscriptions are
    /// keyed by customer and plan; this finds one from its id alone (on DynamoDB through the
    /// `subscription-index`, eventually consistent: a subscription created a moment ago may not
    /// be found yet; what is found is read back consistently).
    async fn subscription_by_id(
        &self,
        id: &SubscriptionId,
    ) -> Result<Option<Versioned<Subscription>>, StoreError>;

    /// The latest `limit` periods of `subscription`, newest first.
    async fn recent_periods(
        &self,
        subscription: &SubscriptionId,
        limit: usize,
    ) -> Result<Vec<Versioned<ChargePeriod>>, StoreError>;
}

/// A customer's partition as [`Store::customer_records`] lists it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerRecords {
    pub cards: Vec<Versioned<Card>>,
    pub subscriptions: Vec<Versioned<Subscription>>,
}

/// Typed reads on top of [`Store::get`].
#[async_trait]
pub trait StoreExt: Store {
    async fn session(
        &self,
        r: &BindingRef,
    ) -> Result<Option<Versioned<BindingSession>>, StoreError> {
        read(self, Key::Session(r.clone())).await
    }

    async fn link_claim(&self, link: &LinkId) -> Result<Option<Versioned<LinkClaim>>, StoreError> {
        read(self, Key::Link(link.clone())).await
    }

    async fn card(
        &self,
        customer: &CustomerId,
        binding: &BindingRef,
    ) -> Result<Option<Versioned<Card>>, StoreError> {
        let (customer, binding) = (customer.clone(), binding.clone());
        read(self, Key::Card { customer, binding }).await
    }

    async fn subscription(
        &self,
        customer: &CustomerId,
        plan: &PlanId,
    ) -> Result<Option<Versioned<Subscription>>, StoreError> {
        let (customer, plan) = (customer.clone(), plan.clone());
        read(self, Key::Subscription { customer, plan }).await
    }

    async fn period(
        &self,
        subscription: &SubscriptionId,
        period: u32,
    ) -> Result<Option<Versioned<ChargePeriod>>, StoreError> {
        let subscription = subscription.clone();
        read(
            self,
            Key::Period {
                subscription,
                period,
            },
        )
        .await
    }

    async fn outbox_entry(&self, id: &str) -> Result<Option<Versioned<OutboxEntry>>, StoreError> {
        read(self, Key::Outbox(id.to_owned())).await
    }

    async fn one_off_charge(
        &self,
        id: &ChargeId,
    ) -> Result<Option<Versioned<OneOffCharge>>, StoreError> {
        read(self, Key::Charge(id.clone())).await
    }

    async fn idempotency(
        &self,
        merchant: &MerchantId,
        key: &IdempotencyKey,
    ) -> Result<Option<Versioned<IdempotencyRecord>>, StoreError> {
        let (merchant, key) = (merchant.clone(), key.clone());
        read(self, Key::Idempotency { merchant, key }).await
    }

    // Daily reconciliation (`crate::reconcile`).

    /// The reconciliation report of a Taipei calendar day.
    async fn reconciliation(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Option<Versioned<ReconciliationReport>>, StoreError> {
        read(self, Key::Reconciliation(date)).await
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// The record under `key`, which must be a `T`.
async fn read<T, S>(store: &S, key: Key) -> Result<Option<Versioned<T>>, StoreError>
where
    T: TryFrom<Record, Error = Record>,
    S: Store + ?Sized,
{
    let Some(Versioned { value, version }) = store.get(&key).await? else {
        return Ok(None);
    };
    match T::try_from(value) {
        Ok(value) => Ok(Some(Versioned { value, version })),
        Err(other) => Err(StoreError::Corrupt(format!(
            "a {} record is stored under another record's key",
            other.kind()
        ))),
    }
}

/// The due-index shard of a subscription (FNV-1a of its id).
pub fn shard_of(subscription: &SubscriptionId) -> u16 {
    fnv_shard(subscription.as_str(), DUE_SHARDS)
}

/// The due-index shard of a one-off charge (FNV-1a of its id), one of [`DUE_SHARDS`].
pub fn charge_shard_of(charge: &ChargeId) -> u16 {
    fnv_shard(charge.as_str(), DUE_SHARDS)
}

/// The outbox-index shard of an event (FNV-1a of its id).
pub fn outbox_shard_of(event_id: &str) -> u16 {
    fnv_shard(event_id, OUTBOX_SHARDS)
}

fn fnv_shard(id: &str, shards: u16) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % u32::from(shards)) as u16
}
