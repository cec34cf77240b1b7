//! The DynamoDB adapter of the [`Store`] port: one table, conditional writes, a sharded
//! due-date index. Its semantics equal [`MemoryStore`](crate::store::MemoryStore)'s; both pass the same
//! contract suite (`store::contract`), this one against moto in `tests/`.
//!
//! # Items
//!
//! Every record is one item keyed by `pk` (S) and `sk` (S), from [`pk_sk`]:
//!
//! | record          | `pk`                 | `sk`                 | extra attributes       |
//! |-----------------|----------------------|----------------------|------------------------|
//! | binding session | `BIND#{reference}`   | `SESSION`            | `ttl`                  |
//! | link claim      | `LINK#{link id}`     | `CLAIM`              | `ttl`                  |
//! | card            | `CUST#{customer}`    | `CARD#{binding}`     | `ciphertext` is binary |
//! | subscription    | `CUST#{customer}`    | `SUB#{plan}`         | `due_shard`, `due_at`  |
//! | charge period   | `SUB#{subscription}` | `PERIOD#{period:06}` |                        |
//! | audit entry     | `AUDIT#{customer}`   | `{at}#{id}`          |                        |
//!
//! A customer's cards and subscriptions share a partition, so one query lists them; periods
//! live under their subscription and sort by number; audit entries sort by time (`at` as
//! `%Y-%m-%dT%H:%M:%S%.6fZ`, then a random suffix so that entries at one instant never collide).
//!
//! Beside the record's own fields (serialised with `serde_dynamo`; the card ciphertext is a
//! DynamoDB binary `B`, never a string) every item carries:
//! - `kind` (S): `session`, `link`, `card`, `subscription`, `period` or `audit`, which decides
//!   how the item is read back;
//! - `ver` (N): the record's version, 1 on creation and incremented by every put;
//! - `ttl` (N, epoch seconds), from [`Record::expires_at`]: only binding sessions and link claims
//!   have it, a day after their hosted page or their start link expired, so abandoned bindings
//!   and used links disappear without a sweeper.
//!
//! # The due-date index
//!
//! The charger must find every subscription whose `next_action_at` has passed, among hundreds of
//! thousands that may fall on the same day, without scanning the table. A subscription with a
//! `next_action_at` carries `due_shard` (S, `DUE#00`…`DUE#15` from [`shard_of`]) and `due_at`
//! (N, epoch **microseconds**, so that ordering is exact). The global secondary index
//! [`DUE_INDEX`] is keyed `due_shard` (HASH) + `due_at` (RANGE) and projects keys only: `pk` and
//! `sk` name the customer and the plan, which is all the planner needs. The index is sparse: a
//! subscription without `next_action_at` has neither attribute and leaves the index, so the
//! index holds only work. Spreading the day over [`DUE_SHARDS`](crate::store::DUE_SHARDS) partition
//! keys by a hash of the subscription id keeps one busy day off a single hot partition, and lets
//! planners work on the shards in parallel; each shard is read with a `Query` on
//! `due_shard = :shard AND due_at <= :now`, oldest first, in pages whose continuation is the
//! opaque [`DueCursor`]. A GSI is eventually consistent: a subscription may show up (or linger)
//! briefly after a write, which the charger tolerates because it re-reads the subscription and
//! claims periods with conditional writes.
//!
//! # Conditional writes
//!
//! Every put replaces the whole item under a condition on its previous state:
//! [`Expect::Absent`] becomes `attribute_not_exists(pk)` and the item is written at `ver = 1`;
//! [`Expect::Version(v)`](Expect::Version) becomes `ver = :v` (false when the item is missing)
//! and the item is written at `v + 1`. One put is a `PutItem`; several are one
//! `TransactWriteItems`, so they land together or not at all. A failed condition, alone or
//! inside a cancelled transaction, is [`StoreError::Conflict`]: someone else wrote first and
//! nothing of this commit was written. Every reader therefore works read → decide →
//! compare-and-set on the version it read, which is also how a charge period's lease is taken.
//! Reads are strongly consistent (`GetItem` with `ConsistentRead`), so a version just read is the
//! current one.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put as PutRequest, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1 as codec;

use crate::domain::{CustomerId, PlanId};
use crate::store::{
    check_commit, shard_of, DueCursor, DueEntry, DuePage, Expect, Key, Put, Record, Store,
    StoreError, Versioned,
};

/// The name of the sparse due-date index (`due_shard` HASH, `due_at` RANGE, keys only).
pub const DUE_INDEX: &str = "due-index";

/// The table's partition and sort keys of a record (the layout in the module doc).
pub fn pk_sk(key: &Key) -> (String, String) {
    match key {
        Key::Session(r) => (format!("BIND#{r}"), "SESSION".into()),
        Key::Link(l) => (format!("LINK#{l}"), "CLAIM".into()),
        Key::Card { customer, binding } => (format!("CUST#{customer}"), format!("CARD#{binding}")),
        Key::Subscription { customer, plan } => (format!("CUST#{customer}"), format!("SUB#{plan}")),
        Key::Period {
            subscription,
            period,
        } => (format!("SUB#{subscription}"), format!("PERIOD#{period:06}")),
        Key::Audit { customer, sort } => (format!("AUDIT#{customer}"), sort.clone()),
    }
}

const PK: &str = "pk";
const SK: &str = "sk";
const KIND: &str = "kind";
const VER: &str = "ver";
const TTL: &str = "ttl";
const DUE_SHARD: &str = "due_shard";
const DUE_AT: &str = "due_at";

/// Attributes the adapter owns; no record field may use these names.
const RESERVED: [&str; 7] = [PK, SK, KIND, VER, TTL, DUE_SHARD, DUE_AT];

type Item = HashMap<String, AttributeValue>;

/// The [`Store`] on one DynamoDB table (schema in `template.yaml`, resource `Table`).
#[derive(Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn put_one(&self, put: &Put, item: Item) -> Result<(), StoreError> {
        let condition = Condition::of(put.expect);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(condition.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.err() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    Err(conflict(put, failed.item()))
                }
                _ => Err(unavailable("PutItem", &SdkError::ServiceError(e))),
            },
            Err(e) => Err(unavailable("PutItem", &e)),
        }
    }

    async fn put_many(&self, puts: &[Put], items: Vec<Item>) -> Result<(), StoreError> {
        let mut writes = Vec::with_capacity(items.len());
        for (put, item) in puts.iter().zip(items) {
            let condition = Condition::of(put.expect);
            let request = PutRequest::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(condition.expression)
                .set_expression_attribute_names(Some(condition.names))
                .set_expression_attribute_values(condition.values)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| StoreError::Invalid(format!("transaction put: {e}")))?;
            writes.push(TransactWriteItem::builder().put(request).build());
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let reasons = cancelled.cancellation_reasons();
                    let failed: Vec<String> = puts
                        .iter()
                        .zip(reasons)
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(put, r)| conflict_detail(put, r.item()))
                        .collect();
                    // Without a failed condition (e.g. `TransactionConflict` with a concurrent
                    // transaction) nothing was decided against us: the caller may retry.
                    if failed.is_empty() {
                        Err(unavailable(
                            "TransactWriteItems",
                            &SdkError::ServiceError(e),
                        ))
                    } else {
                        Err(StoreError::Conflict(failed.join("; ")))
                    }
                }
                _ => Err(unavailable(
                    "TransactWriteItems",
                    &SdkError::ServiceError(e),
                )),
            },
            Err(e) => Err(unavailable("TransactWriteItems", &e)),
        }
    }
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// The condition expression of one put, with its placeholders.
struct Condition {
    expression: &'static str,
    names: HashMap<String, String>,
    values: Option<Item>,
}

impl Condition {
    fn of(expect: Expect) -> Self {
        match expect {
            Expect::Absent => Self {
                expression: "attribute_not_exists(#pk)",
                names: HashMap::from([("#pk".to_owned(), PK.to_owned())]),
                values: None,
            },
            Expect::Version(v) => Self {
                expression: "#ver = :ver",
                names: HashMap::from([("#ver".to_owned(), VER.to_owned())]),
                values: Some(HashMap::from([(":ver".to_owned(), number(v))])),
            },
        }
    }
}

fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn unavailable<E, R>(operation: &str, e: &SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("DynamoDB {operation}: {}", DisplayErrorContext(e)))
}

/// The same wording as the in-memory store: which record, what was expected, what was found.
fn conflict_detail(put: &Put, old: Option<&Item>) -> String {
    let found = match old {
        Some(item) => match item.get(VER).and_then(|v| v.as_n().ok()) {
            Some(v) => format!("found version Some({v})"),
            None => "found an item without a version".to_owned(),
        },
        None => "found version None".to_owned(),
    };
    format!(
        "{} {:?}: expected {:?}, {found}",
        put.record.kind(),
        pk_sk(&put.record.key()),
        put.expect
    )
}

fn conflict(put: &Put, old: Option<&Item>) -> StoreError {
    StoreError::Conflict(conflict_detail(put, old))
}

fn due_shard_name(shard: u16) -> String {
    format!("DUE#{shard:02}")
}

/// The item of `record` stored at `version`.
fn to_item(record: &Record, version: u64) -> Result<Item, StoreError> {
    let kind = record.kind();
    let body = match record {
        Record::Session(s) => codec::to_item(s),
        Record::Link(l) => codec::to_item(l),
        Record::Card(c) => codec::to_item(c),
        Record::Subscription(s) => codec::to_item(s),
        Record::Period(p) => codec::to_item(p),
        Record::Audit(a) => codec::to_item(a),
    };
    let mut item: Item =
        body.map_err(|e| StoreError::Invalid(format!("a {kind} cannot be stored: {e}")))?;
    if let Some(clash) = RESERVED.iter().find(|name| item.contains_key(**name)) {
        return Err(StoreError::Invalid(format!(
            "a {kind} has a field named {clash}, which the store reserves"
        )));
    }
    let (pk, sk) = pk_sk(&record.key());
    item.insert(PK.into(), AttributeValue::S(pk));
    item.insert(SK.into(), AttributeValue::S(sk));
    item.insert(KIND.into(), AttributeValue::S(kind.into()));
    item.insert(VER.into(), number(version));
    if let Some(at) = record.expires_at() {
        item.insert(TTL.into(), number(at.timestamp()));
    }
    if let Record::Subscription(s) = record {
        if let Some(at) = s.next_action_at {
            item.insert(
                DUE_SHARD.into(),
                AttributeValue::S(due_shard_name(shard_of(&s.id))),
            );
            item.insert(DUE_AT.into(), number(at.timestamp_micros()));
        }
    }
    Ok(item)
}

/// Reads an item back; anything unexpected is [`StoreError::Corrupt`].
fn from_item(mut item: Item) -> Result<Versioned<Record>, StoreError> {
    let text = |item: &Item, name: &str| -> Option<String> {
        item.get(name).and_then(|v| v.as_s().ok()).cloned()
    };
    let pk = text(&item, PK).unwrap_or_default();
    let sk = text(&item, SK).unwrap_or_default();
    let corrupt = |what: String| StoreError::Corrupt(format!("item ({pk}, {sk}): {what}"));
    let kind = text(&item, KIND).ok_or_else(|| corrupt("no string attribute kind".into()))?;
    let version = item
        .get(VER)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| corrupt("no numeric attribute ver".into()))?;
    for name in RESERVED {
        item.remove(name);
    }
    let unreadable = |e: serde_dynamo::Error| corrupt(format!("unreadable {kind}: {e}"));
    let record = match kind.as_str() {
        "session" => Record::Session(codec::from_item(item).map_err(unreadable)?),
        "link" => Record::Link(codec::from_item(item).map_err(unreadable)?),
        "card" => Record::Card(codec::from_item(item).map_err(unreadable)?),
        "subscription" => Record::Subscription(codec::from_item(item).map_err(unreadable)?),
        "period" => Record::Period(codec::from_item(item).map_err(unreadable)?),
        "audit" => Record::Audit(codec::from_item(item).map_err(unreadable)?),
        other => return Err(corrupt(format!("unknown kind {other:?}"))),
    };
    if pk_sk(&record.key()) != (pk.clone(), sk.clone()) {
        return Err(corrupt(format!(
            "the {kind} it holds belongs under {:?}",
            pk_sk(&record.key())
        )));
    }
    Ok(Versioned {
        value: record,
        version,
    })
}

/// A position in the due index: the primary and index keys of the last entry returned (what
/// DynamoDB calls the LastEvaluatedKey of an index query).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexPosition {
    pk: String,
    sk: String,
    due_shard: String,
    due_at: i64,
}

impl IndexPosition {
    fn from_key(key: &Item) -> Option<Self> {
        let s = |name: &str| key.get(name).and_then(|v| v.as_s().ok()).cloned();
        Some(Self {
            pk: s(PK)?,
            sk: s(SK)?,
            due_shard: s(DUE_SHARD)?,
            due_at: key.get(DUE_AT)?.as_n().ok()?.parse().ok()?,
        })
    }

    fn to_key(&self) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk.clone())),
            (SK.to_owned(), AttributeValue::S(self.sk.clone())),
            (
                DUE_SHARD.to_owned(),
                AttributeValue::S(self.due_shard.clone()),
            ),
            (DUE_AT.to_owned(), number(self.due_at)),
        ])
    }

    fn encode(&self) -> Result<DueCursor, StoreError> {
        serde_json::to_string(self)
            .map(DueCursor)
            .map_err(|e| StoreError::Corrupt(format!("due-index position: {e}")))
    }

    fn decode(cursor: &DueCursor, shard: u16) -> Result<Self, StoreError> {
        let position: Self = serde_json::from_str(&cursor.0)
            .map_err(|_| StoreError::Invalid("malformed due-index cursor".into()))?;
        if position.due_shard != due_shard_name(shard) {
            return Err(StoreError::Invalid(format!(
                "the due-index cursor belongs to another shard than {shard}"
            )));
        }
        Ok(position)
    }
}

/// A due-index entry: customer and plan parsed back from the subscription's keys.
fn due_entry(key: &Item) -> Result<DueEntry, StoreError> {
    let position = IndexPosition::from_key(key).ok_or_else(|| {
        StoreError::Corrupt("a due-index entry lacks pk, sk, due_shard or due_at".into())
    })?;
    let corrupt = || {
        StoreError::Corrupt(format!(
            "due-index entry ({}, {}) is not a subscription key",
            position.pk, position.sk
        ))
    };
    let customer = position
        .pk
        .strip_prefix("CUST#")
        .and_then(|c| CustomerId::parse(c).ok())
        .ok_or_else(corrupt)?;
    let plan = position
        .sk
        .strip_prefix("SUB#")
        .and_then(|p| PlanId::parse(p).ok())
        .ok_or_else(corrupt)?;
    let due_at = DateTime::from_timestamp_micros(position.due_at).ok_or_else(corrupt)?;
    Ok(DueEntry {
        customer,
        plan,
        due_at,
    })
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        let (pk, sk) = pk_sk(key);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk))
            .key(SK, AttributeValue::S(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        out.item.map(from_item).transpose()
    }

    async fn commit(&self, puts: Vec<Put>) -> Result<(), StoreError> {
        check_commit(&puts)?;
        let items = puts
            .iter()
            .map(|put| {
                let version = match put.expect {
                    Expect::Absent => 1,
                    Expect::Version(v) => v.checked_add(1).ok_or_else(|| {
                        StoreError::Invalid(format!("version {v} cannot be incremented"))
                    })?,
                };
                to_item(&put.record, version)
            })
            .collect::<Result<Vec<_>, _>>()?;
        match (puts.as_slice(), items.as_slice()) {
            ([put], [item]) => self.put_one(put, item.clone()).await,
            _ => self.put_many(&puts, items).await,
        }
    }

    async fn due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DuePage, StoreError> {
        let limit = limit.clamp(1, i32::MAX as usize - 1);
        let start = after
            .as_ref()
            .map(|c| IndexPosition::decode(c, shard))
            .transpose()?;
        // One more than a page: if it comes back, there is a next page and the cursor is the
        // page's last entry; otherwise this is the last page, exactly as in the memory store.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("#shard = :shard AND #at <= :now")
            .expression_attribute_names("#shard", DUE_SHARD)
            .expression_attribute_names("#at", DUE_AT)
            .expression_attribute_values(":shard", AttributeValue::S(due_shard_name(shard)))
            .expression_attribute_values(":now", number(now.timestamp_micros()))
            .scan_index_forward(true)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start.map(|p| p.to_key()))
            .send()
            .await
            .map_err(|e| unavailable("Query", &e))?;
        let keys = out.items();
        let page = &keys[..keys.len().min(limit)];
        let entries = page.iter().map(due_entry).collect::<Result<Vec<_>, _>>()?;
        let resume_at = if keys.len() > limit {
            // The page's last entry is where the next page starts.
            page.last()
        } else {
            // A short page with a LastEvaluatedKey: DynamoDB stopped at its 1 MB page size.
            out.last_evaluated_key()
        };
        let next = match resume_at {
            None => None,
            Some(key) => Some(
                IndexPosition::from_key(key)
                    .ok_or_else(|| {
                        StoreError::Corrupt(
                            "a due-index page ended on a key without pk, sk, due_shard or due_at"
                                .into(),
                        )
                    })?
                    .encode()?,
            ),
        };
        Ok(DuePage { entries, next })
    }
}
