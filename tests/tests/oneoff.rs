//! One-off charges with an Idempotency-Key against moto (DynamoDB, KMS) and the Oen simulator:
//! every scenario ends on the simulator's ledger for the charge's order.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use oen_pay::charging::{WorkContext, WorkOutcome};
use oen_pay::oneoff::{self, ChargeStatus, OneOffDeps, OneOffError, OneOffRequest, Reply};
use oen_pay::store::StoreExt;
use oen_pay_integration::stack::{stack, Stack};
use oen_sim::{cards, ForceTarget, ForcedOutcome};

const KEY: &str = "4f0c6a1e-8d2b-4c1a-9e57-0b1d2c3e4f5a";

fn ctx(owner: &str) -> WorkContext {
    WorkContext {
        owner: owner.into(),
        deadline: None,
    }
}

fn request(customer: &str, amount: u32) -> OneOffRequest {
    let json = serde_json::json!({
        "customer": customer,
        "amount": amount,
        "description": "Extra seats",
        "reference": "inv-2027-0042",
        "productDetails": [{
            "productionCode": "SEAT",
            "description": "Extra seat",
            "quantity": 2,
            "unit": "seat",
            "unitPrice": amount / 2,
        }],
    });
    OneOffRequest::from_json(json.to_string().as_bytes()).unwrap()
}

fn deps(s: &Stack) -> OneOffDeps<'_> {
    OneOffDeps::new(&s.deps.adapters, &s.deps.policy, "merchant-api")
}

async fn create(s: &Stack, key: &str, req: &OneOffRequest) -> Result<Reply, OneOffError> {
    oneoff::create(&deps(s), Some(key), req, &ctx("api-request-1")).await
}

/// A customer with a saved card (bound on a plan with a trial, so that no subscription charge
/// is due while a test runs the charger).
async fn customer_with_card(s: &Stack, customer: &str, card: &str) {
    s.bind(customer, "trial", card).await;
}

/// The statuses the simulator holds for the order of the charge `reply` is about.
fn ledger_of(s: &Stack, reply: &serde_json::Value) -> Vec<String> {
    let charge = if reply["error"].is_object() {
        &reply["error"]["charge"]
    } else {
        reply
    };
    let order = charge["orderId"]
        .as_str()
        .expect("the reply names the order");
    s.sim
        .ledger_for_order(order)
        .into_iter()
        .map(|e| e.status.as_str().to_owned())
        .collect()
}

/// Identical requests arriving while the first is at Oen. The first claims the key before the
/// others start: moto restores a snapshot of every table when a transaction fails, which can
/// undo a concurrent winner's claim, so the simultaneous race for the key runs on the memory
/// store (`merchant_api`'s concurrent test and the store contract). Here the others read the key
/// on DynamoDB at the same time as each other and as the first's charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_requests_while_the_first_is_at_oen_make_one_oen_transaction() {
    let s = Arc::new(stack().await);
    customer_with_card(&s, "cust-race", cards::SUCCESS).await;
    // A slow Oen keeps the first request in flight while the others arrive.
    s.sim.set_latency(StdDuration::from_millis(1500));
    let spawn = |i: usize| {
        let s = s.clone();
        tokio::spawn(async move {
            let deps = deps(&s);
            let req = request("cust-race", 300);
            oneoff::create(&deps, Some(KEY), &req, &ctx(&format!("api-{i}"))).await
        })
    };
    let mut tasks = vec![spawn(0)];
    let key = oen_pay::domain::IdempotencyKey::parse(KEY).unwrap();
    let claimed = Instant::now();
    while s
        .deps
        .adapters
        .store
        .idempotency(&s.deps.adapters.merchant, &key)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            claimed.elapsed() < StdDuration::from_secs(30),
            "never claimed"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    tasks.extend((1..12).map(spawn));
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    s.sim.set_latency(StdDuration::ZERO);
    let fresh: Vec<&Reply> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .filter(|r| !r.replayed)
        .collect();
    let [first] = fresh.as_slice() else {
        panic!("one request charges: {answers:?}")
    };
    assert_eq!(first.status, 201);
    for a in &answers {
        match a {
            Ok(r) => assert_eq!((r.status, &r.body), (201, &first.body)),
            Err(e) => assert_eq!(e.code(), "idempotency_key_in_use", "{e:?}"),
        }
    }
    // Every later request replays it.
    let late = create(&s, KEY, &request("cust-race", 300)).await.unwrap();
    assert_eq!((late.replayed, &late.body), (true, &first.body));
    assert_eq!(ledger_of(&s, &first.body), ["charged"]);
    assert_eq!(s.sim.ledger().len(), 1);
    // Neither our table nor the reply holds the card token.
    let tokens: Vec<String> = s.sim.ledger().into_iter().map(|e| e.token).collect();
    let table =
        oen_pay_integration::scan_all(&oen_pay_integration::dynamo_client().await, &s.table).await;
    let dump = format!("{table:?} {}", first.body);
    assert!(tokens.iter().all(|t| !dump.contains(t.as_str())));
}

#[tokio::test]
async fn a_mismatched_replay_is_422_and_charges_nothing() {
    let s = stack().await;
    customer_with_card(&s, "cust-mismatch", cards::SUCCESS).await;
    let first = create(&s, KEY, &request("cust-mismatch", 300))
        .await
        .unwrap();
    let err = create(&s, KEY, &request("cust-mismatch", 302))
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (422, "idempotency_key_reused"));
    assert_eq!(ledger_of(&s, &first.body), ["charged"]);
    assert_eq!(s.sim.ledger().len(), 1);
}

/// The charge answered 202 is reconciled by the charger's janitor to paid, without a second
/// charge; `settle` makes Oen's transaction final.
async fn unknown_then_reconciled_paid(s: &Stack, customer: &str, settle: impl Fn()) {
    let first = create(s, KEY, &request(customer, 300)).await.unwrap();
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.body["status"], "pending");
    let id = first.body["id"].as_str().unwrap().to_owned();
    assert_eq!(first.body["statusUrl"], format!("/v1/charges/{id}"));
    // A replay is the stored 202 and sends nothing to Oen.
    let again = create(s, KEY, &request(customer, 300)).await.unwrap();
    assert_eq!(
        (again.status, again.replayed, &again.body),
        (202, true, &first.body)
    );
    assert_eq!(s.sim.ledger().len(), 1);
    assert!(s.run().await.is_empty(), "reconciled only when due");
    settle();
    s.advance(Duration::minutes(5));
    let outcomes = s.run().await;
    assert!(
        matches!(
            outcomes.as_slice(),
            [WorkOutcome::Paid { charged: false, .. }]
        ),
        "{outcomes:?}"
    );
    assert_eq!(ledger_of(s, &first.body), ["charged"]);
    assert_eq!(
        s.sim.ledger().len(),
        1,
        "reconciled without a second charge"
    );
    let view = oneoff::get(&deps(s), &id).await.unwrap();
    assert_eq!(view.status, ChargeStatus::Succeeded);
    let paid = s.sim.ledger_for_order(&view.order_id).remove(0);
    assert_eq!(view.transaction.as_deref(), Some(paid.id.as_str()));
    let kinds: Vec<String> = s.events.all().iter().map(|e| e.kind.to_string()).collect();
    assert!(
        kinds.ends_with(&["charge.unknown".into(), "charge.succeeded".into()]),
        "{kinds:?}"
    );
    assert!(s.run().await.is_empty(), "settled: off the due index");
}

#[tokio::test]
async fn c026_on_the_first_try_is_202_and_the_janitor_settles_it_paid() {
    let s = stack().await;
    customer_with_card(&s, "cust-c026", cards::UNKNOWN_C026_THEN_CHARGED).await;
    unknown_then_reconciled_paid(&s, "cust-c026", || {
        s.sim.settle_pending();
    })
    .await;
}

#[tokio::test]
async fn a_504_after_commit_on_the_first_try_is_202_and_reconciled_paid() {
    let s = stack().await;
    customer_with_card(&s, "cust-504", cards::GATEWAY_TIMEOUT_AFTER_COMMIT).await;
    unknown_then_reconciled_paid(&s, "cust-504", || {}).await;
}

#[tokio::test]
async fn a_dropped_connection_after_commit_is_202_and_reconciled_paid() {
    let s = stack().await;
    customer_with_card(&s, "cust-drop", cards::CONNECTION_DROP_AFTER_COMMIT).await;
    unknown_then_reconciled_paid(&s, "cust-drop", || {}).await;
}

#[tokio::test]
async fn a_504_before_anything_was_charged_is_reconciled_to_not_charged_never_charged_blind() {
    let s = stack().await;
    customer_with_card(&s, "cust-504-none", cards::SUCCESS).await;
    s.sim.force_next(
        ForceTarget::AnyCharge,
        ForcedOutcome::GatewayTimeoutBeforeCommit,
    );
    let first = create(&s, KEY, &request("cust-504-none", 300))
        .await
        .unwrap();
    assert_eq!(first.status, 202);
    s.advance(Duration::minutes(5));
    assert_eq!(s.run().await, [WorkOutcome::Released]);
    assert!(s.sim.ledger().is_empty(), "the janitor never charges");
    let id = first.body["id"].as_str().unwrap();
    let view = oneoff::get(&deps(&s), id).await.unwrap();
    assert_eq!(view.status, ChargeStatus::Failed);
    assert_eq!(view.failure.map(|f| f.code).as_deref(), Some("not_charged"));
    // The key keeps replaying its first reply; nothing more reaches Oen.
    let again = create(&s, KEY, &request("cust-504-none", 300))
        .await
        .unwrap();
    assert_eq!((again.status, again.replayed), (202, true));
    assert!(s.sim.ledger().is_empty());
}

/// A request for `customer` that sent its charge (Oen committed it and holds its answer) and
/// then died: nothing of its outcome is written.
async fn killed_after_sending(s: &Arc<Stack>, customer: &str) {
    customer_with_card(s, customer, cards::SUCCESS).await;
    s.sim.set_gateway_timeout_delay(StdDuration::from_secs(60));
    s.sim.force_next(
        ForceTarget::AnyCharge,
        ForcedOutcome::GatewayTimeoutAfterCommit,
    );
    let holder = {
        let (s, customer) = (s.clone(), customer.to_owned());
        tokio::spawn(async move {
            let deps = deps(&s);
            let req = request(&customer, 300);
            oneoff::create(&deps, Some(KEY), &req, &ctx("doomed")).await
        })
    };
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while s.sim.ledger().is_empty() {
        assert!(Instant::now() < deadline, "the request never reached Oen");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_after_sending_is_reconciled_by_the_janitor_then_the_key_answers() {
    let s = Arc::new(stack().await);
    killed_after_sending(&s, "cust-vanished").await;
    // No request comes back. While the lease runs the janitor leaves it alone; after it, the
    // charger's janitor settles the charge from the order (paid shows at once).
    assert!(s.run().await.is_empty(), "not due while the lease runs");
    s.advance(Duration::seconds(91));
    let outcomes = s.run().await;
    assert!(
        matches!(
            outcomes.as_slice(),
            [WorkOutcome::Paid { charged: false, .. }]
        ),
        "{outcomes:?}"
    );
    // The key's first reply comes from that, and is kept.
    let reply = create(&s, KEY, &request("cust-vanished", 300))
        .await
        .unwrap();
    assert_eq!((reply.status, reply.replayed), (201, false));
    let again = create(&s, KEY, &request("cust-vanished", 300))
        .await
        .unwrap();
    assert_eq!((again.replayed, &again.body), (true, &reply.body));
    assert_eq!(ledger_of(&s, &reply.body), ["charged"]);
    assert_eq!(s.sim.ledger().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_after_sending_is_answered_from_the_order_not_charged_again() {
    let s = Arc::new(stack().await);
    killed_after_sending(&s, "cust-killed").await;
    let err = create(&s, KEY, &request("cust-killed", 300))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 409, "the lease still runs");
    // After the lease (and once Oen's listing can be trusted) the key is answered from the
    // order: paid, with Oen's one transaction.
    s.advance(Duration::seconds(91) + Duration::minutes(5));
    let reply = create(&s, KEY, &request("cust-killed", 300)).await.unwrap();
    assert_eq!((reply.status, reply.replayed), (201, false));
    assert_eq!(ledger_of(&s, &reply.body), ["charged"]);
    assert_eq!(s.sim.ledger().len(), 1);
    let event = s.events.all().into_iter().last().unwrap();
    assert_eq!(
        (event.kind.as_str(), &event.data["reconciled"]),
        ("charge.succeeded", &serde_json::json!(true))
    );
}

#[tokio::test]
async fn after_24_hours_the_key_may_charge_again() {
    let s = stack().await;
    customer_with_card(&s, "cust-expiry", cards::SUCCESS).await;
    let first = create(&s, KEY, &request("cust-expiry", 300)).await.unwrap();
    s.advance(Duration::hours(24) - Duration::seconds(1));
    let replay = create(&s, KEY, &request("cust-expiry", 300)).await.unwrap();
    assert_eq!((replay.replayed, &replay.body), (true, &first.body));
    // moto never expires items by TTL: the record is still there, and expired all the same.
    s.advance(Duration::seconds(1));
    let second = create(&s, KEY, &request("cust-expiry", 300)).await.unwrap();
    assert_eq!((second.status, second.replayed), (201, false));
    assert_ne!(second.body["orderId"], first.body["orderId"]);
    assert_eq!(ledger_of(&s, &first.body), ["charged"]);
    assert_eq!(ledger_of(&s, &second.body), ["charged"]);
    assert_eq!(s.sim.ledger().len(), 2);
}

#[tokio::test]
async fn a_decline_is_stored_and_replayed() {
    let s = stack().await;
    customer_with_card(&s, "cust-decline", cards::DECLINE_T0004_INSUFFICIENT_FUNDS).await;
    let first = create(&s, KEY, &request("cust-decline", 300))
        .await
        .unwrap();
    assert_eq!(first.status, 402);
    assert_eq!(first.body["error"]["code"], "card_declined");
    assert_eq!(first.body["error"]["declineCode"], "T0004");
    let again = create(&s, KEY, &request("cust-decline", 300))
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.replayed, &again.body),
        (402, true, &first.body)
    );
    assert_eq!(ledger_of(&s, &first.body), ["failed"]);
}

#[tokio::test]
async fn a_config_error_is_a_5xx_not_stored_and_the_retry_charges_once() {
    let s = stack().await;
    customer_with_card(&s, "cust-config", cards::SUCCESS).await;
    // Oen refuses our API key: the client re-reads the secret and tries once more, refused
    // again (the regenerated key is not deployed yet).
    s.sim.force_next_times(
        ForceTarget::AnyCharge,
        ForcedOutcome::Respond {
            code: "A0001".into(),
            http_status: 401,
            message: Some("Unauthorized".into()),
        },
        2,
    );
    let err = create(&s, KEY, &request("cust-config", 300))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (502, "payment_gateway_misconfigured")
    );
    assert!(s.sim.ledger().is_empty());
    let retry = create(&s, KEY, &request("cust-config", 300)).await.unwrap();
    assert_eq!((retry.status, retry.replayed), (201, false));
    assert_eq!(ledger_of(&s, &retry.body), ["charged"]);
    assert_eq!(s.sim.ledger().len(), 1);
}
