//! The Oen Payment API surface: envelope, codes, HTTP statuses, validation, ids, queries,
//! refunds.

mod common;

use common::*;
use oen_sim::{cards, ids, Status};
use serde_json::json;

#[tokio::test]
async fn successful_charge_uses_the_success_envelope_and_oen_id_formats() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    assert!(ids::is_long_id(&token), "token {token}");

    let r = charge(&sim, &token, "order-1", 1200).await;

    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("application/json"));
    assert_eq!(r.code(), "S0000");
    assert_eq!(r.json["message"], "");
    let id = r.data()["id"].as_str().unwrap();
    assert_eq!(id.len(), 17);
    assert!(ids::is_transaction_number(id), "{id}");
    let taipei_today = sim
        .now()
        .with_timezone(&ids::taipei())
        .format("P%Y%m%d")
        .to_string();
    assert!(id.starts_with(&taipei_today), "{id} vs {taipei_today}");
    let auth = r.data()["authCode"].as_str().unwrap();
    assert_eq!(auth.len(), 6);

    let tx = get(&sim, &format!("/transactions/{id}")).await;
    assert_eq!(tx.code(), "S0000");
    let t = tx.data();
    assert_eq!(t["id"], id);
    assert!(ids::is_long_id(t["transactionId"].as_str().unwrap()));
    assert_eq!(t["amount"], 1200);
    assert_eq!(t["status"], "charged");
    assert_eq!(t["orderId"], "order-1");
    assert_eq!(t["refundAmount"], 0);
    assert_eq!(t["authCode"], auth);
    assert!(t["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(t["paidAt"].is_string());
    assert!(
        t.get("reason").is_none(),
        "fields without a value are omitted"
    );

    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].id, id);
    assert_eq!(ledger[0].token, token);
    assert_eq!(ledger[0].status, Status::Charged);
}

#[tokio::test]
async fn transaction_is_found_by_its_27_char_id_too() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    charge(&sim, &token, "o", 100).await;
    let internal = sim.ledger()[0].transaction_id.clone();

    let r = get(&sim, &format!("/transactions/{internal}")).await;

    assert_eq!(r.code(), "S0000");
    assert_eq!(r.data()["transactionId"], internal.as_str());
}

#[tokio::test]
async fn unknown_transaction_ids_are_v0001() {
    let sim = start_sim(None).await;
    for id in [
        "P20260101ABCDEFGH",
        "abcdefghijklmnopqrstuvwxyz0",
        "nonsense",
    ] {
        let r = get(&sim, &format!("/transactions/{id}")).await;
        assert_eq!((r.status, r.code()), (400, "V0001"), "{id}");
        assert_eq!(r.data(), &json!({}));
    }
}

#[tokio::test]
async fn wrong_or_missing_bearer_token_is_401_a0001() {
    let sim = start_sim(None).await;
    let body = serde_json::to_vec(&charge_body("x", "o", 100)).unwrap();

    let wrong = post_raw(&sim, "/token/transactions", "not-the-token", body.clone()).await;
    let missing = reply(
        client()
            .get(format!("{}/order/o/transactions", sim.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;

    for r in [wrong, missing] {
        assert_eq!(r.status, 401);
        assert_eq!(r.code(), "A0001");
        assert_eq!(r.data(), &json!({}));
    }
}

#[tokio::test]
async fn merchant_id_must_match_the_tokens_domain() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let mut body = charge_body(&token, "o", 100);
    body["merchantId"] = json!("someone-else");

    let foreign = post_json(&sim, "/token/transactions", &body).await;
    body.as_object_mut().unwrap().remove("merchantId");
    let missing = post_json(&sim, "/token/transactions", &body).await;

    for r in [foreign, missing] {
        assert_eq!((r.status, r.code()), (400, "V0001"));
    }
    assert!(sim.ledger().is_empty());
}

#[tokio::test]
async fn product_total_must_equal_amount() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let mut body = charge_body(&token, "o", 1200);
    body["productDetails"] = json!([
        {"productionCode": "A", "description": "a", "quantity": 2, "unit": "u", "unitPrice": 500},
        {"productionCode": "B", "description": "b", "quantity": 1, "unit": "u", "unitPrice": 100}
    ]);

    let mismatch = post_json(&sim, "/token/transactions", &body).await;
    body["productDetails"][1]["unitPrice"] = json!(200);
    let matching = post_json(&sim, "/token/transactions", &body).await;

    assert_eq!((mismatch.status, mismatch.code()), (400, "V0001"));
    assert!(mismatch.json["message"]
        .as_str()
        .unwrap()
        .contains("PRODUCT_AMOUNT_NOT_MATCH"));
    assert_eq!(matching.code(), "S0000");
    assert_eq!(
        sim.ledger().len(),
        1,
        "a rejected request creates no transaction"
    );
}

#[tokio::test]
async fn an_e_invoice_domain_requires_user_email_and_every_charge_records_its_payer() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    // Not an e-invoice domain: no userEmail is fine, and nothing is recorded as sent.
    assert_eq!(charge(&sim, &token, "o-plain", 100).await.code(), "S0000");
    sim.set_einvoice(true);
    let without = charge(&sim, &token, "o-none", 100).await;
    let mut body = charge_body(&token, "o-mail", 100);
    body["userEmail"] = json!("wang@shop.example");
    body["userName"] = json!("王小明");
    body["invoiceInfo"] = json!({"carrierType": "3J0002"});
    let with = post_json(&sim, "/token/transactions", &body).await;

    assert_eq!((without.status, without.code()), (400, "V0001"));
    assert!(without.json["message"]
        .as_str()
        .unwrap()
        .contains("userEmail is required"));
    assert_eq!(with.code(), "S0000");
    assert!(
        sim.ledger_for_order("o-none").is_empty(),
        "refused: no transaction"
    );
    let payers = sim.charge_payers();
    assert_eq!(payers.len(), 2, "{payers:?}");
    assert_eq!(payers[0].order_id, "o-plain");
    assert_eq!(payers[0].user_email, None);
    assert_eq!(payers[1].order_id, "o-mail");
    assert_eq!(payers[1].user_email.as_deref(), Some("wang@shop.example"));
    assert_eq!(payers[1].user_name.as_deref(), Some("王小明"));
    assert_eq!(
        payers[1].invoice_info,
        Some(json!({"carrierType": "3J0002"}))
    );
}

#[tokio::test]
async fn amount_limits_v0003_and_v0001() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);

    let high = charge(&sim, &token, "o", 200_000).await;
    let just_below = charge(&sim, &token, "o", 199_999).await;
    let zero = charge(&sim, &token, "o", 0).await;
    let negative = charge(&sim, &token, "o", -5).await;
    let mut fractional = charge_body(&token, "o", 100);
    fractional["amount"] = json!(100.5);
    let fractional = post_json(&sim, "/token/transactions", &fractional).await;

    assert_eq!((high.status, high.code()), (400, "V0003"));
    assert_eq!(just_below.code(), "S0000");
    for r in [zero, negative, fractional] {
        assert_eq!((r.status, r.code()), (400, "V0001"), "{}", r.text);
    }
}

#[tokio::test]
async fn missing_fields_and_unknown_tokens_are_v0001() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let mut no_order = charge_body(&token, "o", 100);
    no_order.as_object_mut().unwrap().remove("orderId");
    let mut no_details = charge_body(&token, "o", 100);
    no_details.as_object_mut().unwrap().remove("productDetails");

    for body in [
        no_order,
        no_details,
        charge_body("unknownunknownunknownunknow", "o", 100),
    ] {
        let r = post_json(&sim, "/token/transactions", &body).await;
        assert_eq!((r.status, r.code()), (400, "V0001"), "{}", r.text);
    }
}

#[tokio::test]
async fn malformed_json_is_500_f0001() {
    let sim = start_sim(None).await;
    for body in [&b"{\"merchantId\": \"ming\","[..], b"", b"not json"] {
        let r = post_raw(&sim, "/token/transactions", TOKEN, body.to_vec()).await;
        assert_eq!((r.status, r.code()), (500, "F0001"), "{:?}", body);
        assert_eq!(r.data(), &json!({}));
    }
}

#[tokio::test]
async fn unknown_fields_are_silently_ignored() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let mut body = charge_body(&token, "o", 100);
    body["callbackUrl"] = json!("https://evil.example/cb");
    body["idempotencyKey"] = json!("k1");

    let r = post_json(&sim, "/token/transactions", &body).await;
    let c = post_json(
        &sim,
        "/checkout-token",
        &json!({"merchantId": MERCHANT, "successUrl": null, "failureUrl": null, "callbackUrl": "x"}),
    )
    .await;

    assert_eq!(r.code(), "S0000");
    assert_eq!(c.code(), "S0000");
}

#[tokio::test]
async fn unknown_routes_are_plain_text_404_and_wrong_methods_plain_text_405() {
    let sim = start_sim(None).await;

    let not_found = get(&sim, "/no/such/route").await;
    let wrong_method = reply(
        client()
            .get(format!("{}/token/transactions", sim.base_url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let wrong_method_2 = reply(
        client()
            .delete(format!("{}/checkout-token", sim.base_url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(not_found.status, 404);
    assert!(
        not_found.content_type.starts_with("text/plain"),
        "{}",
        not_found.content_type
    );
    assert_eq!(not_found.text, "Not Found");
    for r in [wrong_method, wrong_method_2] {
        assert_eq!(r.status, 405);
        assert!(
            r.content_type.starts_with("text/plain"),
            "{}",
            r.content_type
        );
        assert_eq!(r.text, "Method Not Allowed");
    }
}

#[tokio::test]
async fn production_mode_answers_403_without_code_to_unlisted_ips() {
    let blocked = start_sim_with(
        |c| c.production_allowlist = Some(vec!["203.0.113.7".parse().unwrap()]),
        None,
    )
    .await;
    let allowed = start_sim_with(
        |c| c.production_allowlist = Some(vec!["127.0.0.1".parse().unwrap()]),
        None,
    )
    .await;

    let r = get(&blocked, "/order/o/transactions").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json, json!({"message": "Forbidden"}));
    let token = blocked.create_token(cards::SUCCESS);
    let c = charge(&blocked, &token, "o", 100).await;
    assert_eq!(c.status, 403);
    assert!(blocked.ledger().is_empty());

    let ok = get(&allowed, "/order/o/transactions").await;
    assert_eq!(ok.code(), "S0000");
}

#[tokio::test]
async fn order_id_is_not_deduplicated_the_same_request_charges_twice() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let body = charge_body(&token, "period-2026-10", 990);

    let first = post_json(&sim, "/token/transactions", &body).await;
    let second = post_json(&sim, "/token/transactions", &body).await;

    assert_eq!(first.code(), "S0000");
    assert_eq!(second.code(), "S0000");
    assert_ne!(first.data()["id"], second.data()["id"]);
    let charged: Vec<_> = sim
        .ledger_for_order("period-2026-10")
        .into_iter()
        .filter(|e| e.status == Status::Charged)
        .collect();
    assert_eq!(charged.len(), 2);
}

#[tokio::test]
async fn declined_charges_create_failed_transactions_under_the_order() {
    let sim = start_sim(None).await;
    let cases = [
        (cards::DECLINE_T0001_GENERAL, "T0001"),
        (cards::DECLINE_T0002_CVV, "T0002"),
        (cards::DECLINE_T0003_EXPIRED, "T0003"),
        (cards::DECLINE_T0004_INSUFFICIENT_FUNDS, "T0004"),
        (cards::DECLINE_T0005_ISSUER_REFUSED, "T0005"),
    ];
    for (card, code) in cases {
        let token = sim.create_token(card);
        let order = format!("order-{code}");

        let r = charge(&sim, &token, &order, 500).await;

        assert_eq!((r.status, r.code()), (400, code));
        assert_eq!(r.data(), &json!({}));
        let q = get(&sim, &format!("/order/{order}/transactions")).await;
        let txs = q.data()["transactions"].as_array().unwrap();
        assert_eq!(txs.len(), 1);
        assert_eq!(txs[0]["status"], "failed");
        assert!(txs[0]["reason"].is_string());
        assert!(txs[0].get("paidAt").is_none());
    }
}

#[tokio::test]
async fn order_query_lists_every_attempt_and_is_empty_for_unknown_orders() {
    let sim = start_sim(None).await;
    let good = sim.create_token(cards::SUCCESS);
    let bad = sim.create_token(cards::DECLINE_T0004_INSUFFICIENT_FUNDS);
    charge(&sim, &bad, "A1", 300).await;
    charge(&sim, &good, "A1", 300).await;
    charge(&sim, &good, "other", 300).await;

    let r = get(&sim, "/order/A1/transactions").await;
    let none = get(&sim, "/order/never-used/transactions").await;

    assert_eq!(r.code(), "S0000");
    let mut statuses: Vec<_> = r.data()["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_string())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["charged", "failed"]);
    assert_eq!(none.code(), "S0000");
    assert_eq!(none.data()["transactions"], json!([]));
}

#[tokio::test]
async fn transaction_list_pages_by_50_newest_first() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    for i in 0..120 {
        charge(&sim, &token, &format!("o{i}"), 100 + i).await;
    }

    let p1 = get(&sim, "/transactions").await;
    let next = p1.data()["page"].as_str().unwrap().to_string();
    let p2 = get(&sim, &format!("/transactions?page={next}")).await;
    let next2 = p2.data()["page"].as_str().unwrap().to_string();
    let p3 = get(&sim, &format!("/transactions?page={next2}")).await;

    assert_eq!(p1.data()["transactions"].as_array().unwrap().len(), 50);
    assert_eq!(p1.data()["transactions"][0]["orderId"], "o119");
    assert_eq!(p2.data()["transactions"].as_array().unwrap().len(), 50);
    assert_eq!(p3.data()["transactions"].as_array().unwrap().len(), 20);
    assert_eq!(p3.data()["page"], json!(null));
    assert_eq!(p3.data()["transactions"][19]["orderId"], "o0");
}

#[tokio::test]
async fn transaction_list_filters_by_taipei_days_and_rejects_bad_dates() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    charge(&sim, &token, "today", 100).await;
    let today = sim.now().with_timezone(&ids::taipei()).date_naive();
    let yesterday = today.pred_opt().unwrap();

    let hit = get(&sim, &format!("/transactions?start={today}&end={today}")).await;
    let miss = get(
        &sim,
        &format!("/transactions?start={yesterday}&end={yesterday}"),
    )
    .await;
    let only_start = get(&sim, &format!("/transactions?start={today}")).await;
    let garbage = get(&sim, "/transactions?start=yesterday&end=today").await;
    let bad_page = get(&sim, "/transactions?page=zzz").await;

    assert_eq!(hit.data()["transactions"].as_array().unwrap().len(), 1);
    assert_eq!(miss.data()["transactions"], json!([]));
    for r in [only_start, garbage, bad_page] {
        assert_eq!((r.status, r.code()), (500, "F0001"), "{}", r.text);
    }
}

#[tokio::test]
async fn full_refund_then_second_refund_is_v0002() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let id = charge(&sim, &token, "o", 1200).await.data()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let first = post_json(
        &sim,
        &format!("/refunds/{id}"),
        &json!({"merchantId": MERCHANT}),
    )
    .await;
    let second = post_json(
        &sim,
        &format!("/refunds/{id}"),
        &json!({"merchantId": MERCHANT, "amount": 1}),
    )
    .await;

    assert_eq!(first.code(), "S0000");
    assert_eq!(first.data()["success"], true);
    assert_eq!(first.data()["status"], "refunded");
    assert_eq!(first.data()["refundAmount"], 1200);
    assert!(first.data()["refundedAt"].is_string());
    assert_eq!((second.status, second.code()), (400, "V0002"));
    let entry = &sim.ledger()[0];
    assert_eq!(
        (entry.status, entry.refund_amount),
        (Status::Refunded, 1200)
    );
}

#[tokio::test]
async fn partial_refund_records_the_amount_and_allows_no_second_refund() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let id = charge(&sim, &token, "o", 1200).await.data()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let partial = post_json(
        &sim,
        &format!("/refunds/{id}"),
        &json!({"merchantId": MERCHANT, "amount": 600, "reason": "one bag"}),
    )
    .await;
    let rest = post_json(
        &sim,
        &format!("/refunds/{id}"),
        &json!({"merchantId": MERCHANT, "amount": 600}),
    )
    .await;

    assert_eq!(partial.code(), "S0000");
    assert_eq!(partial.data()["refundAmount"], 600);
    assert_eq!(partial.data()["amount"], 1200);
    assert_eq!((rest.status, rest.code()), (400, "V0002"));
    let q = get(&sim, &format!("/transactions/{id}")).await;
    assert_eq!(q.data()["refundAmount"], 600);
    assert_eq!(q.data()["status"], "refunded");
}

#[tokio::test]
async fn an_e_invoice_domain_requires_a_refunds_product_details_adding_up_to_it() {
    let sim = start_sim(None).await;
    sim.set_einvoice(true);
    let token = sim.create_token(cards::SUCCESS);
    let mut body = charge_body(&token, "o-inv", 1200);
    body["userEmail"] = json!("wang@shop.example");
    let charged = post_json(&sim, "/token/transactions", &body).await;
    let id = charged.data()["id"].as_str().unwrap().to_string();
    let line = |price: i64| {
        json!([{"productionCode": "BAG", "description": "Bag", "quantity": 1, "unit": "item",
                "unitPrice": price}])
    };
    let refund = |body: serde_json::Value| {
        let sim = &sim;
        let path = format!("/refunds/{id}");
        async move { post_json(sim, &path, &body).await }
    };

    let bare = refund(json!({"merchantId": MERCHANT, "amount": 600})).await;
    let short =
        refund(json!({"merchantId": MERCHANT, "amount": 600, "productDetails": line(500)})).await;
    let all_lines_for_part =
        refund(json!({"merchantId": MERCHANT, "amount": 600, "productDetails": line(1200)})).await;
    for refused in [&bare, &short, &all_lines_for_part] {
        assert_eq!(
            (refused.status, refused.code()),
            (400, "V0001"),
            "{:?}",
            refused.json
        );
    }
    assert!(bare.json["message"]
        .as_str()
        .unwrap()
        .contains("productDetails is required"));
    assert_eq!(
        sim.ledger()[0].refund_amount,
        0,
        "refused: nothing refunded"
    );
    let made =
        refund(json!({"merchantId": MERCHANT, "amount": 600, "productDetails": line(600)})).await;
    assert_eq!(made.code(), "S0000");
    assert_eq!(sim.ledger()[0].refund_amount, 600);
}

#[tokio::test]
async fn over_refund_and_bad_refunds_are_v0001_failed_is_v0002() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let id = charge(&sim, &token, "o", 1200).await.data()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let declined = sim.create_token(cards::DECLINE_T0004_INSUFFICIENT_FUNDS);
    charge(&sim, &declined, "f", 1200).await;
    let failed_id = sim.ledger_for_order("f")[0].id.clone();
    let internal = sim.ledger_for_order("o")[0].transaction_id.clone();

    let over = post_json(
        &sim,
        &format!("/refunds/{id}"),
        &json!({"merchantId": MERCHANT, "amount": 1201}),
    )
    .await;
    let zero = post_json(
        &sim,
        &format!("/refunds/{id}"),
        &json!({"merchantId": MERCHANT, "amount": 0}),
    )
    .await;
    let unknown = post_json(
        &sim,
        "/refunds/P20260101ZZZZZZZZ",
        &json!({"merchantId": MERCHANT}),
    )
    .await;
    let by_internal_id = post_json(
        &sim,
        &format!("/refunds/{internal}"),
        &json!({"merchantId": MERCHANT}),
    )
    .await;
    let foreign = post_json(
        &sim,
        &format!("/refunds/{id}"),
        &json!({"merchantId": "other"}),
    )
    .await;
    let of_failed = post_json(
        &sim,
        &format!("/refunds/{failed_id}"),
        &json!({"merchantId": MERCHANT}),
    )
    .await;

    for r in [over, zero, unknown, by_internal_id, foreign] {
        assert_eq!((r.status, r.code()), (400, "V0001"), "{}", r.text);
    }
    assert_eq!((of_failed.status, of_failed.code()), (400, "V0002"));
    assert_eq!(
        sim.ledger_for_order("o")[0].status,
        Status::Charged,
        "nothing was refunded"
    );
}

#[tokio::test]
async fn checkout_token_returns_a_27_char_id_and_validates_its_body() {
    let sim = start_sim(None).await;

    let ok = post_json(
        &sim,
        "/checkout-token",
        &json!({"merchantId": MERCHANT, "successUrl": "https://shop.example/ok", "failureUrl": null, "customId": "{\"orderId\":9999}"}),
    )
    .await;
    let missing_key = post_json(
        &sim,
        "/checkout-token",
        &json!({"merchantId": MERCHANT, "successUrl": null}),
    )
    .await;
    let foreign = post_json(
        &sim,
        "/checkout-token",
        &json!({"merchantId": "x", "successUrl": null, "failureUrl": null}),
    )
    .await;

    assert_eq!(ok.code(), "S0000");
    assert_eq!(ok.json["message"], "");
    assert!(ids::is_long_id(ok.data()["id"].as_str().unwrap()));
    for r in [missing_key, foreign] {
        assert_eq!((r.status, r.code()), (400, "V0001"));
    }
}
