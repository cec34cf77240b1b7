//! How each way a charge ends is written, replayed and reconciled (by a later request with
//! the key, or by the charger's janitor).

use super::*;

#[tokio::test]
async fn a_holder_dropped_after_sending_is_answered_from_the_order_never_charged_again() {
    // GIVEN a request that sent the charge (Oen committed it) and died before writing anything
    let w = Arc::new(World::new(FakeOen::answering(&[Answer::HangAfterCommit])).await);
    let holder = {
        let w = w.clone();
        tokio::spawn(async move {
            let deps = w.deps();
            create(&deps, Some(KEY), &request(150, "inv-1"), &ctx("doomed")).await
        })
    };
    wait_for_ledger(&w.oen, 1).await;
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
    let charge = w.only_charge();
    assert!(matches!(charge.state, ChargeState::Charging { .. }));
    // WHEN the key comes again after the lease and once Oen's listing can be trusted
    w.clock
        .advance(Duration::seconds(91) + Duration::minutes(5));
    let reply = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    // THEN the answer comes from the order: paid, with the one transaction, no new call
    assert_eq!((reply.status, reply.replayed), (201, false));
    assert_eq!(reply.body["status"], "succeeded");
    assert_eq!(w.oen.calls(), 1);
    assert_eq!(w.oen.ledger_for(&charge.order_id), ["charged"]);
    let events = w.events.all();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["reconciled"], true);
}

#[tokio::test]
async fn a_takeover_before_the_listing_can_be_trusted_answers_202_and_the_janitor_settles() {
    let w = Arc::new(World::new(FakeOen::answering(&[Answer::HangAfterCommit])).await);
    let holder = {
        let w = w.clone();
        tokio::spawn(async move {
            let deps = w.deps();
            create(&deps, Some(KEY), &request(150, "inv-1"), &ctx("doomed")).await
        })
    };
    wait_for_ledger(&w.oen, 1).await;
    holder.abort();
    // Right after the lease, Oen's listing (which lags) is too young to rule anything out.
    w.oen.listing_hidden.store(true, Ordering::SeqCst);
    w.clock.advance(Duration::seconds(91));
    let reply = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    assert_eq!(
        (reply.status, &reply.body["status"]),
        (202, &serde_json::json!("pending"))
    );
    assert_eq!(w.oen.calls(), 1);
    // The janitor settles it when due, from the order.
    w.oen.listing_hidden.store(false, Ordering::SeqCst);
    w.clock.advance(Duration::minutes(5));
    let outcomes = w.run_charger().await;
    assert!(
        matches!(
            outcomes.as_slice(),
            [WorkOutcome::Paid { charged: false, .. }]
        ),
        "{outcomes:?}"
    );
    let charge = w.only_charge();
    assert_eq!(w.oen.ledger_for(&charge.order_id), ["charged"]);
    assert_eq!(w.oen.calls(), 1);
    // The key replays its first reply; the status URL shows the outcome.
    let replay = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    assert_eq!((replay.status, replay.replayed), (202, true));
    let view = get(&w.deps(), charge.id.as_str()).await.unwrap();
    assert_eq!(view.status, ChargeStatus::Succeeded);
}

#[tokio::test]
async fn unknown_outcomes_answer_202_and_the_janitor_reconciles_them_to_paid() {
    for answer in [
        Answer::C026,
        Answer::TimeoutAfterCommit,
        Answer::DropAfterCommit,
    ] {
        // GIVEN Oen answers the first charge with an unknown outcome
        let w = World::new(FakeOen::answering(&[answer])).await;
        let first = w.create(KEY, &request(150, "inv-1")).await.unwrap();
        assert_eq!(first.status, 202, "{answer:?}");
        assert_eq!(first.body["status"], "pending");
        let charge = w.only_charge();
        assert_eq!(
            first.body["statusUrl"],
            format!("/v1/charges/{}", charge.id)
        );
        // A replay is the same 202 and charges nothing.
        let again = w.create(KEY, &request(150, "inv-1")).await.unwrap();
        assert_eq!(
            (again.status, again.replayed, &again.body),
            (202, true, &first.body)
        );
        assert_eq!(w.oen.calls(), 1);
        // Not before its reconcile time.
        assert!(w.run_charger().await.is_empty(), "{answer:?}");
        w.oen.settle();
        w.clock.advance(Duration::minutes(5));
        let outcomes = w.run_charger().await;
        assert!(
            matches!(
                outcomes.as_slice(),
                [WorkOutcome::Paid { charged: false, .. }]
            ),
            "{answer:?}: {outcomes:?}"
        );
        assert_eq!(w.oen.calls(), 1);
        assert_eq!(w.oen.ledger_for(&charge.order_id), ["charged"]);
        assert!(matches!(w.only_charge().state, ChargeState::Paid { .. }));
        assert_eq!(w.only_charge().next_action_at, None);
        assert_eq!(w.event_types(), ["charge.unknown", "charge.succeeded"]);
        assert!(
            w.run_charger().await.is_empty(),
            "settled: off the due index"
        );
    }
}

#[tokio::test]
async fn an_unknown_outcome_still_in_flight_backs_off_and_is_never_charged_blind() {
    let w = World::new(FakeOen::answering(&[Answer::C026])).await;
    assert_eq!(
        w.create(KEY, &request(150, "inv-1")).await.unwrap().status,
        202
    );
    w.clock.advance(Duration::minutes(5));
    let outcomes = w.run_charger().await;
    let [WorkOutcome::Unknown { reconcile_at }] = outcomes.as_slice() else {
        panic!("{outcomes:?}")
    };
    assert_eq!(*reconcile_at, w.clock.now() + Duration::hours(1));
    assert!(matches!(
        w.only_charge().state,
        ChargeState::Unknown { checks: 1, .. }
    ));
    assert_eq!(w.oen.calls(), 1);
}

#[tokio::test]
async fn a_decline_is_final_stored_and_replayed() {
    for (code, hard) in [("T0004", false), ("T0003", true)] {
        let w = World::new(FakeOen::answering(&[Answer::Decline(code, hard)])).await;
        let first = w.create(KEY, &request(150, "inv-1")).await.unwrap();
        assert_eq!(first.status, 402);
        let error = &first.body["error"];
        assert_eq!(error["code"], "card_declined");
        assert_eq!(error["declineCode"], code);
        assert_eq!(error["charge"]["status"], "failed");
        assert_eq!(error["charge"]["failure"]["hard"], hard);
        let again = w.create(KEY, &request(150, "inv-1")).await.unwrap();
        assert_eq!(
            (again.status, again.replayed, &again.body),
            (402, true, &first.body)
        );
        assert_eq!(w.oen.calls(), 1);
        assert_eq!(w.oen.ledger_for(&w.only_charge().order_id), ["failed"]);
        assert_eq!(w.event_types(), ["charge.failed"]);
        assert_eq!(w.events.all()[0].data["code"], code);
    }
}

#[tokio::test]
async fn a_config_error_is_ours_not_stored_and_a_retry_charges_the_same_order() {
    // GIVEN Oen refuses our API key once (a rotation not yet deployed)
    let w = World::new(FakeOen::answering(&[Answer::Unauthorized])).await;
    let err = w.create(KEY, &request(150, "inv-1")).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (502, "payment_gateway_misconfigured")
    );
    let order = w.only_charge().order_id;
    assert!(matches!(
        w.only_charge().state,
        ChargeState::NotCharged { .. }
    ));
    // WHEN the merchant retries with the same key THEN it charges, under the same order
    let retry = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    assert_eq!((retry.status, retry.replayed), (201, false));
    assert_eq!(w.only_charge().order_id, order);
    assert_eq!(w.oen.ledger_for(&order), ["charged"]);
    assert_eq!(w.oen.calls(), 2);
}

#[tokio::test]
async fn oen_unreachable_is_503_and_leaves_the_key_free() {
    let w = World::new(FakeOen::answering(&[Answer::NotSent])).await;
    let err = w.create(KEY, &request(150, "inv-1")).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (503, "payment_gateway_unavailable")
    );
    assert!(w.oen.ledger_for(&w.only_charge().order_id).is_empty());
    let view = get(&w.deps(), w.only_charge().id.as_str()).await.unwrap();
    assert_eq!(view.status, ChargeStatus::Failed);
    let retry = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    assert_eq!(retry.status, 201);
    assert_eq!(w.oen.charged_transactions(), 1);
}

#[tokio::test]
async fn the_janitor_releases_a_charge_that_never_reached_oen_and_the_key_then_charges() {
    // GIVEN a request that claimed its charge and died before sending anything
    let w = World::new(FakeOen::default()).await;
    let deps = w.deps();
    let key = IdempotencyKey::parse(KEY).unwrap();
    let req = request(150, "inv-1");
    let doomed = ctx("doomed");
    let held = begin(
        &deps,
        &key,
        &req.canonical_hash(),
        &req,
        None,
        &doomed,
        t0(),
    )
    .await
    .unwrap()
    .unwrap();
    drop(held);
    // WHEN the janitor looks after the lease, once the listing can be trusted
    w.clock.advance(Duration::seconds(91));
    let outcomes = w.run_charger().await;
    assert!(
        matches!(outcomes.as_slice(), [WorkOutcome::Unknown { .. }]),
        "{outcomes:?}"
    );
    w.clock.advance(Duration::minutes(5));
    assert_eq!(w.run_charger().await, [WorkOutcome::Released]);
    assert_eq!(w.oen.calls(), 0, "the janitor never charges");
    assert_eq!(w.event_types(), ["charge.failed"]);
    // THEN the merchant's retry with the key charges the same order, once
    let order = w.only_charge().order_id;
    let reply = w.create(KEY, &req).await.unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(w.oen.ledger_for(&order), ["charged"]);
}

#[tokio::test]
async fn planning_pages_through_every_due_charge_of_a_shard() {
    // GIVEN seven unknown charges due in one shard, and planning pages of two
    let mut w = World::new(FakeOen::default()).await;
    w.charge_deps.policy.plan_page = 2;
    let shard = 5;
    let ids = crate::store::contract::charge_ids_in_shard(shard, 7);
    let since = t0() - Duration::minutes(10);
    let puts: Vec<_> = ids
        .iter()
        .map(|id| {
            let mut c = crate::store::contract::one_off_charge_with_id(id.clone(), "cust-1", None);
            c.state = ChargeState::Unknown {
                since,
                reconcile_at: t0(),
                checks: 0,
            };
            c.next_action_at = Some(t0());
            crate::store::Put::new(c, crate::store::Expect::Absent)
        })
        .collect();
    w.charge_deps.store.commit(puts).await.unwrap();
    // WHEN the charger runs THEN each is reconciled once (Oen has nothing: released)
    let outcomes = w.run_charger().await;
    assert_eq!(outcomes, vec![WorkOutcome::Released; 7]);
    assert_eq!(w.oen.calls(), 0);
    assert!(w.run_charger().await.is_empty());
}
