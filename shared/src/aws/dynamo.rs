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
//! | subscription    | `CUST#{customer}`    | `SUB#{plan}`         | `due_shard`, `due_at`; its `id` keys `subscription-index` |
//! | charge period   | `SUB#{subscription}` | `PERIOD#{period:06}` |                        |
//! | audit entry     | `AUDIT#{customer}`   | `{at}#{id}`          |                        |
//! | outbox entry    | `OUTBOX#{event id}`  | `EVENT`              | pending: `due_shard`, `due_at`; delivered: `ttl` |
//! | one-off charge  | `CHARGE#{charge id}` | `CHARGE`             | with a next action: `due_shard`, `due_at` |
//! | idempotency key | `IDEM#{merchant}#{key}` | `KEY`             | `ttl` (24 h)           |
//! | reconciliation report | `RECON#{yyyy-MM-dd}` (Taipei day) | `REPORT` |                  |
//!
//! A customer's cards and subscriptions share a partition, so one query lists them; periods
//! live under their subscription and sort by number; audit entries sort by time (`at` as
//! `%Y-%m-%dT%H:%M:%S%.6fZ`, then a random suffix so that entries at one instant never collide).
//!
//! Beside the record's own fields (serialised with `serde_dynamo`; the card ciphertext is a
//! DynamoDB binary `B`, never a string) every item carries:
//! - `kind` (S): `session`, `link`, `card`, `subscription`, `period`, `audit` or `outbox`, which
//!   decides how the item is read back;
//! - `ver` (N): the record's version, 1 on creation and incremented by every put;
//! - `ttl` (N, epoch seconds), from [`Record::expires_at`]: binding sessions and link claims have
//!   it a day after their hosted page or their start link expired, so abandoned bindings and
//!   used links disappear without a sweeper; delivered outbox entries a week after delivery.
//!
//! An outbox entry holds a domain event (its `data` as a DynamoDB map) and is written in the
//! same transaction as the state change the event reports; it is keyed by the event's stable
//! id, so `attribute_not_exists(pk)` refuses a second entry for one happening.
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
//! The same index lists the outbox entries still waiting to be delivered: a pending entry
//! carries `due_shard` = `OUTBOX#00`…`OUTBOX#15` (from [`outbox_shard_of`], a hash of the event
//! id, so that the insert and delete of every event's index entry spread over sixteen
//! partitions) and `due_at` = its creation time in epoch microseconds. Marking it delivered
//! rewrites the item without them, which takes it off the index; `pk` names the event. A
//! subscription's `DUE#` partitions and the outbox's `OUTBOX#` partitions never share a key.
//!
//! # Finding a subscription by its id (the merchant API)
//!
//! A subscription is keyed by customer and plan, but the merchant API names it by its id (and
//! a period by its order id, `{subscription id}P{period:06}`). The global secondary index
//! [`SUBSCRIPTION_INDEX`] is keyed on the subscription item's own `id` attribute (HASH, keys
//! only): every subscription ever written carries it, so subscriptions stored before the index
//! existed are found as well as new ones, with no pointer item to backfill and no write of
//! ours to keep in step (DynamoDB maintains the index). Audit entries also have an `id` (their
//! 8-character suffix, never a 16-character subscription id) and land in the index too; a
//! lookup keeps only keys `CUST#…`/`SUB#…`. The index is eventually consistent, so the
//! subscription it names is then read with a consistent `GetItem`, and must still carry that id
//! (a customer who binds again after a cancel gets a new subscription under the same key).
//!
//! A customer's cards and subscriptions are one `Query` of `CUST#{customer}`; a subscription's
//! recent periods one `Query` of `SUB#{subscription}` on `begins_with(sk, "PERIOD#")`, newest
//! first. Both read consistently.

//! # The renewal-notice index
//!
//! A subscription whose coming renewal charge has not been announced yet
//! ([`Subscription::renewal_awaiting_notice`](crate::domain::Subscription::renewal_awaiting_notice))
//! also carries `notice_shard` (S, `NOTICE#00`…`NOTICE#15`, the subscription's due shard) and
//! `notice_at` (N, epoch µs of that charge). The sparse global secondary index [`NOTICE_INDEX`]
//! is keyed on them (keys only), so the charger finds every renewal due within the notice period
//! with `notice_shard = :shard AND notice_at <= :now_plus_notice`, exactly as it finds due
//! charges. A second index is needed because one item has one entry per index, and the
//! subscription is already in [`DUE_INDEX`]. Both attributes are derived from the subscription
//! on every put, so whatever moves a subscription's schedule or ends it (a payment, a cancel,
//! a re-bind, an operator's early charge, the notice itself) moves or removes its notice entry
//! in the same write.
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

use crate::domain::{ChargeId, CustomerId, PlanId, SubscriptionId};
use crate::store::{
    charge_shard_of, check_commit, outbox_shard_of, shard_of, Card, ChargeDue, ChargeDuePage,
    ChargePeriod, CustomerRecords, DueCursor, DueEntry, DuePage, Expect, Key, OutboxPage, Page,
    PendingEvent, Put, Record, Store, StoreError, Subscription, Versioned,
};

/// The name of the sparse due-date index (`due_shard` HASH, `due_at` RANGE, keys only).
pub const DUE_INDEX: &str = "due-index";

/// The name of the index that finds a subscription by its id (`id` HASH, keys only).
pub const SUBSCRIPTION_INDEX: &str = "subscription-index";

/// The attribute [`SUBSCRIPTION_INDEX`] is keyed on: a subscription's own `id` field.
const SUBSCRIPTION_ID: &str = "id";

/// The name of the sparse renewal-notice index (`notice_shard` HASH, `notice_at` RANGE, keys
/// only).
pub const NOTICE_INDEX: &str = "notice-index";

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
        Key::Outbox(id) => (format!("{OUTBOX_PREFIX}{id}"), "EVENT".into()),
        Key::Charge(id) => (format!("{CHARGE_PREFIX}{id}"), "CHARGE".into()),
        Key::Idempotency { merchant, key } => (format!("IDEM#{merchant}#{key}"), "KEY".into()),
        // Daily reconciliation (`crate::reconcile`).
        Key::Reconciliation(date) => (
            format!("RECON#{}", date.format("%Y-%m-%d")),
            "REPORT".into(),
        ),
    }
}

const OUTBOX_PREFIX: &str = "OUTBOX#";
const CHARGE_PREFIX: &str = "CHARGE#";

const PK: &str = "pk";
const SK: &str = "sk";
const KIND: &str = "kind";
const VER: &str = "ver";
const TTL: &str = "ttl";
const DUE_SHARD: &str = "due_shard";
const DUE_AT: &str = "due_at";
const NOTICE_SHARD: &str = "notice_shard";
const NOTICE_AT: &str = "notice_at";
const NOTICE_PREFIX: &str = "NOTICE#";

/// Attributes the adapter owns; no record field may use these names.
const RESERVED: [&str; 9] = [
    PK,
    SK,
    KIND,
    VER,
    TTL,
    DUE_SHARD,
    DUE_AT,
    NOTICE_SHARD,
    NOTICE_AT,
];

/// A sparse index of the table and the two attributes it is keyed on.
#[derive(Clone, Copy)]
struct IndexSpec {
    name: &'static str,
    shard: &'static str,
    at: &'static str,
}

const DUE: IndexSpec = IndexSpec {
    name: DUE_INDEX,
    shard: DUE_SHARD,
    at: DUE_AT,
};

const NOTICE: IndexSpec = IndexSpec {
    name: NOTICE_INDEX,
    shard: NOTICE_SHARD,
    at: NOTICE_AT,
};

type Item = HashMap<String, AttributeValue>;

/// The [`Store`] on one DynamoDB table (schema in `template.yaml`, resource `Table`).
#[derive(Clone)]
pub struct DynamoStore {
    client: super::lazy::LazyClient<aws_sdk_dynamodb::Client>,
    table: String,
}

impl DynamoStore {
    pub fn new(
        client: impl Into<super::lazy::LazyClient<aws_sdk_dynamodb::Client>>,
        table: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
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
            .get()
            .await
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
            .get()
            .await
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

    /// One page of the index partition `partition` (a due-index shard or an outbox shard), up
    /// to `until`, oldest first, and where the next page starts.
    async fn index_page(
        &self,
        index: IndexSpec,
        partition: String,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<Page<IndexPosition>, StoreError> {
        let limit = limit.clamp(1, i32::MAX as usize - 1);
        let start = after
            .as_ref()
            .map(|c| IndexPosition::decode(c, &partition))
            .transpose()?;
        // One more than a page: if it comes back, there is a next page and the cursor is the
        // page's last entry; otherwise this is the last page, exactly as in the memory store.
        let out = self
            .client
            .get()
            .await
            .query()
            .table_name(&self.table)
            .index_name(index.name)
            .key_condition_expression("#shard = :shard AND #at <= :now")
            .expression_attribute_names("#shard", index.shard)
            .expression_attribute_names("#at", index.at)
            .expression_attribute_values(":shard", AttributeValue::S(partition))
            .expression_attribute_values(":now", number(until.timestamp_micros()))
            .scan_index_forward(true)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start.map(|p| p.to_key(index)))
            .send()
            .await
            .map_err(|e| unavailable("Query", &e))?;
        let keys = out.items();
        let page = &keys[..keys.len().min(limit)];
        let entries = page
            .iter()
            .map(|key| IndexPosition::read(key, index))
            .collect::<Result<Vec<_>, _>>()?;
        let resume_at = if keys.len() > limit {
            // The page's last entry is where the next page starts.
            page.last()
        } else {
            // A short page with a LastEvaluatedKey: DynamoDB stopped at its 1 MB page size.
            out.last_evaluated_key()
        };
        let next = match resume_at {
            None => None,
            Some(key) => Some(IndexPosition::read(key, index)?.encode()?),
        };
        Ok(Page { entries, next })
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

fn outbox_shard_name(shard: u16) -> String {
    format!("{OUTBOX_PREFIX}{shard:02}")
}

fn charge_shard_name(shard: u16) -> String {
    format!("{CHARGE_PREFIX}{shard:02}")
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
        Record::Outbox(o) => codec::to_item(o),
        Record::Charge(c) => codec::to_item(c),
        Record::Idempotency(i) => codec::to_item(i),
        // Daily reconciliation (`crate::reconcile`).
        Record::Reconciliation(r) => codec::to_item(r),
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
    let indexed = match record {
        Record::Subscription(s) => s
            .next_action_at
            .map(|at| (due_shard_name(shard_of(&s.id)), at)),
        Record::Outbox(o) if o.delivered_at.is_none() => Some((
            outbox_shard_name(outbox_shard_of(&o.event.id)),
            o.created_at,
        )),
        Record::Charge(c) => c
            .next_action_at
            .map(|at| (charge_shard_name(charge_shard_of(&c.id)), at)),
        _ => None,
    };
    if let Some((partition, at)) = indexed {
        item.insert(DUE_SHARD.into(), AttributeValue::S(partition));
        item.insert(DUE_AT.into(), number(at.timestamp_micros()));
    }
    // Renewal notices: the notice index.
    if let Record::Subscription(s) = record {
        if let Some(at) = s.renewal_awaiting_notice() {
            let partition = format!("{NOTICE_PREFIX}{:02}", shard_of(&s.id));
            item.insert(NOTICE_SHARD.into(), AttributeValue::S(partition));
            item.insert(NOTICE_AT.into(), number(at.timestamp_micros()));
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
        "outbox" => Record::Outbox(codec::from_item(item).map_err(unreadable)?),
        "charge" => Record::Charge(codec::from_item(item).map_err(unreadable)?),
        "idempotency" => Record::Idempotency(codec::from_item(item).map_err(unreadable)?),
        // Daily reconciliation (`crate::reconcile`).
        "reconciliation" => Record::Reconciliation(codec::from_item(item).map_err(unreadable)?),
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
    /// The position of a key of `index`; anything else is [`StoreError::Corrupt`]. (The
    /// index's own attributes are kept as `due_shard` and `due_at` whatever their names.)
    fn read(key: &Item, index: IndexSpec) -> Result<Self, StoreError> {
        let s = |name: &str| key.get(name).and_then(|v| v.as_s().ok()).cloned();
        let n = |name: &str| key.get(name)?.as_n().ok()?.parse().ok();
        let missing = || {
            StoreError::Corrupt(format!(
                "a {} key lacks pk, sk, {} or {}",
                index.name, index.shard, index.at
            ))
        };
        Ok(Self {
            pk: s(PK).ok_or_else(missing)?,
            sk: s(SK).ok_or_else(missing)?,
            due_shard: s(index.shard).ok_or_else(missing)?,
            due_at: n(index.at).ok_or_else(missing)?,
        })
    }

    fn to_key(&self, index: IndexSpec) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk.clone())),
            (SK.to_owned(), AttributeValue::S(self.sk.clone())),
            (
                index.shard.to_owned(),
                AttributeValue::S(self.due_shard.clone()),
            ),
            (index.at.to_owned(), number(self.due_at)),
        ])
    }

    fn encode(&self) -> Result<DueCursor, StoreError> {
        serde_json::to_string(self)
            .map(DueCursor)
            .map_err(|e| StoreError::Corrupt(format!("due-index position: {e}")))
    }

    fn decode(cursor: &DueCursor, partition: &str) -> Result<Self, StoreError> {
        let position: Self = serde_json::from_str(&cursor.0)
            .map_err(|_| StoreError::Invalid("malformed due-index cursor".into()))?;
        if position.due_shard != partition {
            return Err(StoreError::Invalid(format!(
                "the due-index cursor belongs to another partition than {partition}"
            )));
        }
        Ok(position)
    }

    /// Why the entry at this position cannot be read as `what`.
    fn not_a(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!(
            "due-index entry ({}, {}) is not {what}",
            self.pk, self.sk
        ))
    }
}

/// A due-index entry: customer and plan parsed back from the subscription's keys.
fn due_entry(position: IndexPosition) -> Result<DueEntry, StoreError> {
    let corrupt = || position.not_a("a subscription key");
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

/// An outbox-index entry: the event id parsed back from the entry's key.
fn pending_event(position: IndexPosition) -> Result<PendingEvent, StoreError> {
    let corrupt = || position.not_a("an outbox key");
    let id = position
        .pk
        .strip_prefix(OUTBOX_PREFIX)
        .filter(|id| !id.is_empty())
        .ok_or_else(corrupt)?;
    let created_at = DateTime::from_timestamp_micros(position.due_at).ok_or_else(corrupt)?;
    Ok(PendingEvent {
        id: id.to_owned(),
        created_at,
    })
}

/// A one-off charges' index entry: the charge id parsed back from the charge's key.
fn charge_due(position: IndexPosition) -> Result<ChargeDue, StoreError> {
    let corrupt = || position.not_a("a one-off charge key");
    let charge = position
        .pk
        .strip_prefix(CHARGE_PREFIX)
        .and_then(|id| ChargeId::parse(id).ok())
        .ok_or_else(corrupt)?;
    let due_at = DateTime::from_timestamp_micros(position.due_at).ok_or_else(corrupt)?;
    Ok(ChargeDue { charge, due_at })
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        let (pk, sk) = pk_sk(key);
        let out = self
            .client
            .get()
            .await
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
        self.index_page(DUE, due_shard_name(shard), now, limit, after)
            .await?
            .try_map(due_entry)
    }

    async fn outbox_pending(
        &self,
        shard: u16,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<OutboxPage, StoreError> {
        self.index_page(DUE, outbox_shard_name(shard), until, limit, after)
            .await?
            .try_map(pending_event)
    }

    async fn cards_of(&self, customer: &CustomerId) -> Result<Vec<Versioned<Card>>, StoreError> {
        let mut cards = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .get()
                .await
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :card)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", AttributeValue::S(format!("CUST#{customer}")))
                .expression_attribute_values(":card", AttributeValue::S("CARD#".into()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable("Query", &e))?;
            for item in out.items.unwrap_or_default() {
                let Versioned { value, version } = from_item(item)?;
                match value {
                    Record::Card(card) => cards.push(Versioned {
                        value: card,
                        version,
                    }),
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "a {} is stored under a card's key",
                            other.kind()
                        )))
                    }
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(cards);
            }
        }
    }

    async fn charges_due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<ChargeDuePage, StoreError> {
        self.index_page(DUE, charge_shard_name(shard), now, limit, after)
            .await?
            .try_map(charge_due)
    }

    // ---- Lookups of the merchant API ----

    async fn customer_records(&self, customer: &CustomerId) -> Result<CustomerRecords, StoreError> {
        // The partition of the customer's cards and subscriptions (see `pk_sk`).
        let pk = format!("CUST#{customer}");
        let mut found = CustomerRecords::default();
        for item in self.partition(pk, None, true, None).await? {
            let Versioned { value, version } = from_item(item)?;
            match value {
                Record::Card(c) => found.cards.push(Versioned { value: c, version }),
                Record::Subscription(s) => {
                    found.subscriptions.push(Versioned { value: s, version })
                }
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "a {} record is stored in the partition of customer {customer}",
                        other.kind()
                    )))
                }
            }
        }
        Ok(found)
    }

    async fn subscription_by_id(
        &self,
        id: &SubscriptionId,
    ) -> Result<Option<Versioned<Subscription>>, StoreError> {
        let out = self
            .client
            .get()
            .await
            .query()
            .table_name(&self.table)
            .index_name(SUBSCRIPTION_INDEX)
            .key_condition_expression("#id = :id")
            .expression_attribute_names("#id", SUBSCRIPTION_ID)
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .send()
            .await
            .map_err(|e| unavailable("Query", &e))?;
        // Audit entries carry an `id` too (8 characters, never a subscription's 16); only a
        // subscription's key names a customer and a plan.
        let text = |item: &Item, name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        for key in out.items() {
            let (Some(pk), Some(sk)) = (text(key, PK), text(key, SK)) else {
                continue;
            };
            let (Some(customer), Some(plan)) = (
                pk.strip_prefix("CUST#")
                    .and_then(|c| CustomerId::parse(c).ok()),
                sk.strip_prefix("SUB#").and_then(|p| PlanId::parse(p).ok()),
            ) else {
                continue;
            };
            // The index lags; the item itself is read consistently, and it may since have been
            // replaced by another subscription of the same customer and plan.
            match self.get(&Key::Subscription { customer, plan }).await? {
                Some(Versioned {
                    value: Record::Subscription(s),
                    version,
                }) if &s.id == id => return Ok(Some(Versioned { value: s, version })),
                _ => continue,
            }
        }
        Ok(None)
    }

    async fn recent_periods(
        &self,
        subscription: &SubscriptionId,
        limit: usize,
    ) -> Result<Vec<Versioned<ChargePeriod>>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (pk, _) = pk_sk(&Key::Period {
            subscription: subscription.clone(),
            period: 0,
        });
        let items = self
            .partition(pk, Some(PERIOD_PREFIX), false, Some(limit))
            .await?;
        items
            .into_iter()
            .map(|item| {
                let Versioned { value, version } = from_item(item)?;
                ChargePeriod::try_from(value)
                    .map(|value| Versioned { value, version })
                    .map_err(|other| {
                        StoreError::Corrupt(format!(
                            "a {} record is stored among the periods of {subscription}",
                            other.kind()
                        ))
                    })
            })
            .collect()
    }

    // Renewal notices.

    async fn renewals_due(
        &self,
        shard: u16,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DuePage, StoreError> {
        let partition = format!("{NOTICE_PREFIX}{shard:02}");
        self.index_page(NOTICE, partition, until, limit, after)
            .await?
            .try_map(due_entry)
    }

    // End of renewal notices.
}

// ---- Lookups of the merchant API ----

/// The sort-key prefix of charge periods.
const PERIOD_PREFIX: &str = "PERIOD#";

impl DynamoStore {
    /// The items of partition `pk` (those whose sort key starts with `prefix`, if given), read
    /// consistently in sort-key order (`forward`) or reversed, at most `limit`, following
    /// DynamoDB's pages.
    async fn partition(
        &self,
        pk: String,
        prefix: Option<&str>,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .get()
                .await
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .scan_index_forward(forward)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .set_exclusive_start_key(start.take());
            query = match prefix {
                Some(p) => query
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":prefix", AttributeValue::S(p.to_owned())),
                None => query.key_condition_expression("#pk = :pk"),
            };
            if let Some(limit) = limit {
                let left = limit
                    .saturating_sub(items.len())
                    .clamp(1, i32::MAX as usize);
                query = query.limit(i32::try_from(left).unwrap_or(i32::MAX));
            }
            let out = query.send().await.map_err(|e| unavailable("Query", &e))?;
            items.extend(out.items().iter().cloned());
            if limit.is_some_and(|l| items.len() >= l) {
                items.truncate(limit.unwrap_or(usize::MAX));
                return Ok(items);
            }
            match out.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(items),
            }
        }
    }
}
