//! Outcome control: test cards, forced responses, eventual consistency and latency.

mod common;

use common::*;
use oen_sim::{cards, ForceTarget, ForcedOutcome, Settle, Status};
use serde_json::json;
use std::time::Duration;

async fn order_statuses(sim: &oen_sim::Simulator, order: &str) -> Vec<String> {
    statuses_at(sim, &format!("/order/{order}/transactions")).await
}

/// The statuses `GET /transactions` lists (no window, first page).
async fn listed_statuses(sim: &oen_sim::Simulator) -> Vec<String> {
    statuses_at(sim, "/transactions").await
}

/// The statuses of the transactions a listing answers.
async fn statuses_at(sim: &oen_sim::Simulator, path: &str) -> Vec<String> {
    let r = get(sim, path).await;
    assert_eq!(r.code(), "S0000", "{}", r.text);
    r.data()["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn c026_is_409_not_retryable_and_settles_charged_after_the_settle_delay() {
    let sim = start_sim(None).await;
    sim.freeze_clock(true);
    sim.set_settle_delay(Duration::from_secs(30));
    let token = sim.create_token(cards::UNKNOWN_C026_THEN_CHARGED);

    let r = charge(&sim, &token, "unknown-1", 990).await;

    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "C026");
    assert_eq!(r.json["retryable"], false);
    assert_eq!(order_statuses(&sim, "unknown-1").await, ["charging"]);
    sim.advance_clock(Duration::from_secs(29));
    assert_eq!(order_statuses(&sim, "unknown-1").await, ["charging"]);
    sim.advance_clock(Duration::from_secs(1));
    assert_eq!(order_statuses(&sim, "unknown-1").await, ["charged"]);
    let entry = &sim.ledger_for_order("unknown-1")[0];
    assert_eq!(entry.status, Status::Charged);
    assert!(entry.paid_at.is_some());
}

#[tokio::test]
async fn c026_other_card_settles_failed() {
    let sim = start_sim(None).await;
    sim.freeze_clock(true);
    sim.set_settle_delay(Duration::from_secs(5));
    let token = sim.create_token(cards::UNKNOWN_C026_THEN_FAILED);

    let r = charge(&sim, &token, "unknown-2", 990).await;
    sim.advance_clock(Duration::from_secs(5));

    assert_eq!((r.status, r.code()), (409, "C026"));
    assert_eq!(order_statuses(&sim, "unknown-2").await, ["failed"]);
}

#[tokio::test]
async fn c026_settles_on_the_admin_call_whatever_the_delay() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::UNKNOWN_C026_THEN_CHARGED);
    charge(&sim, &token, "u", 100).await;
    assert_eq!(sim.ledger()[0].status, Status::Charging);

    let settled = reply(
        client()
            .post(format!("{}/_sim/settle", sim.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(settled.json["settled"], 1);
    assert_eq!(sim.ledger()[0].status, Status::Charged);
}

#[tokio::test]
async fn gateway_timeout_after_commit_answers_504_but_the_charge_happened() {
    let sim = start_sim(None).await;
    sim.set_gateway_timeout_delay(Duration::from_millis(50));
    let token = sim.create_token(cards::GATEWAY_TIMEOUT_AFTER_COMMIT);

    let started = tokio::time::Instant::now();
    let r = charge(&sim, &token, "slow", 700).await;

    assert_eq!(r.status, 504);
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(sim.ledger_for_order("slow")[0].status, Status::Charged);
    assert_eq!(order_statuses(&sim, "slow").await, ["charged"]);
}

#[tokio::test]
async fn connection_dropped_after_commit_gives_the_client_an_error_and_the_ledger_a_charge() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::CONNECTION_DROP_AFTER_COMMIT);

    let result = client()
        .post(format!("{}/token/transactions", sim.base_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&charge_body(&token, "dropped", 500)).unwrap())
        .send()
        .await;

    let err = result.expect_err("the connection must close without a response");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(sim.ledger_for_order("dropped")[0].status, Status::Charged);
    // The simulator keeps serving other connections.
    assert_eq!(order_statuses(&sim, "dropped").await, ["charged"]);
}

#[tokio::test]
async fn succeeds_after_n_failures_declines_n_times_then_charges() {
    let sim = start_sim(None).await;
    let token = sim.create_token(&cards::succeeds_after_failures(2));

    let first = charge(&sim, &token, "retry", 100).await;
    let second = charge(&sim, &token, "retry", 100).await;
    let third = charge(&sim, &token, "retry", 100).await;
    let fourth = charge(&sim, &token, "retry", 100).await;

    assert_eq!((first.status, first.code()), (400, "T0001"));
    assert_eq!((second.status, second.code()), (400, "T0001"));
    assert_eq!(third.code(), "S0000");
    assert_eq!(fourth.code(), "S0000");
    let mut statuses = order_statuses(&sim, "retry").await;
    statuses.sort();
    assert_eq!(statuses, ["charged", "charged", "failed", "failed"]);
}

#[tokio::test]
async fn forced_response_for_a_token_applies_once_then_normal_behaviour_returns() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let other = sim.create_token(cards::SUCCESS);
    sim.force_next(
        ForceTarget::Token(token.clone()),
        ForcedOutcome::Respond {
            code: "T0004".into(),
            http_status: 400,
            message: None,
        },
    );

    let unaffected = charge(&sim, &other, "x", 100).await;
    let forced = charge(&sim, &token, "f", 100).await;
    let normal = charge(&sim, &token, "f", 100).await;

    assert_eq!(unaffected.code(), "S0000");
    assert_eq!((forced.status, forced.code()), (400, "T0004"));
    assert_eq!(normal.code(), "S0000");
    let mut statuses = order_statuses(&sim, "f").await;
    statuses.sort();
    assert_eq!(
        statuses,
        ["charged", "failed"],
        "a forced decline records a failed transaction"
    );
}

#[tokio::test]
async fn forced_system_error_for_an_order_records_nothing() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    sim.force_next_times(
        ForceTarget::OrderId("o-500".into()),
        ForcedOutcome::Respond {
            code: "F0001".into(),
            http_status: 500,
            message: Some("boom".into()),
        },
        2,
    );

    let a = charge(&sim, &token, "o-500", 100).await;
    let b = charge(&sim, &token, "o-500", 100).await;
    let c = charge(&sim, &token, "o-500", 100).await;

    assert_eq!(
        (a.status, a.code(), a.json["message"].as_str()),
        (500, "F0001", Some("boom"))
    );
    assert_eq!((b.status, b.code()), (500, "F0001"));
    assert_eq!(c.code(), "S0000");
    assert_eq!(sim.ledger_for_order("o-500").len(), 1);
}

#[tokio::test]
async fn forced_504_and_drop_after_commit_charge_while_before_commit_does_not() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let cases = [
        (ForcedOutcome::GatewayTimeoutAfterCommit, "t-after", 1),
        (ForcedOutcome::GatewayTimeoutBeforeCommit, "t-before", 0),
        (ForcedOutcome::DropConnectionAfterCommit, "d-after", 1),
        (ForcedOutcome::DropConnectionBeforeCommit, "d-before", 0),
    ];
    for (outcome, order, expected) in cases {
        let drops = matches!(
            outcome,
            ForcedOutcome::DropConnectionAfterCommit | ForcedOutcome::DropConnectionBeforeCommit
        );
        sim.force_next(ForceTarget::OrderId(order.into()), outcome);

        let result = client()
            .post(format!("{}/token/transactions", sim.base_url()))
            .bearer_auth(TOKEN)
            .body(serde_json::to_vec(&charge_body(&token, order, 100)).unwrap())
            .send()
            .await;

        if drops {
            assert!(result.is_err(), "{order}");
        } else {
            assert_eq!(result.unwrap().status().as_u16(), 504, "{order}");
        }
        let ledger = sim.ledger_for_order(order);
        assert_eq!(ledger.len(), expected, "{order}");
        assert!(ledger.iter().all(|e| e.status == Status::Charged));
    }
}

#[tokio::test]
async fn forced_system_error_after_commit_answers_500_f0001_while_the_card_decided() {
    let sim = start_sim(None).await;
    // The card's own answer is committed; only the reply says system error.
    let cases = [
        (cards::SUCCESS, None, "charged"),
        (
            cards::DECLINE_T0005_ISSUER_REFUSED,
            Some("upstream hiccup"),
            "failed",
        ),
    ];
    for (card, message, committed) in cases {
        let token = sim.create_token(card);
        sim.force_next(
            ForceTarget::Token(token.clone()),
            ForcedOutcome::SystemErrorAfterCommit {
                message: message.map(str::to_string),
            },
        );

        let r = charge(&sim, &token, committed, 990).await;

        assert_eq!((r.status, r.code()), (500, "F0001"), "{card}");
        assert_eq!(r.data(), &json!({}));
        if let Some(message) = message {
            assert_eq!(r.json["message"], message);
        }
        assert_eq!(sim.ledger_for_order(committed).len(), 1, "{card}");
        assert_eq!(order_statuses(&sim, committed).await, [committed]);
    }
}

#[tokio::test]
async fn forced_unknown_for_any_charge_and_forced_order_query_failure() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    sim.force_next(
        ForceTarget::AnyCharge,
        ForcedOutcome::Unknown {
            settles: Settle::Failed,
        },
    );
    sim.force_next(
        ForceTarget::OrderQuery("q".into()),
        ForcedOutcome::Respond {
            code: "F0001".into(),
            http_status: 500,
            message: None,
        },
    );

    let c = charge(&sim, &token, "q", 100).await;
    let failed_query = get(&sim, "/order/q/transactions").await;
    let query = get(&sim, "/order/q/transactions").await;

    assert_eq!((c.status, c.code()), (409, "C026"));
    assert_eq!((failed_query.status, failed_query.code()), (500, "F0001"));
    assert_eq!(query.data()["transactions"][0]["status"], "charging");
    sim.settle_pending();
    assert_eq!(order_statuses(&sim, "q").await, ["failed"]);
}

#[tokio::test]
async fn eventual_consistency_shows_the_previous_status_for_the_lag() {
    let sim = start_sim(None).await;
    sim.freeze_clock(true);
    sim.set_consistency_lag(Duration::from_secs(3));
    let token = sim.create_token(cards::SUCCESS);

    let r = charge(&sim, &token, "lagging", 100).await;
    let id = r.data()["id"].as_str().unwrap().to_string();

    assert_eq!(r.code(), "S0000");
    assert_eq!(order_statuses(&sim, "lagging").await, ["charging"]);
    let single = get(&sim, &format!("/transactions/{id}")).await;
    assert_eq!(single.data()["status"], "charging");
    assert!(single.data().get("paidAt").is_none());
    assert_eq!(
        sim.ledger()[0].status,
        Status::Charged,
        "the ledger shows the truth"
    );

    sim.advance_clock(Duration::from_secs(3));
    assert_eq!(order_statuses(&sim, "lagging").await, ["charged"]);

    // Refunds lag the same way.
    let refund = post_json(
        &sim,
        &format!("/refunds/{id}"),
        &json!({"merchantId": MERCHANT}),
    )
    .await;
    assert_eq!(refund.data()["status"], "refunded");
    let q = get(&sim, &format!("/transactions/{id}")).await;
    assert_eq!(
        (
            q.data()["status"].as_str(),
            q.data()["refundAmount"].as_i64()
        ),
        (Some("charged"), Some(0))
    );
    sim.advance_clock(Duration::from_secs(3));
    assert_eq!(order_statuses(&sim, "lagging").await, ["refunded"]);
}

#[tokio::test]
async fn consistency_lag_shows_a_new_charge_as_charging_in_the_transaction_list_too() {
    let sim = start_frozen_sim().await;
    sim.set_consistency_lag(Duration::from_secs(3));
    let token = sim.create_token(cards::SUCCESS);

    charge(&sim, &token, "lagging", 100).await;

    assert_eq!(
        listed_statuses(&sim).await,
        ["charging"],
        "listed, not hidden"
    );
    sim.advance_clock(Duration::from_secs(3));
    assert_eq!(listed_statuses(&sim).await, ["charged"]);
}

#[tokio::test]
async fn listing_delay_hides_young_transactions_from_both_listings() {
    let sim = start_frozen_sim().await;
    sim.set_listing_delay(Duration::from_secs(30));
    let token = sim.create_token(cards::SUCCESS);
    let declined = sim.create_token(cards::DECLINE_T0004_INSUFFICIENT_FUNDS);

    let r = charge(&sim, &token, "young", 100).await;
    charge(&sim, &declined, "young", 100).await;
    let id = r.data()["id"].as_str().unwrap().to_string();

    assert_eq!(r.code(), "S0000");
    assert!(order_statuses(&sim, "young").await.is_empty());
    assert!(listed_statuses(&sim).await.is_empty());
    let single = get(&sim, &format!("/transactions/{id}")).await;
    assert_eq!(
        single.data()["status"],
        "charged",
        "a lookup by id still finds it"
    );
    assert_eq!(
        sim.ledger_for_order("young").len(),
        2,
        "the ledger shows the truth"
    );

    sim.advance_clock(Duration::from_millis(29_999));
    assert!(order_statuses(&sim, "young").await.is_empty());
    sim.advance_clock(Duration::from_millis(1));
    let mut statuses = order_statuses(&sim, "young").await;
    statuses.sort();
    assert_eq!(statuses, ["charged", "failed"]);
    assert_eq!(listed_statuses(&sim).await.len(), 2);
}

#[tokio::test]
async fn listing_delay_hides_only_the_young_ones() {
    let sim = start_frozen_sim().await;
    let token = sim.create_token(cards::SUCCESS);
    charge(&sim, &token, "A1", 100).await;
    sim.advance_clock(Duration::from_secs(20));
    sim.set_listing_delay(Duration::from_secs(15));

    charge(&sim, &token, "A1", 100).await;

    assert_eq!(order_statuses(&sim, "A1").await.len(), 1);
    assert_eq!(sim.ledger_for_order("A1").len(), 2);
    sim.set_listing_delay(Duration::ZERO);
    assert_eq!(order_statuses(&sim, "A1").await.len(), 2);
}

#[tokio::test]
async fn time_knobs_beyond_the_calendar_hide_or_lag_everything_without_failing() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let id = charged(&sim, &token, "far", 100).await;

    sim.update_knobs(|k| {
        k.listing_delay_ms = u64::MAX;
        k.consistency_lag_ms = u64::MAX;
    });

    assert!(order_statuses(&sim, "far").await.is_empty());
    let single = get(&sim, &format!("/transactions/{id}")).await;
    assert_eq!(single.data()["status"], "charging");
}

#[tokio::test]
async fn fixed_latency_delays_every_api_call() {
    let sim = start_sim(None).await;
    sim.set_latency(Duration::from_millis(120));

    let started = tokio::time::Instant::now();
    let r = get(&sim, "/order/x/transactions").await;

    assert_eq!(r.code(), "S0000");
    assert!(started.elapsed() >= Duration::from_millis(120));
    sim.set_latency(Duration::ZERO);
    assert_eq!(sim.knobs().latency_ms, 0);
}
