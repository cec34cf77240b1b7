//! A charging stack for the integration tests: moto's DynamoDB and KMS, the simulator as Oen,
//! a test clock and an in-memory queue, with the ledger check every charging test ends with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use oen_pay::aws::{DynamoStore, KmsVault};
use oen_pay::binding::{self, BindingDeps, CustomId};
use oen_pay::charging::{self, ChargeDeps, ChargePolicy, WorkContext, WorkOutcome};
use oen_pay::clock::{Clock, TestClock};
use oen_pay::dev;
use oen_pay::domain::{
    taipei_time, BindingRef, CardToken, CheckoutId, CustomerId, OrderId, PlanId,
};
use oen_pay::events::MemoryEvents;
use oen_pay::oen::{BindingResult, Notification, OenGateway, TokenNotification};
use oen_pay::queue::MemoryQueue;
use oen_pay::store::{
    BindingSession, Expect, PeriodState, Put, SessionState, Store, StoreExt, Subscription,
};
use oen_pay::vault::TokenVault;
use oen_sim::{SimConfig, Simulator};

pub struct Stack {
    pub sim: Simulator,
    pub deps: ChargeDeps,
    pub binding: BindingDeps,
    pub queue: Arc<MemoryQueue>,
    pub clock: TestClock,
    pub events: Arc<MemoryEvents>,
    /// The moto table and KMS key, for another process to use.
    pub table: String,
    pub key: String,
}

pub async fn stack_with(secrets: Arc<dyn oen_pay::secrets::SecretSource>) -> Stack {
    let dynamo = crate::dynamo_client().await;
    let table = crate::create_table(&dynamo).await;
    let kms = crate::kms_client().await;
    let key = crate::create_kms_key(&kms).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(dynamo, table.clone()));
    let vault: Arc<dyn TokenVault> = Arc::new(KmsVault::new(kms, key.clone()));
    let sim = Simulator::start(SimConfig {
        api_token: dev::DEV_API_TOKEN.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    sim.set_gateway_timeout_delay(StdDuration::from_millis(50));
    let oen: Arc<dyn OenGateway> = Arc::new(dev::local_oen(&sim.base_url(), secrets).unwrap());
    let clock = TestClock::at(taipei_time(2027, 1, 31, 10, 0));
    let events = Arc::new(MemoryEvents::default());
    let queue = Arc::new(MemoryQueue::default());
    let binding = dev::binding_deps(
        store.clone(),
        vault.clone(),
        oen.clone(),
        events.clone(),
        Arc::new(clock.clone()),
    );
    let deps = ChargeDeps::new(binding.clone(), queue.clone(), ChargePolicy::default());
    Stack {
        sim,
        deps,
        binding,
        queue,
        clock,
        events,
        table,
        key,
    }
}

pub async fn stack() -> Stack {
    stack_with(dev::dev_secrets(dev::DEV_API_TOKEN)).await
}

pub fn worker(name: &str) -> WorkContext {
    WorkContext {
        owner: name.into(),
        deadline: None,
    }
}

impl Stack {
    /// Binds a card the way the webhook does (a session we created, Oen's token webhook).
    pub async fn bind(&self, customer: &str, plan: &str, card: &str) -> BindingRef {
        self.bind_as(customer, plan, card, Default::default()).await
    }

    /// [`Self::bind`] for a session whose start link carried `payer` (e-invoicing).
    pub async fn bind_as(
        &self,
        customer: &str,
        plan: &str,
        card: &str,
        payer: oen_pay::domain::Payer,
    ) -> BindingRef {
        let token = self.sim.create_token(card);
        let reference = BindingRef::generate();
        let checkout = CheckoutId::parse(&reference.as_str().repeat(2)[..27]).unwrap();
        let now = self.clock.now();
        let session = BindingSession {
            reference: reference.clone(),
            customer: CustomerId::parse(customer).unwrap(),
            plan: PlanId::parse(plan).unwrap(),
            created_at: now,
            expires_at: now + Duration::minutes(10),
            checkout_id: Some(checkout.clone()),
            state: SessionState::Pending,
            terms: None,
            payer,
        };
        self.deps
            .store
            .commit(vec![Put::new(session.clone(), Expect::Absent)])
            .await
            .unwrap();
        let custom = CustomId {
            reference: reference.clone(),
            customer: session.customer.clone(),
            plan: session.plan.clone(),
        };
        let notification = Notification::Token(TokenNotification {
            merchant_id: Some(dev::DEV_MERCHANT_ID.into()),
            checkout: checkout.clone(),
            custom_id: Some(serde_json::to_string(&custom).unwrap()),
            result: BindingResult::Bound {
                token: CardToken::parse(&token).unwrap(),
                last4: Some(card[card.len() - 4..].into()),
            },
        });
        binding::accept_webhook(&self.binding, notification)
            .await
            .unwrap();
        reference
    }

    /// A worker process (the `charge_worker` binary at `exe`) that charges `customer`'s
    /// subscription to `plan` now, against this stack's table, key and simulator.
    pub fn charge_worker(&self, exe: &str, customer: &str, plan: &str) -> std::process::Command {
        let mut command = std::process::Command::new(exe);
        command
            .args([
                self.table.as_str(),
                self.key.as_str(),
                &self.sim.base_url(),
                customer,
                plan,
            ])
            .env("AWS_ENDPOINT_URL", crate::aws_endpoint())
            .env("AWS_REGION", crate::REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    }

    /// One scheduled run: plan as of now, then work the queue dry.
    pub async fn run(&self) -> Vec<WorkOutcome> {
        charging::schedule(&self.deps, self.clock.now())
            .await
            .unwrap();
        self.drain().await
    }

    pub async fn drain(&self) -> Vec<WorkOutcome> {
        let mut outcomes = Vec::new();
        while let Some(m) = self.queue.pop() {
            let o = charging::handle(&self.deps, &m, &worker("worker-1"))
                .await
                .unwrap();
            if !matches!(o, WorkOutcome::Planned { .. }) {
                outcomes.push(o);
            }
        }
        outcomes
    }

    pub async fn sub(&self, customer: &str, plan: &str) -> Subscription {
        self.deps
            .store
            .subscription(
                &CustomerId::parse(customer).unwrap(),
                &PlanId::parse(plan).unwrap(),
            )
            .await
            .unwrap()
            .unwrap()
            .value
    }

    pub async fn period_state(&self, sub: &Subscription, n: u32) -> PeriodState {
        self.deps
            .store
            .period(&sub.id, n)
            .await
            .unwrap()
            .unwrap()
            .value
            .state
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn ledger_for(&self, order: &OrderId) -> Vec<String> {
        self.sim
            .ledger_for_order(order.as_str())
            .into_iter()
            .map(|e| e.status.as_str().to_owned())
            .collect()
    }

    /// The invariant: per order at most one paid transaction; every period we call paid has
    /// exactly one, with the same transaction number; no unpaid period has one.
    pub async fn assert_ledger_agrees(&self, subs: &[(&str, &str)]) {
        let mut paid_per_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in self.sim.ledger() {
            if matches!(
                e.status.as_str(),
                "charged" | "claimed" | "refunded" | "refunding" | "refundedPostPayout"
            ) {
                paid_per_order
                    .entry(e.order_id.clone())
                    .or_default()
                    .push(e.id.clone());
            }
        }
        for (order, paid) in &paid_per_order {
            assert_eq!(
                paid.len(),
                1,
                "order {order} was charged {} times",
                paid.len()
            );
        }
        let mut ours = 0;
        for (customer, plan) in subs {
            let sub = self.sub(customer, plan).await;
            for n in 0..=sub.period {
                let order = OrderId::for_period(&sub.id, n);
                let oen_paid = paid_per_order.get(order.as_str());
                match self
                    .deps
                    .store
                    .period(&sub.id, n)
                    .await
                    .unwrap()
                    .map(|p| p.value.state)
                {
                    Some(PeriodState::Paid { transaction, .. }) => {
                        ours += 1;
                        assert_eq!(
                            oen_paid,
                            Some(&vec![transaction.to_string()]),
                            "period {n} of {customer}: ours {transaction}, Oen {oen_paid:?}"
                        );
                    }
                    other => assert!(
                        oen_paid.is_none(),
                        "period {n} of {customer} is {other:?} but Oen charged {oen_paid:?}"
                    ),
                }
            }
        }
        assert_eq!(
            ours,
            paid_per_order.len(),
            "Oen charged orders we do not know as paid"
        );
    }
}
