//! An in-memory [`Store`] with the same semantics as the DynamoDB adapter, for unit tests, the
//! dev stack and benchmarks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    shard_of, DueCursor, DueEntry, DuePage, Expect, Key, Put, Record, Store, StoreError, Versioned,
};
use crate::domain::{CustomerId, PlanId};

type DueKey = (u16, i64, CustomerId, PlanId);

#[derive(Default)]
struct Inner {
    records: BTreeMap<Key, Versioned<Record>>,
    due: BTreeSet<DueKey>,
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
            if let Some(old) = inner.records.get(&key).and_then(|v| due_key(&v.value)) {
                inner.due.remove(&old);
            }
            if let Some(new) = due_key(&put.record) {
                inner.due.insert(new);
            }
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
