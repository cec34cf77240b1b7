//! An in-memory [`Store`] with the same semantics as the DynamoDB adapter, for unit tests, the
//! dev stack and benchmarks.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    charge_shard_of, outbox_shard_of, shard_of, Card, ChargeDue, ChargeDuePage, ChargePeriod,
    CustomerRecords, DueCursor, DueEntry, DuePage, Expect, Key, OutboxPage, PendingEvent, Put,
    Record, Store, StoreError, Subscription, Versioned,
};
use crate::domain::{ChargeId, CustomerId, PlanId, SubscriptionId};

type DueKey = (u16, i64, CustomerId, PlanId);
/// Shard, created at (µs), event id: the outbox index.
type OutboxKey = (u16, i64, String);
/// Shard, next action (µs), charge id: the one-off charges' due index.
type ChargeKey = (u16, i64, ChargeId);
/// Shard, renewal charge due (µs), customer, plan: the renewal-notice index.
type NoticeKey = (u16, i64, CustomerId, PlanId);

#[derive(Default)]
struct Inner {
    records: BTreeMap<Key, Versioned<Record>>,
    due: BTreeSet<DueKey>,
    outbox: BTreeSet<OutboxKey>,
    charges: BTreeSet<ChargeKey>,
    notices: BTreeSet<NoticeKey>,
}

impl Inner {
    /// Puts the record's index entries in, or takes them out.
    fn index(&mut self, record: &Record, insert: bool) {
        if let Some(k) = due_key(record) {
            if insert {
                self.due.insert(k);
            } else {
                self.due.remove(&k);
            }
        }
        if let Some(k) = outbox_key(record) {
            if insert {
                self.outbox.insert(k);
            } else {
                self.outbox.remove(&k);
            }
        }
        if let Some(k) = charge_key(record) {
            if insert {
                self.charges.insert(k);
            } else {
                self.charges.remove(&k);
            }
        }
        if let Some(k) = notice_key(record) {
            if insert {
                self.notices.insert(k);
            } else {
                self.notices.remove(&k);
            }
        }
    }
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record, for tests and the dev stack's inspection page.
    pub fn snapshot(&self) -> Vec<Versioned<Record>> {
        self.lock().records.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn due_key(record: &Record) -> Option<DueKey> {
    match record {
        Record::Subscription(s) => s.next_action_at.map(|t| {
            (
                shard_of(&s.id),
                t.timestamp_micros(),
                s.customer.clone(),
                s.plan.clone(),
            )
        }),
        _ => None,
    }
}

/// Only entries still waiting to be delivered are listed.
fn outbox_key(record: &Record) -> Option<OutboxKey> {
    match record {
        Record::Outbox(o) if o.delivered_at.is_none() => Some((
            outbox_shard_of(&o.event.id),
            o.created_at.timestamp_micros(),
            o.event.id.clone(),
        )),
        _ => None,
    }
}

/// Only one-off charges with a next action are listed.
fn charge_key(record: &Record) -> Option<ChargeKey> {
    match record {
        Record::Charge(c) => c
            .next_action_at
            .map(|t| (charge_shard_of(&c.id), t.timestamp_micros(), c.id.clone())),
        _ => None,
    }
}

/// Only subscriptions whose renewal charge awaits its notice are listed.
fn notice_key(record: &Record) -> Option<NoticeKey> {
    match record {
        Record::Subscription(s) => s.renewal_awaiting_notice().map(|t| {
            (
                shard_of(&s.id),
                t.timestamp_micros(),
                s.customer.clone(),
                s.plan.clone(),
            )
        }),
        _ => None,
    }
}

/// One page of `index`: the keys from `first` (or after the cursor `after`) that `within`
/// allows, `limit` at most, and where the next page starts when more follow. A cursor is the
/// page's last key, as JSON.
/// A page of one shard of an index of subscriptions (the due index, the renewal-notice index):
/// those at or before `until`, oldest first.
fn subscription_page(
    index: &BTreeSet<DueKey>,
    shard: u16,
    until: DateTime<Utc>,
    limit: usize,
    after: Option<DueCursor>,
) -> Result<DuePage, StoreError> {
    let until = until.timestamp_micros();
    let first = (shard, i64::MIN, min_customer(), min_plan());
    let within = |k: &DueKey| k.0 == shard && k.1 <= until;
    let (keys, next) = index_page(index, first, after.as_ref(), within, limit)?;
    let entries = keys
        .into_iter()
        .map(|(_, at, customer, plan)| DueEntry {
            customer,
            plan,
            due_at: from_micros(at),
        })
        .collect();
    Ok(DuePage { entries, next })
}

fn index_page<K>(
    index: &BTreeSet<K>,
    first: K,
    after: Option<&DueCursor>,
    within: impl Fn(&K) -> bool,
    limit: usize,
) -> Result<(Vec<K>, Option<DueCursor>), StoreError>
where
    K: Ord + Clone + Serialize + DeserializeOwned,
{
    let start = match after {
        Some(c) => Bound::Excluded(
            serde_json::from_str(&c.0)
                .map_err(|_| StoreError::Invalid("malformed index cursor".into()))?,
        ),
        None => Bound::Included(first),
    };
    let mut listed = index
        .range((start, Bound::Unbounded))
        .take_while(|k| within(k));
    let keys: Vec<K> = listed.by_ref().take(limit.max(1)).cloned().collect();
    let next = match keys.last() {
        Some(last) if listed.next().is_some() => serde_json::to_string(last)
            .map(|c| Some(DueCursor(c)))
            .map_err(|e| StoreError::Corrupt(format!("index cursor: {e}")))?,
        _ => None,
    };
    Ok((keys, next))
}

fn from_micros(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        Ok(self.lock().records.get(key).cloned())
    }

    async fn commit(&self, puts: Vec<Put>) -> Result<(), StoreError> {
        super::check_commit(&puts)?;
        let mut inner = self.lock();
        for put in &puts {
            let key = put.record.key();
            let current = inner.records.get(&key).map(|v| v.version);
            match (put.expect, current) {
                (Expect::Absent, None) => {}
                (Expect::Version(v), Some(c)) if v == c => {}
                (expect, current) => {
                    return Err(StoreError::Conflict(format!(
                        "{} {:?}: expected {expect:?}, found version {current:?}",
                        put.record.kind(),
                        key
                    )))
                }
            }
        }
        for put in puts {
            let key = put.record.key();
            let version = match put.expect {
                Expect::Absent => 1,
                Expect::Version(v) => v + 1,
            };
            if let Some(old) = inner.records.get(&key).map(|v| v.value.clone()) {
                inner.index(&old, false);
            }
            inner.index(&put.record, true);
            inner.records.insert(
                key,
                Versioned {
                    value: put.record,
                    version,
                },
            );
        }
        Ok(())
    }

    async fn due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DuePage, StoreError> {
        subscription_page(&self.lock().due, shard, now, limit, after)
    }

    async fn outbox_pending(
        &self,
        shard: u16,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<OutboxPage, StoreError> {
        let until = until.timestamp_micros();
        let first = (shard, i64::MIN, String::new());
        let within = |k: &OutboxKey| k.0 == shard && k.1 <= until;
        let (keys, next) = index_page(&self.lock().outbox, first, after.as_ref(), within, limit)?;
        let entries = keys
            .into_iter()
            .map(|(_, at, id)| PendingEvent {
                id,
                created_at: from_micros(at),
            })
            .collect();
        Ok(OutboxPage { entries, next })
    }

    async fn cards_of(&self, customer: &CustomerId) -> Result<Vec<Versioned<Card>>, StoreError> {
        let inner = self.lock();
        let cards = inner.records.values().filter_map(|v| match &v.value {
            Record::Card(c) if c.customer == *customer => Some(Versioned {
                value: c.clone(),
                version: v.version,
            }),
            _ => None,
        });
        Ok(cards.collect())
    }

    async fn charges_due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<ChargeDuePage, StoreError> {
        let now = now.timestamp_micros();
        let first = (shard, i64::MIN, min_charge());
        let within = |k: &ChargeKey| k.0 == shard && k.1 <= now;
        let (keys, next) = index_page(&self.lock().charges, first, after.as_ref(), within, limit)?;
        let entries = keys
            .into_iter()
            .map(|(_, at, charge)| ChargeDue {
                charge,
                due_at: from_micros(at),
            })
            .collect();
        Ok(ChargeDuePage { entries, next })
    }

    // ---- Lookups of the merchant API ----

    async fn customer_records(&self, customer: &CustomerId) -> Result<CustomerRecords, StoreError> {
        let inner = self.lock();
        let mut found = CustomerRecords::default();
        for (key, versioned) in &inner.records {
            let version = versioned.version;
            match (key, &versioned.value) {
                (Key::Card { customer: c, .. }, Record::Card(card)) if c == customer => {
                    found.cards.push(Versioned {
                        value: card.clone(),
                        version,
                    })
                }
                (Key::Subscription { customer: c, .. }, Record::Subscription(sub))
                    if c == customer =>
                {
                    found.subscriptions.push(Versioned {
                        value: sub.clone(),
                        version,
                    })
                }
                _ => {}
            }
        }
        Ok(found)
    }

    async fn subscription_by_id(
        &self,
        id: &SubscriptionId,
    ) -> Result<Option<Versioned<Subscription>>, StoreError> {
        let inner = self.lock();
        Ok(inner.records.values().find_map(|v| match &v.value {
            Record::Subscription(s) if &s.id == id => Some(Versioned {
                value: s.clone(),
                version: v.version,
            }),
            _ => None,
        }))
    }

    async fn recent_periods(
        &self,
        subscription: &SubscriptionId,
        limit: usize,
    ) -> Result<Vec<Versioned<ChargePeriod>>, StoreError> {
        let inner = self.lock();
        let mut periods: Vec<Versioned<ChargePeriod>> = inner
            .records
            .values()
            .filter_map(|v| match &v.value {
                Record::Period(p) if &p.subscription == subscription => Some(Versioned {
                    value: p.clone(),
                    version: v.version,
                }),
                _ => None,
            })
            .collect();
        periods.sort_by_key(|p| std::cmp::Reverse(p.value.period));
        periods.truncate(limit);
        Ok(periods)
    }

    // Renewal notices.

    async fn renewals_due(
        &self,
        shard: u16,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DuePage, StoreError> {
        subscription_page(&self.lock().notices, shard, until, limit, after)
    }

    // End of renewal notices.
}

// The smallest valid ids, to start a range scan at the beginning of a shard.
fn min_customer() -> CustomerId {
    CustomerId::parse("-").unwrap_or_else(|_| unreachable!("'-' is a valid customer id"))
}

fn min_charge() -> ChargeId {
    ChargeId::parse("00000000000000000000")
        .unwrap_or_else(|_| unreachable!("twenty zeros are a valid charge id"))
}

fn min_plan() -> PlanId {
    PlanId::parse("-").unwrap_or_else(|_| unreachable!("'-' is a valid plan id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        super::super::contract::run_all(|| async { MemoryStore::new() }).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_store_gives_racing_idempotency_claims_one_winner() {
        let store = std::sync::Arc::new(MemoryStore::new());
        super::super::contract::racing_idempotency_claims_have_one_winner(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_store_gives_racing_claims_one_winner() {
        let store = std::sync::Arc::new(MemoryStore::new());
        super::super::contract::racing_claims_have_one_winner(store).await;
    }
}
