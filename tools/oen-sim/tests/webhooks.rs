//! Token webhook delivery: Oen's retry policy and the misbehaviour knobs.

mod common;

use common::*;
use oen_sim::{cards, AttemptOutcome, DeliveryState, Simulator};
use std::time::Duration;

/// Binds a card through the hosted page; returns the checkout id.
async fn bind(sim: &Simulator, card: &str, custom_id: &str) -> String {
    let id = checkout_token(
        sim,
        Some("https://shop.example/ok"),
        Some("https://shop.example/fail"),
        custom_id,
    )
    .await;
    let r = submit_card(&sim.hosted_page_url(&id), "a@b.example", card).await;
    assert!(r.location.is_some(), "{}", r.text);
    id
}

fn count_for(bodies: &[serde_json::Value], checkout_id: &str) -> usize {
    bodies.iter().filter(|b| b["id"] == checkout_id).count()
}

const SECOND: Duration = Duration::from_secs(1);

/// Waits until the first delivery has recorded `n` ended attempts.
async fn ended_attempts(sim: &Simulator, n: usize) {
    eventually(&format!("{n} ended attempt(s)"), || {
        let ended = sim
            .webhook_deliveries()
            .first()
            .map_or(0, |d| d.attempts.len());
        async move { (ended >= n).then_some(()) }
    })
    .await;
}

/// Moves a frozen clock through a webhook's three attempts: waits for the first to reach the
/// receiver, then advances 2 s twice, each time until the next one has arrived.
async fn through_three_attempts(sim: &Simulator, receiver: &Receiver) {
    for arrived in 1..=2 {
        receiver.wait_for(arrived).await;
        sim.advance_clock(2 * SECOND);
    }
    receiver.wait_for(3).await;
}

async fn exactly_three_attempts_about_0_2_and_4_s_after_the_first(receiver_status: u16) {
    let receiver = Receiver::start().await;
    receiver.answer_with(receiver_status);
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.freeze_clock(true);
    let t0 = sim.now();

    let failing = bind(&sim, cards::SUCCESS, "first").await;
    through_three_attempts(&sim, &receiver).await;
    let deliveries = sim.wait_for_webhooks(1, DEADLINE).await.unwrap();

    let d = &deliveries[0];
    assert_eq!(d.state, DeliveryState::Failed);
    assert!(d
        .attempts
        .iter()
        .all(|a| a.status() == Some(receiver_status)));
    let starts: Vec<_> = d.attempts.iter().map(|a| a.at - t0).collect();
    assert_eq!(
        starts,
        [0, 2, 4].map(chrono::Duration::seconds),
        "attempts at 0, +2 s and +4 s (simulator clock)"
    );

    // Barrier instead of sleeping: time passes, a later webhook goes through, and the failed
    // one was never attempted again.
    sim.advance_clock(60 * SECOND);
    receiver.answer_with(200);
    let later = bind(&sim, cards::SUCCESS, "second").await;
    sim.wait_for_webhooks(2, DEADLINE).await.unwrap();
    let bodies = receiver.bodies();
    assert_eq!(count_for(&bodies, &failing), 3);
    assert_eq!(count_for(&bodies, &later), 1);
}

#[tokio::test]
async fn receiver_answering_500_gets_exactly_three_attempts() {
    exactly_three_attempts_about_0_2_and_4_s_after_the_first(500).await;
}

#[tokio::test]
async fn redirects_count_as_failures_and_are_not_followed() {
    exactly_three_attempts_about_0_2_and_4_s_after_the_first(302).await;
}

#[tokio::test]
async fn a_hanging_receiver_gets_its_retries_2_and_4_s_after_the_first_attempt_started() {
    let receiver = Receiver::start().await;
    receiver.hang(true);
    // Oen's timing: 10 s per attempt, retries 2 s apart.
    let sim = start_sim_with(
        |c| {
            c.knobs.webhook_timeout_ms = 10_000;
            c.knobs.webhook_retry_delays_ms = vec![2_000, 2_000];
        },
        Some(receiver.url.clone()),
    )
    .await;
    sim.freeze_clock(true);
    let t0 = sim.now();

    let id = bind(&sim, cards::SUCCESS, "c").await;
    through_three_attempts(&sim, &receiver).await;
    let while_hanging = sim.webhook_deliveries().remove(0);
    // Each attempt gives up 10 s after it started.
    sim.advance_clock(6 * SECOND);
    ended_attempts(&sim, 1).await;
    sim.advance_clock(2 * SECOND);
    ended_attempts(&sim, 2).await;
    sim.advance_clock(2 * SECOND);
    let deliveries = sim.wait_for_webhooks(1, DEADLINE).await.unwrap();

    assert_eq!(while_hanging.state, DeliveryState::Pending);
    assert!(
        while_hanging.attempts.is_empty(),
        "all three started while the first still hung"
    );
    let d = &deliveries[0];
    assert_eq!(d.state, DeliveryState::Failed);
    let starts: Vec<_> = d.attempts.iter().map(|a| a.at - t0).collect();
    let ends: Vec<_> = d.attempts.iter().map(|a| a.ended_at - t0).collect();
    assert_eq!(starts, [0, 2, 4].map(chrono::Duration::seconds));
    assert_eq!(ends, [10, 12, 14].map(chrono::Duration::seconds));
    for a in &d.attempts {
        match &a.outcome {
            AttemptOutcome::Error { message } => {
                assert!(message.starts_with("timeout"), "{message}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    assert_eq!(count_for(&receiver.bodies(), &id), 3);
}

#[tokio::test]
async fn a_2xx_to_a_retry_while_the_first_attempt_hangs_ends_the_retries() {
    let receiver = Receiver::start().await;
    receiver.hang(true);
    let sim = start_sim_with(
        |c| c.knobs.webhook_timeout_ms = 10_000,
        Some(receiver.url.clone()),
    )
    .await;
    sim.freeze_clock(true);

    let id = bind(&sim, cards::SUCCESS, "c").await;
    receiver.wait_for(1).await;
    receiver.hang(false);
    sim.advance_clock(2 * SECOND);
    ended_attempts(&sim, 1).await;
    let answered = sim.webhook_deliveries().remove(0);
    // The third attempt's time passes, then the first attempt's timeout.
    sim.advance_clock(8 * SECOND);
    let deliveries = sim.wait_for_webhooks(1, DEADLINE).await.unwrap();

    assert_eq!(
        answered.state,
        DeliveryState::Pending,
        "finished only when the hanging attempt ends"
    );
    let d = &deliveries[0];
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts.len(), 2, "no third attempt after a 2xx");
    assert!(d.attempts[0].status().is_none(), "{:?}", d.attempts[0]);
    assert_eq!(d.attempts[1].status(), Some(200));
    assert_eq!(
        count_for(&receiver.bodies(), &id),
        2,
        "the receiver saw it twice"
    );
}

#[tokio::test]
async fn any_2xx_stops_the_retries() {
    let receiver = Receiver::start().await;
    receiver.answer_with(204);
    let sim = start_sim(Some(receiver.url.clone())).await;

    let id = bind(&sim, cards::SUCCESS, "c").await;
    let deliveries = sim.wait_for_webhooks(1, DEADLINE).await.unwrap();

    assert_eq!(deliveries[0].state, DeliveryState::Delivered);
    assert_eq!(deliveries[0].attempts.len(), 1);
    assert_eq!(count_for(&receiver.bodies(), &id), 1);
}

#[tokio::test]
async fn a_receiver_that_recovers_gets_the_retry() {
    let receiver = Receiver::start().await;
    receiver.answer_with(503);
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.freeze_clock(true);

    bind(&sim, cards::SUCCESS, "c").await;
    ended_attempts(&sim, 1).await;
    receiver.answer_with(200);
    sim.advance_clock(2 * SECOND);
    let deliveries = sim.wait_for_webhooks(1, DEADLINE).await.unwrap();

    let d = &deliveries[0];
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts.len(), 2);
    assert_eq!(d.attempts[0].status(), Some(503));
    assert_eq!(d.attempts[1].status(), Some(200));
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_recorded_as_errors() {
    // A listener that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let sim = start_sim_with(
        |c| {
            c.knobs.webhook_timeout_ms = 100;
            c.knobs.webhook_retry_delays_ms = vec![1, 1];
        },
        Some(format!("http://{silent_addr}/webhook")),
    )
    .await;

    bind(&sim, cards::SUCCESS, "c").await;
    let deliveries = sim.wait_for_webhooks(1, DEADLINE).await.unwrap();

    let d = &deliveries[0];
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.attempts.len(), 3);
    for a in &d.attempts {
        match &a.outcome {
            AttemptOutcome::Error { message } => {
                assert!(message.starts_with("timeout"), "{message}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    // Nothing listens on a port we just closed: connection refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    sim.set_webhook_url(Some(format!("http://{closed_addr}/webhook")));
    bind(&sim, cards::SUCCESS, "c2").await;
    let deliveries = sim.wait_for_webhooks(2, DEADLINE).await.unwrap();
    assert!(deliveries[1].attempts.iter().all(|a| a.status().is_none()));
    hold.abort();
}

#[tokio::test]
async fn drop_knob_never_sends_the_webhook() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.drop_next_webhooks(1);

    let dropped = bind(&sim, cards::SUCCESS, "a").await;
    let sent = bind(&sim, cards::SUCCESS, "b").await;
    let deliveries = sim.wait_for_webhooks(2, DEADLINE).await.unwrap();

    assert_eq!(deliveries[0].state, DeliveryState::Dropped);
    assert!(deliveries[0].attempts.is_empty());
    let bodies = receiver.bodies();
    assert_eq!(count_for(&bodies, &dropped), 0);
    assert_eq!(count_for(&bodies, &sent), 1);
}

#[tokio::test]
async fn duplicate_knob_sends_the_same_body_twice() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.duplicate_next_webhooks(1);

    let id = bind(&sim, cards::SUCCESS, "a").await;
    let deliveries = sim.wait_for_webhooks(2, DEADLINE).await.unwrap();

    assert_eq!(deliveries[1].duplicate_of, Some(deliveries[0].delivery_id));
    let bodies = receiver.wait_for(2).await;
    assert_eq!(count_for(&bodies, &id), 2);
    assert_eq!(bodies[0], bodies[1]);
}

#[tokio::test]
async fn transaction_id_knob_makes_it_differ_from_id() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.set_webhook_transaction_id_differs(true);

    let id = bind(&sim, cards::SUCCESS, "a").await;
    let hook = receiver.wait_for(1).await.remove(0);

    assert_eq!(hook["id"], id.as_str());
    let tid = hook["transactionId"].as_str().unwrap();
    assert_ne!(tid, id);
    assert!(oen_sim::ids::is_long_id(tid));
}

#[tokio::test]
async fn null_message_knob_sends_message_null() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.set_webhook_null_message(true);

    bind(&sim, cards::SUCCESS, "a").await;
    let hook = receiver.wait_for(1).await.remove(0);

    assert!(hook.as_object().unwrap().contains_key("message"));
    assert!(hook["message"].is_null());
    assert_eq!(hook["success"], true);
}

#[tokio::test]
async fn hold_knob_delivers_a_later_webhook_before_an_earlier_one() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.hold_next_webhooks(1);

    let earlier = bind(&sim, cards::SUCCESS, "earlier").await;
    assert_eq!(sim.webhook_deliveries()[0].state, DeliveryState::Held);
    let later = bind(&sim, cards::SUCCESS, "later").await;
    let bodies = receiver.wait_for(2).await;

    assert_eq!(bodies[0]["id"], later.as_str());
    assert_eq!(bodies[1]["id"], earlier.as_str());
}

#[tokio::test]
async fn held_webhooks_can_be_released_explicitly() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.hold_next_webhooks(1);

    let id = bind(&sim, cards::SUCCESS, "a").await;
    assert_eq!(sim.release_held_webhooks(), 1);

    let bodies = receiver.wait_for(1).await;
    assert_eq!(bodies[0]["id"], id.as_str());
}

#[tokio::test]
async fn delay_knob_postpones_the_first_attempt() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    sim.set_webhook_delay(Duration::from_millis(200));

    let before = tokio::time::Instant::now();
    bind(&sim, cards::SUCCESS, "a").await;
    receiver.wait_for(1).await;

    assert!(before.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn redelivery_sends_the_recorded_body_again() {
    let receiver = Receiver::start().await;
    let sim = start_sim(Some(receiver.url.clone())).await;
    let id = bind(&sim, cards::SUCCESS, "a").await;
    sim.wait_for_webhooks(1, DEADLINE).await.unwrap();

    let again = sim.redeliver_webhook(1).unwrap();
    let deliveries = sim.wait_for_webhooks(2, DEADLINE).await.unwrap();

    assert_eq!(again, 2);
    assert_eq!(deliveries[1].redelivery_of, Some(1));
    let bodies = receiver.wait_for(2).await;
    assert_eq!(count_for(&bodies, &id), 2);
    assert_eq!(bodies[0], bodies[1]);
    assert!(sim.redeliver_webhook(99).is_err());
}
