//! The reconciliation test hooks: money movements that did not come from the API calls, seen by
//! the transaction list like any other.

mod common;

use common::*;
use oen_sim::{cards, InjectError, Status};
use serde_json::{json, Value};

async fn listed(sim: &oen_sim::Simulator) -> Vec<Value> {
    let r = get(sim, "/transactions").await;
    assert_eq!(r.code(), "S0000", "{}", r.text);
    r.data()["transactions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn injected_payments_amounts_and_refunds_show_in_the_list_and_the_ledger() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let first = charged(&sim, &token, "order1", 500).await;
    let other = charged(&sim, &token, "order2", 300).await;

    let orphan = sim.inject_paid("nobody", 777).unwrap();
    let second = sim.inject_second_payment("order1").unwrap();
    sim.inject_amount(&other, 350).unwrap();
    sim.inject_refund(&first, Some(200)).unwrap();

    let ledger = sim.ledger();
    let by_id = |id: &str| ledger.iter().find(|e| e.id == id).unwrap().clone();
    assert_eq!(ledger.len(), 4);
    let o = by_id(&orphan);
    assert_eq!(
        (o.order_id.as_str(), o.amount, o.status),
        ("nobody", 777, Status::Charged)
    );
    assert!(o.token.is_empty(), "charged on no token");
    let s = by_id(&second);
    assert_eq!(
        (s.order_id.as_str(), s.amount, s.status),
        ("order1", 500, Status::Charged)
    );
    assert_eq!(s.token, token);
    assert_eq!(by_id(&other).amount, 350);
    let f = by_id(&first);
    assert_eq!((f.status, f.refund_amount), (Status::Refunded, 200));

    let list = listed(&sim).await;
    let ids: Vec<&str> = list.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            second.as_str(),
            orphan.as_str(),
            other.as_str(),
            first.as_str()
        ]
    );
    assert_eq!(list[2]["amount"], 350);
    assert_eq!(list[3]["refundAmount"], 200);
    // The order query agrees: two paid transactions under order1.
    let order = get(&sim, "/order/order1/transactions").await;
    assert_eq!(order.data()["transactions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn injections_that_cannot_be_made_say_why() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let declined = sim.create_token(cards::DECLINE_T0001_GENERAL);
    let paid = charged(&sim, &token, "order1", 500).await;
    charge(&sim, &declined, "failing", 500).await;

    assert_eq!(
        sim.inject_second_payment("failing"),
        Err(InjectError::NoPaidTransaction("failing".into()))
    );
    assert_eq!(sim.inject_paid("x", 0), Err(InjectError::BadAmount(0)));
    assert_eq!(
        sim.inject_amount("P20260101ABCDEFGH", 5),
        Err(InjectError::UnknownTransaction("P20260101ABCDEFGH".into()))
    );
    sim.inject_refund(&paid, None).unwrap();
    let again = sim.inject_refund(&paid, None).unwrap_err();
    assert!(
        matches!(&again, InjectError::Refused(m) if m.starts_with("V0002")),
        "{again}"
    );
    assert_eq!(
        sim.ledger().len(),
        2,
        "nothing was added by a refused injection"
    );
}

#[tokio::test]
async fn the_admin_api_injects_the_same() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let first = charged(&sim, &token, "order1", 500).await;
    let admin = |path: &str, body: Value| {
        let url = format!("{}{path}", sim.base_url());
        async move {
            let r = client()
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
    };

    let (status, orphan) = admin(
        "/_sim/inject/paid",
        json!({"orderId": "nobody", "amount": 9}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, second) = admin("/_sim/inject/second-payment", json!({"orderId": "order1"})).await;
    let (status, _) = admin(
        "/_sim/inject/amount",
        json!({"transaction": first, "amount": 510}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin("/_sim/inject/refund", json!({"transaction": first})).await;
    assert_eq!(status, 200);
    let (status, refused) = admin("/_sim/inject/refund", json!({"transaction": first})).await;
    assert_eq!(status, 400);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("already refunded"),
        "{refused}"
    );
    let (status, _) = admin(
        "/_sim/inject/paid",
        json!({"orderId": "x", "amount": 1, "extra": 1}),
    )
    .await;
    assert_eq!(status, 422, "unknown fields are refused");

    let ids: Vec<String> = sim.ledger().into_iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&orphan["id"].as_str().unwrap().to_string()));
    assert!(ids.contains(&second["id"].as_str().unwrap().to_string()));
    let entry = sim.ledger().into_iter().find(|e| e.id == first).unwrap();
    assert_eq!((entry.amount, entry.refund_amount), (510, 510));
}
