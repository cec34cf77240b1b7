//! Refunds that go wrong: answers lost or wrong after the refund was committed, and refunds
//! the acquirer refuses.

mod common;

use common::*;
use oen_sim::{cards, ForceTarget, ForcedOutcome, Simulator, Status};
use serde_json::json;

/// A simulator with one paid transaction of NT$1200 whose next refund meets `outcome`;
/// returns it and the transaction number.
async fn paid_forcing(outcome: ForcedOutcome) -> (Simulator, String) {
    let (sim, mut numbers) = start_sim_with_paid(&[1200]).await;
    let number = numbers.remove(0);
    sim.force_next(ForceTarget::Refund(number.clone()), outcome);
    (sim, number)
}

/// The transaction as `GET /transactions/{id}` shows it: status and refundAmount.
async fn as_queried(sim: &Simulator, number: &str) -> (String, i64) {
    let r = get(sim, &format!("/transactions/{number}")).await;
    assert_eq!(r.code(), "S0000", "{}", r.text);
    (
        r.data()["status"].as_str().unwrap().to_string(),
        r.data()["refundAmount"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn refund_timing_out_after_commit_answers_504_yet_the_money_went_back() {
    let (sim, number) = paid_forcing(ForcedOutcome::GatewayTimeoutAfterCommit).await;

    let lost = refund(&sim, &number, Some(500)).await;
    let resent = refund(&sim, &number, Some(500)).await;

    assert_eq!(lost.status, 504);
    assert_eq!(lost.json, json!({"message": "Endpoint request timed out"}));
    assert_eq!(as_queried(&sim, &number).await, ("refunded".into(), 500));
    assert_eq!(
        (resent.status, resent.code()),
        (400, "V0002"),
        "one successful refund per transaction: a blind resend is refused"
    );
    let entry = &sim.ledger()[0];
    assert_eq!((entry.status, entry.refund_amount), (Status::Refunded, 500));
}

#[tokio::test]
async fn refund_whose_connection_drops_after_commit_was_made() {
    let (sim, number) = paid_forcing(ForcedOutcome::DropConnectionAfterCommit).await;

    let result = try_post_json(&sim, &format!("/refunds/{number}"), &refund_body(None)).await;

    let err = result.expect_err("the connection must close without a response");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(as_queried(&sim, &number).await, ("refunded".into(), 1200));
}

#[tokio::test]
async fn refund_answered_500_f0001_after_commit_was_made() {
    let (sim, number) = paid_forcing(ForcedOutcome::SystemErrorAfterCommit { message: None }).await;

    let r = refund(&sim, &number, None).await;

    assert_eq!((r.status, r.code()), (500, "F0001"));
    assert_eq!(r.data(), &json!({}));
    assert_eq!(as_queried(&sim, &number).await, ("refunded".into(), 1200));
}

#[tokio::test]
async fn r0001_refunds_nothing_and_a_later_refund_can_succeed() {
    let (sim, number) = paid_forcing(ForcedOutcome::Respond {
        code: "R0001".into(),
        http_status: 400,
        message: None,
    })
    .await;

    let refused = refund(&sim, &number, None).await;

    assert_eq!((refused.status, refused.code()), (400, "R0001"));
    assert_eq!(refused.json["message"], "Refund failed at the acquirer");
    assert_eq!(as_queried(&sim, &number).await, ("charged".into(), 0));
    assert_eq!(sim.ledger()[0].status, Status::Charged);
    let later = refund(&sim, &number, None).await;
    assert_eq!(later.code(), "S0000");
    assert_eq!(as_queried(&sim, &number).await, ("refunded".into(), 1200));
}

#[tokio::test]
async fn refund_failing_before_commit_refunds_nothing() {
    let (sim, number) = paid_forcing(ForcedOutcome::GatewayTimeoutBeforeCommit).await;
    sim.force_next(
        ForceTarget::AnyRefund,
        ForcedOutcome::DropConnectionBeforeCommit,
    );

    let timed_out = refund(&sim, &number, None).await;
    let dropped = try_post_json(&sim, &format!("/refunds/{number}"), &refund_body(None)).await;

    assert_eq!(timed_out.status, 504);
    assert!(dropped.is_err());
    assert_eq!(as_queried(&sim, &number).await, ("charged".into(), 0));
}

#[tokio::test]
async fn a_forced_refund_outcome_waits_for_its_own_transaction() {
    let (sim, numbers) = start_sim_with_paid(&[100, 100]).await;
    let (target, other) = (&numbers[0], &numbers[1]);
    sim.force_next(
        ForceTarget::Refund(target.clone()),
        ForcedOutcome::SystemErrorAfterCommit { message: None },
    );
    sim.force_next(
        ForceTarget::AnyCharge,
        ForcedOutcome::DropConnectionBeforeCommit,
    );

    let untouched = refund(&sim, other, None).await;
    let forced = refund(&sim, target, None).await;

    assert_eq!(
        untouched.code(),
        "S0000",
        "neither the other refund's force nor a charge's applies"
    );
    assert_eq!((forced.status, forced.code()), (500, "F0001"));
}

#[tokio::test]
async fn a_refund_the_transaction_refuses_leaves_the_forced_outcome_for_the_next_one() {
    let sim = start_sim(None).await;
    let declined = sim.create_token(cards::DECLINE_T0004_INSUFFICIENT_FUNDS);
    charge(&sim, &declined, "unpaid", 100).await;
    let unpaid = sim.ledger_for_order("unpaid")[0].id.clone();
    let token = sim.create_token(cards::SUCCESS);
    let paid = charged(&sim, &token, "paid", 100).await;
    sim.force_next(
        ForceTarget::AnyRefund,
        ForcedOutcome::GatewayTimeoutAfterCommit,
    );

    let refused = refund(&sim, &unpaid, None).await;
    let over = refund(&sim, &paid, Some(101)).await;
    let forced = refund(&sim, &paid, None).await;

    assert_eq!((refused.status, refused.code()), (400, "V0002"));
    assert_eq!((over.status, over.code()), (400, "V0001"));
    assert_eq!(forced.status, 504);
    assert_eq!(as_queried(&sim, &paid).await, ("refunded".into(), 100));
}
