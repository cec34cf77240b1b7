//! A seeded, randomized soak of the whole subscription life against the Oen simulator: many
//! subscriptions, every fault the simulator can show drawn at random, duplicate and lost
//! deliveries, racing workers, workers dying at random points, cancels, new bindings, card and
//! price changes, over weeks of simulated time. After it settles, the simulator's ledger is the
//! judge (see [`Soak::check`]).
//!
//! What is random comes from one seed, so a run's plan (who binds which card, which faults are
//! forced, who cancels when) repeats for the same seed; the interleaving of racing workers on
//! real sockets does not, which is the point of racing them. A worker "killed" here is a task
//! dropped at a random await point: everything it had not written is gone, as with a process
//! killed by SIGKILL (tests/tests/killed_worker.rs kills a real process).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use oen_pay::binding::{self, BindingDeps, CustomId};
use oen_pay::charging::{self, ChargeDeps, ChargePolicy, WorkContext, WorkOutcome};
use oen_pay::clock::{Clock, TestClock};
use oen_pay::dev;
use oen_pay::domain::{
    taipei_time, AnomalyRefund, BindingRef, BindingSession, CardToken, Catalog, ChargePeriod,
    CheckoutId, CustomerId, PeriodState, PlanId, SessionState, Subscription, SubscriptionStatus,
};
use oen_pay::events::{DomainEvent, EventError, EventSink, MemoryEvents};
use oen_pay::oen::{BindingResult, Notification, OenGateway, TokenNotification};
use oen_pay::outbox::{self, RelayLimits};
use oen_pay::queue::{MemoryQueue, WorkMessage};
use oen_pay::store::{Expect, MemoryStore, Put, Record, Store, StoreExt};
use oen_pay::vault::LocalVault;
use oen_sim::{cards, AuthCodeMode, ForceTarget, ForcedOutcome, Settle, SimConfig, Simulator};

/// What a run does.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub seed: u64,
    pub subscriptions: usize,
    /// Simulated days.
    pub days: u32,
    /// Workers draining the queue at once.
    pub workers: usize,
}

/// A small, fast, seedable generator (SplitMix64): enough for drawing a test plan.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A whole number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p` percent.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Cards a binding draws from, weighted toward cards that pay.
const CARDS: &[&str] = &[
    cards::SUCCESS,
    cards::SUCCESS,
    cards::SUCCESS,
    cards::SUCCESS,
    cards::SUCCESS,
    cards::SUCCESS,
    cards::DECLINE_T0001_GENERAL,
    cards::DECLINE_T0004_INSUFFICIENT_FUNDS,
    cards::DECLINE_T0003_EXPIRED,
    cards::UNKNOWN_C026_THEN_CHARGED,
    cards::UNKNOWN_C026_THEN_FAILED,
    cards::GATEWAY_TIMEOUT_AFTER_COMMIT,
    cards::CONNECTION_DROP_AFTER_COMMIT,
];

const PLANS: &[&str] = &["premium", "yearly", "trial"];

fn catalog(premium: u32) -> Catalog {
    let json = format!(
        r#"[{{"id":"premium","description":"Premium plan","amount":{premium},"intervalMonths":1}},
            {{"id":"yearly","description":"Premium, yearly","amount":5000,"intervalMonths":12}},
            {{"id":"trial","description":"Premium, 14-day trial","amount":500,"intervalMonths":1,"trialDays":14}}]"#
    );
    Catalog::parse(&json).unwrap_or_else(|e| panic!("the soak's catalog: {e}"))
}

/// A forced outcome for the next charge, drawn at random.
fn random_fault(rng: &mut Rng) -> ForcedOutcome {
    match rng.below(9) {
        8 => ForcedOutcome::SystemErrorAfterCommit { message: None },
        0 => ForcedOutcome::Unknown {
            settles: Settle::Charged,
        },
        1 => ForcedOutcome::Unknown {
            settles: Settle::Failed,
        },
        2 => ForcedOutcome::GatewayTimeoutAfterCommit,
        3 => ForcedOutcome::GatewayTimeoutBeforeCommit,
        4 => ForcedOutcome::DropConnectionAfterCommit,
        5 => ForcedOutcome::DropConnectionBeforeCommit,
        6 => ForcedOutcome::Respond {
            code: "F0001".into(),
            http_status: 500,
            message: None,
        },
        _ => ForcedOutcome::Respond {
            code: "T0001".into(),
            http_status: 400,
            message: None,
        },
    }
}

/// Drops a future after a number of polls: a worker that dies at a random await point.
struct DiesAfter<F> {
    inner: Pin<Box<F>>,
    polls_left: u32,
}

impl<F: Future> Future for DiesAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls_left == 0 {
            return Poll::Ready(None);
        }
        self.polls_left -= 1;
        self.inner.as_mut().poll(cx).map(Some)
    }
}

/// An event bus that refuses every seventh publish while the run is chaotic: the outbox must
/// deliver those events later, under the same ids.
struct FlakyBus {
    inner: Arc<MemoryEvents>,
    calls: AtomicU64,
    down: Arc<AtomicBool>,
}

#[oen_pay::async_trait::async_trait]
impl EventSink for FlakyBus {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) && n % 7 == 6 {
            return Err(EventError("the bus refused the batch".into()));
        }
        self.inner.publish(events).await
    }
}

/// The run's moving parts.
pub struct Soak {
    pub config: SoakConfig,
    rng: Rng,
    sim: Simulator,
    store: Arc<MemoryStore>,
    events: Arc<MemoryEvents>,
    /// While set, the event bus refuses some publishes.
    bus_down: Arc<AtomicBool>,
    queue: Arc<MemoryQueue>,
    clock: TestClock,
    deps: Arc<ChargeDeps>,
    /// What happened, in order: printed (for the customers involved) when a check fails.
    trace: Mutex<Vec<String>>,
    /// When each subscription was canceled now, by id.
    canceled_at: BTreeMap<String, DateTime<Utc>>,
    customers: Vec<(CustomerId, PlanId)>,
    pub stats: BTreeMap<&'static str, u64>,
}

impl Soak {
    pub async fn start(config: SoakConfig) -> Self {
        let sim = Simulator::start(SimConfig {
            api_token: dev::DEV_API_TOKEN.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("the simulator did not start: {e}"));
        sim.set_gateway_timeout_delay(StdDuration::from_millis(5));
        // About half the approvals come without an auth code, as Oen may answer.
        sim.set_auth_code(AuthCodeMode::Random { seed: config.seed });
        let start = taipei_time(2027, 1, 31, 10, 0);
        sim.freeze_clock(true);
        sim.set_clock(start);
        let clock = TestClock::at(start);
        let store = Arc::new(MemoryStore::new());
        let events = Arc::new(MemoryEvents::default());
        let bus_down = Arc::new(AtomicBool::new(true));
        let queue = Arc::new(MemoryQueue::default());
        let secrets = dev::dev_secrets(dev::DEV_API_TOKEN);
        let oen: Arc<dyn OenGateway> = Arc::new(
            dev::local_oen(&sim.base_url(), secrets)
                .unwrap_or_else(|e| panic!("an Oen client: {e}")),
        );
        let mut adapters: BindingDeps = dev::binding_deps(
            store.clone(),
            Arc::new(LocalVault::random()),
            oen,
            Arc::new(FlakyBus {
                inner: events.clone(),
                calls: AtomicU64::new(0),
                down: bus_down.clone(),
            }),
            Arc::new(clock.clone()),
        );
        adapters.plans = catalog(500);
        let deps = Arc::new(ChargeDeps::new(
            adapters,
            queue.clone(),
            ChargePolicy::default(),
        ));
        let rng = Rng::new(config.seed);
        Self {
            config,
            rng,
            sim,
            store,
            events,
            bus_down,
            queue,
            clock,
            deps,
            trace: Mutex::new(Vec::new()),
            canceled_at: BTreeMap::new(),
            customers: Vec::new(),
            stats: BTreeMap::new(),
        }
    }

    fn note(&self, line: String) {
        self.trace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{} {line}", self.clock.now().format("%m-%d %H:%M")));
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    /// Runs the whole soak and checks it; `Err` carries the seed and the trace of what failed.
    pub async fn run(&mut self) -> Result<(), String> {
        for i in 0..self.config.subscriptions {
            let plan: &str = self.rng.pick::<&str>(PLANS);
            let plan = PlanId::parse(plan).unwrap_or_else(|e| panic!("{e}"));
            let customer =
                CustomerId::parse(&format!("soak-{i}")).unwrap_or_else(|e| panic!("{e}"));
            let card = *self.rng.pick(CARDS);
            self.bind(&customer, &plan, card).await;
            self.customers.push((customer, plan));
        }
        let end = self.clock.now() + Duration::days(i64::from(self.config.days));
        while self.clock.now() < end {
            self.meddle().await;
            self.step(true).await;
            let hours = 1 + self.rng.below(8) as i64;
            self.advance(Duration::hours(hours));
        }
        self.quiesce().await?;
        self.check().await
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.sim.set_clock(self.clock.now());
    }

    /// Binds `card` for `customer` the way Oen's webhook does (a session we opened first).
    async fn bind(&self, customer: &CustomerId, plan: &PlanId, card: &str) {
        let token = self.sim.create_token(card);
        let reference = BindingRef::generate();
        let checkout = CheckoutId::parse(&reference.as_str().repeat(2)[..27])
            .unwrap_or_else(|e| panic!("{e}"));
        let now = self.clock.now();
        let session = BindingSession {
            reference: reference.clone(),
            customer: customer.clone(),
            plan: plan.clone(),
            created_at: now,
            expires_at: now + Duration::minutes(10),
            checkout_id: Some(checkout.clone()),
            state: SessionState::Pending,
            terms: self.deps.plans.get(plan).cloned(),
            payer: Default::default(),
        };
        let custom = CustomId {
            reference,
            customer: customer.clone(),
            plan: plan.clone(),
        };
        let put = Put::new(session, Expect::Absent);
        self.store
            .commit(vec![put])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let notification = Notification::Token(TokenNotification {
            merchant_id: Some(dev::DEV_MERCHANT_ID.into()),
            checkout,
            custom_id: serde_json::to_string(&custom).ok(),
            result: BindingResult::Bound {
                token: CardToken::parse(&token).unwrap_or_else(|e| panic!("{e}")),
                last4: Some(card[card.len() - 4..].into()),
            },
        });
        let bound = binding::accept_webhook(&self.deps.adapters, notification).await;
        self.note(format!("{customer} binds {card} for {plan}: {bound:?}"));
    }

    /// What customers and the merchant do between runs.
    async fn meddle(&mut self) {
        let n = self.customers.len() as u64;
        for _ in 0..(n / 40).max(1) {
            let (customer, plan) = self.customers[self.rng.below(n) as usize].clone();
            match self.rng.below(10) {
                0 | 1 => {
                    let at_period_end = self.rng.percent(50);
                    self.cancel(&customer, &plan, at_period_end).await;
                }
                2 | 3 => {
                    let card = *self.rng.pick(CARDS);
                    self.count("bindings again");
                    self.bind(&customer, &plan, card).await;
                }
                4 => self.change_price(),
                5 => self.refund(&customer, &plan).await,
                _ => {}
            }
        }
        if self.rng.percent(20) {
            // Oen's listing lags fresh transactions (less than the charger's trust horizon).
            let lag = self.rng.below(240);
            self.sim.set_listing_delay(StdDuration::from_secs(lag));
            self.note(format!("Oen's listing lags {lag} s"));
        }
        if self.rng.percent(30) {
            let fault = random_fault(&mut self.rng);
            let times = 1 + self.rng.below(3) as u32;
            self.note(format!("the next {times} charges: {fault:?}"));
            self.sim
                .force_next_times(ForceTarget::AnyCharge, fault, times);
            self.count("faults forced");
        }
    }

    async fn cancel(&mut self, customer: &CustomerId, plan: &PlanId, at_period_end: bool) {
        let before = self.sub(customer, plan).await;
        let r = charging::cancel(&self.deps, customer, plan, at_period_end).await;
        self.note(format!(
            "{customer} cancels {plan} (at period end: {at_period_end}): {r:?}"
        ));
        self.count("cancels");
        if let (Ok(()), Some(sub), false) = (&r, before, at_period_end) {
            if sub.status != SubscriptionStatus::Canceled {
                self.canceled_at
                    .entry(sub.id.to_string())
                    .or_insert(self.clock.now());
            }
        }
    }

    /// The merchant refunds the customer's latest paid period, whole or in part, sometimes while
    /// Oen answers badly (the refund happens but the answer is lost, or it fails).
    async fn refund(&mut self, customer: &CustomerId, plan: &PlanId) {
        let Some(sub) = self.sub(customer, plan).await else {
            return;
        };
        let Some(period) = sub.period.checked_sub(1) else {
            return;
        };
        if self.rng.percent(50) {
            let fault = random_fault(&mut self.rng);
            self.note(format!("the next refund: {fault:?}"));
            self.sim.force_next(ForceTarget::AnyRefund, fault);
        }
        let amount = if self.rng.percent(50) {
            None
        } else {
            oen_pay::domain::Amount::new(100).ok()
        };
        let r = charging::refund(&self.deps, customer, plan, period, amount, None).await;
        self.sim.clear_forced();
        self.note(format!(
            "{customer} refunds period {period} of {plan} ({amount:?}): {r:?}"
        ));
        self.count("refunds asked");
    }

    fn change_price(&mut self) {
        let price = *self.rng.pick(&[450u32, 500, 550, 600]);
        let mut deps = (*self.deps).clone();
        deps.adapters.plans = catalog(price);
        self.deps = Arc::new(deps);
        self.note(format!("premium now costs NT${price}"));
        self.count("price changes");
    }

    async fn sub(&self, customer: &CustomerId, plan: &PlanId) -> Option<Subscription> {
        let found = self.store.subscription(customer, plan).await;
        found.unwrap_or_else(|e| panic!("{e}")).map(|v| v.value)
    }

    /// One scheduled run: plan, then racing workers drain the queue, with duplicate deliveries
    /// and workers dying at random points (their messages come back, as SQS redelivers them).
    async fn step(&mut self, chaos: bool) {
        if let Err(e) = charging::schedule(&self.deps, self.clock.now()).await {
            self.note(format!("schedule failed: {e}"));
        }
        self.relay().await;
        self.drain(chaos).await;
    }

    /// What the scheduled run does after planning: ship the events writers left pending.
    async fn relay(&mut self) {
        let limits = RelayLimits {
            max_events: usize::MAX,
            ..RelayLimits::default()
        };
        match outbox::relay(&self.deps, &limits).await {
            Ok(r) => *self.stats.entry("events relayed").or_default() += r.delivered as u64,
            Err(e) => self.note(format!("relay failed: {e}")),
        }
    }

    /// Racing workers work the queue dry (what they drop comes back on the next drain).
    async fn drain(&mut self, chaos: bool) {
        let mut redeliver = Vec::new();
        let mut handled = 0usize;
        while !self.queue.is_empty() && handled < 100_000 {
            let mut batch = Vec::new();
            while batch.len() < self.config.workers {
                let Some(m) = self.queue.pop() else { break };
                if chaos && self.rng.percent(5) {
                    batch.push((m.clone(), None));
                    self.count("duplicate deliveries");
                }
                let dies = (chaos && self.rng.percent(3)).then(|| 1 + self.rng.below(12) as u32);
                batch.push((m, dies));
            }
            handled += batch.len();
            let mut tasks = Vec::new();
            for (i, (m, dies)) in batch.into_iter().enumerate() {
                let deps = self.deps.clone();
                let ctx = WorkContext {
                    owner: format!("worker-{i}"),
                    deadline: None,
                };
                tasks.push(tokio::spawn(async move {
                    let work = async { charging::handle(&deps, &m, &ctx).await };
                    let outcome = DiesAfter {
                        inner: Box::pin(work),
                        polls_left: dies.unwrap_or(u32::MAX),
                    }
                    .await;
                    (m, dies.is_some(), outcome)
                }));
            }
            for t in tasks {
                let (m, killed, outcome) = t.await.unwrap_or_else(|e| panic!("a worker: {e}"));
                self.tally(&m, killed, &outcome, &mut redeliver);
            }
        }
        for m in redeliver {
            // SQS hands back what was not acknowledged; here it waits for the next run.
            let _ = oen_pay::queue::WorkQueue::enqueue(&*self.queue, &[m]).await;
        }
    }

    fn tally(
        &mut self,
        m: &WorkMessage,
        killed: bool,
        outcome: &Option<Result<WorkOutcome, charging::WorkError>>,
        redeliver: &mut Vec<WorkMessage>,
    ) {
        match outcome {
            None => {
                self.count("workers killed");
                self.note(format!("a worker died on {m:?}"));
                redeliver.push(m.clone());
            }
            Some(Err(e)) => {
                self.note(format!("{m:?} handed back: {e}"));
                redeliver.push(m.clone());
            }
            Some(Ok(WorkOutcome::Planned { .. })) => {}
            Some(Ok(o)) => {
                if let WorkMessage::Charge { customer, .. } = m {
                    self.note(format!(
                        "{customer}: {o:?}{}",
                        if killed { " (survived)" } else { "" }
                    ));
                }
                let key = match o {
                    WorkOutcome::Paid { charged: true, .. } => "charged",
                    WorkOutcome::Paid { charged: false, .. } => "found paid",
                    WorkOutcome::SoftDeclined { .. } => "soft declines",
                    WorkOutcome::HardDeclined => "hard declines",
                    WorkOutcome::Unknown { .. } => "unknown outcomes",
                    WorkOutcome::Canceled => "canceled by the charger",
                    _ => "other outcomes",
                };
                self.count(key);
            }
        }
    }

    /// No more faults or meddling: run until nothing is uncertain (or give up, loudly).
    async fn quiesce(&mut self) -> Result<(), String> {
        self.sim.clear_forced();
        self.bus_down.store(false, Ordering::Relaxed);
        for round in 0..40 {
            self.sim.settle_pending();
            self.step(false).await;
            if self.uncertain_periods().await.is_empty() && self.queue.is_empty() {
                self.stats.insert("rounds to settle", round);
                self.advance(Duration::hours(6));
                self.relay().await;
                return Ok(());
            }
            self.advance(Duration::hours(6));
        }
        // Renewals keep starting (some on cards whose every charge ends unknown): settle what
        // is uncertain now, looking only at its subscriptions, so that no new period opens.
        for round in 0..24 {
            let owners = self.owners_of_uncertain_periods().await;
            if owners.is_empty() {
                self.stats.insert("rounds to settle", 40 + round);
                self.advance(Duration::minutes(30));
                self.relay().await;
                return Ok(());
            }
            self.advance(Duration::minutes(30));
            self.sim.settle_pending();
            let messages: Vec<WorkMessage> = owners
                .into_iter()
                .map(|(customer, plan)| WorkMessage::Charge { customer, plan })
                .collect();
            let _ = oen_pay::queue::WorkQueue::enqueue(&*self.queue, &messages).await;
            self.drain(false).await;
        }
        let left = self.uncertain_periods().await;
        let orders: Vec<&str> = left
            .iter()
            .filter_map(|l| l.split(' ').next())
            .take(3)
            .collect();
        let what = format!("periods still uncertain after quiescence: {left:?}");
        Err(self.failure(&what, &orders))
    }

    /// The customer and plan of every subscription that holds (or carries) an uncertain period.
    async fn owners_of_uncertain_periods(&self) -> BTreeSet<(CustomerId, PlanId)> {
        let uncertain: BTreeSet<String> = self
            .periods()
            .await
            .into_iter()
            .filter(|p| p.state.is_uncertain())
            .map(|p| p.subscription.to_string())
            .collect();
        self.store
            .snapshot()
            .into_iter()
            .filter_map(|r| match r.value {
                Record::Subscription(s) => Some(s),
                _ => None,
            })
            .filter(|s| {
                uncertain.contains(s.id.as_str())
                    || s.carried
                        .as_ref()
                        .is_some_and(|c| uncertain.contains(c.subscription.as_str()))
            })
            .map(|s| (s.customer, s.plan))
            .collect()
    }

    async fn periods(&self) -> Vec<ChargePeriod> {
        self.store
            .snapshot()
            .into_iter()
            .filter_map(|r| match r.value {
                Record::Period(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Each uncertain period, with what points at it (the subscription record of its
    /// customer and plan, if it is still that subscription or carries it).
    async fn uncertain_periods(&self) -> Vec<String> {
        let snapshot = self.store.snapshot();
        let subs: Vec<&Subscription> = snapshot
            .iter()
            .filter_map(|r| match &r.value {
                Record::Subscription(s) => Some(s),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for p in self
            .periods()
            .await
            .into_iter()
            .filter(|p| p.state.is_uncertain())
        {
            let owner = subs.iter().find(|s| {
                s.id == p.subscription
                    || s.carried
                        .as_ref()
                        .is_some_and(|c| c.subscription == p.subscription)
            });
            let owner = owner.map(|s| {
                format!(
                    "{} {:?} next {:?} carried {}",
                    s.customer,
                    s.status,
                    s.next_action_at,
                    s.carried.is_some()
                )
            });
            out.push(format!("{} {:?} held by {owner:?}", p.order_id, p.state));
        }
        out
    }

    /// The judge: the simulator's ledger against our records and events.
    pub async fn check(&self) -> Result<(), String> {
        let periods: BTreeMap<String, ChargePeriod> = self
            .periods()
            .await
            .into_iter()
            .map(|p| (p.order_id.to_string(), p))
            .collect();
        // The whole ledger by order, read once (a 10 000-subscription run has tens of thousands).
        let mut ledger: BTreeMap<String, Vec<oen_sim::LedgerEntry>> = BTreeMap::new();
        for e in self.sim.ledger() {
            ledger.entry(e.order_id.clone()).or_default().push(e);
        }
        let by_order = |order: &str| ledger.get(order).map(Vec::as_slice).unwrap_or_default();
        // Per order, the transactions that took money (paid, or paid and refunded since).
        let taken: BTreeMap<&str, Vec<&oen_sim::LedgerEntry>> = ledger
            .iter()
            .map(|(order, txs)| {
                let took = txs
                    .iter()
                    .filter(|e| e.status.is_paid() || e.refund_amount > 0);
                (order.as_str(), took.collect::<Vec<_>>())
            })
            .filter(|(_, took)| !took.is_empty())
            .collect();
        for (order, txs) in &taken {
            let Some(p) = periods.get(*order) else {
                return Err(self.failure(
                    &format!("Oen took money for {order}, unknown to us"),
                    &[order],
                ));
            };
            let PeriodState::Paid { transaction, .. } = &p.state else {
                return Err(self.failure(
                    &format!("Oen took money for {order}, which we hold as {:?}", p.state),
                    &[order],
                ));
            };
            for tx in txs {
                let ours = tx.id == transaction.as_str();
                if ours && tx.amount != i64::from(p.amount.ntd()) {
                    return Err(self.failure(
                        &format!(
                            "{order} charged NT${} for a NT${} period",
                            tx.amount,
                            p.amount.ntd()
                        ),
                        &[order],
                    ));
                }
                if ours {
                    continue;
                }
                let refunded = p.anomalies.iter().any(|a| {
                    a.transaction.as_str() == tx.id
                        && matches!(a.refund, AnomalyRefund::Refunded { .. })
                });
                if !refunded || tx.refund_amount != tx.amount {
                    return Err(self.failure(
                        &format!(
                            "{order} has a second payment {} that was not detected and refunded",
                            tx.id
                        ),
                        &[order],
                    ));
                }
            }
        }
        for (order, p) in &periods {
            if let PeriodState::Paid { transaction, .. } = &p.state {
                let at_oen = by_order(order)
                    .iter()
                    .find(|e| e.id == transaction.as_str())
                    .map_or(0, |e| e.refund_amount);
                let ours = p.refunded.map_or(0, |a| i64::from(a.ntd()));
                if at_oen != ours {
                    let what = format!("{order}: Oen refunded NT${at_oen}, we recorded NT${ours}");
                    return Err(self.failure(&what, &[order]));
                }
            }
            if matches!(p.state, PeriodState::Paid { .. }) && !taken.contains_key(order.as_str()) {
                return Err(self.failure(
                    &format!("we hold {order} as paid; Oen has no payment"),
                    &[order],
                ));
            }
            if let Some(at) = self.canceled_at.get(p.subscription.as_str()) {
                let late = by_order(order).iter().any(|e| e.created_at > *at);
                if late {
                    return Err(self.failure(
                        &format!("{order} was charged after its subscription was canceled at {at}"),
                        &[order],
                    ));
                }
            }
        }
        self.check_events(&periods)
    }

    /// Every paid period published its `payment.succeeded` (under its one stable id), and no
    /// unpaid one did.
    fn check_events(&self, periods: &BTreeMap<String, ChargePeriod>) -> Result<(), String> {
        // Every event committed with a state change was delivered, under its one id.
        let published: BTreeMap<String, DomainEvent> = self
            .events
            .all()
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
        for r in self.store.snapshot() {
            if let Record::Outbox(o) = r.value {
                let delivered = published.get(&o.event.id) == Some(&o.event);
                if o.delivered_at.is_none() || !delivered {
                    let what = format!(
                        "event {} was committed but not delivered as stored",
                        o.event.id
                    );
                    return Err(self.failure(&what, &[]));
                }
            }
        }
        let mut ids_per_order: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in self.events.all() {
            if e.kind == "payment.succeeded" {
                let order = e.data["orderId"].as_str().unwrap_or_default().to_owned();
                ids_per_order.entry(order).or_default().insert(e.id.clone());
            }
        }
        for (order, p) in periods {
            let paid = matches!(p.state, PeriodState::Paid { .. });
            let want: BTreeSet<String> = if paid {
                BTreeSet::from([format!("payment.succeeded:{order}")])
            } else {
                BTreeSet::new()
            };
            let got = ids_per_order.remove(order).unwrap_or_default();
            if got != want {
                let what = format!("{order} (paid: {paid}) published payment.succeeded as {got:?}");
                return Err(self.failure(&what, &[order]));
            }
        }
        if let Some((order, ids)) = ids_per_order.into_iter().next() {
            let what = format!("payment.succeeded {ids:?} for {order}, a period we do not have");
            return Err(self.failure(&what, &[&order]));
        }
        Ok(())
    }

    /// The seed, what failed, and the trace lines of the orders' customers.
    fn failure(&self, what: &str, orders: &[&str]) -> String {
        let subscriptions: Vec<String> = orders
            .iter()
            .map(|o| o.get(..16).unwrap_or_default().to_owned())
            .collect();
        let customers: BTreeSet<String> = self
            .store
            .snapshot()
            .into_iter()
            .filter_map(|r| match r.value {
                Record::Subscription(s) if subscriptions.contains(&s.id.to_string()) => {
                    Some(s.customer.to_string())
                }
                _ => None,
            })
            .collect();
        let trace = self.trace.lock().unwrap_or_else(|p| p.into_inner());
        let lines: Vec<&String> = trace
            .iter()
            .filter(|l| {
                customers
                    .iter()
                    .any(|c| l.contains(&format!("{c} ")) || l.contains(&format!("{c}:")))
                    || l.contains("the next")
            })
            .collect();
        format!(
            "soak failed (seed {}): {what}\ntrace of {customers:?}:\n{}",
            self.config.seed,
            lines
                .iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    pub async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}

/// A seed from the environment (`SOAK_SEED`), else from the time: printed by every run.
pub fn fresh_seed() -> u64 {
    std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}
