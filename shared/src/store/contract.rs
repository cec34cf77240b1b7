//! The store contract: one suite that every [`Store`] adapter must pass unchanged. The in-memory
//! adapter runs it in unit tests; the DynamoDB adapter runs it against moto in `tests/`.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::domain::{
    Amount, Catalog, CheckoutId, Ciphertext, DomainEvent, EventType, LinkId, OrderId, Plan,
    TransactionId,
};

mod one_off;
pub use one_off::*;
// ---- Lookups of the merchant API: their contract lives in `contract/lookups.rs`. ----
mod lookups;
pub use lookups::{card, run_lookups};
// Daily reconciliation (`crate::reconcile`).
mod reconciliation;
pub use reconciliation::*;
// Renewal notices.
mod renewal;
pub use renewal::*;

pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub fn session(customer: &str) -> BindingSession {
    BindingSession {
        reference: BindingRef::generate(),
        customer: CustomerId::parse(customer).unwrap(),
        plan: PlanId::parse("premium").unwrap(),
        created_at: t0(),
        expires_at: t0() + Duration::minutes(10),
        checkout_id: Some(CheckoutId::parse("2HhngP9sVb3mK1xYdQe7Wc0RtUi").unwrap()),
        state: SessionState::Pending,
        terms: Some(premium()),
        payer: Default::default(),
    }
}

/// A plan with every field set, so that stored terms round-trip whole.
pub fn premium() -> Plan {
    let json = r#"[{"id":"premium","description":"Premium plan","amount":500,
        "intervalMonths":1,"trialDays":14,"productionCode":"PR","unit":"month"}]"#;
    let plans = Catalog::parse(json).unwrap();
    plans.lookup("premium").unwrap().clone()
}

/// The claim of a start link (named by `link`) on the session `binding`.
pub fn link_claim(link: &str, binding: &BindingRef) -> LinkClaim {
    LinkClaim {
        link: LinkId::of_signature(link.as_bytes()),
        binding: binding.clone(),
        link_expires: t0() + Duration::hours(24),
        claimed_at: t0(),
    }
}

pub fn subscription(customer: &str, next: Option<DateTime<Utc>>) -> Subscription {
    subscription_with_id(SubscriptionId::generate(), customer, next)
}

pub fn subscription_with_id(
    id: SubscriptionId,
    customer: &str,
    next: Option<DateTime<Utc>>,
) -> Subscription {
    Subscription {
        id,
        customer: CustomerId::parse(customer).unwrap(),
        plan: PlanId::parse("premium").unwrap(),
        status: SubscriptionStatus::Active,
        card: BindingRef::generate(),
        anchor: t0(),
        period: 0,
        next_action_at: next,
        dunning_attempts: 0,
        cancel_at_period_end: false,
        created_at: t0(),
        updated_at: t0(),
        terms: Some(premium()),
        carried: None,
        renewal_noticed: None,
        payer: Default::default(),
    }
}

pub fn period(sub: &Subscription, n: u32, state: PeriodState) -> ChargePeriod {
    ChargePeriod {
        subscription: sub.id.clone(),
        period: n,
        order_id: OrderId::for_period(&sub.id, n),
        amount: Amount::new(500).unwrap(),
        state,
        attempts: 0,
        last_error: None,
        updated_at: t0(),
        refunded: None,
        product_details: premium().product_details(),
        anomalies: Vec::new(),
        customer: Some(sub.customer.clone()),
    }
}

/// A pending outbox entry for an event with id `id`, created at `created`, whose data has every
/// JSON shape an event carries.
pub fn outbox_entry(id: &str, created: DateTime<Utc>) -> OutboxEntry {
    let event = DomainEvent {
        id: id.to_owned(),
        kind: EventType::PaymentSucceeded,
        at: created,
        customer: CustomerId::parse("c-outbox").unwrap(),
        data: serde_json::json!({
            "subscription": "Sub0000000000001",
            "amount": 500,
            "reconciled": false,
            "note": null,
            "empty": "",
            "lines": [{"unit": "month", "quantity": 1}],
        }),
    };
    OutboxEntry::pending(event, created)
}

/// Event ids that fall into outbox shard `shard`.
pub fn event_ids_in_shard(shard: u16, n: usize) -> Vec<String> {
    (0u32..)
        .map(|i| format!("payment.succeeded:Sub{i:013}P000000"))
        .filter(|id| outbox_shard_of(id) == shard)
        .take(n)
        .collect()
}

/// Every entry of an index listing (`list` from a cursor), page by page, each page at most
/// `limit` long; and how many pages it took.
pub async fn all_pages<T, F, Fut>(limit: usize, mut list: F) -> (Vec<T>, usize)
where
    F: FnMut(Option<DueCursor>) -> Fut,
    Fut: Future<Output = Result<Page<T>, StoreError>>,
{
    let mut all = Vec::new();
    let mut cursor = None;
    for pages in 1..=100 {
        let page = list(cursor).await.unwrap();
        assert!(page.entries.len() <= limit.max(1));
        all.extend(page.entries);
        cursor = page.next;
        if cursor.is_none() {
            return (all, pages);
        }
    }
    panic!("paging does not end");
}

/// Every pending outbox entry created by `until`, shard by shard, listed in pages of `limit`;
/// each shard's entries oldest first.
pub async fn list_outbox(
    store: &(impl Store + ?Sized),
    until: DateTime<Utc>,
    limit: usize,
) -> Vec<PendingEvent> {
    let mut all = Vec::new();
    for shard in 0..OUTBOX_SHARDS {
        let list = |after| store.outbox_pending(shard, until, limit, after);
        let (entries, _) = all_pages(limit, list).await;
        for e in &entries {
            assert_eq!(outbox_shard_of(&e.id), shard, "{} in shard {shard}", e.id);
        }
        let times: Vec<_> = entries.iter().map(|e| e.created_at).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "shard {shard}");
        all.extend(entries);
    }
    all
}

/// Runs every contract test, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: Store + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    put_if_absent_refuses_a_second_put(make().await).await;
    compare_and_set_increments_and_refuses_stale_versions(make().await).await;
    commit_is_all_or_nothing(make().await).await;
    a_link_is_claimed_once(make().await).await;
    every_record_round_trips(make().await).await;
    due_index_returns_only_due_subscriptions_of_the_shard_oldest_first(make().await).await;
    due_index_pages_with_a_cursor(make().await).await;
    due_index_follows_updates(make().await).await;
    claims_of_one_version_have_one_winner(Arc::new(make().await)).await;
    missing_records_read_as_none(make().await).await;
    an_event_is_recorded_in_the_outbox_once(make().await).await;
    outbox_index_lists_pending_entries_of_the_shard_oldest_first(make().await).await;
    outbox_index_pages_with_a_cursor(make().await).await;
    delivering_an_entry_takes_it_off_the_outbox_index(make().await).await;
    // One-off charges.
    one_off_records_round_trip(make().await).await;
    an_idempotency_key_is_claimed_once(Arc::new(make().await)).await;
    charges_due_index_lists_charges_with_a_next_action_oldest_first(make().await).await;
    charges_due_index_pages_with_a_cursor(make().await).await;
    cards_of_lists_the_customers_cards_only(make().await).await;
    lookups::run_lookups(&make).await;
    // Daily reconciliation.
    a_reconciliation_report_round_trips_and_is_replaced_by_compare_and_set(make().await).await;
    // Renewal notices.
    renewal_index_lists_only_renewals_awaiting_their_notice_soonest_first(make().await).await;
    renewal_index_follows_the_subscription(make().await).await;
    payer_and_renewal_notice_round_trip(make().await).await;
}

pub async fn put_if_absent_refuses_a_second_put(store: impl Store) {
    let s = session("c-absent");
    store
        .commit(vec![Put::new(s.clone(), Expect::Absent)])
        .await
        .unwrap();
    let err = store
        .commit(vec![Put::new(s.clone(), Expect::Absent)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let got = store.session(&s.reference).await.unwrap().unwrap();
    assert_eq!(got.version, 1);
    assert_eq!(got.value, s);
}

pub async fn compare_and_set_increments_and_refuses_stale_versions(store: impl Store) {
    let mut s = session("c-cas");
    store
        .commit(vec![Put::new(s.clone(), Expect::Absent)])
        .await
        .unwrap();
    s.state = SessionState::Failed {
        reason: "3DS_ABANDONED".into(),
        failed_at: t0(),
    };
    store
        .commit(vec![Put::new(s.clone(), Expect::Version(1))])
        .await
        .unwrap();
    assert_eq!(
        store.session(&s.reference).await.unwrap().unwrap().version,
        2
    );
    let err = store
        .commit(vec![Put::new(s.clone(), Expect::Version(1))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = store
        .commit(vec![Put::new(session("c-new"), Expect::Version(1))])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "CAS on a missing record: {err:?}"
    );
}

pub async fn commit_is_all_or_nothing(store: impl Store) {
    let s = session("c-atomic");
    store
        .commit(vec![Put::new(s.clone(), Expect::Absent)])
        .await
        .unwrap();
    let sub = subscription("c-atomic", Some(t0()));
    let mut bound = s.clone();
    bound.state = SessionState::Bound {
        token_fingerprint: "f".into(),
        last4: Some("4242".into()),
        bound_at: t0(),
    };
    // The session's condition is stale, so the new subscription must not appear either.
    let err = store
        .commit(vec![
            Put::new(sub.clone(), Expect::Absent),
            Put::new(bound.clone(), Expect::Version(7)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store
        .subscription(&sub.customer, &sub.plan)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.session(&s.reference).await.unwrap().unwrap().value, s);
    let page = store.due(shard_of(&sub.id), t0(), 10, None).await.unwrap();
    assert!(
        page.entries.is_empty(),
        "a failed commit left an index entry"
    );
    // With the right version both land.
    store
        .commit(vec![
            Put::new(sub.clone(), Expect::Absent),
            Put::new(bound.clone(), Expect::Version(1)),
        ])
        .await
        .unwrap();
    assert_eq!(
        store
            .subscription(&sub.customer, &sub.plan)
            .await
            .unwrap()
            .unwrap()
            .value,
        sub
    );
    assert_eq!(
        store.session(&s.reference).await.unwrap().unwrap().value,
        bound
    );
}

pub async fn a_link_is_claimed_once(store: impl Store) {
    let claim = link_claim("link-1", &BindingRef::generate());
    store
        .commit(vec![Put::new(claim.clone(), Expect::Absent)])
        .await
        .unwrap();
    // A second use of the link names another session: the first claim stands.
    let err = store
        .commit(vec![Put::new(
            link_claim("link-1", &BindingRef::generate()),
            Expect::Absent,
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let got = store.link_claim(&claim.link).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (claim, 1));
    assert!(store
        .link_claim(&LinkId::of_signature(b"link-2"))
        .await
        .unwrap()
        .is_none());
}

pub async fn every_record_round_trips(store: impl Store) {
    let mut records: Vec<Record> = Vec::new();
    let base = session("c-rt");
    for (i, state) in [
        SessionState::Pending,
        SessionState::Bound {
            token_fingerprint: "ab12".into(),
            last4: None,
            bound_at: t0(),
        },
        SessionState::Failed {
            reason: "T0004".into(),
            failed_at: t0() + Duration::seconds(1),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = base.clone();
        s.reference = BindingRef::generate();
        s.checkout_id = (i != 0).then(|| CheckoutId::parse("X1").unwrap());
        s.state = state;
        records.push(s.into());
    }
    records.push(link_claim("link-rt", &base.reference).into());
    records.push(
        Card {
            customer: CustomerId::parse("c-rt").unwrap(),
            binding: base.reference.clone(),
            ciphertext: Ciphertext(vec![0, 1, 2, 255, 254, 0, 7]),
            token_fingerprint: "ff00".into(),
            last4: Some("4242".into()),
            created_at: t0(),
            payer: Default::default(),
        }
        .into(),
    );
    let mut sub = subscription("c-rt", Some(t0() + Duration::milliseconds(1500)));
    sub.status = SubscriptionStatus::RequiresPaymentMethod;
    sub.period = 12;
    sub.dunning_attempts = 3;
    sub.cancel_at_period_end = true;
    records.push(sub.clone().into());
    let mut quiet = subscription("c-rt2", None);
    quiet.status = SubscriptionStatus::Canceled;
    records.push(quiet.into());
    for (n, state) in [
        PeriodState::Open,
        PeriodState::Charging {
            lease_owner: "worker-1".into(),
            lease_until: t0() + Duration::seconds(30),
        },
        PeriodState::Unknown {
            since: t0(),
            reconcile_at: t0() + Duration::minutes(5),
            checks: 2,
        },
        PeriodState::Paid {
            transaction: TransactionId::parse("P20260928IJ90KL12").unwrap(),
            auth_code: Some("831000".into()),
            paid_at: t0(),
        },
        PeriodState::Paid {
            transaction: TransactionId::parse("P20260928IJ90KL13").unwrap(),
            auth_code: None,
            paid_at: t0(),
        },
        PeriodState::Declined {
            code: "T0003".into(),
            at: t0(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = period(&sub, n as u32, state);
        p.attempts = n as u32;
        p.last_error = (n % 2 == 1).then(|| "soft decline T0004".to_owned());
        p.refunded = (n == 3).then(|| Amount::new(200).unwrap());
        records.push(p.into());
    }
    records.push(
        AuditEntry::new(
            CustomerId::parse("c-rt").unwrap(),
            t0(),
            "webhook",
            "card.bound",
            Some(base.reference.clone()),
            "last4 4242",
        )
        .into(),
    );
    records.push(
        AuditEntry::new(
            CustomerId::parse("c-rt").unwrap(),
            t0(),
            "operator",
            "refund",
            None,
            "",
        )
        .into(),
    );
    records.push(outbox_entry("payment.succeeded:SubRoundTrip00P000000", t0()).into());
    let mut delivered = outbox_entry("card.bound:rt", t0() + Duration::microseconds(7));
    delivered.event.kind = EventType::CardBound;
    delivered.event.data = serde_json::Value::Null;
    delivered.delivered_at = Some(t0() + Duration::seconds(1));
    records.push(delivered.into());
    for r in &records {
        store
            .commit(vec![Put::new(r.clone(), Expect::Absent)])
            .await
            .unwrap();
    }
    for r in &records {
        let got = store
            .get(&r.key())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} missing", r.kind()));
        assert_eq!(&got.value, r);
        assert_eq!(got.version, 1);
    }
}

/// Subscription ids that fall into `shard`.
pub fn ids_in_shard(shard: u16, n: usize) -> Vec<SubscriptionId> {
    std::iter::repeat_with(SubscriptionId::generate)
        .filter(|id| shard_of(id) == shard)
        .take(n)
        .collect()
}

pub async fn due_index_returns_only_due_subscriptions_of_the_shard_oldest_first(store: impl Store) {
    let now = t0();
    let mut expected_due = BTreeSet::new();
    let mut all = Vec::new();
    for i in 0..40 {
        let next = match i % 4 {
            0 => Some(now - Duration::hours(i64::from(i))),
            1 => Some(now),
            2 => Some(now + Duration::seconds(1)),
            _ => None,
        };
        let sub = subscription(&format!("c-due-{i}"), next);
        if next.is_some_and(|t| t <= now) {
            expected_due.insert(sub.customer.clone());
        }
        all.push(Put::new(sub, Expect::Absent));
    }
    for chunk in all.chunks(10) {
        store.commit(chunk.to_vec()).await.unwrap();
    }
    let mut seen = BTreeSet::new();
    for shard in 0..DUE_SHARDS {
        let page = store.due(shard, now, 100, None).await.unwrap();
        assert!(page.next.is_none());
        let times: Vec<_> = page.entries.iter().map(|e| e.due_at).collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "shard {shard} not oldest first");
        for e in page.entries {
            assert!(e.due_at <= now);
            assert!(
                seen.insert(e.customer.clone()),
                "{} listed twice",
                e.customer
            );
            let sub = store
                .subscription(&e.customer, &e.plan)
                .await
                .unwrap()
                .unwrap()
                .value;
            assert_eq!(shard_of(&sub.id), shard);
            assert_eq!(Some(e.due_at), sub.next_action_at);
        }
    }
    assert_eq!(seen, expected_due);
}

pub async fn due_index_pages_with_a_cursor(store: impl Store) {
    let shard = 3;
    let ids = ids_in_shard(shard, 25);
    let mut puts = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        // Several share a due time: the cursor must still neither skip nor repeat.
        let at = t0() - Duration::minutes((i / 3) as i64);
        puts.push(Put::new(
            subscription_with_id(id, &format!("c-page-{i:02}"), Some(at)),
            Expect::Absent,
        ));
    }
    for chunk in puts.chunks(10) {
        store.commit(chunk.to_vec()).await.unwrap();
    }
    let (seen, pages) = all_pages(10, |after| store.due(shard, t0(), 10, after)).await;
    assert_eq!(pages, 3);
    let seen: Vec<_> = seen.into_iter().map(|e| e.customer).collect();
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 25, "{seen:?}");
    assert_eq!(unique.len(), 25);
}

pub async fn due_index_follows_updates(store: impl Store) {
    let mut sub = subscription("c-move", Some(t0()));
    let shard = shard_of(&sub.id);
    store
        .commit(vec![Put::new(sub.clone(), Expect::Absent)])
        .await
        .unwrap();
    assert_eq!(
        store
            .due(shard, t0(), 10, None)
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
    sub.next_action_at = Some(t0() + Duration::days(30));
    store
        .commit(vec![Put::new(sub.clone(), Expect::Version(1))])
        .await
        .unwrap();
    assert!(store
        .due(shard, t0(), 10, None)
        .await
        .unwrap()
        .entries
        .is_empty());
    assert_eq!(
        store
            .due(shard, t0() + Duration::days(30), 10, None)
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
    sub.next_action_at = None;
    sub.status = SubscriptionStatus::Canceled;
    store
        .commit(vec![Put::new(sub.clone(), Expect::Version(2))])
        .await
        .unwrap();
    assert!(store
        .due(shard, t0() + Duration::days(3650), 10, None)
        .await
        .unwrap()
        .entries
        .is_empty());
}

/// The claim of an open period as `worker-{w}`, by compare-and-set on its first version.
async fn open_period_to_claim(store: &impl Store) -> (SubscriptionId, Vec<Put>) {
    let sub = subscription("c-race", Some(t0()));
    let open = period(&sub, 0, PeriodState::Open);
    store
        .commit(vec![Put::new(open.clone(), Expect::Absent)])
        .await
        .unwrap();
    let claims = (0..8)
        .map(|w| {
            let mut claim = open.clone();
            claim.state = PeriodState::Charging {
                lease_owner: format!("worker-{w}"),
                lease_until: t0() + Duration::seconds(60),
            };
            Put::new(claim, Expect::Version(1))
        })
        .collect();
    (sub.id, claims)
}

/// Eight claims of one period, one after another: the first wins, every other is refused.
/// Runs on every store, DynamoDB's conditions included.
pub async fn claims_of_one_version_have_one_winner<S: Store + 'static>(store: Arc<S>) {
    let (sub, claims) = open_period_to_claim(&*store).await;
    let mut results = Vec::new();
    for claim in claims {
        results.push(store.commit(vec![claim]).await);
    }
    one_claim_won(&*store, &sub, results).await;
}

/// The same eight claims at once. Only for stores that lock an item while they check its
/// condition: moto's PutItem reads, checks and writes without a lock, so a race there tests
/// moto rather than DynamoDB.
pub async fn racing_claims_have_one_winner<S: Store + 'static>(store: Arc<S>) {
    let (sub, claims) = open_period_to_claim(&*store).await;
    let tasks: Vec<_> = claims
        .into_iter()
        .map(|claim| {
            let store = store.clone();
            tokio::spawn(async move { store.commit(vec![claim]).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    one_claim_won(&*store, &sub, results).await;
}

async fn one_claim_won(
    store: &impl Store,
    sub: &SubscriptionId,
    results: Vec<Result<(), StoreError>>,
) {
    let mut winners = 0;
    for result in results {
        match result {
            Ok(()) => winners += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(winners, 1);
    let got = store.period(sub, 0).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert!(matches!(got.value.state, PeriodState::Charging { .. }));
}

pub async fn missing_records_read_as_none(store: impl Store) {
    assert!(store
        .session(&BindingRef::generate())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .period(&SubscriptionId::generate(), 0)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .subscription(
            &CustomerId::parse("nobody").unwrap(),
            &PlanId::parse("premium").unwrap()
        )
        .await
        .unwrap()
        .is_none());
}

pub async fn an_event_is_recorded_in_the_outbox_once(store: impl Store) {
    let id = "subscription.canceled:SubOnce";
    let sub = subscription("c-once", None);
    store
        .commit(vec![
            Put::new(sub.clone(), Expect::Absent),
            Put::new(outbox_entry(id, t0()), Expect::Absent),
        ])
        .await
        .unwrap();
    // The same happening again, with a state change: neither lands.
    let mut canceled = sub.clone();
    canceled.status = SubscriptionStatus::Canceled;
    let again = outbox_entry(id, t0() + Duration::minutes(1));
    let err = store
        .commit(vec![
            Put::new(canceled, Expect::Version(1)),
            Put::new(again, Expect::Absent),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let stored = store.outbox_entry(id).await.unwrap().unwrap();
    assert_eq!((stored.value, stored.version), (outbox_entry(id, t0()), 1));
    let read = store.subscription(&sub.customer, &sub.plan).await.unwrap();
    assert_eq!(read.unwrap().value, sub);
}

pub async fn outbox_index_lists_pending_entries_of_the_shard_oldest_first(store: impl Store) {
    let mut expected = BTreeSet::new();
    let mut puts = Vec::new();
    for i in 0..40 {
        let id = format!("payment.failed:Sub{i:013}P000000:1");
        let created =
            t0() - Duration::minutes(i64::from(i % 7)) + Duration::seconds(i64::from(i % 4));
        let mut entry = outbox_entry(&id, created);
        match i % 5 {
            // Delivered: never listed.
            0 => entry.delivered_at = Some(t0()),
            // Created after `until`: not yet listed.
            1 => entry.created_at = t0() + Duration::seconds(10),
            _ => {
                expected.insert((id, entry.created_at));
            }
        }
        puts.push(Put::new(entry, Expect::Absent));
    }
    for chunk in puts.chunks(10) {
        store.commit(chunk.to_vec()).await.unwrap();
    }
    let listed = list_outbox(&store, t0() + Duration::seconds(5), 100).await;
    let seen: BTreeSet<_> = listed
        .iter()
        .map(|e| (e.id.clone(), e.created_at))
        .collect();
    assert_eq!(seen.len(), listed.len(), "an entry listed twice");
    assert_eq!(seen, expected);
    // Subscriptions due at the same instants are not outbox entries, and the reverse.
    let sub = subscription("c-outbox-due", Some(t0()));
    store
        .commit(vec![Put::new(sub.clone(), Expect::Absent)])
        .await
        .unwrap();
    let due = store.due(shard_of(&sub.id), t0(), 100, None).await.unwrap();
    assert_eq!(due.entries.len(), 1);
    assert_eq!(
        list_outbox(&store, t0() + Duration::seconds(5), 100)
            .await
            .len(),
        expected.len()
    );
}

pub async fn outbox_index_pages_with_a_cursor(store: impl Store) {
    let shard = 6;
    let ids = event_ids_in_shard(shard, 23);
    let puts: Vec<_> = ids
        .iter()
        .enumerate()
        // Several share a creation time: the cursor must still neither skip nor repeat.
        .map(|(i, id)| {
            let created = t0() - Duration::seconds((i / 3) as i64);
            Put::new(outbox_entry(id, created), Expect::Absent)
        })
        .collect();
    for chunk in puts.chunks(10) {
        store.commit(chunk.to_vec()).await.unwrap();
    }
    let list = |after| store.outbox_pending(shard, t0(), 5, after);
    let (seen, pages) = all_pages(5, list).await;
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    let unique: BTreeSet<_> = seen.iter().map(|e| e.id.clone()).collect();
    assert_eq!(unique, ids.into_iter().collect());
    assert!(seen.windows(2).all(|w| w[0].created_at <= w[1].created_at));
    // A full last page ends without a cursor, as the due index does.
    let all = store.outbox_pending(shard, t0(), 23, None).await.unwrap();
    assert_eq!((all.entries.len(), all.next), (23, None));
}

pub async fn delivering_an_entry_takes_it_off_the_outbox_index(store: impl Store) {
    let id = "payment.refunded:Sub0000000000042P000000";
    let shard = outbox_shard_of(id);
    let entry = outbox_entry(id, t0());
    store
        .commit(vec![Put::new(entry.clone(), Expect::Absent)])
        .await
        .unwrap();
    let page = store.outbox_pending(shard, t0(), 10, None).await.unwrap();
    let listed: Vec<_> = page
        .entries
        .iter()
        .map(|e| (e.id.as_str(), e.created_at))
        .collect();
    assert_eq!(listed, [(id, t0())]);
    let mut delivered = entry.clone();
    delivered.delivered_at = Some(t0() + Duration::seconds(2));
    store
        .commit(vec![Put::new(delivered.clone(), Expect::Version(1))])
        .await
        .unwrap();
    let page = store
        .outbox_pending(shard, t0() + Duration::days(365), 10, None)
        .await
        .unwrap();
    assert!(page.entries.is_empty(), "{page:?}");
    let stored = store.outbox_entry(id).await.unwrap().unwrap();
    assert_eq!((stored.value, stored.version), (delivered.clone(), 2));
    assert_eq!(
        Record::from(delivered).expires_at(),
        Some(t0() + Duration::seconds(2) + OutboxEntry::KEPT_AFTER_DELIVERY)
    );
}
