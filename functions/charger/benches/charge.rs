//! Charges per second of the charger against the in-process Oen simulator.
//!
//! `cargo bench -p charger` seeds N due subscriptions in the in-memory adapters (a
//! `MemoryStore`, a `LocalVault`, `MemoryEvents`, a `MemoryQueue`, a test clock), starts the
//! simulator with a fixed API latency, and measures, wall clock:
//! - planning: `charging::schedule`, then every `Plan` message of the queue through
//!   `charger::handle_batch`, until only charge messages are left;
//! - charging: every charge message through `charger::handle_batch` in SQS-sized batches of 10.
//!
//! How C charges are kept in flight: like Lambda's SQS event source with `MaximumConcurrency`
//! = C / 10, C / 10 "invocations" run at once; each takes the next batch of 10 records from a
//! shared backlog as soon as its previous batch is done and runs it with `handle_batch` at a
//! per-batch concurrency of 10, so every record of a batch is charged at once. The limit is then
//! C / latency charges per second; a batch ends with its slowest record, which is what the ratio
//! to that limit shows.
//!
//! Counting wrappers around the ports count the AWS calls each charge would make (DynamoDB
//! `get` / `commit` / `due` (every Query: the due indexes, a customer's cards), KMS decrypt / encrypt, Secrets Manager fetches); the commits that
//! only mark published events delivered in the outbox are shown apart as well. At the end the
//! simulator's ledger must hold exactly one `charged` transaction per seeded subscription and
//! every subscription must have moved on to period 1, or the run exits non-zero.
//!
//! Options (flags win over the environment): `--n` / `BENCH_N` (10 000 subscriptions),
//! `--concurrency` / `BENCH_CONCURRENCY` (50 charges in flight), `--latency-ms` /
//! `BENCH_LATENCY_MS` (100 ms per Oen API call). Flags need the target named, because the
//! package's lib and bin test harnesses reject them:
//! `cargo bench -p charger --bench charge -- --n 1000`. Nothing here asserts on time.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use oen_pay::charging::{self, ChargeDeps, ChargePolicy};
use oen_pay::chrono::{DateTime, Duration, Utc};
use oen_pay::clock::TestClock;
use oen_pay::dev;
use oen_pay::domain::{
    taipei_time, BindingRef, CardToken, CheckoutId, CustomerId, MerchantId, OrderId, PlanId,
    SubscriptionId, TransactionId,
};
use oen_pay::events::{DomainEvent, EventError, EventSink, MemoryEvents};
use oen_pay::oen::{
    ChargeReceipt, ChargeRequest, CheckoutRequest, OenError, OenGateway, RefundRequest,
    Transaction, TransactionListQuery, TransactionPage,
};
use oen_pay::queue::{MemoryQueue, QueueError, WorkMessage, WorkQueue};
use oen_pay::secrets::{CachedSecrets, FetchSecret, SecretError, SecretSource, StaticSecret};
use oen_pay::store::{
    Card, ChargeDuePage, DueCursor, DuePage, Expect, Key, MemoryStore, OutboxPage, Put, Record,
    Store, StoreError, Subscription, SubscriptionStatus, Versioned,
};
use oen_pay::vault::{Ciphertext, LocalVault, TokenVault, VaultContext, VaultError};
use oen_sim::{cards, SimConfig, Simulator};

/// Records in one SQS batch (the event source's `BatchSize`; SQS sends at most 10 per receive).
const BATCH_SIZE: usize = 10;
/// The share of the C / latency limit the charger should reach (printed, never asserted).
const TARGET_RATIO: f64 = 0.95;

struct Options {
    subscriptions: usize,
    concurrency: usize,
    latency: StdDuration,
}

impl Options {
    /// The environment, then the flags. `cargo bench` appends `--bench`, which is ignored.
    fn parse() -> Result<Self, String> {
        let mut n = env_number("BENCH_N", 10_000)?;
        let mut c = env_number("BENCH_CONCURRENCY", 50)?;
        let mut latency_ms = env_number("BENCH_LATENCY_MS", 100)?;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let target = match name.as_str() {
                "--n" => &mut n,
                "--concurrency" | "-c" => &mut c,
                "--latency-ms" => &mut latency_ms,
                "--bench" => continue,
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; use --n N, --concurrency C, --latency-ms MS"
                    ))
                }
            };
            let value = inline
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))?;
            *target = parse_number(&name, &value)?;
        }
        if n == 0 || c == 0 {
            return Err("--n and --concurrency must be at least 1".into());
        }
        Ok(Self {
            subscriptions: n,
            concurrency: c,
            latency: StdDuration::from_millis(latency_ms as u64),
        })
    }
}

fn env_number(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) => parse_number(name, &v),
        Err(_) => Ok(default),
    }
}

fn parse_number(name: &str, raw: &str) -> Result<usize, String> {
    raw.trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{name} must be a whole number, not {raw:?}"))
}

// ---- counting ports -----------------------------------------------------------------------

/// Calls made through the ports, as the AWS calls they stand for.
#[derive(Default)]
struct Calls {
    get: AtomicU64,
    commit: AtomicU64,
    /// Commits that only mark outbox entries delivered (also in `commit`).
    outbox_marks: AtomicU64,
    due: AtomicU64,
    encrypt: AtomicU64,
    decrypt: AtomicU64,
    secret_fetches: AtomicU64,
    put_events: AtomicU64,
    send_message_batches: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct CallCounts {
    get: u64,
    commit: u64,
    outbox_marks: u64,
    due: u64,
    encrypt: u64,
    decrypt: u64,
    secret_fetches: u64,
    put_events: u64,
    send_message_batches: u64,
}

impl Calls {
    fn snapshot(&self) -> CallCounts {
        CallCounts {
            get: self.get.load(Ordering::Relaxed),
            commit: self.commit.load(Ordering::Relaxed),
            outbox_marks: self.outbox_marks.load(Ordering::Relaxed),
            due: self.due.load(Ordering::Relaxed),
            encrypt: self.encrypt.load(Ordering::Relaxed),
            decrypt: self.decrypt.load(Ordering::Relaxed),
            secret_fetches: self.secret_fetches.load(Ordering::Relaxed),
            put_events: self.put_events.load(Ordering::Relaxed),
            send_message_batches: self.send_message_batches.load(Ordering::Relaxed),
        }
    }
}

impl CallCounts {
    fn since(self, before: CallCounts) -> CallCounts {
        CallCounts {
            get: self.get - before.get,
            commit: self.commit - before.commit,
            outbox_marks: self.outbox_marks - before.outbox_marks,
            due: self.due - before.due,
            encrypt: self.encrypt - before.encrypt,
            decrypt: self.decrypt - before.decrypt,
            secret_fetches: self.secret_fetches - before.secret_fetches,
            put_events: self.put_events - before.put_events,
            send_message_batches: self.send_message_batches - before.send_message_batches,
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// DynamoDB: `get` = GetItem, `commit` = PutItem / TransactWriteItems, `due` and
/// `outbox_pending` = Query.
struct CountingStore {
    inner: Arc<MemoryStore>,
    calls: Arc<Calls>,
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        bump(&self.calls.get);
        self.inner.get(key).await
    }

    async fn commit(&self, puts: Vec<Put>) -> Result<(), StoreError> {
        bump(&self.calls.commit);
        if puts.iter().all(|p| matches!(p.record, Record::Outbox(_))) {
            bump(&self.calls.outbox_marks);
        }
        self.inner.commit(puts).await
    }

    async fn due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DuePage, StoreError> {
        bump(&self.calls.due);
        self.inner.due(shard, now, limit, after).await
    }

    async fn outbox_pending(
        &self,
        shard: u16,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<OutboxPage, StoreError> {
        bump(&self.calls.due);
        self.inner.outbox_pending(shard, until, limit, after).await
    }

    async fn cards_of(&self, customer: &CustomerId) -> Result<Vec<Versioned<Card>>, StoreError> {
        bump(&self.calls.due);
        self.inner.cards_of(customer).await
    }

    async fn charges_due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<ChargeDuePage, StoreError> {
        bump(&self.calls.due);
        self.inner.charges_due(shard, now, limit, after).await
    }

    // The merchant API's lookups; charging never calls them.
    async fn customer_records(
        &self,
        customer: &oen_pay::domain::CustomerId,
    ) -> Result<oen_pay::store::CustomerRecords, StoreError> {
        bump(&self.calls.due);
        self.inner.customer_records(customer).await
    }

    async fn subscription_by_id(
        &self,
        id: &oen_pay::domain::SubscriptionId,
    ) -> Result<Option<Versioned<oen_pay::store::Subscription>>, StoreError> {
        bump(&self.calls.due);
        self.inner.subscription_by_id(id).await
    }

    async fn recent_periods(
        &self,
        subscription: &oen_pay::domain::SubscriptionId,
        limit: usize,
    ) -> Result<Vec<Versioned<oen_pay::store::ChargePeriod>>, StoreError> {
        bump(&self.calls.due);
        self.inner.recent_periods(subscription, limit).await
    }

    // Renewal notices.
    async fn renewals_due(
        &self,
        shard: u16,
        until: DateTime<Utc>,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DuePage, StoreError> {
        bump(&self.calls.due);
        self.inner.renewals_due(shard, until, limit, after).await
    }
}

/// KMS: Encrypt / Decrypt.
struct CountingVault {
    inner: Arc<LocalVault>,
    calls: Arc<Calls>,
}

#[async_trait]
impl TokenVault for CountingVault {
    async fn encrypt(
        &self,
        token: &CardToken,
        ctx: &VaultContext,
    ) -> Result<Ciphertext, VaultError> {
        bump(&self.calls.encrypt);
        self.inner.encrypt(token, ctx).await
    }

    async fn decrypt(
        &self,
        ciphertext: &Ciphertext,
        ctx: &VaultContext,
    ) -> Result<CardToken, VaultError> {
        bump(&self.calls.decrypt);
        self.inner.decrypt(ciphertext, ctx).await
    }
}

/// Secrets Manager: GetSecretValue, behind the same `CachedSecrets` the functions use.
struct CountingFetch {
    inner: StaticSecret,
    calls: Arc<Calls>,
}

#[async_trait]
impl FetchSecret for CountingFetch {
    async fn fetch(&self) -> Result<String, SecretError> {
        bump(&self.calls.secret_fetches);
        self.inner.fetch().await
    }
}

/// EventBridge: PutEvents.
struct CountingEvents {
    inner: MemoryEvents,
    calls: Arc<Calls>,
}

#[async_trait]
impl EventSink for CountingEvents {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventError> {
        bump(&self.calls.put_events);
        self.inner.publish(events).await
    }
}

/// SQS: SendMessageBatch, which takes ten messages a call (as `SqsQueue` sends them).
struct CountingQueue {
    inner: Arc<MemoryQueue>,
    calls: Arc<Calls>,
}

#[async_trait]
impl WorkQueue for CountingQueue {
    async fn enqueue(&self, messages: &[WorkMessage]) -> Result<(), QueueError> {
        self.calls
            .send_message_batches
            .fetch_add(messages.len().div_ceil(10) as u64, Ordering::Relaxed);
        self.inner.enqueue(messages).await
    }
}

/// Times `POST /token/transactions` as the charger sees it and tracks how many are in flight,
/// to tell the simulator's and HTTP client's share of the time from the arrangement's.
struct TimedOen {
    inner: Arc<dyn OenGateway>,
    charges: AtomicU64,
    charge_nanos: AtomicU64,
    slowest_nanos: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

impl TimedOen {
    fn new(inner: Arc<dyn OenGateway>) -> Self {
        Self {
            inner,
            charges: AtomicU64::new(0),
            charge_nanos: AtomicU64::new(0),
            slowest_nanos: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl OenGateway for TimedOen {
    fn merchant_id(&self) -> &MerchantId {
        self.inner.merchant_id()
    }

    async fn create_checkout(&self, req: &CheckoutRequest) -> Result<CheckoutId, OenError> {
        self.inner.create_checkout(req).await
    }

    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeReceipt, OenError> {
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight
            .fetch_max(now_in_flight, Ordering::Relaxed);
        let started = Instant::now();
        let result = self.inner.charge(req).await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        bump(&self.charges);
        self.charge_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.slowest_nanos.fetch_max(nanos, Ordering::Relaxed);
        result
    }

    async fn order_transactions(&self, order: &OrderId) -> Result<Vec<Transaction>, OenError> {
        self.inner.order_transactions(order).await
    }

    async fn transaction(&self, id: &TransactionId) -> Result<Transaction, OenError> {
        self.inner.transaction(id).await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<(), OenError> {
        self.inner.refund(req).await
    }

    async fn list_transactions(
        &self,
        q: &TransactionListQuery,
    ) -> Result<TransactionPage, OenError> {
        self.inner.list_transactions(q).await
    }
}

// ---- the run ------------------------------------------------------------------------------

fn main() {
    let options = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("charge bench: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime can be built (are threads available?)");
    if let Err(reason) = runtime.block_on(run(options)) {
        eprintln!("{reason}");
        std::process::exit(1);
    }
}

/// The seeded subscriptions, by customer.
struct Seeded {
    subscriptions: Vec<(CustomerId, SubscriptionId)>,
}

async fn run(options: Options) -> Result<(), String> {
    let started = Instant::now();
    let n = options.subscriptions;
    let per_batch = options.concurrency.min(BATCH_SIZE);
    let invocations = options.concurrency.div_ceil(per_batch);
    let in_flight = invocations * per_batch;

    let sim = Simulator::start(SimConfig {
        api_token: dev::DEV_API_TOKEN.into(),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("simulator did not start: {e}"))?;
    sim.set_latency(options.latency);

    let calls = Arc::new(Calls::default());
    let memory = Arc::new(MemoryStore::new());
    let local_vault = Arc::new(LocalVault::random());
    let secrets: Arc<dyn SecretSource> = Arc::new(CachedSecrets::new(
        CountingFetch {
            inner: StaticSecret::new(dev::dev_secret_json(dev::DEV_API_TOKEN)),
            calls: calls.clone(),
        },
        StdDuration::from_secs(3600),
    ));
    let http_oen: Arc<dyn OenGateway> = Arc::new(
        dev::local_oen(&sim.base_url(), secrets.clone())
            .map_err(|e| format!("Oen client not built: {e}"))?,
    );
    let oen = Arc::new(TimedOen::new(http_oen));
    let queue = Arc::new(MemoryQueue::default());
    let now = taipei_time(2027, 1, 31, 10, 0);
    let clock = TestClock::at(now);
    let adapters = dev::binding_deps(
        Arc::new(CountingStore {
            inner: memory.clone(),
            calls: calls.clone(),
        }),
        Arc::new(CountingVault {
            inner: local_vault.clone(),
            calls: calls.clone(),
        }),
        oen.clone(),
        Arc::new(CountingEvents {
            inner: MemoryEvents::default(),
            calls: calls.clone(),
        }),
        Arc::new(clock.clone()),
    );
    let counted_queue = Arc::new(CountingQueue {
        inner: queue.clone(),
        calls: calls.clone(),
    });
    let deps = Arc::new(ChargeDeps::new(
        adapters,
        counted_queue,
        ChargePolicy::default(),
    ));

    let seed_started = Instant::now();
    let seeded = seed(&sim, &memory, &local_vault, &deps.merchant, n, now).await?;
    let seed_time = seed_started.elapsed();

    // A warm container has its secrets cached already; the cold fetch is not part of a charge.
    secrets
        .current()
        .await
        .map_err(|e| format!("secrets not read: {e}"))?;
    let before = calls.snapshot();

    // ---- measured: planning
    let deadline = Some(now + Duration::minutes(15));
    let plan_started = Instant::now();
    charging::schedule(&deps, now)
        .await
        .map_err(|e| format!("schedule failed: {e}"))?;
    let mut charges = Vec::with_capacity(n);
    let mut plan_failures = 0;
    let mut plan_messages = 0;
    loop {
        let (plans, work): (Vec<_>, Vec<_>) = queue
            .drain()
            .into_iter()
            .partition(|m| matches!(m, WorkMessage::Plan { .. }));
        charges.extend(work);
        if plans.is_empty() {
            break;
        }
        plan_messages += plans.len();
        let batches = sqs_batches(&plans, "plan", plan_messages)?;
        plan_failures += run_batches(&deps, batches, invocations, per_batch, deadline).await;
    }
    let plan_time = plan_started.elapsed();
    let after_planning = calls.snapshot();

    // ---- measured: charging
    let batches = sqs_batches(&charges, "charge", 0)?;
    let batch_count = batches.len();
    let charge_started = Instant::now();
    let charge_failures = run_batches(&deps, batches, invocations, per_batch, deadline).await;
    let charge_time = charge_started.elapsed();
    let after = calls.snapshot();

    // ---- report
    let planning = after_planning.since(before);
    let charging = after.since(after_planning);
    let measured = after.since(before);
    let rate = n as f64 / charge_time.as_secs_f64();
    let overall_rate = n as f64 / (plan_time + charge_time).as_secs_f64();
    let limit = options.concurrency as f64 / options.latency.as_secs_f64().max(1e-9);
    let per = |x: u64| x as f64 / n as f64;
    let oen_calls = oen.charges.load(Ordering::Relaxed);
    let mean_oen_ms =
        oen.charge_nanos.load(Ordering::Relaxed) as f64 / oen_calls.max(1) as f64 / 1e6;
    let slowest_oen_ms = oen.slowest_nanos.load(Ordering::Relaxed) as f64 / 1e6;

    println!();
    println!(
        "charger benchmark: N={n}, C={} ({invocations} invocations x {per_batch} records of a {BATCH_SIZE}-record batch at once = {in_flight} in flight), Oen latency {} ms",
        options.concurrency,
        options.latency.as_millis()
    );
    println!(
        "seeding (not measured)        {:>10.2} s",
        seed_time.as_secs_f64()
    );
    println!();
    println!("{:<34}{:>12}  notes", "phase", "wall");
    println!(
        "{:<34}{:>10.3} s  {plan_messages} plan messages, {} due queries, {} charge messages",
        "planning",
        plan_time.as_secs_f64(),
        planning.due,
        charges.len()
    );
    println!(
        "{:<34}{:>10.3} s  {batch_count} SQS batches",
        "charging",
        charge_time.as_secs_f64()
    );
    println!();
    println!("{:<34}{:>12}", "throughput", "charges/s");
    println!("{:<34}{:>12.1}", "charging", rate);
    println!("{:<34}{:>12.1}", "planning + charging", overall_rate);
    println!("{:<34}{:>12.1}  C / latency", "limit", limit);
    println!(
        "{:<34}{:>12.1}  % (target >= {:.0} %)",
        "ratio (charging / limit)",
        100.0 * rate / limit,
        100.0 * TARGET_RATIO
    );
    println!(
        "{:<34}{:>10.1} ms  mean as the charger sees it (slowest {slowest_oen_ms:.1} ms), peak {} in flight",
        "Oen charge call",
        mean_oen_ms,
        oen.peak_in_flight.load(Ordering::Relaxed)
    );
    println!();
    println!("{:<34}{:>12}  target", "AWS calls per charge", "average");
    println!("{:<34}{:>12.3}  1", "KMS Decrypt", per(charging.decrypt));
    println!("{:<34}{:>12.3}  0", "KMS Encrypt", per(charging.encrypt));
    println!("{:<34}{:>12.3}", "DynamoDB GetItem", per(charging.get));
    println!(
        "{:<34}{:>12.3}",
        "DynamoDB writes (commit)",
        per(charging.commit)
    );
    println!(
        "{:<34}{:>12.3}  of the writes: events marked delivered after publishing",
        "  outbox marks",
        per(charging.outbox_marks)
    );
    println!(
        "{:<34}{:>12.3}  <= 4",
        "DynamoDB total (get + commit)",
        per(charging.get + charging.commit)
    );
    println!(
        "{:<34}{:>12.3}  planning, amortised ({} Query calls)",
        "DynamoDB Query (due index)",
        per(planning.due),
        planning.due
    );
    println!(
        "{:<34}{:>12.3}",
        "EventBridge PutEvents",
        per(charging.put_events)
    );
    println!(
        "{:<34}{:>12.3}  planning, amortised ({} calls)",
        "SQS SendMessageBatch",
        per(planning.send_message_batches),
        planning.send_message_batches
    );
    println!(
        "{:<34}{:>12.3}  0 once warm",
        "Secrets Manager GetSecretValue",
        per(measured.secret_fetches)
    );
    println!();

    let failures = plan_failures + charge_failures;
    if failures > 0 {
        return Err(format!(
            "ledger check: FAILED: {failures} messages were handed back to the queue"
        ));
    }
    check_ledger(&sim, &memory, &seeded)
        .await
        .map_err(|reason| format!("ledger check: FAILED: {reason}"))?;
    println!("ledger check: ok");
    println!(
        "(whole run, seeding and checks included: {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    sim.shutdown().await;
    Ok(())
}

/// N active premium subscriptions due `now`, each with its own card (its own simulator token,
/// encrypted by the vault under its own context), written the way a bound card is: the card
/// and the subscription in one commit. Not measured.
async fn seed(
    sim: &Simulator,
    store: &MemoryStore,
    vault: &LocalVault,
    merchant: &MerchantId,
    n: usize,
    now: DateTime<Utc>,
) -> Result<Seeded, String> {
    let plan = PlanId::parse("premium").map_err(|e| e.to_string())?;
    let mut subscriptions = Vec::with_capacity(n);
    for i in 0..n {
        let customer = CustomerId::parse(&format!("bench-{i:06}")).map_err(|e| e.to_string())?;
        // Never printed: CardToken's Debug is redacted and errors name no value.
        let token =
            CardToken::parse(&sim.create_token(cards::SUCCESS)).map_err(|e| e.to_string())?;
        let binding = BindingRef::generate();
        let context = VaultContext {
            merchant: merchant.clone(),
            customer: customer.clone(),
            binding: binding.clone(),
        };
        let ciphertext = vault
            .encrypt(&token, &context)
            .await
            .map_err(|e| format!("seeding: {e}"))?;
        let card = Card {
            customer: customer.clone(),
            binding: binding.clone(),
            ciphertext,
            token_fingerprint: token.fingerprint(),
            last4: Some(cards::SUCCESS[cards::SUCCESS.len() - 4..].to_owned()),
            created_at: now,
            payer: Default::default(),
        };
        let subscription = Subscription {
            id: SubscriptionId::generate(),
            customer: customer.clone(),
            plan: plan.clone(),
            status: SubscriptionStatus::Active,
            card: binding,
            anchor: now,
            period: 0,
            next_action_at: Some(now),
            dunning_attempts: 0,
            cancel_at_period_end: false,
            created_at: now,
            updated_at: now,
            terms: None,
            carried: None,
            renewal_noticed: None,
            payer: Default::default(),
        };
        subscriptions.push((customer, subscription.id.clone()));
        store
            .commit(vec![
                Put::new(card, Expect::Absent),
                Put::new(subscription, Expect::Absent),
            ])
            .await
            .map_err(|e| format!("seeding: {e}"))?;
    }
    Ok(Seeded { subscriptions })
}

/// Queue messages as SQS would deliver them: batches of 10 records whose bodies are the
/// messages' JSON.
fn sqs_batches(
    messages: &[WorkMessage],
    tag: &str,
    offset: usize,
) -> Result<VecDeque<SqsEvent>, String> {
    messages
        .chunks(BATCH_SIZE)
        .enumerate()
        .map(|(b, chunk)| {
            let mut event = SqsEvent::default();
            for (i, m) in chunk.iter().enumerate() {
                let mut record = SqsMessage::default();
                record.message_id = Some(format!("{tag}-{offset}-{b}-{i}"));
                record.body = Some(
                    serde_json::to_string(m).map_err(|e| format!("message not encoded: {e}"))?,
                );
                event.records.push(record);
            }
            Ok(event)
        })
        .collect()
}

/// Runs the batches the way C / 10 concurrent Lambda invocations would: each invocation takes
/// the next batch as soon as it is done with its last. Returns the batch item failures.
async fn run_batches(
    deps: &Arc<ChargeDeps>,
    batches: VecDeque<SqsEvent>,
    invocations: usize,
    per_batch: usize,
    deadline: Option<DateTime<Utc>>,
) -> usize {
    let backlog = Arc::new(Mutex::new(batches));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..invocations {
        let deps = deps.clone();
        let backlog = backlog.clone();
        workers.spawn(async move {
            let mut failures = 0;
            let mut request = 0;
            loop {
                let next = backlog
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                let Some(batch) = next else {
                    return failures;
                };
                request += 1;
                let owner = format!("bench-{worker}-{request}");
                let response =
                    charger::handle_batch(deps.clone(), per_batch, batch, &owner, deadline).await;
                failures += response.batch_item_failures.len();
            }
        });
    }
    let mut failures = 0;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(f) => failures += f,
            Err(e) => {
                eprintln!("an invocation task failed: {e}");
                failures += 1;
            }
        }
    }
    failures
}

/// Exactly one `charged` transaction per seeded subscription's period-0 order and nothing
/// else in the ledger; every subscription paid up to period 1.
async fn check_ledger(sim: &Simulator, store: &MemoryStore, seeded: &Seeded) -> Result<(), String> {
    let ledger = sim.ledger();
    let expected: BTreeSet<String> = seeded
        .subscriptions
        .iter()
        .map(|(_, id)| OrderId::for_period(id, 0).as_str().to_owned())
        .collect();
    let mut charged = BTreeSet::new();
    for entry in &ledger {
        if entry.status.as_str() != "charged" {
            return Err(format!(
                "order {} has a {} transaction",
                entry.order_id,
                entry.status.as_str()
            ));
        }
        if !charged.insert(entry.order_id.clone()) {
            return Err(format!("order {} was charged twice", entry.order_id));
        }
        if !expected.contains(&entry.order_id) {
            return Err(format!("order {} is not a seeded period", entry.order_id));
        }
    }
    if charged.len() != expected.len() {
        return Err(format!(
            "{} charged transactions for {} subscriptions",
            charged.len(),
            expected.len()
        ));
    }
    let plan = PlanId::parse("premium").map_err(|e| e.to_string())?;
    for (customer, id) in &seeded.subscriptions {
        let sub = store
            .get(&Key::Subscription {
                customer: customer.clone(),
                plan: plan.clone(),
            })
            .await
            .map_err(|e| e.to_string())?;
        match sub.map(|v| v.value) {
            Some(Record::Subscription(s)) if s.id == *id && s.period == 1 => {}
            Some(Record::Subscription(s)) => {
                return Err(format!(
                    "subscription of {customer} is at period {}, not 1",
                    s.period
                ))
            }
            _ => return Err(format!("subscription of {customer} is missing")),
        }
    }
    Ok(())
}
