//! One-off charges on in-memory adapters and an Oen fake that keeps a ledger per order: every
//! test ends on what Oen holds for the charge's order, not only on our records. `keys`: what
//! an idempotency key answers; `outcomes`: how each way a charge ends is written, replayed and
//! reconciled.

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
    ChargeReceipt, ChargeRequest, CheckoutRequest, OenError, OenGateway, RefundRequest,
    Transaction, TransactionListQuery, TransactionPage,
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
    /// Every charge request's payer (e-invoicing fields).
    payers_seen: Mutex<Vec<crate::domain::Payer>>,
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
        self.payers_seen.lock().unwrap().push(req.payer.clone());
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

    async fn list_transactions(
        &self,
        _: &TransactionListQuery,
    ) -> Result<TransactionPage, OenError> {
        unreachable!("one-off charges never list Oen's transactions")
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
            payer: Default::default(),
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

mod keys;
mod outcomes;
