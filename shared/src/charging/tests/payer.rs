//! E-invoicing: the payer's e-mail, name and `invoiceInfo` kept with the subscription go with
//! every charge of it, retries included, and a new binding's link updates them.

use chrono::Duration;

use super::*;
use crate::domain::{Email, InvoiceInfo, Payer, PayerName};

fn payer(email: &str, name: Option<&str>, invoice: Option<&str>) -> Payer {
    Payer {
        email: Some(Email::parse(email).unwrap()),
        name: name.map(|n| PayerName::parse(n).unwrap()),
        invoice_info: invoice.map(|i| InvoiceInfo::parse(i).unwrap()),
    }
}

fn emails(w: &World) -> Vec<Option<String>> {
    let payers = w.oen.payers.lock().unwrap().clone();
    payers
        .iter()
        .map(|p| p.email.as_ref().map(|e| e.as_str().to_owned()))
        .collect()
}

#[tokio::test]
async fn every_charge_and_every_retry_sends_the_stored_payer() {
    // GIVEN a subscription whose start link carried an e-mail, a name and invoiceInfo
    let oen = ScriptedOen::default()
        .charging(soft("T0004"))
        .charging(paid_receipt(1))
        .charging(paid_receipt(2));
    let w = World::new(oen).await;
    let wang = payer(
        "wang@shop.example",
        Some("王小明"),
        Some(r#"{"carrierType":"3J0002","carrierId":"/AB+12"}"#),
    );
    w.update_sub(|s| s.payer = wang.clone()).await;
    // WHEN the period is declined, retried by dunning, then renewed
    let WorkOutcome::SoftDeclined { retry_at } = w.work().await.unwrap() else {
        panic!("expected a soft decline")
    };
    w.clock.set(retry_at);
    assert!(matches!(w.work().await.unwrap(), WorkOutcome::Paid { .. }));
    w.clock.set(w.sub().await.value.next_action_at.unwrap());
    assert!(matches!(w.work().await.unwrap(), WorkOutcome::Paid { .. }));
    // THEN Oen got the same payer with each of the three requests
    let payers = w.oen.payers.lock().unwrap().clone();
    assert_eq!(payers, [wang.clone(), wang.clone(), wang]);
}

#[tokio::test]
async fn without_a_payer_a_charge_sends_none() {
    let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    w.work().await.unwrap();
    assert_eq!(
        w.oen.payers.lock().unwrap().clone(),
        [Payer::default()],
        "nothing changes for a shop without e-invoices"
    );
}

#[tokio::test]
async fn a_new_card_bound_with_a_new_email_charges_with_it_and_keeps_the_invoice_info() {
    // GIVEN a hard decline of a subscription with a stored payer
    let oen = ScriptedOen::default()
        .charging(Err(OenError::HardDecline {
            code: "T0003".into(),
            message: String::new(),
        }))
        .charging(paid_receipt(1));
    let w = World::new(oen).await;
    let invoice = r#"{"carrierType":"3J0002","carrierId":"/AB+12"}"#;
    w.update_sub(|s| s.payer = payer("old@shop.example", Some("Old"), Some(invoice)))
        .await;
    w.work().await.unwrap();
    assert_eq!(
        w.sub().await.value.status,
        SubscriptionStatus::RequiresPaymentMethod
    );
    // WHEN the customer binds a new card with a link carrying a new e-mail only
    w.clock.advance(Duration::hours(1));
    w.bind_again_as(Payer {
        email: Some(Email::parse("new@shop.example").unwrap()),
        ..Payer::default()
    })
    .await;
    w.work().await.unwrap();
    // THEN the new e-mail wins (its name is not the old address's), the invoiceInfo stays
    let expected = payer("new@shop.example", None, Some(invoice));
    assert_eq!(w.sub().await.value.payer, expected);
    assert_eq!(
        emails(&w),
        [
            Some("old@shop.example".to_owned()),
            Some("new@shop.example".to_owned())
        ]
    );
    assert_eq!(w.oen.payers.lock().unwrap()[1], expected);
}

#[tokio::test]
async fn a_new_card_bound_without_payer_parameters_keeps_the_stored_ones() {
    let w = World::new(ScriptedOen::default().charging(paid_receipt(1))).await;
    let wang = payer("wang@shop.example", Some("Wang"), None);
    w.update_sub(|s| s.payer = wang.clone()).await;
    w.bind_again().await;
    assert_eq!(w.sub().await.value.payer, wang);
    w.work().await.unwrap();
    assert_eq!(w.oen.payers.lock().unwrap().clone(), [wang]);
}
