//! The store contract for one-off charges (`crate::oneoff`): their records, the idempotency
//! key's single claim, the charges' due index and a customer's cards.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::{all_pages, subscription, t0};
use crate::domain::{
    Amount, ChargeId, Ciphertext, IdempotencyKey, MerchantId, OrderId, StoredReply, TransactionId,
};
use crate::store::*;

/// A one-off charge of `customer` in the `Charging` state, due to the janitor at `next`.
pub fn one_off_charge(customer: &str, next: Option<DateTime<Utc>>) -> OneOffCharge {
    one_off_charge_with_id(ChargeId::generate(), customer, next)
}

pub fn one_off_charge_with_id(
    id: ChargeId,
    customer: &str,
    next: Option<DateTime<Utc>>,
) -> OneOffCharge {
    OneOffCharge {
        order_id: OrderId::for_one_off(&id),
        id,
        merchant: MerchantId::parse("ming").unwrap(),
        customer: CustomerId::parse(customer).unwrap(),
        card: BindingRef::generate(),
        last4: Some("4242".into()),
        amount: Amount::new(150).unwrap(),
        description: "Late fee".into(),
        reference: Some("inv-2026-001".into()),
        product_details: vec![crate::domain::ProductDetail {
            production_code: "FEE".into(),
            description: "Late fee".into(),
            quantity: 3,
            unit: "item".into(),
            unit_price: 50,
        }],
        state: ChargeState::Charging {
            lease_owner: "api-1".into(),
            lease_until: t0() + Duration::seconds(90),
        },
        attempts: 0,
        last_error: None,
        idempotency_key: IdempotencyKey::parse("key-00000001").unwrap(),
        created_at: t0(),
        updated_at: t0(),
        next_action_at: next,
        refunded: None,
    }
}

/// The idempotency record of `key` for `charge`, created at t0, without a reply yet.
pub fn idempotency_record(key: &str, charge: &ChargeId) -> IdempotencyRecord {
    IdempotencyRecord {
        merchant: MerchantId::parse("ming").unwrap(),
        key: IdempotencyKey::parse(key).unwrap(),
        request_hash: "9f".repeat(32),
        charge: charge.clone(),
        created_at: t0(),
        expires_at: t0() + Duration::hours(24),
        reply: None,
    }
}

/// Charge ids that fall into due-index shard `shard`.
pub fn charge_ids_in_shard(shard: u16, n: usize) -> Vec<ChargeId> {
    std::iter::repeat_with(ChargeId::generate)
        .filter(|id| charge_shard_of(id) == shard)
        .take(n)
        .collect()
}

pub async fn one_off_records_round_trip(store: impl Store) {
    let mut records: Vec<Record> = Vec::new();
    for (n, state) in [
        ChargeState::Charging {
            lease_owner: "api-1".into(),
            lease_until: t0() + Duration::seconds(90),
        },
        ChargeState::Unknown {
            since: t0(),
            reconcile_at: t0() + Duration::minutes(5),
            checks: 1,
        },
        ChargeState::Paid {
            transaction: TransactionId::parse("P20260928IJ90KL12").unwrap(),
            auth_code: None,
            paid_at: t0() + Duration::microseconds(1),
        },
        ChargeState::Declined {
            code: "T0004".into(),
            hard: false,
            at: t0(),
        },
        ChargeState::NotCharged {
            reason: "Oen unreachable".into(),
            at: t0(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let next = (n < 2).then(|| t0() + Duration::milliseconds(1500));
        let mut charge = one_off_charge("c-one-off", next);
        charge.state = state;
        charge.attempts = n as u32;
        charge.reference = (n % 2 == 0).then(|| "ref".to_owned());
        charge.last4 = None;
        charge.last_error = (n == 4).then(|| "not sent".to_owned());
        charge.refunded = (n == 2).then(|| Amount::new(40).unwrap());
        records.push(charge.into());
    }
    let charge = ChargeId::generate();
    records.push(idempotency_record("key-without-reply", &charge).into());
    let mut replied = idempotency_record("key:with.reply_1", &charge);
    replied.reply = Some(StoredReply {
        status: 402,
        body: serde_json::json!({"error": {
            "code": "card_declined",
            "message": "declined",
            "declineCode": "T0004",
            "charge": {"id": charge, "amount": 150, "reference": null, "lines": []},
        }}),
    });
    records.push(replied.into());
    for r in &records {
        store
            .commit(vec![Put::new(r.clone(), Expect::Absent)])
            .await
            .unwrap();
    }
    for r in &records {
        let got = store.get(&r.key()).await.unwrap();
        let got = got.unwrap_or_else(|| panic!("{} missing", r.kind()));
        assert_eq!((&got.value, got.version), (r, 1));
    }
    let key = IdempotencyKey::parse("key:with.reply_1").unwrap();
    let merchant = MerchantId::parse("ming").unwrap();
    let read = store.idempotency(&merchant, &key).await.unwrap().unwrap();
    assert_eq!(read.value.reply.map(|r| r.status), Some(402));
    // The same key of another merchant is another record.
    let other = MerchantId::parse("other-shop").unwrap();
    assert!(store.idempotency(&other, &key).await.unwrap().is_none());
    assert_eq!(
        Record::from(idempotency_record("key-expiry", &charge)).expires_at(),
        Some(t0() + Duration::hours(24))
    );
}

/// One key claimed together with its charge, in one transaction.
fn claim_key(store: &impl Store) -> impl Future<Output = (ChargeId, Result<(), StoreError>)> + '_ {
    let charge = one_off_charge("c-key-race", Some(t0() + Duration::seconds(90)));
    let key = idempotency_record("key-race-0001", &charge.id);
    async move {
        let result = store
            .commit(vec![
                Put::new(key, Expect::Absent),
                Put::new(charge.clone(), Expect::Absent),
            ])
            .await;
        (charge.id, result)
    }
}

/// Eight requests with one key, one after another: the first claims the key with its charge,
/// every other is refused and writes nothing. Runs on every store, DynamoDB's conditions
/// included.
pub async fn an_idempotency_key_is_claimed_once<S: Store + 'static>(store: Arc<S>) {
    let mut results = Vec::new();
    for _ in 0..8 {
        results.push(claim_key(&*store).await);
    }
    one_winner_took_the_key(&*store, results).await;
}

/// The same eight requests at once. Only for stores that isolate a transaction per item: moto
/// restores a snapshot of every table when a transaction fails, which can undo a concurrent
/// winner's writes, so a race there tests moto rather than DynamoDB.
pub async fn racing_idempotency_claims_have_one_winner<S: Store + 'static>(store: Arc<S>) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { claim_key(&*store).await }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    one_winner_took_the_key(&*store, results).await;
}

async fn one_winner_took_the_key(
    store: &impl Store,
    results: Vec<(ChargeId, Result<(), StoreError>)>,
) {
    let mut winners = Vec::new();
    for result in results {
        match result {
            (id, Ok(())) => winners.push(id),
            (_, Err(StoreError::Conflict(_))) => {}
            (_, Err(e)) => panic!("{e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let merchant = MerchantId::parse("ming").unwrap();
    let key = IdempotencyKey::parse("key-race-0001").unwrap();
    let stored = store.idempotency(&merchant, &key).await.unwrap().unwrap();
    assert_eq!((&stored.value.charge, stored.version), (&winners[0], 1));
    // The losers' charges were not written: a commit is all or nothing.
    let due = (0..DUE_SHARDS).map(|s| store.charges_due(s, t0() + Duration::days(1), 100, None));
    let mut listed = 0;
    for page in due {
        listed += page.await.unwrap().entries.len();
    }
    assert_eq!(listed, 1);
    // An expired key is taken over by compare-and-set on the version read, once.
    let mut reused = stored.value.clone();
    reused.charge = ChargeId::generate();
    reused.created_at = t0() + Duration::hours(25);
    reused.expires_at = reused.created_at + Duration::hours(24);
    store
        .commit(vec![Put::new(reused.clone(), Expect::Version(1))])
        .await
        .unwrap();
    let err = store
        .commit(vec![Put::new(reused, Expect::Version(1))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

pub async fn charges_due_index_lists_charges_with_a_next_action_oldest_first(store: impl Store) {
    let now = t0();
    let mut expected = BTreeSet::new();
    let mut puts = Vec::new();
    for i in 0..30 {
        let next = match i % 3 {
            0 => Some(now - Duration::minutes(i64::from(i))),
            1 => Some(now + Duration::seconds(1)),
            _ => None,
        };
        let charge = one_off_charge("c-charge-due", next);
        if next.is_some_and(|t| t <= now) {
            expected.insert(charge.id.clone());
        }
        puts.push(Put::new(charge, Expect::Absent));
    }
    // A subscription due at the same instant is not a charge, and the reverse.
    let sub = subscription("c-charge-due-sub", Some(now));
    puts.push(Put::new(sub.clone(), Expect::Absent));
    for chunk in puts.chunks(10) {
        store.commit(chunk.to_vec()).await.unwrap();
    }
    let mut seen = BTreeSet::new();
    for shard in 0..DUE_SHARDS {
        let page = store.charges_due(shard, now, 100, None).await.unwrap();
        assert!(page.next.is_none());
        let times: Vec<_> = page.entries.iter().map(|e| e.due_at).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "shard {shard}");
        for e in page.entries {
            assert_eq!(charge_shard_of(&e.charge), shard);
            let stored = store.one_off_charge(&e.charge).await.unwrap().unwrap();
            assert_eq!(stored.value.next_action_at, Some(e.due_at));
            assert!(seen.insert(e.charge));
        }
    }
    assert_eq!(seen, expected);
    let due = store.due(shard_of(&sub.id), now, 100, None).await.unwrap();
    assert_eq!(due.entries.len(), 1);
    // Settling a charge takes it off the index.
    let first = expected.iter().next().cloned().unwrap();
    let mut settled = store.one_off_charge(&first).await.unwrap().unwrap().value;
    settled.next_action_at = None;
    settled.state = ChargeState::Paid {
        transaction: TransactionId::parse("P20260928IJ90KL99").unwrap(),
        auth_code: None,
        paid_at: now,
    };
    store
        .commit(vec![Put::new(settled, Expect::Version(1))])
        .await
        .unwrap();
    let shard = charge_shard_of(&first);
    let later = now + Duration::days(365);
    let page = store.charges_due(shard, later, 100, None).await.unwrap();
    assert!(page.entries.iter().all(|e| e.charge != first));
}

pub async fn charges_due_index_pages_with_a_cursor(store: impl Store) {
    let shard = 9;
    let ids = charge_ids_in_shard(shard, 13);
    let puts: Vec<_> = ids
        .iter()
        .enumerate()
        // Several share a due time: the cursor must still neither skip nor repeat.
        .map(|(i, id)| {
            let at = t0() - Duration::seconds((i / 3) as i64);
            Put::new(
                one_off_charge_with_id(id.clone(), "c-charge-page", Some(at)),
                Expect::Absent,
            )
        })
        .collect();
    for chunk in puts.chunks(10) {
        store.commit(chunk.to_vec()).await.unwrap();
    }
    let (seen, pages) = all_pages(5, |after| store.charges_due(shard, t0(), 5, after)).await;
    assert_eq!(pages, 3);
    let unique: BTreeSet<_> = seen.iter().map(|e| e.charge.clone()).collect();
    assert_eq!((seen.len(), unique), (13, ids.into_iter().collect()));
}

pub async fn cards_of_lists_the_customers_cards_only(store: impl Store) {
    let card = |customer: &str, n: u8| Card {
        customer: CustomerId::parse(customer).unwrap(),
        binding: BindingRef::generate(),
        ciphertext: Ciphertext(vec![n, 0, 255]),
        token_fingerprint: format!("{n:02x}"),
        last4: Some(format!("424{n}")),
        created_at: t0() + Duration::minutes(i64::from(n)),
        payer: Default::default(),
    };
    let mine = [card("c-cards", 1), card("c-cards", 2)];
    let theirs = card("c-cards-2", 3);
    // The customer's subscription shares the partition and is not a card.
    let sub = subscription("c-cards", None);
    let mut puts: Vec<Put> = mine
        .iter()
        .map(|c| Put::new(c.clone(), Expect::Absent))
        .collect();
    puts.push(Put::new(theirs, Expect::Absent));
    puts.push(Put::new(sub, Expect::Absent));
    store.commit(puts).await.unwrap();
    let mut listed: Vec<Card> = store
        .cards_of(&CustomerId::parse("c-cards").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect();
    listed.sort_by_key(|c| c.created_at);
    assert_eq!(listed, mine);
    let nobody = CustomerId::parse("c-cards-none").unwrap();
    assert!(store.cards_of(&nobody).await.unwrap().is_empty());
}
