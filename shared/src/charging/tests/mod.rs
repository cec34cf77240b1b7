//! Charging's state machine on in-memory adapters: a change to dunning, reconciliation or the
//! claim rules is checked here in well under a second. The moto and simulator suites in
//! `tests/` keep the integration and fault-injection cases.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::*;

use crate::clock::{Clock, TestClock};
use crate::domain::{
    BindingRef, CardToken, ChargePeriod, CheckoutId, CustomerId, MerchantId, OrderId, PeriodState,
    PlanId, Subscription, SubscriptionId, SubscriptionStatus,
};
use crate::events::MemoryEvents;
use crate::oen::{
    ChargeReceipt, ChargeRequest, CheckoutRequest, OenError, OenGateway, RefundRequest,
    Transaction, TransactionListQuery, TransactionPage,
};
use crate::queue::MemoryQueue;
use crate::store::{Card, Expect, MemoryStore, Put, StoreExt, Versioned};
use crate::vault::{LocalVault, VaultContext};

fn t0() -> DateTime<Utc> {
    crate::domain::taipei_time(2026, 1, 31, 9, 0)
}

/// An unknown outcome from ten minutes ago, due for reconciliation now (Oen's listing is old
/// enough to trust).
fn due_unknown() -> PeriodState {
    PeriodState::Unknown {
        since: t0() - chrono::Duration::minutes(10),
        reconcile_at: t0(),
        checks: 0,
    }
}

fn tx_id(n: u32) -> TransactionId {
    TransactionId::parse(&format!("P20260131AB{n:06}")).unwrap()
}

fn tx(n: u32, status: &str) -> Transaction {
    Transaction {
        id: tx_id(n),
        transaction_id: None,
        amount: 500,
        status: serde_json::from_value(serde_json::json!(status)).unwrap(),
        order_id: None,
        created_at: None,
        paid_at: None,
        refund_amount: None,
        auth_code: Some("123456".into()),
        reason: None,
    }
}

/// An Oen that answers from a script and counts what it was asked.
#[derive(Default)]
struct ScriptedOen {
    charges: Mutex<VecDeque<Result<ChargeReceipt, OenError>>>,
    orders: Mutex<VecDeque<Result<Vec<Transaction>, OenError>>>,
    charge_calls: Mutex<u32>,
    order_calls: Mutex<u32>,
    /// Each charge request's amount and the sum of its product lines.
    charged: Mutex<Vec<(u32, u32)>>,
    /// Each refund request: the transaction and the amount asked for.
    refunds: Mutex<Vec<(TransactionId, Option<u32>)>>,
    /// Each charge request's payer (e-invoicing fields).
    payers: Mutex<Vec<crate::domain::Payer>>,
}

impl ScriptedOen {
    fn charging(self, result: Result<ChargeReceipt, OenError>) -> Self {
        self.charges.lock().unwrap().push_back(result);
        self
    }

    fn with_order(self, result: Result<Vec<Transaction>, OenError>) -> Self {
        self.orders.lock().unwrap().push_back(result);
        self
    }

    fn charge_calls(&self) -> u32 {
        *self.charge_calls.lock().unwrap()
    }

    fn order_calls(&self) -> u32 {
        *self.order_calls.lock().unwrap()
    }
}

fn paid_receipt(n: u32) -> Result<ChargeReceipt, OenError> {
    Ok(ChargeReceipt {
        transaction_number: tx_id(n),
        auth_code: Some("654321".into()),
    })
}

fn soft(code: &str) -> Result<ChargeReceipt, OenError> {
    Err(OenError::SoftDecline {
        code: code.into(),
        message: String::new(),
    })
}

#[async_trait]
impl OenGateway for ScriptedOen {
    fn merchant_id(&self) -> &MerchantId {
        unreachable!("charging never asks")
    }
    async fn create_checkout(&self, _: &CheckoutRequest) -> Result<CheckoutId, OenError> {
        unreachable!("charging never opens a hosted page")
    }
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeReceipt, OenError> {
        *self.charge_calls.lock().unwrap() += 1;
        let lines = req
            .product_details
            .iter()
            .map(|d| d.unit_price * d.quantity)
            .sum();
        self.charged.lock().unwrap().push((req.amount.ntd(), lines));
        self.payers.lock().unwrap().push(req.payer.clone());
        let next = self.charges.lock().unwrap().pop_front();
        next.expect("the script has no more charge answers")
    }
    async fn order_transactions(&self, _: &OrderId) -> Result<Vec<Transaction>, OenError> {
        *self.order_calls.lock().unwrap() += 1;
        let next = self.orders.lock().unwrap().pop_front();
        next.unwrap_or_else(|| Ok(Vec::new()))
    }
    async fn transaction(&self, id: &TransactionId) -> Result<Transaction, OenError> {
        Ok(Transaction {
            id: id.clone(),
            ..tx(0, "charged")
        })
    }
    async fn refund(&self, req: &RefundRequest) -> Result<(), OenError> {
        let asked = (req.transaction_number.clone(), req.amount.map(|a| a.ntd()));
        self.refunds.lock().unwrap().push(asked);
        Ok(())
    }

    async fn list_transactions(
        &self,
        _: &TransactionListQuery,
    ) -> Result<TransactionPage, OenError> {
        unreachable!("charging never lists Oen's transactions")
    }
}

struct World {
    deps: ChargeDeps,
    oen: Arc<ScriptedOen>,
    clock: TestClock,
    events: Arc<MemoryEvents>,
    queue: Arc<MemoryQueue>,
    customer: CustomerId,
    plan: PlanId,
}

fn ctx() -> WorkContext {
    WorkContext {
        owner: "test".into(),
        deadline: None,
    }
}

impl World {
    /// GIVEN a customer with a bound card and an active monthly subscription due at t0.
    async fn new(oen: ScriptedOen) -> Self {
        let clock = TestClock::at(t0());
        let oen = Arc::new(oen);
        let events = Arc::new(MemoryEvents::default());
        let base = crate::dev::binding_deps(
            Arc::new(MemoryStore::new()),
            Arc::new(LocalVault::random()),
            oen.clone(),
            events.clone(),
            Arc::new(clock.clone()),
        );
        let queue = Arc::new(MemoryQueue::default());
        let deps = ChargeDeps::new(base, queue.clone(), ChargePolicy::default());
        let world = Self {
            deps,
            oen,
            clock,
            events,
            queue,
            customer: CustomerId::parse("cust-1").unwrap(),
            plan: PlanId::parse("premium").unwrap(),
        };
        world.bind_card().await;
        world
    }

    async fn bind_card(&self) {
        let binding = BindingRef::generate();
        let ctx = VaultContext {
            merchant: self.deps.merchant.clone(),
            customer: self.customer.clone(),
            binding: binding.clone(),
        };
        let token = CardToken::parse("tok4242").unwrap();
        let card = Card {
            customer: self.customer.clone(),
            binding: binding.clone(),
            ciphertext: self.deps.vault.encrypt(&token, &ctx).await.unwrap(),
            token_fingerprint: token.fingerprint(),
            last4: Some("4242".into()),
            created_at: t0(),
            payer: Default::default(),
        };
        let sub = Subscription {
            customer: self.customer.clone(),
            plan: self.plan.clone(),
            card: binding,
            ..sample_subscription()
        };
        self.deps
            .store
            .commit(vec![
                Put::new(card, Expect::Absent),
                Put::new(sub, Expect::Absent),
            ])
            .await
            .unwrap();
    }

    async fn sub(&self) -> Versioned<Subscription> {
        let found = self
            .deps
            .store
            .subscription(&self.customer, &self.plan)
            .await;
        found.unwrap().unwrap()
    }

    async fn period(&self, n: u32) -> Option<ChargePeriod> {
        let sub = self.sub().await;
        let found = self.deps.store.period(&sub.value.id, n).await.unwrap();
        found.map(|p| p.value)
    }

    /// Puts the current period in `state`, as an earlier worker left it.
    async fn leave_period(&self, state: PeriodState, attempts: u32) {
        let sub = self.sub().await.value;
        let p = ChargePeriod {
            subscription: sub.id.clone(),
            period: sub.period,
            order_id: OrderId::for_period(&sub.id, sub.period),
            amount: crate::domain::Amount::new(500).unwrap(),
            state,
            attempts,
            last_error: None,
            updated_at: t0(),
            refunded: None,
            product_details: Vec::new(),
            anomalies: Vec::new(),
            customer: Some(sub.customer.clone()),
        };
        self.deps
            .store
            .commit(vec![Put::new(p, Expect::Absent)])
            .await
            .unwrap();
    }

    async fn update_sub(&self, change: impl FnOnce(&mut Subscription)) {
        let sub = self.sub().await;
        let mut s = sub.value;
        change(&mut s);
        let put = Put::new(s, Expect::Version(sub.version));
        self.deps.store.commit(vec![put]).await.unwrap();
    }

    /// The customer binds a new card for the plan, through the webhook flow.
    async fn bind_again(&self) {
        self.bind_again_as(crate::domain::Payer::default()).await;
    }

    /// [`Self::bind_again`] with a start link that carried `payer`.
    async fn bind_again_as(&self, payer: crate::domain::Payer) {
        let now = self.clock.now();
        let checkout = CheckoutId::parse("2HhngP9sVb3mK1xYdQe7Wc0RtUi").unwrap();
        let session = crate::domain::BindingSession {
            reference: BindingRef::generate(),
            customer: self.customer.clone(),
            plan: self.plan.clone(),
            created_at: now,
            expires_at: now + chrono::Duration::minutes(10),
            checkout_id: Some(checkout.clone()),
            state: crate::domain::SessionState::Pending,
            terms: None,
            payer,
        };
        let custom = crate::binding::CustomId {
            reference: session.reference.clone(),
            customer: self.customer.clone(),
            plan: self.plan.clone(),
        };
        let put = Put::new(session, Expect::Absent);
        self.deps.store.commit(vec![put]).await.unwrap();
        let notification = crate::oen::Notification::Token(crate::oen::TokenNotification {
            merchant_id: Some(self.deps.merchant.to_string()),
            checkout,
            custom_id: Some(serde_json::to_string(&custom).unwrap()),
            result: crate::oen::BindingResult::Bound {
                token: CardToken::parse("tok5555").unwrap(),
                last4: Some("5555".into()),
            },
        });
        let bound = crate::binding::accept_webhook(&self.deps.adapters, notification).await;
        assert!(bound.is_ok(), "{bound:?}");
    }

    async fn work(&self) -> Result<WorkOutcome, WorkError> {
        let message = WorkMessage::Charge {
            customer: self.customer.clone(),
            plan: self.plan.clone(),
        };
        handle(&self.deps, &message, &ctx()).await
    }

    fn event_types(&self) -> Vec<String> {
        self.events
            .all()
            .iter()
            .map(|e| e.kind.to_string())
            .collect()
    }
}

mod events;
mod lifecycle;
mod notice;
mod payer;
mod transition;
mod worker;

/// An active monthly subscription due at t0, period 0.
fn sample_subscription() -> Subscription {
    Subscription {
        id: SubscriptionId::generate(),
        customer: CustomerId::parse("cust-1").unwrap(),
        plan: PlanId::parse("premium").unwrap(),
        status: SubscriptionStatus::Active,
        card: BindingRef::generate(),
        anchor: t0(),
        period: 0,
        next_action_at: Some(t0()),
        dunning_attempts: 0,
        cancel_at_period_end: false,
        created_at: t0(),
        updated_at: t0(),
        terms: crate::dev::dev_plans().lookup("premium").ok().cloned(),
        carried: None,
        renewal_noticed: None,
        payer: Default::default(),
    }
}
