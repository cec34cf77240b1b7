//! An in-memory [`Store`] with the same semantics as the DynamoDB adapter, for unit tests, the
//! dev stack and benchmarks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    outbox_shard_of, shard_of, DueCursor, DueEntry, DuePage, Expect, Key, OutboxPage, PendingEvent,
    Put, Record, Store, StoreError, Versioned,
};
use crate::domain::{CustomerId, PlanId};

type DueKey = (u16, i64, CustomerId, PlanId);
/// Shard, created at (µs), event id: the outbox index.
type OutboxKey = (u16, i64, String);

#[derive(Default)]
struct Inner {
    records: BTreeMap<Key, Versioned<Record>>,
    due: BTreeSet<DueKey>,
    outbox: BTreeSet<OutboxKey>,
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

fn encode_cursor(k: &DueKey) -> DueCursor {
    DueCursor(serde_json::json!([k.0, k.1, k.2.as_str(), k.3.as_str()]).to_string())
}

fn decode_cursor(c: &DueCursor) -> Result<DueKey, StoreError> {
    let bad = || StoreError::Invalid("malformed due-index cursor".into());
    let (shard, at, customer, plan): (u16, i64, String, String) =
        serde_json::from_str(&c.0).map_err(|_| bad())?;
    Ok((
        shard,
        at,
        CustomerId::parse(&customer).map_err(|_| bad())?,
        PlanId::parse(&plan).map_err(|_| bad())?,
    ))
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
        let inner = self.lock();
        let start = match &after {
            Some(c) => std::ops::Bound::Excluded(decode_cursor(c)?),
            None => std::ops::Bound::Included((shard, i64::MIN, min_customer(), min_plan())),
        };
        let now_micros = now.timestamp_micros();
        let mut entries = Vec::new();
        let mut last = None;
        let mut more = false;
        for k in inner.due.range((start, std::ops::Bound::Unbounded)) {
            if k.0 != shard || k.1 > now_micros {
                break;
            }
            if entries.len() == limit.max(1) {
                more = true;
                break;
            }
            entries.push(DueEntry {
                customer: k.2.clone(),
                plan: k.3.clone(),
                due_at: DateTime::from_timestamp_micros(k.1).unwrap_or(DateTime::<Utc>::MIN_UTC),
            });
            last = Some(k.clone());
        }
        let next = if more {
            last.as_ref().map(encode_cursor)
        } else {
            None
        };
        Ok(DuePage { entries, next })
    }

    async fn outbox_pending(
        &self,
        shard: u16,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<OutboxPage, StoreError> {
        let inner = self.lock();
        let start = match &after {
            Some(c) => {
                let bad = || StoreError::Invalid("malformed outbox-index cursor".into());
                let k: OutboxKey = serde_json::from_str(&c.0).map_err(|_| bad())?;
                if k.0 != shard {
                    return Err(bad());
                }
                std::ops::Bound::Excluded(k)
            }
            None => std::ops::Bound::Included((shard, i64::MIN, String::new())),
        };
        let until = until.timestamp_micros();
        let mut listed = inner
            .outbox
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|k| k.0 == shard && k.1 <= until);
        let entries: Vec<OutboxKey> = listed.by_ref().take(limit.max(1)).cloned().collect();
        let more = listed.next().is_some();
        let next = match entries.last() {
            Some(last) if more => Some(DueCursor(serde_json::json!(last).to_string())),
            _ => None,
        };
        let entries = entries
            .into_iter()
            .map(|(_, at, id)| PendingEvent {
                id,
                created_at: DateTime::from_timestamp_micros(at).unwrap_or(DateTime::<Utc>::MIN_UTC),
            })
            .collect();
        Ok(OutboxPage { entries, next })
    }
}

// The smallest valid ids, to start a range scan at the beginning of a shard.
fn min_customer() -> CustomerId {
    CustomerId::parse("-").unwrap_or_else(|_| unreachable!("'-' is a valid customer id"))
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
}
