//! Renewal notices and e-invoicing against moto (DynamoDB, KMS) and the Oen simulator:
//! `subscription.renewal_upcoming` goes out once per period through the notice index and the
//! outbox, and every charge tells Oen the payer's e-mail, name and `invoiceInfo`.

use chrono::Duration;
use oen_pay::charging::{self, WorkOutcome};
use oen_pay::domain::{
    Amount, ChargeId, CustomerId, DomainEvent, Email, InvoiceInfo, OrderId, Payer, PayerName,
    PlanId,
};
use oen_pay::oneoff::{self, OneOffDeps, OneOffRequest};
use oen_pay::store::{StoreExt, SubscriptionStatus};
use oen_pay_integration::stack::{stack, worker, Stack};
use oen_sim::{cards, ForceTarget, ForcedOutcome};

const NOTICE: &str = "subscription.renewal_upcoming";

fn notices(s: &Stack) -> Vec<DomainEvent> {
    let all = s.events.all();
    all.into_iter().filter(|e| e.kind == NOTICE).collect()
}

/// A customer bound now; period 0 (due at once, not announced) paid by the first run. When
/// period 1 is charged.
async fn paid_first_period(s: &Stack, customer: &str) -> chrono::DateTime<chrono::Utc> {
    s.bind(customer, "premium", cards::SUCCESS).await;
    let outcomes = s.run().await;
    assert!(
        matches!(outcomes.as_slice(), [WorkOutcome::Paid { .. }]),
        "{outcomes:?}"
    );
    let sub = s.sub(customer, "premium").await;
    assert_eq!((sub.period, sub.renewal_noticed), (1, Some(0)));
    sub.next_action_at.unwrap()
}

#[tokio::test]
async fn a_renewal_is_announced_once_per_period_a_week_ahead_through_the_outbox() {
    let s = stack().await;
    let renewal = paid_first_period(&s, "cust-r").await;
    assert!(
        notices(&s).is_empty(),
        "a first charge due at once is no renewal"
    );

    s.clock
        .set(renewal - Duration::days(7) - Duration::seconds(1));
    assert!(
        s.run().await.is_empty(),
        "before the notice period: nothing"
    );

    s.clock.set(renewal - Duration::days(7));
    assert_eq!(
        s.run().await,
        [WorkOutcome::Noticed {
            period: 1,
            charge_at: renewal
        }]
    );
    s.advance(Duration::hours(1));
    assert!(s.run().await.is_empty(), "a second run sends nothing more");
    s.advance(Duration::days(3));
    assert!(s.run().await.is_empty());

    let sub = s.sub("cust-r", "premium").await;
    let sent = notices(&s);
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(n.id, format!("{NOTICE}:{}:1", sub.id));
    assert_eq!(n.data["subscription"], sub.id.as_str());
    assert_eq!(n.data["customer"], "cust-r");
    assert_eq!(n.data["plan"], "premium");
    assert_eq!(n.data["period"], 1);
    assert_eq!(n.data["amount"], 500);
    assert_eq!(n.data["orderId"], OrderId::for_period(&sub.id, 1).as_str());
    assert_eq!(n.data["productDetails"][0]["unitPrice"], 500);
    let charge_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(n.data["chargeAt"].clone()).unwrap();
    assert_eq!(charge_at, renewal);
    // Committed through the outbox (the table holds the entry, delivered).
    let entry = s.deps.store.outbox_entry(&n.id).await.unwrap().unwrap();
    assert_eq!(entry.value.event.id, n.id);
    assert!(entry.value.delivered_at.is_some());
    assert_eq!(s.sim.ledger().len(), 1, "a notice charges nothing");

    // The renewal is charged on its date, for the amount announced; the next is announced once.
    s.clock.set(renewal);
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { .. }]
    ));
    let next = s.sub("cust-r", "premium").await.next_action_at.unwrap();
    s.clock.set(next - Duration::days(7));
    s.run().await;
    s.run().await;
    let ids: Vec<String> = notices(&s).into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [
            format!("{NOTICE}:{}:1", sub.id),
            format!("{NOTICE}:{}:2", sub.id)
        ]
    );
    s.assert_ledger_agrees(&[("cust-r", "premium")]).await;
}

#[tokio::test]
async fn canceled_and_period_end_canceled_subscriptions_get_no_notice() {
    let s = stack().await;
    let renewal = paid_first_period(&s, "cust-now").await;
    paid_first_period(&s, "cust-end").await;
    let plan = PlanId::parse("premium").unwrap();
    for (customer, at_period_end) in [("cust-now", false), ("cust-end", true)] {
        let customer = CustomerId::parse(customer).unwrap();
        charging::cancel(&s.deps, &customer, &plan, at_period_end)
            .await
            .unwrap();
    }
    for days in [7, 2] {
        s.clock.set(renewal - Duration::days(days));
        s.run().await;
    }
    s.clock.set(renewal + Duration::hours(1));
    s.run().await;
    assert!(notices(&s).is_empty(), "{:?}", notices(&s));
    for customer in ["cust-now", "cust-end"] {
        let sub = s.sub(customer, "premium").await;
        assert_eq!(sub.status, SubscriptionStatus::Canceled, "{customer}");
    }
    assert_eq!(s.sim.ledger().len(), 2, "only the two first periods");
}

#[tokio::test]
async fn an_operators_early_charge_moves_the_notice_to_the_next_period() {
    let s = stack().await;
    let renewal = paid_first_period(&s, "cust-e").await;
    s.clock.set(renewal - Duration::days(10));
    let customer = CustomerId::parse("cust-e").unwrap();
    let plan = PlanId::parse("premium").unwrap();
    let early = charging::charge_now(&s.deps, &customer, &plan, &worker("operator")).await;
    assert!(matches!(early, Ok(WorkOutcome::Paid { .. })), "{early:?}");
    for days in [7, 1] {
        s.clock.set(renewal - Duration::days(days));
        assert!(
            s.run().await.is_empty(),
            "period 1 is paid: nothing to announce"
        );
    }
    let sub = s.sub("cust-e", "premium").await;
    assert_eq!(sub.period, 2);
    s.clock.set(sub.next_action_at.unwrap() - Duration::days(7));
    s.run().await;
    let sent = notices(&s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, format!("{NOTICE}:{}:2", sub.id));
    s.assert_ledger_agrees(&[("cust-e", "premium")]).await;
}

#[tokio::test]
async fn a_new_card_after_a_decline_pays_at_once_and_the_schedule_moves_the_notice() {
    // GIVEN period 1 announced, then declined for good (the card expired)
    let s = stack().await;
    let renewal = paid_first_period(&s, "cust-b").await;
    s.clock.set(renewal - Duration::days(7));
    s.run().await;
    s.sim.force_next(
        ForceTarget::AnyCharge,
        ForcedOutcome::Respond {
            code: "T0003".into(),
            http_status: 400,
            message: None,
        },
    );
    s.clock.set(renewal);
    assert_eq!(s.run().await, [WorkOutcome::HardDeclined]);
    // WHEN the customer binds a new card ten days later: period 1 is paid at once
    s.advance(Duration::days(10));
    s.bind("cust-b", "premium", cards::SUCCESS).await;
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { .. }]
    ));
    // THEN period 2 is announced a week before its date, once
    let sub = s.sub("cust-b", "premium").await;
    assert_eq!(sub.period, 2);
    s.clock.set(sub.next_action_at.unwrap() - Duration::days(7));
    s.run().await;
    let ids: Vec<String> = notices(&s).into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [
            format!("{NOTICE}:{}:1", sub.id),
            format!("{NOTICE}:{}:2", sub.id)
        ]
    );
    s.assert_ledger_agrees(&[("cust-b", "premium")]).await;
}

// E-invoicing.

fn mei() -> Payer {
    Payer {
        email: Some(Email::parse("mei@example.com").unwrap()),
        name: Some(PayerName::parse("林美").unwrap()),
        invoice_info: Some(
            InvoiceInfo::parse(r#"{"carrierType":"3J0002","carrierId":"/MEI+123"}"#).unwrap(),
        ),
    }
}

/// A one-off late fee of NT$150 for `customer`, as the merchant API makes it.
async fn late_fee(s: &Stack, customer: &str, reference: &str, key: &str) -> oneoff::Reply {
    let body = serde_json::json!({"customer": customer, "amount": 150,
                                  "description": "Late fee", "reference": reference});
    let request = OneOffRequest::from_json(body.to_string().as_bytes()).unwrap();
    let deps = OneOffDeps::new(&s.deps.adapters, &s.deps.policy, "merchant-api");
    oneoff::create(&deps, Some(key), &request, &worker("api"))
        .await
        .unwrap()
}

#[tokio::test]
async fn every_charge_of_an_einvoice_shop_carries_the_stored_payer() {
    // GIVEN Oen issues e-invoices for the domain, and the card was bound with a payer
    let s = stack().await;
    s.sim.set_einvoice(true);
    s.bind_as(
        "cust-i",
        "premium",
        &cards::succeeds_after_failures(1),
        mei(),
    )
    .await;
    // WHEN period 0 is soft-declined, retried by dunning, and a one-off charge follows
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::SoftDeclined { .. }]
    ));
    s.advance(Duration::days(1));
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { .. }]
    ));
    let reply = late_fee(&s, "cust-i", "inv-1", "key-einvoice-0001").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    // THEN Oen got the e-mail, name and invoiceInfo with each of the three requests
    let payers = s.sim.charge_payers();
    assert_eq!(payers.len(), 3, "{payers:?}");
    for p in &payers {
        assert_eq!(p.user_email.as_deref(), Some("mei@example.com"));
        assert_eq!(p.user_name.as_deref(), Some("林美"));
        assert_eq!(
            p.invoice_info,
            Some(serde_json::json!({"carrierType": "3J0002", "carrierId": "/MEI+123"}))
        );
    }
    let sub = s.sub("cust-i", "premium").await;
    let order = OrderId::for_period(&sub.id, 0);
    assert_eq!(payers[0].order_id, order.as_str());
    assert_eq!(payers[1].order_id, order.as_str(), "the dunning retry");
    assert_eq!(s.ledger_for(&order), ["failed", "charged"]);
    assert_eq!(
        s.sim
            .ledger()
            .iter()
            .filter(|e| e.status.as_str() == "charged")
            .count(),
        2
    );
}

#[tokio::test]
async fn an_einvoice_shops_refunds_name_what_they_refund() {
    // Oen requires `productDetails` on a refund once an e-invoice was issued (the allowance
    // names what is refunded): a partial refund of a period and a full refund of a one-off
    // charge are both made, each with lines adding up to it.
    let s = stack().await;
    s.sim.set_einvoice(true);
    s.bind_as("cust-r", "premium", cards::SUCCESS, mei()).await;
    let outcomes = s.run().await;
    assert!(
        matches!(outcomes.as_slice(), [WorkOutcome::Paid { .. }]),
        "{outcomes:?}"
    );
    let reply = late_fee(&s, "cust-r", "inv-2", "key-einvoice-0002").await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    let (customer, plan) = (
        CustomerId::parse("cust-r").unwrap(),
        PlanId::parse("premium").unwrap(),
    );
    let part = Amount::new(120).unwrap();
    let refunded = charging::refund(&s.deps, &customer, &plan, 0, Some(part), None).await;
    assert_eq!(refunded.unwrap(), part);
    let charge = ChargeId::parse(reply.body["id"].as_str().unwrap()).unwrap();
    let refunded = charging::refund_one_off(&s.deps, &charge, None, None, "operator").await;
    assert_eq!(refunded.unwrap(), Amount::new(150).unwrap());

    let sub = s.sub("cust-r", "premium").await;
    let period = OrderId::for_period(&sub.id, 0);
    let refunds: Vec<(String, i64)> = s
        .sim
        .ledger()
        .into_iter()
        .map(|e| (e.order_id, e.refund_amount))
        .collect();
    let one_off = OrderId::for_one_off(&charge);
    let mut want = vec![(period.to_string(), 120), (one_off.to_string(), 150)];
    want.sort();
    let mut refunds = refunds;
    refunds.sort();
    assert_eq!(refunds, want);
}

#[tokio::test]
async fn without_a_stored_email_an_einvoice_domain_refuses_and_nothing_changes_for_the_customer() {
    // The contract: Oen requires userEmail when the domain issues e-invoices. A subscription
    // bound before EINVOICE was turned on has none: a configuration error, no customer impact.
    let s = stack().await;
    s.sim.set_einvoice(true);
    s.bind("cust-x", "premium", cards::SUCCESS).await;
    assert_eq!(s.run().await, [WorkOutcome::ConfigError]);
    let sub = s.sub("cust-x", "premium").await;
    assert_eq!((sub.status, sub.period), (SubscriptionStatus::Active, 0));
    assert!(s.sim.ledger().is_empty());
}

#[tokio::test]
async fn without_einvoice_charges_send_no_payer_fields() {
    let s = stack().await;
    s.bind("cust-p", "premium", cards::SUCCESS).await;
    assert!(matches!(
        s.run().await.as_slice(),
        [WorkOutcome::Paid { .. }]
    ));
    let payers = s.sim.charge_payers();
    assert_eq!(payers.len(), 1);
    assert_eq!(
        (
            &payers[0].user_email,
            &payers[0].user_name,
            &payers[0].invoice_info
        ),
        (&None, &None, &None)
    );
}
