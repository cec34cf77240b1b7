//! The DynamoDB store against moto: the store contract unchanged, then what only DynamoDB has
//! (attribute types, TTL, the sparse index, what a raw scan of the table reveals).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ProjectionType, TimeToLiveStatus};
use chrono::Duration;
use oen_pay::aws::dynamo::pk_sk;
use oen_pay::aws::{DynamoStore, DUE_INDEX};
use oen_pay::domain::{BindingRef, CardToken, Ciphertext, CustomerId, MerchantId};
use oen_pay::store::contract::{
    self, idempotency_record, ids_in_shard, link_claim, one_off_charge, session, subscription,
    subscription_with_id, t0,
};
use oen_pay::store::{
    outbox_shard_of, shard_of, Card, DueCursor, Expect, Key, MemoryStore, Put, Store, StoreError,
    StoreExt, MAX_PUTS,
};
use oen_pay::vault::{LocalVault, TokenVault, VaultContext};
use oen_pay_integration::{create_table, dynamo_client, scan_all};

type Item = HashMap<String, AttributeValue>;

/// A store on a table of its own, created from template.yaml.
async fn fresh_store() -> DynamoStore {
    let client = dynamo_client().await;
    let table = create_table(&client).await;
    DynamoStore::new(client, table)
}

async fn raw_item(store: &DynamoStore, key: &Key) -> Item {
    let (pk, sk) = pk_sk(key);
    dynamo_client()
        .await
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk))
        .key("sk", AttributeValue::S(sk))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the item is stored")
}

async fn put_raw(store: &DynamoStore, item: Item) {
    dynamo_client()
        .await
        .put_item()
        .table_name(store.table())
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

fn card(customer: &str, ciphertext: Vec<u8>) -> Card {
    Card {
        customer: CustomerId::parse(customer).unwrap(),
        binding: BindingRef::generate(),
        ciphertext: Ciphertext(ciphertext),
        token_fingerprint: "00ff".into(),
        last4: Some("4242".into()),
        created_at: t0(),
        payer: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_store_passes_the_store_contract() {
    contract::run_all(fresh_store).await;
}

#[tokio::test]
async fn the_test_table_is_the_template_table() {
    let store = fresh_store().await;
    let client = dynamo_client().await;
    let table = client
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys: Vec<_> = table
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
    );
    let index = table
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some(DUE_INDEX))
        .expect("the due index exists");
    let index_keys: Vec<_> = index
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        index_keys,
        [
            ("due_shard".into(), "HASH".into()),
            ("due_at".into(), "RANGE".into())
        ]
    );
    assert_eq!(
        index.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::KeysOnly)
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

#[tokio::test]
async fn card_ciphertext_is_stored_as_binary() {
    let store = fresh_store().await;
    let bytes = vec![0, 1, 2, 255, 254, 0, 7];
    let c = card("c-binary", bytes.clone());
    store
        .commit(vec![Put::new(c.clone(), Expect::Absent)])
        .await
        .unwrap();
    let item = raw_item(&store, &oen_pay::store::Record::from(c.clone()).key()).await;
    match item.get("ciphertext") {
        Some(AttributeValue::B(blob)) => assert_eq!(blob.as_ref(), bytes.as_slice()),
        other => panic!("ciphertext is not a binary attribute: {other:?}"),
    }
    assert_eq!(item.get("kind"), Some(&AttributeValue::S("card".into())));
    assert_eq!(item.get("ver"), Some(&AttributeValue::N("1".into())));
    assert!(!item.contains_key("ttl"), "cards do not expire");
    assert_eq!(
        store
            .card(&c.customer, &c.binding)
            .await
            .unwrap()
            .unwrap()
            .value,
        c
    );
}

#[tokio::test]
async fn sessions_and_link_claims_carry_a_numeric_ttl_a_day_after_they_expire() {
    let store = fresh_store().await;
    let s = session("c-ttl");
    let claim = link_claim("link-ttl", &s.reference);
    store
        .commit(vec![
            Put::new(s.clone(), Expect::Absent),
            Put::new(claim.clone(), Expect::Absent),
        ])
        .await
        .unwrap();
    for (key, expires) in [
        (Key::Session(s.reference.clone()), s.expires_at),
        (Key::Link(claim.link.clone()), claim.link_expires),
    ] {
        let item = raw_item(&store, &key).await;
        let expected = (expires + Duration::days(1)).timestamp();
        assert_eq!(
            item.get("ttl"),
            Some(&AttributeValue::N(expected.to_string())),
            "{key:?}"
        );
    }
}

/// Every string and byte string in an attribute value, however deeply nested.
fn leaves(value: &AttributeValue, out: &mut Vec<Vec<u8>>) {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => out.push(s.as_bytes().to_vec()),
        AttributeValue::B(b) => out.push(b.as_ref().to_vec()),
        AttributeValue::Ss(v) | AttributeValue::Ns(v) => {
            out.extend(v.iter().map(|s| s.as_bytes().to_vec()))
        }
        AttributeValue::Bs(v) => out.extend(v.iter().map(|b| b.as_ref().to_vec())),
        AttributeValue::L(v) => v.iter().for_each(|x| leaves(x, out)),
        AttributeValue::M(m) => m.iter().for_each(|(k, x)| {
            out.push(k.as_bytes().to_vec());
            leaves(x, out);
        }),
        _ => {}
    }
}

#[tokio::test]
async fn a_raw_scan_of_a_stored_card_never_shows_the_token() {
    let store = fresh_store().await;
    let token = CardToken::parse("2HhnhWm8Qe0sPz4LbXv9KdYt1RaPlanted").unwrap();
    let mut c = card("c-plaintext", Vec::new());
    let ctx = VaultContext {
        merchant: MerchantId::parse("ming").unwrap(),
        customer: c.customer.clone(),
        binding: c.binding.clone(),
    };
    let vault = LocalVault::random();
    c.ciphertext = vault.encrypt(&token, &ctx).await.unwrap();
    c.token_fingerprint = token.fingerprint();
    store
        .commit(vec![Put::new(c.clone(), Expect::Absent)])
        .await
        .unwrap();

    let items = scan_all(&dynamo_client().await, store.table()).await;
    assert_eq!(items.len(), 1);
    let mut seen = Vec::new();
    for item in &items {
        for (name, value) in item {
            seen.push(name.as_bytes().to_vec());
            leaves(value, &mut seen);
        }
    }
    let needle = token.expose().as_bytes();
    for leaf in &seen {
        assert!(
            !leaf.windows(needle.len()).any(|w| w == needle),
            "the plaintext token is in the table"
        );
    }
    // What is stored is the ciphertext, and only the right context opens it.
    let stored = store.card(&c.customer, &c.binding).await.unwrap().unwrap();
    let opened = vault.decrypt(&stored.value.ciphertext, &ctx).await.unwrap();
    assert_eq!(opened, token);
}

#[tokio::test]
async fn only_subscriptions_with_a_next_action_are_in_the_due_index() {
    let store = fresh_store().await;
    let mut sub = subscription("c-sparse", Some(t0() + Duration::microseconds(1_500_001)));
    store
        .commit(vec![Put::new(sub.clone(), Expect::Absent)])
        .await
        .unwrap();
    let item = raw_item(&store, &sub.key()).await;
    assert_eq!(
        item.get("due_shard"),
        Some(&AttributeValue::S(format!("DUE#{:02}", shard_of(&sub.id))))
    );
    assert_eq!(
        item.get("due_at"),
        Some(&AttributeValue::N(
            (t0().timestamp_micros() + 1_500_001).to_string()
        ))
    );

    sub.next_action_at = None;
    store
        .commit(vec![Put::new(sub.clone(), Expect::Version(1))])
        .await
        .unwrap();
    let item = raw_item(&store, &sub.key()).await;
    assert!(!item.contains_key("due_shard"), "{item:?}");
    assert!(!item.contains_key("due_at"), "{item:?}");

    let quiet = subscription("c-quiet", None);
    let period = contract::period(&quiet, 0, oen_pay::store::PeriodState::Open);
    store
        .commit(vec![
            Put::new(quiet.clone(), Expect::Absent),
            Put::new(period.clone(), Expect::Absent),
            Put::new(session("c-quiet"), Expect::Absent),
        ])
        .await
        .unwrap();
    for item in scan_all(&dynamo_client().await, store.table()).await {
        assert!(!item.contains_key("due_shard"), "{item:?}");
        assert!(!item.contains_key("due_at"), "{item:?}");
    }
}

#[tokio::test]
async fn outbox_items_are_indexed_while_pending_and_expire_a_week_after_delivery() {
    let store = fresh_store().await;
    let id = "payment.succeeded:Sub0000000000007P000000";
    let created = t0() + Duration::microseconds(2_500_003);
    let mut entry = contract::outbox_entry(id, created);
    store
        .commit(vec![Put::new(entry.clone(), Expect::Absent)])
        .await
        .unwrap();
    let key = Key::Outbox(id.to_owned());
    assert_eq!(pk_sk(&key), (format!("OUTBOX#{id}"), "EVENT".to_owned()));
    let item = raw_item(&store, &key).await;
    assert_eq!(item.get("kind"), Some(&AttributeValue::S("outbox".into())));
    assert_eq!(
        item.get("due_shard"),
        Some(&AttributeValue::S(format!(
            "OUTBOX#{:02}",
            outbox_shard_of(id)
        )))
    );
    assert_eq!(
        item.get("due_at"),
        Some(&AttributeValue::N(created.timestamp_micros().to_string()))
    );
    assert!(!item.contains_key("ttl"), "a pending entry never expires");
    // The event's data is a DynamoDB map, not a string.
    let event = item
        .get("event")
        .and_then(|e| e.as_m().ok())
        .expect("a map");
    assert!(
        matches!(event.get("data"), Some(AttributeValue::M(_))),
        "{event:?}"
    );

    let delivered_at = t0() + Duration::minutes(1);
    entry.delivered_at = Some(delivered_at);
    store
        .commit(vec![Put::new(entry, Expect::Version(1))])
        .await
        .unwrap();
    let item = raw_item(&store, &key).await;
    assert!(!item.contains_key("due_shard"), "{item:?}");
    assert!(!item.contains_key("due_at"), "{item:?}");
    let expires = (delivered_at + Duration::days(7)).timestamp();
    assert_eq!(
        item.get("ttl"),
        Some(&AttributeValue::N(expires.to_string()))
    );
}

/// Both stores end a page that empties the shard with no cursor, even when the page is full.
#[tokio::test]
async fn one_off_charges_are_indexed_while_due_and_idempotency_keys_expire_after_24_hours() {
    let store = fresh_store().await;
    let due_at = t0() + Duration::seconds(90);
    let mut charge = one_off_charge("c-one-off-raw", Some(due_at));
    let key = idempotency_record("key-raw-0001", &charge.id);
    store
        .commit(vec![
            Put::new(charge.clone(), Expect::Absent),
            Put::new(key.clone(), Expect::Absent),
        ])
        .await
        .unwrap();
    let item = raw_item(&store, &Key::Charge(charge.id.clone())).await;
    assert_eq!(
        item.get("pk"),
        Some(&AttributeValue::S(format!("CHARGE#{}", charge.id)))
    );
    let shard = oen_pay::store::charge_shard_of(&charge.id);
    assert_eq!(
        item.get("due_shard"),
        Some(&AttributeValue::S(format!("CHARGE#{shard:02}")))
    );
    assert_eq!(
        item.get("due_at"),
        Some(&AttributeValue::N(due_at.timestamp_micros().to_string()))
    );
    assert!(!item.contains_key("ttl"), "a record of money never expires");
    let item = raw_item(&store, &oen_pay::store::Record::from(key.clone()).key()).await;
    assert_eq!(
        item.get("pk"),
        Some(&AttributeValue::S("IDEM#ming#key-raw-0001".into()))
    );
    assert_eq!(
        item.get("ttl"),
        Some(&AttributeValue::N(
            (t0() + Duration::hours(24)).timestamp().to_string()
        ))
    );
    // Settled: off the index (and so off the janitor's list).
    charge.next_action_at = None;
    store
        .commit(vec![Put::new(charge.clone(), Expect::Version(1))])
        .await
        .unwrap();
    let item = raw_item(&store, &Key::Charge(charge.id.clone())).await;
    assert!(!item.contains_key("due_shard"), "{item:?}");
    let page = store
        .charges_due(shard, t0() + Duration::days(1), 10, None)
        .await
        .unwrap();
    assert!(page.entries.is_empty(), "{page:?}");
}

#[tokio::test]
async fn a_full_last_page_has_no_next_cursor_in_either_store() {
    async fn check(store: impl Store) {
        let shard = 5;
        let puts: Vec<_> = ids_in_shard(shard, 10)
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                Put::new(
                    subscription_with_id(id, &format!("c-full-{i}"), Some(t0())),
                    Expect::Absent,
                )
            })
            .collect();
        store.commit(puts).await.unwrap();
        let page = store.due(shard, t0(), 10, None).await.unwrap();
        assert_eq!(page.entries.len(), 10);
        assert_eq!(page.next, None);
        let page = store.due(shard, t0(), 9, None).await.unwrap();
        assert_eq!(page.entries.len(), 9);
        let rest = store.due(shard, t0(), 9, page.next).await.unwrap();
        assert_eq!(rest.entries.len(), 1);
        assert_eq!(rest.next, None);
    }
    check(MemoryStore::new()).await;
    check(fresh_store().await).await;
}

#[tokio::test]
async fn a_malformed_or_foreign_cursor_is_invalid() {
    let store = fresh_store().await;
    let ids = ids_in_shard(2, 3);
    let puts: Vec<_> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            Put::new(
                subscription_with_id(id, &format!("c-cursor-{i}"), Some(t0())),
                Expect::Absent,
            )
        })
        .collect();
    store.commit(puts).await.unwrap();
    let page = store.due(2, t0(), 1, None).await.unwrap();
    let cursor = page.next.expect("more than one page");

    for bad in [DueCursor("not json".into()), DueCursor("{}".into())] {
        let err = store.due(2, t0(), 10, Some(bad)).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }
    let err = store.due(3, t0(), 10, Some(cursor)).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn commits_the_store_cannot_make_are_invalid() {
    let store = fresh_store().await;
    let err = store.commit(Vec::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let too_many: Vec<_> = (0..=MAX_PUTS)
        .map(|i| Put::new(session(&format!("c-many-{i}")), Expect::Absent))
        .collect();
    let err = store.commit(too_many).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let s = session("c-twice");
    let err = store
        .commit(vec![
            Put::new(s.clone(), Expect::Absent),
            Put::new(s.clone(), Expect::Absent),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(store.session(&s.reference).await.unwrap().is_none());
}

#[tokio::test]
async fn a_full_transaction_of_max_puts_lands() {
    let store = fresh_store().await;
    let sessions: Vec<_> = (0..MAX_PUTS)
        .map(|i| session(&format!("c-max-{i}")))
        .collect();
    store
        .commit(
            sessions
                .iter()
                .map(|s| Put::new(s.clone(), Expect::Absent))
                .collect(),
        )
        .await
        .unwrap();
    for s in &sessions {
        assert_eq!(
            store.session(&s.reference).await.unwrap().unwrap().version,
            1
        );
    }
}

#[tokio::test]
async fn conflicts_say_what_was_expected_and_found() {
    let store = fresh_store().await;
    let s = session("c-says");
    store
        .commit(vec![Put::new(s.clone(), Expect::Absent)])
        .await
        .unwrap();
    let StoreError::Conflict(single) = store
        .commit(vec![Put::new(s.clone(), Expect::Version(4))])
        .await
        .unwrap_err()
    else {
        panic!("not a conflict")
    };
    assert!(single.contains("Version(4)"), "{single}");
    assert!(single.contains("Some(1)"), "{single}");
    let StoreError::Conflict(in_transaction) = store
        .commit(vec![
            Put::new(session("c-other"), Expect::Absent),
            Put::new(s.clone(), Expect::Absent),
        ])
        .await
        .unwrap_err()
    else {
        panic!("not a conflict")
    };
    assert!(in_transaction.contains("session"), "{in_transaction}");
    assert!(in_transaction.contains("Absent"), "{in_transaction}");
}

#[tokio::test]
async fn unreadable_items_are_corrupt() {
    let store = fresh_store().await;
    let s = session("c-corrupt");
    let key = Key::Session(s.reference.clone());
    let (pk, sk) = pk_sk(&key);
    let base = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("sk".to_owned(), AttributeValue::S(sk)),
    ]);

    let mut unknown_kind = base.clone();
    unknown_kind.insert("kind".into(), AttributeValue::S("coupon".into()));
    unknown_kind.insert("ver".into(), AttributeValue::N("1".into()));
    put_raw(&store, unknown_kind).await;
    let err = store.get(&key).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

    let mut missing_fields = base.clone();
    missing_fields.insert("kind".into(), AttributeValue::S("session".into()));
    missing_fields.insert("ver".into(), AttributeValue::N("1".into()));
    put_raw(&store, missing_fields).await;
    let err = store.get(&key).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

    let mut no_version = base.clone();
    no_version.insert("kind".into(), AttributeValue::S("session".into()));
    put_raw(&store, no_version).await;
    let err = store.get(&key).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn a_record_under_a_foreign_key_is_corrupt() {
    let store = fresh_store().await;
    let s = session("c-moved");
    store
        .commit(vec![Put::new(s.clone(), Expect::Absent)])
        .await
        .unwrap();
    let mut item = raw_item(&store, &Key::Session(s.reference.clone())).await;
    let elsewhere = Key::Session(BindingRef::generate());
    item.insert("pk".into(), AttributeValue::S(pk_sk(&elsewhere).0));
    put_raw(&store, item).await;
    let err = store.get(&elsewhere).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn a_missing_table_is_unavailable() {
    let store = DynamoStore::new(dynamo_client().await, "no-such-table");
    let err = store
        .get(&Key::Session(BindingRef::generate()))
        .await
        .unwrap_err();
    let StoreError::Unavailable(message) = err else {
        panic!("{err:?}")
    };
    assert!(message.contains("ResourceNotFound"), "{message}");
    let err = store
        .commit(vec![Put::new(session("c-none"), Expect::Absent)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store.due(0, t0(), 10, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}
