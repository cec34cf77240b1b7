//! The store contract for renewal notices (`crate::charging::notice`): the renewal-notice
//! index lists exactly the subscriptions whose current period awaits its notice, by when that
//! charge is due, and follows every write of the subscription.

use chrono::Duration;

use super::{all_pages, ids_in_shard, subscription, subscription_with_id, t0};
use crate::store::*;

fn customers(page: &[DueEntry]) -> Vec<String> {
    page.iter().map(|e| e.customer.to_string()).collect()
}

pub async fn renewal_index_lists_only_renewals_awaiting_their_notice_soonest_first(
    store: impl Store,
) {
    let ids = ids_in_shard(3, 6);
    let at = |days: i64| Some(t0() + Duration::days(days));
    let mut later = subscription_with_id(ids[0].clone(), "c-later", at(5));
    later.period = 1;
    let mut sooner = subscription_with_id(ids[1].clone(), "c-sooner", at(2));
    sooner.period = 1;
    let mut noticed = subscription_with_id(ids[2].clone(), "c-noticed", at(1));
    (noticed.period, noticed.renewal_noticed) = (1, Some(1));
    let mut ending = subscription_with_id(ids[3].clone(), "c-ending", at(1));
    (ending.period, ending.cancel_at_period_end) = (1, true);
    let mut past_due = subscription_with_id(ids[4].clone(), "c-past-due", at(1));
    (past_due.period, past_due.status) = (1, SubscriptionStatus::PastDue);
    let mut far = subscription_with_id(ids[5].clone(), "c-far", at(30));
    far.period = 1;
    let all = [&later, &sooner, &noticed, &ending, &past_due, &far];
    let puts = all.iter().map(|s| Put::new((*s).clone(), Expect::Absent));
    store.commit(puts.collect()).await.unwrap();

    let until = t0() + Duration::days(7);
    let page = store.renewals_due(3, until, 10, None).await.unwrap();
    assert_eq!(customers(&page.entries), ["c-sooner", "c-later"]);
    assert_eq!(page.entries[0].due_at, t0() + Duration::days(2));
    assert_eq!(page.entries[0].plan.as_str(), "premium");
    assert!(page.next.is_none());
    let (paged, pages) = all_pages(1, |c| store.renewals_due(3, until, 1, c)).await;
    assert_eq!(customers(&paged), ["c-sooner", "c-later"]);
    assert_eq!(pages, 2);
    assert!(store
        .renewals_due(4, until, 10, None)
        .await
        .unwrap()
        .entries
        .is_empty());
}

pub async fn renewal_index_follows_the_subscription(store: impl Store) {
    let mut sub = subscription("c-renews", Some(t0() + Duration::days(3)));
    sub.period = 1;
    let shard = shard_of(&sub.id);
    store
        .commit(vec![Put::new(sub.clone(), Expect::Absent)])
        .await
        .unwrap();
    assert_eq!(listed(&store, shard, 7).await, [t0() + Duration::days(3)]);
    // The notice goes out: off the index.
    sub.renewal_noticed = Some(1);
    store
        .commit(vec![Put::new(sub.clone(), Expect::Version(1))])
        .await
        .unwrap();
    assert!(listed(&store, shard, 7).await.is_empty());
    // The period is paid: the next one is listed by its own due date.
    (sub.period, sub.next_action_at) = (2, Some(t0() + Duration::days(33)));
    store
        .commit(vec![Put::new(sub.clone(), Expect::Version(2))])
        .await
        .unwrap();
    assert!(listed(&store, shard, 7).await.is_empty());
    assert_eq!(listed(&store, shard, 40).await, [t0() + Duration::days(33)]);
    // A period-end cancel, then a cancel: off the index.
    sub.cancel_at_period_end = true;
    store
        .commit(vec![Put::new(sub.clone(), Expect::Version(3))])
        .await
        .unwrap();
    assert!(listed(&store, shard, 40).await.is_empty());
    (sub.cancel_at_period_end, sub.status) = (false, SubscriptionStatus::Canceled);
    store
        .commit(vec![Put::new(sub.clone(), Expect::Version(4))])
        .await
        .unwrap();
    assert!(listed(&store, shard, 400).await.is_empty());
}

/// When the renewals of `shard` listed up to `days` after t0 are due.
async fn listed(store: &impl Store, shard: u16, days: i64) -> Vec<chrono::DateTime<chrono::Utc>> {
    let until = t0() + Duration::days(days);
    let page = store.renewals_due(shard, until, 10, None).await.unwrap();
    page.entries.into_iter().map(|e| e.due_at).collect()
}

// E-invoicing: the payer kept with sessions, cards and subscriptions.

/// A subscription with a notice recorded and a full payer, and a session with the same payer,
/// read back exactly (the e-mail, name and invoiceInfo as the adapter stores them).
pub async fn payer_and_renewal_notice_round_trip(store: impl Store) {
    use crate::domain::{Email, InvoiceInfo, Payer, PayerName};
    let payer = Payer {
        email: Some(Email::parse("mei+tw@shop.example").unwrap()),
        name: Some(PayerName::parse("林美").unwrap()),
        invoice_info: Some(
            InvoiceInfo::parse(r#"{"carrierType":"3J0002","carrierId":"/MEI+123","n":1}"#).unwrap(),
        ),
    };
    let mut sub = subscription("c-payer", Some(t0()));
    (sub.period, sub.renewal_noticed, sub.payer) = (4, Some(4), payer.clone());
    let mut session = super::session("c-payer");
    session.payer = payer.clone();
    store
        .commit(vec![
            Put::new(sub.clone(), Expect::Absent),
            Put::new(session.clone(), Expect::Absent),
        ])
        .await
        .unwrap();
    let read = store.get(&sub.key()).await.unwrap().unwrap();
    assert_eq!(read.value, Record::Subscription(sub.clone()));
    let read = store.session(&session.reference).await.unwrap().unwrap();
    assert_eq!(read.value.payer, payer);
    // Noticed for its current period: not in the notice index.
    let page = store
        .renewals_due(shard_of(&sub.id), t0() + Duration::days(400), 10, None)
        .await
        .unwrap();
    assert!(page.entries.is_empty(), "{page:?}");
}
