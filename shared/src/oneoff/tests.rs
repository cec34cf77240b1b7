//! One-off charges on in-memory adapters and an Oen fake that keeps a ledger per order: every
//! test ends on what Oen holds for the charge's order, not only on our records.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::charging::{self, ChargeDeps, ChargePolicy, WorkContext, WorkOutcome};
use crate::clock::{Clock, TestClock};
use crate::domain::{
    BindingRef, CardToken, CheckoutId, CustomerId, MerchantId, OrderId, TransactionId,
};
use crate::events::MemoryEvents;
use crate::oen::{
    ChargeReceipt, ChargeRequest, CheckoutRequest, OenError, OenGateway, RefundRequest, Transaction,
};
use crate::queue::MemoryQueue;
use crate::store::{Card, MemoryStore, Record, Store};
use crate::vault::{LocalVault, VaultContext};

const TOKEN: &str = "tokOneOff4242Secret";

fn t0() -> DateTime<Utc> {
    crate::domain::taipei_time(2026, 3, 1, 10, 0)
}

/// How the fake answers one charge call.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Approve,
    Decline(&'static str, bool),
    /// 409 `C026`: a `charging` transaction that [`FakeOen::settle`] later turns `charged`.
    C026,
    /// Committed `charged`, then a 504.
    TimeoutAfterCommit,
    /// Committed `charged`, then the connection drops.
    DropAfterCommit,
    /// Committed `charged`, and the answer never comes (the caller is dropped meanwhile).
    HangAfterCommit,
    /// Never reaches Oen.
    NotSent,
    /// `A0001`: refused at authentication, nothing created.
    Unauthorized,
}

#[derive(Default)]
struct FakeOen {
    script: Mutex<VecDeque<Answer>>,
    ledger: Mutex<Vec<(String, Transaction)>>,
    charge_calls: AtomicU32,
    /// Real time each charge call takes (widens races).
    latency: Mutex<StdDuration>,
    /// Every token the fake was asked to charge with.
    tokens_seen: Mutex<Vec<String>>,
    /// The order listing lags: it shows nothing yet.
    listing_hidden: AtomicBool,
}

impl FakeOen {
    fn answering(answers: &[Answer]) -> Self {
        let fake = Self::default();
        fake.script.lock().unwrap().extend(answers.iter().copied());
        fake
    }

    fn calls(&self) -> u32 {
        self.charge_calls.load(Ordering::SeqCst)
    }

    /// The statuses Oen holds for `order`, oldest first.
    fn ledger_for(&self, order: &OrderId) -> Vec<String> {
        let ledger = self.ledger.lock().unwrap();
        let statuses = ledger.iter().filter(|(o, _)| o == order.as_str());
        statuses
            .map(|(_, t)| serde_json::to_value(&t.status).unwrap())
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    fn charged_transactions(&self) -> usize {
        let ledger = self.ledger.lock().unwrap();
        ledger.iter().filter(|(_, t)| t.status.is_paid()).count()
    }

    /// Every `charging` transaction turns `charged`.
    fn settle(&self) {
        for (_, t) in self.ledger.lock().unwrap().iter_mut() {
            if t.status == crate::oen::TxStatus::Charging {
                t.status = crate::oen::TxStatus::Charged;
            }
        }
    }

    fn record(&self, order: &OrderId, amount: u32, status: &str) -> TransactionId {
        let mut ledger = self.ledger.lock().unwrap();
        let id = TransactionId::parse(&format!("P20260301AB{:06}", ledger.len() + 1)).unwrap();
        let tx = Transaction {
            id: id.clone(),
            transaction_id: None,
            amount: i64::from(amount),
            status: serde_json::from_value(serde_json::json!(status)).unwrap(),
            order_id: Some(order.to_string()),
            created_at: None,
            paid_at: None,
            refund_amount: None,
            auth_code: None,
            reason: (status == "failed").then(|| "T0004".to_owned()),
        };
        ledger.push((order.to_string(), tx));
        id
    }
}

#[async_trait]
impl OenGateway for FakeOen {
    fn merchant_id(&self) -> &MerchantId {
        unreachable!("one-off charges never ask")
    }
    async fn create_checkout(&self, _: &CheckoutRequest) -> Result<CheckoutId, OenError> {
        unreachable!("one-off charges never open a hosted page")
    }
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeReceipt, OenError> {
        self.charge_calls.fetch_add(1, Ordering::SeqCst);
        self.tokens_seen
            .lock()
            .unwrap()
            .push(req.token.expose().to_owned());
        let latency = *self.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let answer = self.script.lock().unwrap().pop_front();
        let (order, amount) = (&req.order_id, req.amount.ntd());
        match answer.unwrap_or(Answer::Approve) {
            Answer::Approve => Ok(ChargeReceipt {
                transaction_number: self.record(order, amount, "charged"),
                auth_code: Some("654321".into()),
            }),
            Answer::Decline(code, hard) => {
                self.record(order, amount, "failed");
                let (code, message) = (code.to_owned(), String::new());
                Err(if hard {
                    OenError::HardDecline { code, message }
                } else {
                    OenError::SoftDecline { code, message }
                })
            }
            Answer::C026 => {
                self.record(order, amount, "charging");
                Err(OenError::Unknown("C026 payment result unknown".into()))
            }
            Answer::TimeoutAfterCommit => {
                self.record(order, amount, "charged");
                Err(OenError::Unknown("HTTP 504 after Oen's 29 s limit".into()))
            }
            Answer::DropAfterCommit => {
                self.record(order, amount, "charged");
                Err(OenError::Unknown(
                    "connection closed before the answer".into(),
                ))
            }
            Answer::HangAfterCommit => {
                self.record(order, amount, "charged");
                std::future::pending().await
            }
            Answer::NotSent => Err(OenError::NotSent("connection refused".into())),
            Answer::Unauthorized => Err(OenError::Config {
                status: 401,
                code: "A0001".into(),
                message: "Unauthorized".into(),
            }),
        }
    }
    async fn order_transactions(&self, order: &OrderId) -> Result<Vec<Transaction>, OenError> {
        if self.listing_hidden.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let ledger = self.ledger.lock().unwrap();
        let txs = ledger.iter().filter(|(o, _)| o == order.as_str());
        Ok(txs.map(|(_, t)| t.clone()).collect())
    }
    async fn transaction(&self, _: &TransactionId) -> Result<Transaction, OenError> {
        unreachable!("one-off charges read orders, not single transactions")
    }
    async fn refund(&self, _: &RefundRequest) -> Result<(), OenError> {
        unreachable!("one-off charges never refund")
    }
}

struct World {
    charge_deps: ChargeDeps,
    store: Arc<MemoryStore>,
    oen: Arc<FakeOen>,
    clock: TestClock,
    events: Arc<MemoryEvents>,
    queue: Arc<MemoryQueue>,
}

fn ctx(owner: &str) -> WorkContext {
    WorkContext {
        owner: owner.into(),
        deadline: None,
    }
}

fn request(amount: i64, reference: &str) -> OneOffRequest {
    let json = serde_json::json!({
        "customer": "cust-1",
        "amount": amount,
        "description": "Late fee",
        "reference": reference,
    });
    OneOffRequest::from_json(json.to_string().as_bytes()).unwrap()
}

const KEY: &str = "key-0001-late-fee";

impl World {
    /// GIVEN customer `cust-1` with a saved card.
    async fn new(oen: FakeOen) -> Self {
        let clock = TestClock::at(t0());
        let oen = Arc::new(oen);
        let events = Arc::new(MemoryEvents::default());
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::default());
        let adapters = crate::dev::binding_deps(
            store.clone(),
            Arc::new(LocalVault::random()),
            oen.clone(),
            events.clone(),
            Arc::new(clock.clone()),
        );
        let charge_deps = ChargeDeps::new(adapters, queue.clone(), ChargePolicy::default());
        let world = Self {
            charge_deps,
            store,
            oen,
            clock,
            events,
            queue,
        };
        world.save_card("cust-1").await;
        world
    }

    fn deps(&self) -> OneOffDeps<'_> {
        OneOffDeps::new(&self.charge_deps.adapters, &self.charge_deps.policy, "test")
    }

    async fn save_card(&self, customer: &str) {
        let customer = CustomerId::parse(customer).unwrap();
        let binding = BindingRef::generate();
        let vault_ctx = VaultContext {
            merchant: self.charge_deps.merchant.clone(),
            customer: customer.clone(),
            binding: binding.clone(),
        };
        let token = CardToken::parse(TOKEN).unwrap();
        let card = Card {
            customer,
            binding,
            ciphertext: self
                .charge_deps
                .vault
                .encrypt(&token, &vault_ctx)
                .await
                .unwrap(),
            token_fingerprint: token.fingerprint(),
            last4: Some("4242".into()),
            created_at: self.clock.now(),
        };
        let put = crate::store::Put::new(card, crate::store::Expect::Absent);
        self.charge_deps.store.commit(vec![put]).await.unwrap();
    }

    async fn create(&self, key: &str, req: &OneOffRequest) -> Result<Reply, OneOffError> {
        create(&self.deps(), Some(key), req, &ctx("api-1")).await
    }

    /// The one charge the store holds.
    fn only_charge(&self) -> OneOffCharge {
        let charges: Vec<OneOffCharge> = self
            .store
            .snapshot()
            .into_iter()
            .filter_map(|r| match r.value {
                Record::Charge(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(charges.len(), 1, "{charges:?}");
        charges.into_iter().next().unwrap()
    }

    /// One scheduled charger run: plan as of now, then work the queue dry.
    async fn run_charger(&self) -> Vec<WorkOutcome> {
        charging::schedule(&self.charge_deps, self.clock.now())
            .await
            .unwrap();
        let mut outcomes = Vec::new();
        while let Some(m) = self.queue.pop() {
            let o = charging::handle(&self.charge_deps, &m, &ctx("janitor"))
                .await
                .unwrap();
            if !matches!(o, WorkOutcome::Planned { .. }) {
                outcomes.push(o);
            }
        }
        outcomes
    }

    fn event_types(&self) -> Vec<String> {
        self.events
            .all()
            .iter()
            .map(|e| e.kind.to_string())
            .collect()
    }
}

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

/// Waits (real time, bounded) until the fake holds `n` transactions.
async fn wait_for_ledger(oen: &FakeOen, n: usize) {
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while oen.ledger.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "Oen never saw the charge"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

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
