//! What an idempotency key answers: replays, refusals, concurrency, expiry.

use super::*;

#[tokio::test]
async fn the_first_reply_is_stored_and_replayed_without_a_second_charge() {
    // GIVEN a saved card WHEN a charge is asked twice with one key
    let w = World::new(FakeOen::default()).await;
    let first = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    let again = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    // THEN 201 once, the same reply replayed, one transaction at Oen
    assert_eq!((first.status, first.replayed), (201, false));
    assert_eq!((again.status, again.replayed), (201, true));
    assert_eq!(again.body, first.body);
    assert_eq!(first.body["status"], "succeeded");
    assert_eq!(first.body["amount"], 150);
    let charge = w.only_charge();
    assert_eq!(first.body["id"], charge.id.as_str());
    assert_eq!(
        first.body["statusUrl"],
        format!("/v1/charges/{}", charge.id)
    );
    assert_eq!(w.oen.calls(), 1);
    assert_eq!(w.oen.ledger_for(&charge.order_id), ["charged"]);
    assert_eq!(w.oen.tokens_seen.lock().unwrap().as_slice(), [TOKEN]);
    assert_eq!(w.event_types(), ["charge.succeeded"]);
    assert_eq!(
        charge.next_action_at, None,
        "a paid charge leaves the due index"
    );
    // The charge reads back as the reply said.
    let view = get(&w.deps(), charge.id.as_str()).await.unwrap();
    assert_eq!(serde_json::to_value(&view).unwrap(), first.body);
    // Nothing answered or kept for the charge holds the token or its fingerprint.
    let card = w.store.cards_of(&charge.customer).await.unwrap().remove(0);
    let fingerprint = card.value.token_fingerprint.clone();
    let key = w
        .store
        .idempotency(&charge.merchant, &charge.idempotency_key);
    let key = key.await.unwrap().unwrap().value;
    for text in [
        first.body.to_string(),
        format!("{key:?}"),
        format!("{charge:?}"),
    ] {
        assert!(
            !text.contains(TOKEN) && !text.contains(&fingerprint),
            "{text}"
        );
    }
    assert!(!format!("{:?}", w.store.snapshot()).contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_requests_charge_once_and_the_others_replay_or_wait() {
    // GIVEN a slow Oen WHEN twenty requests with one key race
    let oen = FakeOen::default();
    *oen.latency.lock().unwrap() = StdDuration::from_millis(100);
    let w = Arc::new(World::new(oen).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let deps = w.deps();
            create(
                &deps,
                Some(KEY),
                &request(150, "inv-1"),
                &ctx(&format!("api-{i}")),
            )
            .await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    // THEN one charge at Oen; every caller got that charge's reply or 409
    assert_eq!(w.oen.calls(), 1);
    let charge = w.only_charge();
    assert_eq!(w.oen.ledger_for(&charge.order_id), ["charged"]);
    let fresh = answers
        .iter()
        .filter(|a| matches!(a, Ok(r) if !r.replayed))
        .count();
    assert_eq!(fresh, 1, "{answers:?}");
    for a in &answers {
        match a {
            Ok(r) => assert_eq!(
                (r.status, &r.body["id"]),
                (201, &serde_json::json!(charge.id))
            ),
            Err(e) => assert_eq!((e.status(), e.code()), (409, "idempotency_key_in_use")),
        }
    }
}

#[tokio::test]
async fn the_same_key_with_other_parameters_is_refused_and_charges_nothing() {
    let w = World::new(FakeOen::default()).await;
    let first = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    for other in [request(151, "inv-1"), request(150, "inv-2")] {
        let err = w.create(KEY, &other).await.unwrap_err();
        assert_eq!((err.status(), err.code()), (422, "idempotency_key_reused"));
        assert_eq!(err.body()["error"]["code"], "idempotency_key_reused");
    }
    // The same parameters spelt differently are the same request.
    let respelt = OneOffRequest::from_json(
        br#"{"reference":"inv-1","amount":150,"description":"Late fee","customer":"cust-1",
             "productDetails":[{"productionCode":"ONEOFF","description":"Late fee",
                                "quantity":1,"unit":"item","unitPrice":150}]}"#,
    )
    .unwrap();
    let replay = w.create(KEY, &respelt).await.unwrap();
    assert_eq!((replay.status, replay.replayed), (201, true));
    assert_eq!(replay.body, first.body);
    assert_eq!(w.oen.calls(), 1);
    assert_eq!(w.oen.charged_transactions(), 1);
}

#[tokio::test]
async fn a_key_in_use_by_a_running_request_gets_409() {
    // GIVEN a request whose charge call is still running (a lease well within its term)
    let w = World::new(FakeOen::answering(&[Answer::HangAfterCommit])).await;
    let deps_world = Arc::new(w);
    let w = deps_world.clone();
    let running = tokio::spawn(async move {
        let deps = w.deps();
        create(&deps, Some(KEY), &request(150, "inv-1"), &ctx("api-1")).await
    });
    let w = deps_world;
    wait_for_ledger(&w.oen, 1).await;
    // WHEN the same key comes again THEN 409, and a different request with it is still 422
    let err = w.create(KEY, &request(150, "inv-1")).await.unwrap_err();
    assert_eq!(err.status(), 409);
    let err = w.create(KEY, &request(999, "inv-1")).await.unwrap_err();
    assert_eq!(err.status(), 422);
    running.abort();
    assert_eq!(w.oen.calls(), 1);
}

#[tokio::test]
async fn after_24_hours_the_key_names_a_new_charge() {
    let w = World::new(FakeOen::default()).await;
    let first = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    w.clock.advance(KEY_LIFETIME - Duration::seconds(1));
    let replay = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(
        w.create(KEY, &request(99, "x")).await.unwrap_err().status(),
        422
    );
    // The expired record is still stored (as DynamoDB's lagging TTL, or moto, would keep it).
    w.clock.advance(Duration::seconds(1));
    let second = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    assert_eq!((second.status, second.replayed), (201, false));
    assert_ne!(second.body["id"], first.body["id"]);
    assert_ne!(second.body["orderId"], first.body["orderId"]);
    assert_eq!(w.oen.charged_transactions(), 2);
    // And the new request is the key's from now on.
    let replay = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    assert_eq!((replay.replayed, &replay.body), (true, &second.body));
}

#[tokio::test]
async fn bad_keys_and_customers_without_a_card_are_refused_before_anything_is_stored() {
    let w = World::new(FakeOen::default()).await;
    let req = request(150, "inv-1");
    let missing = create(&w.deps(), None, &req, &ctx("api"))
        .await
        .unwrap_err();
    assert_eq!(
        (missing.status(), missing.code()),
        (400, "idempotency_key_missing")
    );
    for bad in ["short", "has space in it", &"k".repeat(129)] {
        let err = w.create(bad, &req).await.unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (400, "invalid_request"),
            "{bad}"
        );
    }
    let stranger = OneOffRequest::from_json(
        br#"{"customer":"cust-without-card","amount":150,"description":"Late fee"}"#,
    )
    .unwrap();
    let err = w.create(KEY, &stranger).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (404, "no_saved_card"));
    assert_eq!(w.store.snapshot().len(), 1, "only the card is stored");
    assert_eq!(w.oen.calls(), 0);
    // The key was not used up: the right customer charges with it.
    assert_eq!(w.create(KEY, &req).await.unwrap().status, 201);
}

#[tokio::test]
async fn the_newest_card_is_charged_and_get_answers_only_known_charges() {
    let w = World::new(FakeOen::default()).await;
    w.clock.advance(Duration::days(1));
    w.save_card("cust-1").await;
    let newest = w
        .store
        .cards_of(&CustomerId::parse("cust-1").unwrap())
        .await
        .unwrap()
        .into_iter()
        .max_by_key(|c| c.value.created_at)
        .unwrap();
    w.create(KEY, &request(150, "inv-1")).await.unwrap();
    assert_eq!(w.only_charge().card, newest.value.binding);
    for unknown in ["nope", "AAAAAAAAAAAAAAAAAAAA"] {
        let err = get(&w.deps(), unknown).await.unwrap_err();
        assert_eq!((err.status(), err.code()), (404, "charge_not_found"));
    }
}

#[tokio::test]
async fn a_one_off_charge_sends_the_payer_its_card_was_bound_with() {
    // GIVEN the saved card was bound through a link with an e-mail, a name and invoiceInfo
    let w = World::new(FakeOen::default()).await;
    let customer = CustomerId::parse("cust-1").unwrap();
    let card = w.store.cards_of(&customer).await.unwrap().remove(0);
    let payer = crate::domain::Payer {
        email: Some(crate::domain::Email::parse("wang@shop.example").unwrap()),
        name: Some(crate::domain::PayerName::parse("Wang").unwrap()),
        invoice_info: Some(crate::domain::InvoiceInfo::parse(r#"{"donate":"919"}"#).unwrap()),
    };
    let mut with_payer = card.value;
    with_payer.payer = payer.clone();
    let put = crate::store::Put::new(with_payer, crate::store::Expect::Version(card.version));
    w.store.commit(vec![put]).await.unwrap();
    // WHEN a one-off charge is made THEN Oen gets that payer with it
    let reply = w.create(KEY, &request(150, "inv-1")).await.unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(w.oen.payers_seen.lock().unwrap().clone(), [payer]);
    // AND nothing answered about the charge repeats the e-mail
    assert!(!reply.body.to_string().contains("wang@"), "{}", reply.body);
}
