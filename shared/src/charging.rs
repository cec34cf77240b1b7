//! Flow 4: scheduled charging, exactly once per subscription period.
//!
//! Oen has no idempotency, so the protocol is ours:
//! - every attempt of a period reuses the period's stable order id;
//! - a worker claims the period with a conditional write (a lease) before it calls Oen;
//! - whenever an earlier attempt may have reached Oen (an earlier attempt at all, an unknown
//!   outcome, or a lease whose holder vanished), the worker first reads
//!   `GET /order/{orderId}/transactions`: paid settles without charging, anything in flight
//!   stays unknown, and only "none" or "all failed" allows a new attempt;
//! - `C026`, 504, timeouts and dropped connections after sending make the period unknown, and
//!   unknown periods are reconciled with back-off, never charged blind;
//! - the outcome and the subscription's next state are written in one transaction.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use thiserror::Error;

use crate::clock::Clock;
use crate::domain::{Catalog, CustomerId, MerchantId, OrderId, Plan, PlanId, TransactionId};
use crate::events::{DomainEvent, EventSink};
use crate::oen::{ChargeRequest, OenError, OenGateway, OrderState, RefundRequest};
use crate::queue::{QueueError, WorkMessage, WorkQueue};
use crate::store::{
    AuditEntry, ChargePeriod, DueCursor, Expect, PeriodState, Put, Store, StoreError, StoreExt,
    Subscription, SubscriptionStatus, Versioned, DUE_SHARDS,
};
use crate::vault::{Ciphertext, TokenVault, VaultContext};

/// Tunables of the charging protocol.
#[derive(Debug, Clone)]
pub struct ChargePolicy {
    /// Waits after each soft decline before the next attempt; one more decline cancels.
    pub dunning: Vec<Duration>,
    /// Waits before the n-th reconciliation of an unknown period (the last one repeats).
    pub reconcile_backoff: Vec<Duration>,
    /// An unknown period older than this raises an alarm on every check.
    pub unknown_alarm_after: Duration,
    /// The lease when the caller has no deadline of its own (the dev stack, tests).
    pub lease: Duration,
    /// Time a charge attempt needs (Oen's timeout plus our writes); with less left before the
    /// deadline, a worker hands the work back instead of claiming it.
    pub min_time_for_attempt: Duration,
    /// After a configuration error (`A0001`, `V0001`, 403, …) the subscription is looked at
    /// again this much later, with no change to the customer's state.
    pub config_error_retry: Duration,
    /// Entries a planning message takes from the due index.
    pub plan_page: usize,
}

impl Default for ChargePolicy {
    fn default() -> Self {
        Self {
            dunning: vec![
                Duration::days(1),
                Duration::days(3),
                Duration::days(5),
                Duration::days(7),
            ],
            reconcile_backoff: vec![Duration::minutes(5), Duration::hours(1), Duration::days(1)],
            unknown_alarm_after: Duration::days(3),
            lease: Duration::seconds(60),
            min_time_for_attempt: Duration::seconds(25),
            config_error_retry: Duration::hours(1),
            plan_page: 200,
        }
    }
}

impl ChargePolicy {
    /// The defaults, with `DUNNING_DAYS` (e.g. `1,3,5,7`) and `UNKNOWN_ALARM_HOURS` applied.
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        use crate::config::ConfigError;
        let mut policy = Self::default();
        if let Ok(raw) = std::env::var("DUNNING_DAYS") {
            let days: Result<Vec<i64>, _> =
                raw.split(',').map(|d| d.trim().parse::<i64>()).collect();
            match days {
                Ok(d) if d.iter().all(|x| (0..=60).contains(x)) => {
                    policy.dunning = d.into_iter().map(Duration::days).collect()
                }
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "DUNNING_DAYS",
                        reason: "expected comma-separated whole days, 0 to 60 each".into(),
                    })
                }
            }
        }
        if let Ok(raw) = std::env::var("UNKNOWN_ALARM_HOURS") {
            let hours: i64 =
                raw.trim()
                    .parse()
                    .ok()
                    .filter(|h| *h > 0)
                    .ok_or(ConfigError::Invalid {
                        name: "UNKNOWN_ALARM_HOURS",
                        reason: "expected a positive whole number".into(),
                    })?;
            policy.unknown_alarm_after = Duration::hours(hours);
        }
        Ok(policy)
    }

    fn reconcile_after(&self, checks: u32) -> Duration {
        let i = (checks as usize).min(self.reconcile_backoff.len().saturating_sub(1));
        self.reconcile_backoff
            .get(i)
            .copied()
            .unwrap_or(Duration::days(1))
    }
}

/// What charging needs.
#[derive(Clone)]
pub struct ChargeDeps {
    pub store: Arc<dyn Store>,
    pub vault: Arc<dyn TokenVault>,
    pub oen: Arc<dyn OenGateway>,
    pub events: Arc<dyn EventSink>,
    pub queue: Arc<dyn WorkQueue>,
    pub clock: Arc<dyn Clock>,
    pub plans: Catalog,
    pub merchant: MerchantId,
    pub policy: ChargePolicy,
}

impl ChargeDeps {
    /// The binding flows' adapters, plus the work queue and the charging policy.
    pub fn new(
        base: crate::binding::BindingDeps,
        queue: Arc<dyn WorkQueue>,
        policy: ChargePolicy,
    ) -> Self {
        let crate::binding::BindingDeps {
            store,
            vault,
            oen,
            events,
            clock,
            plans,
            merchant,
        } = base;
        Self {
            store,
            vault,
            oen,
            events,
            queue,
            clock,
            plans,
            merchant,
            policy,
        }
    }
}

/// Who is working and until when.
#[derive(Debug, Clone)]
pub struct WorkContext {
    /// Identifies the lease holder (the Lambda request id, a process id, …).
    pub owner: String,
    /// When this invocation will be stopped, if it will.
    pub deadline: Option<DateTime<Utc>>,
}

/// What became of one unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkOutcome {
    Planned {
        enqueued: usize,
        continued: bool,
    },
    /// Nothing to do (not due, already settled, someone else holds the lease).
    Skipped(&'static str),
    Paid {
        transaction: String,
        charged: bool,
    },
    SoftDeclined {
        retry_at: DateTime<Utc>,
    },
    HardDeclined,
    Canceled,
    Unknown {
        reconcile_at: DateTime<Utc>,
    },
    /// The request never reached Oen; the period is free again for a prompt retry.
    NotSent,
    /// Our configuration is wrong; nothing about the customer changed.
    ConfigError,
}

#[derive(Debug, Error)]
pub enum WorkError {
    /// Worth retrying later (the message goes back to the queue).
    #[error("retry later: {0}")]
    Retry(String),
}

impl From<StoreError> for WorkError {
    fn from(e: StoreError) -> Self {
        WorkError::Retry(e.to_string())
    }
}

impl From<QueueError> for WorkError {
    fn from(e: QueueError) -> Self {
        WorkError::Retry(e.to_string())
    }
}

/// The scheduled run: one planning message per shard of the due index, as of `now`.
pub async fn schedule(deps: &ChargeDeps, now: DateTime<Utc>) -> Result<usize, WorkError> {
    let messages: Vec<WorkMessage> = (0..DUE_SHARDS)
        .map(|s| WorkMessage::plan(s, now, None))
        .collect();
    deps.queue.enqueue(&messages).await?;
    Ok(messages.len())
}

/// Handles one message from the queue.
pub async fn handle(
    deps: &ChargeDeps,
    message: &WorkMessage,
    ctx: &WorkContext,
) -> Result<WorkOutcome, WorkError> {
    match message {
        WorkMessage::Plan { shard, now, cursor } => {
            plan_page(deps, *shard, *now, cursor.clone().map(DueCursor)).await
        }
        WorkMessage::Charge { customer, plan } => charge(deps, customer, plan, ctx, false).await,
    }
}

async fn plan_page(
    deps: &ChargeDeps,
    shard: u16,
    now: DateTime<Utc>,
    cursor: Option<DueCursor>,
) -> Result<WorkOutcome, WorkError> {
    let page = deps
        .store
        .due(shard, now, deps.policy.plan_page, cursor)
        .await?;
    let mut messages: Vec<WorkMessage> = page
        .entries
        .iter()
        .map(|e| WorkMessage::Charge {
            customer: e.customer.clone(),
            plan: e.plan.clone(),
        })
        .collect();
    let enqueued = messages.len();
    let continued = page.next.is_some();
    if let Some(next) = page.next {
        messages.push(WorkMessage::plan(shard, now, Some(next)));
    }
    if !messages.is_empty() {
        deps.queue.enqueue(&messages).await?;
    }
    Ok(WorkOutcome::Planned {
        enqueued,
        continued,
    })
}

/// Operator action: charge (or reconcile) a subscription's current period now, whatever its
/// schedule says, under the same protocol.
pub async fn charge_now(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan: &PlanId,
    ctx: &WorkContext,
) -> Result<WorkOutcome, WorkError> {
    charge(deps, customer, plan, ctx, true).await
}

/// Why the worker must ask Oen about the order before (maybe) charging.
fn must_query_first(p: &ChargePeriod, now: DateTime<Utc>) -> Result<bool, &'static str> {
    match &p.state {
        PeriodState::Paid { .. } => Err("period already paid"),
        PeriodState::Charging { lease_until, .. } if *lease_until > now => {
            Err("another worker holds the lease")
        }
        PeriodState::Charging { .. } => Ok(true),
        PeriodState::Unknown { .. } => Ok(true),
        PeriodState::Open | PeriodState::Declined { .. } => Ok(p.attempts > 0),
    }
}

async fn charge(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan_id: &PlanId,
    ctx: &WorkContext,
    forced: bool,
) -> Result<WorkOutcome, WorkError> {
    let now = deps.clock.now();
    let Some(sub) = deps.store.subscription(customer, plan_id).await? else {
        return Ok(WorkOutcome::Skipped("no such subscription"));
    };
    let Some(plan) = deps.plans.get(plan_id).cloned() else {
        tracing::error!(plan = %plan_id, customer = %customer, "subscription to a plan missing from the catalog");
        crate::metrics::count("charger", "ConfigError");
        return Ok(WorkOutcome::ConfigError);
    };
    let due = sub.value.next_action_at.is_some_and(|t| t <= now);
    if !due && !forced {
        return Ok(WorkOutcome::Skipped("not due"));
    }
    if let Some(deadline) = ctx.deadline {
        if deadline - now < deps.policy.min_time_for_attempt {
            return Err(WorkError::Retry(
                "too little time left before the deadline".into(),
            ));
        }
    }
    let lease_until = ctx
        .deadline
        .map_or(now + deps.policy.lease, |d| d + Duration::seconds(10));
    let order_id = OrderId::for_period(&sub.value.id, sub.value.period);

    // Claim: put-if-absent for a fresh period (the common case, one write), else read and
    // compare-and-set.
    let fresh = ChargePeriod {
        subscription: sub.value.id.clone(),
        period: sub.value.period,
        order_id: order_id.clone(),
        amount: plan.amount,
        state: PeriodState::Charging {
            lease_owner: ctx.owner.clone(),
            lease_until,
        },
        attempts: 0,
        last_error: None,
        updated_at: now,
        refunded: None,
    };
    let may_charge = matches!(
        sub.value.status,
        SubscriptionStatus::Active | SubscriptionStatus::PastDue
    );
    let claim = if may_charge && !sub.value.cancel_at_period_end {
        match deps
            .store
            .commit(vec![Put::new(fresh.clone(), Expect::Absent)])
            .await
        {
            Ok(()) => Claim {
                period: fresh,
                version: 1,
                query_first: false,
                prior: PeriodState::Open,
            },
            Err(StoreError::Conflict(_)) => {
                match claim_existing(deps, &sub.value, ctx, lease_until, now).await? {
                    Ok(c) => c,
                    Err(reason) => return Ok(WorkOutcome::Skipped(reason)),
                }
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        // Canceled, waiting for a card, or ending at period end: never a new charge, but an
        // attempt whose outcome is unknown must still be reconciled.
        let existing = deps.store.period(&sub.value.id, sub.value.period).await?;
        let uncertain = existing.as_ref().is_some_and(|p| {
            matches!(
                p.value.state,
                PeriodState::Unknown { .. } | PeriodState::Charging { .. }
            )
        });
        if !uncertain {
            if sub.value.cancel_at_period_end && sub.value.status != SubscriptionStatus::Canceled {
                return cancel_now(deps, &sub, existing, now, "ended at period end").await;
            }
            return Ok(WorkOutcome::Skipped("subscription may not be charged"));
        }
        match claim_existing(deps, &sub.value, ctx, lease_until, now).await? {
            Ok(c) => c,
            Err(reason) => return Ok(WorkOutcome::Skipped(reason)),
        }
    };
    let query_first = claim.query_first;
    let attempt = Attempt {
        deps,
        plan: &plan,
        period: claim.period,
        version: claim.version,
        prior: claim.prior,
        customer: customer.clone(),
        sub: sub.clone(),
        ctx,
    };

    if query_first {
        match deps.oen.order_transactions(&order_id).await {
            Ok(txs) => match OrderState::of(&txs) {
                OrderState::Paid(tx) => {
                    let auth = tx.auth_code.clone();
                    return attempt
                        .settle(Settled::Paid {
                            transaction: tx.id,
                            auth_code: auth,
                            charged: false,
                        })
                        .await;
                }
                OrderState::InFlight => {
                    return attempt
                        .settle(Settled::Unknown(
                            "a transaction of this order is still in flight".into(),
                        ))
                        .await
                }
                OrderState::NoAttempt | OrderState::AllFailed
                    if !may_charge || sub.value.cancel_at_period_end =>
                {
                    // Reconciled to "nothing was charged" on a subscription that may not be charged.
                    return attempt.settle(Settled::Abandoned).await;
                }
                OrderState::NoAttempt | OrderState::AllFailed => {}
            },
            Err(e) => {
                return attempt
                    .settle(Settled::Unknown(format!("order query failed: {e}")))
                    .await
            }
        }
    }

    // Decrypt only now, right before the call.
    let card = match deps.store.card(customer, &sub.value.card).await {
        Ok(Some(c)) => c.value,
        Ok(None) => {
            tracing::error!(customer = %customer, binding = %sub.value.card, "subscription points at a card that is not stored");
            return attempt
                .settle(Settled::Config("card record missing".into()))
                .await;
        }
        Err(e) => return attempt.release_for_retry(e.to_string()).await,
    };
    let vault_ctx = VaultContext {
        merchant: deps.merchant.clone(),
        customer: customer.clone(),
        binding: card.binding.clone(),
    };
    let token = match deps
        .vault
        .decrypt(&Ciphertext(card.ciphertext), &vault_ctx)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return attempt
                .release_for_retry(format!("token not decrypted: {e}"))
                .await
        }
    };
    let request = ChargeRequest {
        token,
        order_id: order_id.clone(),
        amount: plan.amount,
        product_details: plan.product_details(),
        user_id: Some(customer.to_string()),
        user_email: None,
        note: None,
    };
    let result = deps.oen.charge(&request).await;
    drop(request);
    let settled = match result {
        Ok(receipt) => Settled::Paid {
            transaction: receipt.transaction_number.to_string(),
            auth_code: receipt.auth_code,
            charged: true,
        },
        Err(OenError::SoftDecline { code, .. }) => Settled::SoftDecline(code),
        Err(OenError::HardDecline { code, .. }) => Settled::HardDecline(code),
        Err(OenError::NotSent(reason)) => Settled::NotSent(reason),
        Err(e @ OenError::Config { .. }) => Settled::Config(e.to_string()),
        Err(e) => Settled::Unknown(e.to_string()),
    };
    attempt.settle_after_call(settled).await
}

/// A claimed period: as written with our lease, its version, whether Oen must be asked first,
/// and the state it had before the claim.
struct Claim {
    period: ChargePeriod,
    version: u64,
    query_first: bool,
    prior: PeriodState,
}

/// Claims a period that already has a record. `Err(reason)` when there is nothing to do.
async fn claim_existing(
    deps: &ChargeDeps,
    sub: &Subscription,
    ctx: &WorkContext,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Result<Claim, &'static str>, WorkError> {
    let Some(current) = deps.store.period(&sub.id, sub.period).await? else {
        return Ok(Err("period vanished"));
    };
    if let PeriodState::Unknown { reconcile_at, .. } = current.value.state {
        if reconcile_at > now {
            return Ok(Err("unknown period not yet due for reconciliation"));
        }
    }
    let query_first = match must_query_first(&current.value, now) {
        Ok(q) => q,
        Err(reason) => return Ok(Err(reason)),
    };
    let mut claimed = current.value.clone();
    claimed.state = PeriodState::Charging {
        lease_owner: ctx.owner.clone(),
        lease_until,
    };
    claimed.updated_at = now;
    match deps
        .store
        .commit(vec![Put::new(
            claimed.clone(),
            Expect::Version(current.version),
        )])
        .await
    {
        Ok(()) => Ok(Ok(Claim {
            period: claimed,
            version: current.version + 1,
            query_first,
            prior: current.value.state,
        })),
        Err(StoreError::Conflict(_)) => Ok(Err("another worker claimed the period first")),
        Err(e) => Err(e.into()),
    }
}

async fn cancel_now(
    deps: &ChargeDeps,
    sub: &Versioned<Subscription>,
    period: Option<Versioned<ChargePeriod>>,
    now: DateTime<Utc>,
    why: &str,
) -> Result<WorkOutcome, WorkError> {
    let mut s = sub.value.clone();
    s.status = SubscriptionStatus::Canceled;
    s.next_action_at = None;
    s.updated_at = now;
    let mut puts = vec![Put::new(s.clone(), Expect::Version(sub.version))];
    if let Some(p) = period {
        if matches!(p.value.state, PeriodState::Open) {
            let mut closed = p.value.clone();
            closed.state = PeriodState::Declined {
                code: "CANCELED".into(),
                at: now,
            };
            closed.updated_at = now;
            puts.push(Put::new(closed, Expect::Version(p.version)));
        }
    }
    puts.push(Put::new(
        AuditEntry::new(
            s.customer.clone(),
            now,
            "charger",
            "subscription.canceled",
            None,
            why,
        ),
        Expect::Absent,
    ));
    match deps.store.commit(puts).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Ok(WorkOutcome::Skipped("subscription changed concurrently"))
        }
        Err(e) => return Err(e.into()),
    }
    publish(deps, vec![canceled_event(&s, now, why)]).await;
    Ok(WorkOutcome::Canceled)
}

/// `subscription.canceled` outside a charge attempt (operator, or the end of a paid period).
fn canceled_event(s: &Subscription, now: DateTime<Utc>, reason: &str) -> DomainEvent {
    DomainEvent::new(
        "subscription.canceled",
        s.id.as_str(),
        now,
        s.customer.as_str(),
        json!({"subscription": s.id, "plan": s.plan, "reason": reason}),
    )
}

/// How an attempt ended, before it is written down.
#[derive(Debug)]
enum Settled {
    Paid {
        transaction: String,
        auth_code: Option<String>,
        charged: bool,
    },
    SoftDecline(String),
    HardDecline(String),
    Unknown(String),
    NotSent(String),
    Config(String),
    /// Reconciled to "nothing charged" on a subscription that must not be charged any more.
    Abandoned,
}

struct Attempt<'a> {
    deps: &'a ChargeDeps,
    plan: &'a Plan,
    /// The period as claimed (state `Charging`).
    period: ChargePeriod,
    version: u64,
    /// Its state before the claim.
    prior: PeriodState,
    customer: CustomerId,
    /// The subscription as read before the claim (the claim does not change it): the outcome
    /// is written against it, and only a conflict makes us read it again.
    sub: Versioned<Subscription>,
    ctx: &'a WorkContext,
}

impl Attempt<'_> {
    async fn settle_after_call(self, settled: Settled) -> Result<WorkOutcome, WorkError> {
        self.write(settled, true).await
    }

    async fn settle(self, settled: Settled) -> Result<WorkOutcome, WorkError> {
        self.write(settled, false).await
    }

    /// Our own failure before Oen was called: free the period, try again later.
    async fn release_for_retry(self, reason: String) -> Result<WorkOutcome, WorkError> {
        tracing::error!(order = %self.period.order_id, error = %reason, "charge attempt abandoned before calling Oen");
        let _ = self.write(Settled::NotSent(reason.clone()), false).await;
        Err(WorkError::Retry(reason))
    }

    /// Writes the period's outcome and the subscription's next state in one transaction. A
    /// concurrent change to the subscription (a new card, say) is re-read and re-applied; the
    /// period's lease must still be ours.
    async fn write(self, settled: Settled, called: bool) -> Result<WorkOutcome, WorkError> {
        let deps = self.deps;
        let mut known = Some(self.sub.clone());
        for _ in 0..3 {
            let now = deps.clock.now();
            let sub = match known.take() {
                Some(sub) => sub,
                None => match deps
                    .store
                    .subscription(&self.customer, &self.plan.id)
                    .await?
                {
                    Some(sub) => sub,
                    None => {
                        return Err(WorkError::Retry(
                            "subscription vanished during a charge".into(),
                        ))
                    }
                },
            };
            let (period, subscription, outcome, events, audit) = transition(
                &deps.policy,
                self.plan,
                &self.period,
                &self.prior,
                sub.value.clone(),
                &settled,
                called,
                now,
            );
            let mut puts = vec![Put::new(period, Expect::Version(self.version))];
            // A subscription started over (new id) while this attempt ran: leave it alone.
            if let Some(s) = subscription.filter(|s| s.id == self.period.subscription) {
                puts.push(Put::new(s, Expect::Version(sub.version)));
            }
            if let Some(a) = audit {
                puts.push(Put::new(a, Expect::Absent));
            }
            match deps.store.commit(puts).await {
                Ok(()) => {
                    log_outcome(&self.period.order_id, &outcome, &settled, self.ctx);
                    publish(deps, events).await;
                    return Ok(outcome);
                }
                Err(StoreError::Conflict(_)) => {
                    // Lost the lease? Then whoever holds it reconciles; otherwise retry with
                    // the fresh subscription.
                    let current = deps
                        .store
                        .period(&self.period.subscription, self.period.period)
                        .await?;
                    if current.map(|p| p.version) != Some(self.version) {
                        tracing::error!(order = %self.period.order_id, "lease lost before the outcome was written; the next worker reconciles");
                        return Err(WorkError::Retry("lease lost".into()));
                    }
                }
                Err(e) => {
                    // The period stays claimed; after the lease, the next worker asks Oen.
                    tracing::error!(order = %self.period.order_id, error = %e, "outcome not written; the period will be reconciled");
                    return Err(e.into());
                }
            }
        }
        Err(WorkError::Retry("the subscription kept changing".into()))
    }
}

type Transition = (
    ChargePeriod,
    Option<Subscription>,
    WorkOutcome,
    Vec<DomainEvent>,
    Option<AuditEntry>,
);

/// The pure state machine: the period and subscription after an attempt.
#[allow(clippy::too_many_arguments)]
fn transition(
    policy: &ChargePolicy,
    plan: &Plan,
    claimed: &ChargePeriod,
    prior: &PeriodState,
    mut sub: Subscription,
    settled: &Settled,
    called: bool,
    now: DateTime<Utc>,
) -> Transition {
    let mut p = claimed.clone();
    p.updated_at = now;
    if called && !matches!(settled, Settled::NotSent(_) | Settled::Config(_)) {
        p.attempts += 1;
    }
    sub.updated_at = now;
    let order = p.order_id.as_str().to_owned();
    let customer = sub.customer.to_string();
    let ev = |kind: &str, key: String, data: serde_json::Value| {
        DomainEvent::new(kind, &key, now, &customer, data)
    };
    let base = json!({"subscription": sub.id, "plan": sub.plan, "period": p.period, "orderId": order, "amount": p.amount.ntd()});
    let with = |extra: serde_json::Value| {
        let mut b = base.clone();
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        b
    };
    match settled {
        Settled::Paid {
            transaction,
            auth_code,
            charged,
        } => {
            p.state = PeriodState::Paid {
                transaction: transaction.clone(),
                auth_code: auth_code.clone(),
                paid_at: now,
            };
            p.last_error = None;
            let paid_period = sub.period;
            let advance = paid_period == p.period;
            if advance {
                sub.period += 1;
                sub.dunning_attempts = 0;
                if sub.status != SubscriptionStatus::Canceled {
                    sub.status = SubscriptionStatus::Active;
                    sub.next_action_at = Some(plan.interval.due_date(sub.anchor, sub.period));
                } else {
                    sub.next_action_at = None;
                }
            }
            let audit = AuditEntry::new(
                sub.customer.clone(),
                now,
                "charger",
                "payment.succeeded",
                None,
                format!("order {order}, transaction {transaction}, charged now: {charged}"),
            );
            let events = vec![ev(
                "payment.succeeded",
                order.clone(),
                with(json!({"transaction": transaction, "reconciled": !charged})),
            )];
            (
                p,
                Some(sub),
                WorkOutcome::Paid {
                    transaction: transaction.clone(),
                    charged: *charged,
                },
                events,
                Some(audit),
            )
        }
        Settled::SoftDecline(code) => {
            p.state = PeriodState::Open;
            p.last_error = Some(format!("soft decline {code}"));
            sub.dunning_attempts += 1;
            let n = sub.dunning_attempts as usize;
            let mut events = vec![ev(
                "payment.failed",
                format!("{order}:{}", p.attempts),
                with(json!({"code": code, "hard": false})),
            )];
            if let Some(wait) = policy.dunning.get(n - 1) {
                let retry_at = now + *wait;
                sub.status = SubscriptionStatus::PastDue;
                sub.next_action_at = Some(retry_at);
                events.push(ev(
                    "subscription.past_due",
                    format!("{order}:{n}"),
                    with(json!({"retryAt": retry_at, "attempt": n})),
                ));
                (
                    p,
                    Some(sub),
                    WorkOutcome::SoftDeclined { retry_at },
                    events,
                    None,
                )
            } else {
                p.state = PeriodState::Declined {
                    code: code.clone(),
                    at: now,
                };
                sub.status = SubscriptionStatus::Canceled;
                sub.next_action_at = None;
                events.push(ev(
                    "subscription.canceled",
                    sub.id.to_string(),
                    with(json!({"reason": "dunning exhausted"})),
                ));
                let audit = AuditEntry::new(
                    sub.customer.clone(),
                    now,
                    "charger",
                    "subscription.canceled",
                    None,
                    format!("dunning exhausted on order {order}"),
                );
                (p, Some(sub), WorkOutcome::Canceled, events, Some(audit))
            }
        }
        Settled::HardDecline(code) => {
            p.state = PeriodState::Declined {
                code: code.clone(),
                at: now,
            };
            p.last_error = Some(format!("hard decline {code}"));
            sub.status = SubscriptionStatus::RequiresPaymentMethod;
            sub.next_action_at = None;
            let events = vec![
                ev(
                    "payment.failed",
                    format!("{order}:{}", p.attempts),
                    with(json!({"code": code, "hard": true})),
                ),
                ev(
                    "subscription.requires_payment_method",
                    format!("{order}:{}", p.attempts),
                    with(json!({"code": code})),
                ),
            ];
            (p, Some(sub), WorkOutcome::HardDeclined, events, None)
        }
        Settled::Unknown(reason) => {
            // A failed reconciliation keeps the age of the unknown and backs off further; a new
            // call that ends unknown starts over.
            let (since, checks) = match prior {
                PeriodState::Unknown { since, checks, .. } if !called => (*since, checks + 1),
                _ => (now, 0),
            };
            let reconcile_at = now + policy.reconcile_after(checks);
            if now - since > policy.unknown_alarm_after {
                tracing::error!(order = %order, since = %since, "charge outcome still unknown: reconcile by hand with Oen");
                crate::metrics::count("charger", "UnknownTooOld");
            }
            p.state = PeriodState::Unknown {
                since,
                reconcile_at,
                checks,
            };
            p.last_error = Some(reason.chars().take(200).collect());
            sub.next_action_at = Some(reconcile_at);
            let events = if called {
                vec![ev(
                    "payment.unknown",
                    format!("{order}:{}", p.attempts),
                    with(json!({"reconcileAt": reconcile_at})),
                )]
            } else {
                vec![]
            };
            (
                p,
                Some(sub),
                WorkOutcome::Unknown { reconcile_at },
                events,
                None,
            )
        }
        Settled::NotSent(reason) => {
            // Nothing reached Oen: back to how it was, with the lease released. The
            // subscription stays due, so the next planning run picks it up again.
            p.state = PeriodState::Open;
            p.last_error = Some(reason.chars().take(200).collect());
            (p, None, WorkOutcome::NotSent, vec![], None)
        }
        Settled::Config(reason) => {
            tracing::error!(order = %order, error = %reason, "configuration error: no customer state changed");
            crate::metrics::count("charger", "ConfigError");
            p.state = PeriodState::Open;
            p.last_error = Some(reason.chars().take(200).collect());
            sub.next_action_at = Some(now + policy.config_error_retry);
            (p, Some(sub), WorkOutcome::ConfigError, vec![], None)
        }
        Settled::Abandoned => {
            p.state = PeriodState::Declined {
                code: "CANCELED".into(),
                at: now,
            };
            sub.next_action_at = None;
            if sub.cancel_at_period_end {
                sub.status = SubscriptionStatus::Canceled;
            }
            (p, Some(sub), WorkOutcome::Canceled, vec![], None)
        }
    }
}

fn log_outcome(order: &OrderId, outcome: &WorkOutcome, settled: &Settled, ctx: &WorkContext) {
    match outcome {
        WorkOutcome::Unknown { .. } => {
            tracing::warn!(order = %order, owner = %ctx.owner, detail = ?settled, "charge outcome unknown; will reconcile")
        }
        _ => {
            tracing::info!(order = %order, owner = %ctx.owner, outcome = ?outcome, "period settled")
        }
    }
}

async fn publish(deps: &ChargeDeps, events: Vec<DomainEvent>) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = deps.events.publish(&events).await {
        tracing::error!(error = %e, count = events.len(), "domain events not published");
        crate::metrics::count("charger", "EventsNotPublished");
    }
}

#[derive(Debug, Error)]
pub enum OperationError {
    #[error("no subscription for that customer and plan")]
    NotFound,
    #[error("{0}")]
    Refused(String),
    #[error("Oen: {0}")]
    Oen(OenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Operator action: cancel now, or at the end of the paid period.
pub async fn cancel(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan: &PlanId,
    at_period_end: bool,
) -> Result<(), OperationError> {
    let now = deps.clock.now();
    let sub = deps
        .store
        .subscription(customer, plan)
        .await?
        .ok_or(OperationError::NotFound)?;
    if sub.value.status == SubscriptionStatus::Canceled {
        return Ok(());
    }
    let mut s = sub.value.clone();
    s.updated_at = now;
    let period = deps.store.period(&s.id, s.period).await?;
    let uncertain = period.as_ref().is_some_and(|p| {
        matches!(
            p.value.state,
            PeriodState::Unknown { .. } | PeriodState::Charging { .. }
        )
    });
    if at_period_end {
        s.cancel_at_period_end = true;
    } else {
        s.status = SubscriptionStatus::Canceled;
        // An attempt whose outcome is unknown is still reconciled: money may have moved.
        if !uncertain {
            s.next_action_at = None;
        }
    }
    let audit = AuditEntry::new(
        s.customer.clone(),
        now,
        "operator",
        if at_period_end {
            "cancel.at_period_end"
        } else {
            "cancel"
        },
        None,
        "",
    );
    deps.store
        .commit(vec![
            Put::new(s.clone(), Expect::Version(sub.version)),
            Put::new(audit, Expect::Absent),
        ])
        .await?;
    if !at_period_end {
        publish(deps, vec![canceled_event(&s, now, "operator")]).await;
    }
    Ok(())
}

/// Operator action: refund a paid period (whole, or `amount`). Oen allows one successful refund
/// per transaction; after an unknown outcome the transaction is read before anything is resent.
pub async fn refund(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan: &PlanId,
    period: u32,
    amount: Option<crate::domain::Amount>,
    reason: Option<String>,
) -> Result<u32, OperationError> {
    let now = deps.clock.now();
    let sub = deps
        .store
        .subscription(customer, plan)
        .await?
        .ok_or(OperationError::NotFound)?;
    let p = deps
        .store
        .period(&sub.value.id, period)
        .await?
        .ok_or_else(|| OperationError::Refused(format!("period {period} has no charge")))?;
    let PeriodState::Paid { transaction, .. } = &p.value.state else {
        return Err(OperationError::Refused(format!(
            "period {period} is not paid"
        )));
    };
    if p.value.refunded.is_some() {
        return Err(OperationError::Refused(format!(
            "period {period} was already refunded (Oen allows one refund per transaction)"
        )));
    }
    let wanted = amount.map_or(p.value.amount.ntd(), |a| a.ntd());
    if wanted > p.value.amount.ntd() {
        return Err(OperationError::Refused(format!(
            "cannot refund NT${wanted} of a NT${} charge",
            p.value.amount.ntd()
        )));
    }
    let tx =
        TransactionId::parse(transaction).map_err(|e| OperationError::Refused(e.to_string()))?;
    let result = deps
        .oen
        .refund(&RefundRequest {
            transaction_number: tx.clone(),
            amount,
            reason,
        })
        .await;
    let refunded = match result {
        Ok(()) => wanted,
        Err(e) if e.money_may_have_moved() || matches!(e, OenError::State { .. }) => {
            // Read the transaction before deciding anything.
            let t = deps
                .oen
                .transaction(&tx)
                .await
                .map_err(OperationError::Oen)?;
            match t.refund_amount.filter(|r| *r > 0) {
                Some(r) => u32::try_from(r).unwrap_or(wanted),
                None => return Err(OperationError::Oen(e)),
            }
        }
        Err(e) => return Err(OperationError::Oen(e)),
    };
    let mut updated = p.value.clone();
    updated.refunded = Some(refunded);
    updated.updated_at = now;
    let audit = AuditEntry::new(
        customer.clone(),
        now,
        "operator",
        "refund",
        None,
        format!("order {}, NT${refunded}", p.value.order_id),
    );
    deps.store
        .commit(vec![
            Put::new(updated, Expect::Version(p.version)),
            Put::new(audit, Expect::Absent),
        ])
        .await?;
    publish(
        deps,
        vec![DomainEvent::new(
            "payment.refunded",
            p.value.order_id.as_str(),
            now,
            customer.as_str(),
            json!({"orderId": p.value.order_id, "amount": refunded, "transaction": transaction}),
        )],
    )
    .await;
    Ok(refunded)
}
