//! The contract of the store's lookups for the merchant API (`crate::ops`): a customer's
//! records, a subscription by its id, a subscription's recent periods.

use std::future::Future;

use super::*;

/// The contract of the lookups the merchant API reads with, each on a fresh store.
pub async fn run_lookups<S, F, Fut>(make: &F)
where
    S: Store + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    customer_records_list_that_customers_cards_and_subscriptions_only(make().await).await;
    a_subscription_is_found_by_its_id_until_it_is_replaced(make().await).await;
    recent_periods_come_newest_first_and_limited(make().await).await;
}

/// A card of `customer` whose ciphertext is `ciphertext`.
pub fn card(customer: &str, ciphertext: &[u8]) -> Card {
    Card {
        customer: CustomerId::parse(customer).unwrap(),
        binding: BindingRef::generate(),
        ciphertext: Ciphertext(ciphertext.to_vec()),
        token_fingerprint: "ff00".into(),
        last4: Some("4242".into()),
        created_at: t0(),
        payer: Default::default(),
    }
}

pub async fn customer_records_list_that_customers_cards_and_subscriptions_only(store: impl Store) {
    // GIVEN two customers, one with a card, two subscriptions, a period and an audit entry
    let mine = card("c-look", &[1, 2, 3]);
    let premium_sub = subscription("c-look", None);
    let mut basic_sub = subscription("c-look", Some(t0()));
    basic_sub.plan = PlanId::parse("basic").unwrap();
    let theirs = subscription("c-look-other", None);
    let audit = AuditEntry::new(
        CustomerId::parse("c-look").unwrap(),
        t0(),
        "operator",
        "test",
        None,
        "",
    );
    store
        .commit(vec![
            Put::new(mine.clone(), Expect::Absent),
            Put::new(premium_sub.clone(), Expect::Absent),
            Put::new(basic_sub.clone(), Expect::Absent),
            Put::new(theirs.clone(), Expect::Absent),
            Put::new(period(&premium_sub, 0, PeriodState::Open), Expect::Absent),
            Put::new(audit, Expect::Absent),
        ])
        .await
        .unwrap();
    // WHEN the first customer's records are listed
    let found = store
        .customer_records(&CustomerId::parse("c-look").unwrap())
        .await
        .unwrap();
    // THEN exactly their card and subscriptions come back, at their versions
    assert_eq!(
        found.cards,
        vec![Versioned {
            value: mine,
            version: 1
        }]
    );
    let mut ids: Vec<_> = found
        .subscriptions
        .iter()
        .map(|s| (s.value.id.clone(), s.version))
        .collect();
    ids.sort();
    let mut want = vec![(premium_sub.id.clone(), 1), (basic_sub.id.clone(), 1)];
    want.sort();
    assert_eq!(ids, want);
    let other = store
        .customer_records(&CustomerId::parse("c-look-other").unwrap())
        .await
        .unwrap();
    assert!(other.cards.is_empty());
    assert_eq!(other.subscriptions.len(), 1);
    assert_eq!(other.subscriptions[0].value, theirs);
    let nobody = store
        .customer_records(&CustomerId::parse("c-look-nobody").unwrap())
        .await
        .unwrap();
    assert_eq!(nobody, CustomerRecords::default());
}

pub async fn a_subscription_is_found_by_its_id_until_it_is_replaced(store: impl Store) {
    // GIVEN a subscription, updated once, and an audit entry of its customer
    let sub = subscription("c-byid", Some(t0()));
    let audit = AuditEntry::new(sub.customer.clone(), t0(), "operator", "x", None, "");
    store
        .commit(vec![
            Put::new(sub.clone(), Expect::Absent),
            Put::new(audit.clone(), Expect::Absent),
        ])
        .await
        .unwrap();
    // An audit entry's id (it has one too) names no subscription.
    let audit_id = SubscriptionId::parse(&audit.id).unwrap();
    assert_eq!(store.subscription_by_id(&audit_id).await.unwrap(), None);
    let mut updated = sub.clone();
    updated.period = 1;
    store
        .commit(vec![Put::new(updated.clone(), Expect::Version(1))])
        .await
        .unwrap();
    // THEN its id finds it as stored now
    let found = store.subscription_by_id(&sub.id).await.unwrap();
    assert_eq!(
        found,
        Some(Versioned {
            value: updated,
            version: 2
        })
    );
    assert_eq!(
        store
            .subscription_by_id(&SubscriptionId::generate())
            .await
            .unwrap(),
        None
    );
    // WHEN the customer binds again and a new subscription replaces it under the same key
    let replacement = subscription("c-byid", Some(t0()));
    store
        .commit(vec![Put::new(replacement.clone(), Expect::Version(2))])
        .await
        .unwrap();
    // THEN the old id finds nothing and the new one finds the replacement
    assert_eq!(store.subscription_by_id(&sub.id).await.unwrap(), None);
    assert_eq!(
        store
            .subscription_by_id(&replacement.id)
            .await
            .unwrap()
            .map(|s| s.value),
        Some(replacement)
    );
}

pub async fn recent_periods_come_newest_first_and_limited(store: impl Store) {
    let sub = subscription("c-periods", None);
    let other = subscription("c-periods-other", None);
    let mut puts: Vec<Put> = (0..5)
        .map(|n| Put::new(period(&sub, n, PeriodState::Open), Expect::Absent))
        .collect();
    puts.push(Put::new(
        period(&other, 7, PeriodState::Open),
        Expect::Absent,
    ));
    puts.push(Put::new(sub.clone(), Expect::Absent));
    store.commit(puts).await.unwrap();
    let numbers = |v: Vec<Versioned<ChargePeriod>>| -> Vec<u32> {
        v.into_iter().map(|p| p.value.period).collect()
    };
    assert_eq!(
        numbers(store.recent_periods(&sub.id, 3).await.unwrap()),
        [4, 3, 2]
    );
    assert_eq!(
        numbers(store.recent_periods(&sub.id, 100).await.unwrap()),
        [4, 3, 2, 1, 0]
    );
    assert_eq!(
        numbers(store.recent_periods(&other.id, 100).await.unwrap()),
        [7]
    );
    assert!(store.recent_periods(&sub.id, 0).await.unwrap().is_empty());
    assert!(store
        .recent_periods(&SubscriptionId::generate(), 5)
        .await
        .unwrap()
        .is_empty());
}
