//! The hosted card-binding page, driven by a plain HTTP client, and the token webhook it
//! triggers.

mod common;

use common::*;
use oen_sim::{cards, ids, DeliveryState};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn binding_redirects_to_success_url_and_delivers_the_token_webhook() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    let id = checkout_token(
        &sim,
        Some("https://shop.example/bound?ref=7"),
        Some("https://shop.example/failed"),
        "M001",
    )
    .await;
    let page = sim.hosted_page_url(&id);
    assert_eq!(
        page,
        format!(
            "{}/hosted/ming/checkout/subscription/create/{id}",
            sim.base_url()
        )
    );

    let shown = reply(client().get(&page).send().await.unwrap()).await;
    assert_eq!(shown.status, 200);
    assert!(shown.content_type.starts_with("text/html"));
    assert!(
        shown.text.contains("value=\"buyer@example.com\""),
        "e-mail is pre-filled"
    );
    assert!(shown.text.contains("name=\"cardNumber\""));

    let submitted = submit_card(&page, "buyer@example.com", "4242 4242 4242 4242").await;

    assert!(
        matches!(submitted.status, 302 | 303),
        "{}",
        submitted.status
    );
    assert_eq!(
        submitted.location.as_deref(),
        Some("https://shop.example/bound?ref=7"),
        "nothing is appended on success"
    );
    let bodies = receiver.wait_for(1).await;
    let hook = &bodies[0];
    let token = hook["token"].as_str().unwrap();
    assert!(ids::is_long_id(token));
    assert_eq!(
        hook,
        &json!({
            "purpose": "token", "merchantId": "ming", "id": id, "transactionId": id,
            "success": true, "token": token, "paymentInfo": "4242", "customId": "M001",
            "message": ""
        })
    );
    // The token works for charging.
    assert_eq!(
        charge(&sim, token, "after-binding", 100).await.code(),
        "S0000"
    );
    let deliveries = sim.wait_for_webhooks(1, DEADLINE).await.unwrap();
    assert_eq!(deliveries[0].state, DeliveryState::Delivered);
    assert_eq!(deliveries[0].attempts.len(), 1);
    assert_eq!(deliveries[0].attempts[0].status(), Some(200));
}

#[tokio::test]
async fn the_page_is_also_served_without_the_prefix_and_404s_for_other_merchants() {
    let sim = start_sim(None).await;
    let id = checkout_token(&sim, None, None, "c").await;

    let bare = reply(
        client()
            .get(format!(
                "{}/checkout/subscription/create/{id}",
                sim.base_url()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let foreign = reply(
        client()
            .get(format!(
                "{}/hosted/other/checkout/subscription/create/{id}",
                sim.base_url()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let unknown = reply(
        client()
            .get(sim.hosted_page_url("nosuchidnosuchidnosuchid123"))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(bare.status, 200);
    assert!(bare.text.contains("<form"));
    assert_eq!(foreign.status, 404);
    assert_eq!(unknown.status, 404);
    assert_eq!(
        sim.hosted_base_url_template(),
        format!("{}/hosted/{{merchantId}}", sim.base_url())
    );
}

#[tokio::test]
async fn declining_cards_at_binding_go_to_failure_url_with_the_code_and_a_failed_webhook() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    let cases = [
        (cards::BIND_DECLINE_T0001, "T0001"),
        (cards::BIND_DECLINE_T0002, "T0002"),
        (cards::BIND_DECLINE_T0003, "T0003"),
        (cards::BIND_DECLINE_T0004, "T0004"),
        (cards::BIND_DECLINE_T0005, "T0005"),
    ];
    for (i, (card, code)) in cases.iter().enumerate() {
        let id = checkout_token(
            &sim,
            Some("https://shop.example/ok"),
            Some("https://shop.example/fail?x=1"),
            "c",
        )
        .await;

        let r = submit_card(&sim.hosted_page_url(&id), "a@b.example", card).await;

        assert_eq!(
            r.location.unwrap(),
            format!("https://shop.example/fail?x=1&payment_error={code}")
        );
        let bodies = receiver.wait_for(i + 1).await;
        let hook = bodies.iter().find(|b| b["id"] == id.as_str()).unwrap();
        assert_eq!(hook["success"], false);
        assert!(hook.get("token").is_none(), "no token on failure");
        assert_eq!(hook["message"], *code);
    }
}

#[tokio::test]
async fn abandoned_3ds_sends_a_3ds_abandoned_webhook_and_fails_the_redirect() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    let id = checkout_token(
        &sim,
        Some("https://shop.example/ok"),
        Some("https://shop.example/fail"),
        "c9",
    )
    .await;

    let r = submit_card(
        &sim.hosted_page_url(&id),
        "a@b.example",
        cards::ABANDONED_3DS,
    )
    .await;

    assert_eq!(
        r.location.as_deref(),
        Some("https://shop.example/fail?payment_error=T0001")
    );
    let hook = receiver.wait_for(1).await.remove(0);
    assert_eq!(hook["success"], false);
    assert_eq!(hook["message"], "3DS_ABANDONED");
    assert_eq!(hook["customId"], "c9");
    assert!(hook.get("token").is_none());
}

#[tokio::test]
async fn page_expires_after_ten_minutes_of_simulator_time_with_y003() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.freeze_clock(true);
    let fresh = checkout_token(
        &sim,
        Some("https://shop.example/ok"),
        Some("https://shop.example/fail"),
        "c",
    )
    .await;
    let stale = checkout_token(
        &sim,
        Some("https://shop.example/ok"),
        Some("https://shop.example/fail"),
        "c",
    )
    .await;

    sim.advance_clock(Duration::from_secs(9 * 60 + 59));
    let still_open = reply(
        client()
            .get(sim.hosted_page_url(&fresh))
            .send()
            .await
            .unwrap(),
    )
    .await;
    sim.advance_clock(Duration::from_secs(1));
    let expired_get = reply(
        client()
            .get(sim.hosted_page_url(&stale))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let expired_post =
        submit_card(&sim.hosted_page_url(&fresh), "a@b.example", cards::SUCCESS).await;

    assert_eq!(still_open.status, 200);
    assert_eq!(expired_get.status, 302);
    assert_eq!(
        expired_get.location.as_deref(),
        Some("https://shop.example/fail?payment_error=Y003")
    );
    assert_eq!(
        expired_post.location.as_deref(),
        Some("https://shop.example/fail?payment_error=Y003")
    );
    assert!(
        sim.webhook_deliveries().is_empty(),
        "an expired page binds nothing"
    );
}

#[tokio::test]
async fn null_urls_render_a_plain_result_page() {
    let sim = start_sim(None).await;
    let ok = checkout_token(&sim, None, None, "c").await;
    let bad = checkout_token(&sim, None, None, "c").await;

    let bound = submit_card(&sim.hosted_page_url(&ok), "a@b.example", cards::SUCCESS).await;
    let failed = submit_card(
        &sim.hosted_page_url(&bad),
        "a@b.example",
        cards::BIND_DECLINE_T0004,
    )
    .await;

    assert_eq!(bound.status, 200);
    assert!(bound.text.contains("Card bound"));
    assert_eq!(failed.status, 200);
    assert!(failed.text.contains("payment_error=T0004"));
    // Without a webhook URL the webhook is recorded but never sent.
    let deliveries = sim.wait_for_webhooks(2, DEADLINE).await.unwrap();
    assert!(deliveries.iter().all(|d| d.state == DeliveryState::NoUrl));
}

#[tokio::test]
async fn a_used_page_cannot_bind_again_and_bad_input_rerenders_the_form() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    let id = checkout_token(
        &sim,
        Some("https://shop.example/ok"),
        Some("https://shop.example/fail"),
        "c",
    )
    .await;
    let page = sim.hosted_page_url(&id);

    let bad_card = submit_card(&page, "a@b.example", "42abc").await;
    let bad_email = submit_card(&page, "nobody", cards::SUCCESS).await;
    let first = submit_card(&page, "a@b.example", cards::SUCCESS).await;
    let again = submit_card(&page, "a@b.example", cards::SUCCESS).await;

    assert_eq!(bad_card.status, 400);
    assert!(bad_card.text.contains("<form"));
    assert_eq!(bad_email.status, 400);
    assert_eq!(first.location.as_deref(), Some("https://shop.example/ok"));
    assert_eq!(
        again.location.as_deref(),
        Some("https://shop.example/fail?payment_error=V0002")
    );
    receiver.wait_for(1).await;
    sim.wait_for_webhooks(1, DEADLINE).await.unwrap();
    assert_eq!(receiver.bodies().len(), 1, "only one binding happened");
}
