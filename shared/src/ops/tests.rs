//! The operations on in-memory adapters, with an Oen that refuses every call ([`Withheld`]):
//! what must be decided without Oen is proven not to reach it. Refunds through a real Oen (the
//! simulator, with lost answers) are in `tests/tests/merchant_api.rs`.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::binding::BindingDeps;
use crate::charging::ChargePolicy;
use crate::clock::TestClock;
use crate::dev;
use crate::domain::{ChargeState, Ciphertext, OneOffCharge, PeriodState, SubscriptionStatus};
use crate::events::MemoryEvents;
use crate::store::contract;
use crate::store::{Expect, MemoryStore, Put, Store};
use crate::withheld::Withheld;

const START: &str = "https://pay.example/checkout/start";
const ACTOR: &str = "arn:aws:sts::123456789012:assumed-role/merchant/backend";

fn now() -> DateTime<Utc> {
    contract::t0()
}

fn operations() -> (Operations, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let withheld = Arc::new(Withheld::new("ops-test", dev::dev_merchant()));
    let binding = BindingDeps {
        store: store.clone(),
        vault: withheld.clone(),
        oen: withheld.clone(),
        events: Arc::new(MemoryEvents::default()),
        clock: Arc::new(TestClock::at(now())),
        plans: dev::dev_plans(),
        merchant: dev::dev_merchant(),
    };
    let ops = Operations {
        deps: ChargeDeps::new(binding, withheld, ChargePolicy::default()),
        secrets: dev::dev_secrets(dev::DEV_API_TOKEN),
        link_max_ttl: Duration::hours(24),
    };
    (ops, store)
}

/// A subscription of `customer` with its card and a paid period 0, stored.
async fn subscribed(store: &MemoryStore, customer: &str) -> (Subscription, ChargePeriod) {
    let mut sub = contract::subscription(customer, Some(now() + Duration::days(30)));
    sub.period = 1;
    let mut card = contract::card(customer, b"CIPHERTEXT-BYTES");
    card.binding = sub.card.clone();
    let paid = contract::period(
        &sub,
        0,
        PeriodState::Paid {
            transaction: TransactionId::parse("P20270131AB000001").unwrap(),
            auth_code: None,
            paid_at: now(),
        },
    );
    store
        .commit(vec![
            Put::new(sub.clone(), Expect::Absent),
            Put::new(card, Expect::Absent),
            Put::new(paid.clone(), Expect::Absent),
        ])
        .await
        .unwrap();
    (sub, paid)
}

fn link_request(ttl: i64) -> LinkRequest {
    LinkRequest {
        customer: "cust-1".into(),
        plan: "premium".into(),
        ttl_seconds: ttl,
        email: Some("mei@example.com".into()),
        name: Some("Mei".into()),
        invoice_info: None,
    }
}

#[tokio::test]
async fn a_minted_link_verifies_as_checkout_start_would_until_it_expires() {
    let (ops, _) = operations();
    let link = ops.mint_link(START, link_request(600)).await.unwrap();
    assert_eq!(link.expires_at, now() + Duration::seconds(600));
    let (base, query) = link.url.split_once('?').unwrap();
    assert_eq!(base, START);
    let key = dev::DEV_LINK_SIGNING_KEY.as_bytes();
    let verified =
        links::verify(query, key, &dev::dev_plans(), now(), Duration::hours(24)).unwrap();
    assert_eq!(verified.customer.as_str(), "cust-1");
    assert_eq!(
        verified.payer.email.as_ref().map(|e| e.as_str()),
        Some("mei@example.com")
    );
    // The name is signed into the link too: checkout-start keeps it with the subscription.
    assert_eq!(
        verified.payer.name.as_ref().map(|n| n.as_str()),
        Some("Mei")
    );
    let later = now() + Duration::seconds(601);
    assert!(matches!(
        links::verify(query, key, &dev::dev_plans(), later, Duration::hours(24)),
        Err(links::LinkError::Expired(_))
    ));
}

#[tokio::test]
async fn a_link_request_with_a_bad_field_names_the_field() {
    let (ops, _) = operations();
    let mut cases: Vec<(LinkRequest, &str)> = Vec::new();
    cases.push((link_request(0), "ttlSeconds"));
    cases.push((link_request(24 * 3600 + 1), "ttlSeconds"));
    let mut r = link_request(60);
    r.plan = "gold".into();
    cases.push((r, "plan"));
    let mut r = link_request(60);
    r.customer = "a b".into();
    cases.push((r, "customer"));
    let mut r = link_request(60);
    r.email = Some("not-an-address".into());
    cases.push((r, "email"));
    let mut r = link_request(60);
    r.name = Some("  ".into());
    cases.push((r, "name"));
    let mut r = link_request(60);
    r.name = Some("x".repeat(MAX_NAME_CHARS + 1));
    cases.push((r, "name"));
    for (request, field) in cases {
        let e = ops.mint_link(START, request).await.unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert!(e.to_string().starts_with(field), "{e}");
    }
}

#[test]
fn order_ids_split_into_subscription_and_period_and_nothing_else_does() {
    let sub = SubscriptionId::parse("AbCdPfGh12345678").unwrap();
    let order = OrderId::for_period(&sub, 42);
    assert_eq!(parse_order_id(order.as_str()).unwrap(), (sub, 42));
    for bad in [
        "",
        "AbCdPfGh12345678",
        "AbCdPfGh12345678P00004",
        "AbCdPfGh12345678X000042",
        "AbCdPfGh12345678P00004a",
        "AbCdPfGh1234567-P000042",
        "AbCdPfGh12345678P0000421",
        "ÄbCdPfGh1234567P000042",
    ] {
        assert_eq!(parse_order_id(bad).unwrap_err().code(), "invalid_request");
    }
}

#[tokio::test]
async fn cancel_at_period_end_then_resume_then_cancel_now_which_cannot_be_resumed() {
    let (ops, store) = operations();
    let (sub, _) = subscribed(&store, "cust-c").await;
    let id = sub.id.as_str();

    let v = ops
        .cancel(
            ACTOR,
            id,
            CancelRequest {
                at: CancelAt::PeriodEnd,
            },
        )
        .await
        .unwrap();
    assert!(v.cancel_at_period_end);
    assert_eq!(v.status, SubscriptionStatus::Active);

    let v = ops.resume(ACTOR, id).await.unwrap();
    assert!(!v.cancel_at_period_end);
    // Resuming what is not set to end changes nothing.
    assert_eq!(ops.resume(ACTOR, id).await.unwrap(), v);

    let v = ops
        .cancel(ACTOR, id, CancelRequest { at: CancelAt::Now })
        .await
        .unwrap();
    assert_eq!(v.status, SubscriptionStatus::Canceled);
    assert_eq!(v.next_action_at, None);
    let e = ops.resume(ACTOR, id).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (409, "conflict"));
    assert!(e.to_string().contains("canceled already"), "{e}");
    // A second cancel answers the canceled subscription.
    let again = ops
        .cancel(ACTOR, id, CancelRequest { at: CancelAt::Now })
        .await
        .unwrap();
    assert_eq!(again.status, SubscriptionStatus::Canceled);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404_and_400() {
    let (ops, _) = operations();
    let unknown = SubscriptionId::generate();
    for e in [
        ops.subscription(unknown.as_str()).await.unwrap_err(),
        ops.resume(ACTOR, unknown.as_str()).await.unwrap_err(),
        ops.customer("nobody").await.unwrap_err(),
        ops.refund(
            ACTOR,
            OrderId::for_period(&unknown, 0).as_str(),
            RefundRequest::default(),
        )
        .await
        .unwrap_err(),
    ] {
        assert_eq!((e.status(), e.code()), (404, "not_found"), "{e}");
    }
    for e in [
        ops.subscription("short").await.unwrap_err(),
        ops.customer("a/b").await.unwrap_err(),
        ops.refund(ACTOR, "nope", RefundRequest::default())
            .await
            .unwrap_err(),
    ] {
        assert_eq!((e.status(), e.code()), (400, "invalid_request"), "{e}");
    }
}

#[tokio::test]
async fn the_customer_view_shows_last4_and_never_the_ciphertext() {
    let (ops, store) = operations();
    let (sub, _) = subscribed(&store, "cust-v").await;
    let view = ops.customer("cust-v").await.unwrap();
    assert_eq!(view.subscriptions.len(), 1);
    assert_eq!(view.subscriptions[0].id, sub.id.as_str());
    assert_eq!(view.subscriptions[0].card_last4.as_deref(), Some("4242"));
    assert_eq!(view.subscriptions[0].recent_periods.len(), 1);
    assert_eq!(view.cards.len(), 1);
    assert_eq!(view.cards[0].charged_for, ["premium"]);
    let json = serde_json::to_string(&view).unwrap();
    let stored = Ciphertext(b"CIPHERTEXT-BYTES".to_vec());
    assert!(!json.contains("CIPHERTEXT"), "{json}");
    assert!(!json.to_lowercase().contains("ciphertext"), "{json}");
    assert!(!json.contains("token"), "{json}");
    assert!(!json.contains(&format!("{:?}", stored.0)), "{json}");
}

#[tokio::test]
async fn a_recorded_refund_is_replayed_without_oen_and_another_one_is_a_conflict() {
    let (ops, store) = operations();
    let (sub, paid) = subscribed(&store, "cust-r").await;
    let order = paid.order_id.as_str();
    let mut refunded = paid.clone();
    refunded.refunded = Some(Amount::new(200).unwrap());
    store
        .commit(vec![Put::new(refunded, Expect::Version(1))])
        .await
        .unwrap();

    // The same partial refund again: answered from the record (Oen here refuses every call).
    let replay = ops
        .refund(
            ACTOR,
            order,
            RefundRequest {
                amount: Some(200),
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (replay.refunded, replay.charged, replay.replayed),
        (200, 500, true)
    );
    // A full refund, or another amount, after a refund: Oen allows one per transaction.
    for amount in [None, Some(300)] {
        let e = ops
            .refund(
                ACTOR,
                order,
                RefundRequest {
                    amount,
                    reason: None,
                },
            )
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "conflict"));
        assert!(e.to_string().contains("refunded NT$200 already"), "{e}");
    }
    // An open period is not paid; more than was charged is a bad request.
    let open = contract::period(&sub, 1, PeriodState::Open);
    store
        .commit(vec![Put::new(open.clone(), Expect::Absent)])
        .await
        .unwrap();
    let e = ops
        .refund(ACTOR, open.order_id.as_str(), RefundRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert!(e.to_string().contains("is not paid"), "{e}");
    let (sub2, paid2) = subscribed(&store, "cust-r2").await;
    let e = ops
        .refund(
            ACTOR,
            paid2.order_id.as_str(),
            RefundRequest {
                amount: Some(501),
                reason: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    assert!(e.to_string().contains("more than"), "{e}");
    // Oen unreachable: a 502 that says to repeat, and nothing recorded.
    let e = ops
        .refund(ACTOR, paid2.order_id.as_str(), RefundRequest::default())
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (502, "upstream_unavailable"));
    let stored = store.period(&sub2.id, 0).await.unwrap().unwrap();
    assert_eq!(stored.value.refunded, None);
}

#[tokio::test]
async fn a_subscription_replaced_after_it_was_found_is_left_alone() {
    let (ops, store) = operations();
    let (sub, _) = subscribed(&store, "cust-x").await;
    let found = store.subscription_by_id(&sub.id).await.unwrap().unwrap();
    // The customer binds again meanwhile: a new subscription under the same key.
    let replacement = contract::subscription("cust-x", Some(now()));
    store
        .commit(vec![Put::new(
            replacement.clone(),
            Expect::Version(found.version),
        )])
        .await
        .unwrap();
    for at_period_end in [false, true] {
        let e = charging::cancel_subscription(&ops.deps, found.clone(), at_period_end, ACTOR)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                OperationError::Store(crate::store::StoreError::Conflict(_))
            ),
            "{e:?}"
        );
    }
    let current = store.subscription_by_id(&replacement.id).await.unwrap();
    assert_eq!(current.map(|s| s.value), Some(replacement));
    let e = ops
        .cancel(ACTOR, sub.id.as_str(), CancelRequest { at: CancelAt::Now })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found");
}

#[tokio::test]
async fn the_dry_run_lists_what_the_next_run_would_do_and_writes_nothing() {
    let (ops, store) = operations();
    let due = now() - Duration::hours(1);
    let charge = contract::subscription("due-charge", Some(due));
    let mut retry = contract::subscription("due-retry", Some(due));
    retry.status = SubscriptionStatus::PastDue;
    let mut end = contract::subscription("due-end", Some(due));
    end.cancel_at_period_end = true;
    let unknown = contract::subscription("due-unknown", Some(due));
    let in_doubt = contract::period(
        &unknown,
        0,
        PeriodState::Unknown {
            since: due,
            reconcile_at: due,
            checks: 1,
        },
    );
    let later = contract::subscription("later", Some(now() + Duration::days(3)));
    let idle = contract::subscription("idle", None);
    let mut puts: Vec<Put> = [&charge, &retry, &end, &unknown, &later, &idle]
        .into_iter()
        .map(|s| Put::new(s.clone(), Expect::Absent))
        .collect();
    puts.push(Put::new(in_doubt, Expect::Absent));
    store.commit(puts).await.unwrap();
    let before = store.snapshot();

    let mut found = std::collections::BTreeMap::new();
    for shard in 0..crate::store::DUE_SHARDS {
        let view = ops.due(&shard.to_string(), None).await.unwrap();
        assert_eq!(view.shard, shard);
        assert_eq!(view.as_of, now());
        assert!(view.next.is_none(), "one page holds these");
        for item in view.entries {
            found.insert(item.customer.clone(), (item.action, item.amount));
        }
    }
    let premium = Some(contract::premium().amount.ntd());
    assert_eq!(
        found,
        std::collections::BTreeMap::from([
            ("due-charge".to_owned(), ("charge", premium)),
            ("due-end".to_owned(), ("end", None)),
            ("due-retry".to_owned(), ("retry", premium)),
            ("due-unknown".to_owned(), ("reconcile", None)),
        ])
    );
    assert_eq!(store.snapshot(), before, "a dry run writes nothing");

    for bad in ["16", "-1", "x", ""] {
        let e = ops.due(bad, None).await.unwrap_err();
        assert_eq!((e.code(), e.status()), ("invalid_request", 400), "{bad}");
    }
}

/// A paid one-off charge of `customer` (NT$150), stored.
async fn paid_charge(store: &MemoryStore, customer: &str) -> OneOffCharge {
    let mut charge = contract::one_off_charge(customer, None);
    charge.state = ChargeState::Paid {
        transaction: TransactionId::parse("P20270131AB000009").unwrap(),
        auth_code: None,
        paid_at: now(),
    };
    store
        .commit(vec![Put::new(charge.clone(), Expect::Absent)])
        .await
        .unwrap();
    charge
}

#[tokio::test]
async fn a_one_off_charge_is_refunded_by_the_rules_of_a_period() {
    let (ops, store) = operations();
    let charge = paid_charge(&store, "cust-c").await;
    let partial = |amount| RefundRequest {
        amount,
        reason: None,
    };
    // Oen unreachable: a 502 that says to repeat, and nothing recorded.
    let e = ops
        .refund_charge(ACTOR, charge.id.as_str(), partial(Some(40)))
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (502, "upstream_unavailable"));
    let stored = store.one_off_charge(&charge.id).await.unwrap().unwrap();
    assert_eq!((stored.value.refunded, stored.version), (None, 1));
    // More than was charged is a bad request, before Oen.
    let e = ops
        .refund_charge(ACTOR, charge.id.as_str(), partial(Some(151)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    assert!(
        e.to_string().contains("NT$151 is more than the NT$150"),
        "{e}"
    );

    // Recorded: the same refund, by charge id or by order id, is answered from the record.
    let mut refunded = stored.value.clone();
    refunded.refunded = Some(Amount::new(40).unwrap());
    store
        .commit(vec![Put::new(refunded, Expect::Version(1))])
        .await
        .unwrap();
    for id in [charge.id.as_str(), charge.order_id.as_str()] {
        let replay = ops
            .refund_charge(ACTOR, id, partial(Some(40)))
            .await
            .unwrap();
        assert_eq!(
            (
                &replay.order_id,
                replay.refunded,
                replay.charged,
                replay.replayed
            ),
            (&charge.order_id, 40, 150, true)
        );
    }
    // Another refund after it: Oen allows one per transaction.
    for amount in [None, Some(30)] {
        let e = ops
            .refund_charge(ACTOR, charge.id.as_str(), partial(amount))
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "conflict"));
        assert!(e.to_string().contains("refunded NT$40 already"), "{e}");
    }
    // The charge's view shows the refund.
    let stored = store.one_off_charge(&charge.id).await.unwrap().unwrap();
    assert_eq!(
        crate::oneoff::ChargeView::of(&stored.value).refunded,
        Some(40)
    );
}

#[tokio::test]
async fn a_charge_that_is_not_paid_or_not_ours_is_not_refunded() {
    let (ops, store) = operations();
    // Still charging (its result unknown to us): nothing to refund yet.
    let pending = contract::one_off_charge("cust-p", Some(now()));
    store
        .commit(vec![Put::new(pending.clone(), Expect::Absent)])
        .await
        .unwrap();
    let e = ops
        .refund_charge(ACTOR, pending.id.as_str(), RefundRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert!(e.to_string().contains("is not paid"), "{e}");
    // Another merchant's charge, and one that does not exist: 404 alike.
    let mut theirs = paid_charge(&store, "cust-o").await;
    theirs.id = ChargeId::generate();
    theirs.order_id = OrderId::for_one_off(&theirs.id);
    theirs.merchant = crate::domain::MerchantId::parse("other-shop").unwrap();
    store
        .commit(vec![Put::new(theirs.clone(), Expect::Absent)])
        .await
        .unwrap();
    for id in [theirs.id.clone(), ChargeId::generate()] {
        let e = ops
            .refund_charge(ACTOR, id.as_str(), RefundRequest::default())
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (404, "not_found"), "{e}");
    }
    // Malformed ids name the field; a period's order id is not a charge's.
    let (_, paid) = subscribed(&store, "cust-s").await;
    for bad in ["nope", "C123", paid.order_id.as_str()] {
        let e = ops
            .refund_charge(ACTOR, bad, RefundRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (400, "invalid_request"),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains("charge id"), "{e}");
    }
}
