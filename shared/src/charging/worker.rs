//! The exactly-once worker: claim the period, ask Oen about the order when an earlier attempt
//! may have reached it, and only then decrypt the token and charge.

use chrono::{DateTime, Utc};

use super::attempt::Attempt;
use super::transition::Settled;
use super::{operations, ChargeDeps, WorkContext, WorkError, WorkOutcome};
use crate::domain::{
    AnomalyKind, AnomalyRefund, ChargePeriod, CustomerId, OrderId, PaymentAnomaly, PeriodState,
    Plan, PlanId, Subscription, SubscriptionId, SubscriptionStatus,
};
use crate::oen::{ChargeReceipt, ChargeRequest, OenError, OrderState, Transaction};
use crate::store::{Expect, Put, StoreError, StoreExt, Versioned};
use crate::vault::{VaultContext, VaultError};

/// Why a subscription is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// A planned message: only a due subscription is charged.
    Schedule,
    /// An operator's "charge now": whatever the schedule says, under the same protocol.
    Operator,
}

/// Charges (or reconciles) the current period of `customer`'s subscription to `plan_id`.
pub(super) async fn charge(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan_id: &PlanId,
    ctx: &WorkContext,
    trigger: Trigger,
) -> Result<WorkOutcome, WorkError> {
    let now = deps.clock.now();
    let Some(sub) = deps.store.subscription(customer, plan_id).await? else {
        return Ok(WorkOutcome::Skipped("no such subscription"));
    };
    // The catalog's terms, else those the subscription was last charged on: a retired plan
    // keeps charging and reconciling its subscriptions.
    let Some(plan) = deps
        .plans
        .get_or(plan_id, sub.value.terms.as_ref())
        .cloned()
    else {
        tracing::error!(plan = %plan_id, customer = %customer, "subscription to a plan missing from the catalog, with no terms of its own");
        crate::metrics::count("charger", "ConfigError");
        return Ok(WorkOutcome::ConfigError);
    };
    let due = sub.value.next_action_at.is_some_and(|t| t <= now);
    if !due && trigger == Trigger::Schedule {
        return Ok(WorkOutcome::Skipped("not due"));
    }
    if !deps.policy.has_time_for_attempt(ctx.deadline, now) {
        return Err(WorkError::Retry(
            "too little time left before the deadline".into(),
        ));
    }
    if let Some(carried) = sub.value.carried.clone() {
        return super::carried::reconcile(deps, sub, carried, &plan, ctx, now).await;
    }
    let sub = if due {
        sub
    } else {
        operations::made_due(deps, sub, now).await?
    };
    let claim = match claim(deps, &sub, &plan, ctx, now).await? {
        Claimed::Yes(claim) => claim,
        Claimed::Nothing(reason) => return Ok(WorkOutcome::Skipped(reason)),
        Claimed::EndsNow(period) => {
            return operations::end_at_period_end(deps, &sub, period, now).await
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
        sub,
        ctx,
    };
    if query_first {
        if let Some(settled) = ask_oen_first(&attempt).await {
            let (id, n) = (attempt.period.subscription.clone(), attempt.period.period);
            let refunds_due = settled.has_refunds_due();
            let outcome = attempt.settle(settled).await?;
            if refunds_due {
                super::anomalies::refund_pending(deps, &id, n, &plan).await;
            }
            return Ok(outcome);
        }
    }
    call_oen(attempt).await
}

/// Whether the subscription may be charged a new attempt (not only reconciled).
pub(super) fn may_be_charged(sub: &Subscription) -> bool {
    matches!(
        sub.status,
        SubscriptionStatus::Active | SubscriptionStatus::PastDue
    ) && !sub.cancel_at_period_end
}

/// A claimed period: as written with our lease, its version, whether Oen must be asked first,
/// and the state it had before the claim.
pub(super) struct Claim {
    pub period: ChargePeriod,
    pub version: u64,
    pub query_first: bool,
    pub prior: PeriodState,
}

pub(super) enum Claimed {
    Yes(Claim),
    /// Nothing to do, and why.
    Nothing(&'static str),
    /// A subscription ending at period end reached its end with nothing uncertain.
    EndsNow(Option<Versioned<ChargePeriod>>),
}

/// Claims the current period: put-if-absent for a fresh period (the common case, one write),
/// else read and compare-and-set.
async fn claim(
    deps: &ChargeDeps,
    sub: &Versioned<Subscription>,
    plan: &Plan,
    ctx: &WorkContext,
    now: DateTime<Utc>,
) -> Result<Claimed, WorkError> {
    let lease_until = deps.policy.lease_until(now);
    if may_be_charged(&sub.value) {
        let fresh = ChargePeriod {
            subscription: sub.value.id.clone(),
            period: sub.value.period,
            order_id: OrderId::for_period(&sub.value.id, sub.value.period),
            amount: plan.amount,
            state: PeriodState::Charging {
                lease_owner: ctx.owner.clone(),
                lease_until,
            },
            attempts: 0,
            last_error: None,
            updated_at: now,
            refunded: None,
            product_details: plan.product_details(),
            anomalies: Vec::new(),
            customer: Some(sub.value.customer.clone()),
        };
        let put = Put::new(fresh.clone(), Expect::Absent);
        return match deps.store.commit(vec![put]).await {
            Ok(()) => Ok(Claimed::Yes(Claim {
                period: fresh,
                version: 1,
                query_first: false,
                prior: PeriodState::Open,
            })),
            Err(StoreError::Conflict(_)) => {
                let (id, n) = (&sub.value.id, sub.value.period);
                claim_existing(deps, id, n, ctx, lease_until, now).await
            }
            Err(e) => Err(e.into()),
        };
    }
    // Canceled, waiting for a card, or ending at period end: never a new charge, but an
    // attempt whose outcome is unknown must still be reconciled.
    let existing = deps.store.period(&sub.value.id, sub.value.period).await?;
    if !existing
        .as_ref()
        .is_some_and(|p| p.value.state.is_uncertain())
    {
        if sub.value.cancel_at_period_end && sub.value.status != SubscriptionStatus::Canceled {
            return Ok(Claimed::EndsNow(existing));
        }
        return Ok(Claimed::Nothing("subscription may not be charged"));
    }
    let (id, n) = (&sub.value.id, sub.value.period);
    claim_existing(deps, id, n, ctx, lease_until, now).await
}

/// Claims a period that already has a record.
pub(super) async fn claim_existing(
    deps: &ChargeDeps,
    subscription: &SubscriptionId,
    period: u32,
    ctx: &WorkContext,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Claimed, WorkError> {
    let Some(current) = deps.store.period(subscription, period).await? else {
        return Ok(Claimed::Nothing("period vanished"));
    };
    let query_first = match must_query_first(&current.value, now) {
        Ok(q) => q,
        Err(reason) => return Ok(Claimed::Nothing(reason)),
    };
    let mut claimed = current.value.clone();
    claimed.state = PeriodState::Charging {
        lease_owner: ctx.owner.clone(),
        lease_until,
    };
    claimed.updated_at = now;
    let put = Put::new(claimed.clone(), Expect::Version(current.version));
    match deps.store.commit(vec![put]).await {
        Ok(()) => Ok(Claimed::Yes(Claim {
            period: claimed,
            version: current.version + 1,
            query_first,
            prior: current.value.state,
        })),
        Err(StoreError::Conflict(_)) => {
            Ok(Claimed::Nothing("another worker claimed the period first"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the worker must ask Oen about the order before (maybe) charging; `Err` when the
/// period is not to be touched now.
fn must_query_first(p: &ChargePeriod, now: DateTime<Utc>) -> Result<bool, &'static str> {
    match &p.state {
        PeriodState::Paid { .. } => Err("period already paid"),
        PeriodState::Charging { lease_until, .. } if *lease_until > now => {
            Err("another worker holds the lease")
        }
        PeriodState::Unknown { reconcile_at, .. } if *reconcile_at > now => {
            Err("unknown period not yet due for reconciliation")
        }
        PeriodState::Charging { .. } | PeriodState::Unknown { .. } => Ok(true),
        PeriodState::Open | PeriodState::Declined { .. } => Ok(p.attempts > 0),
    }
}

/// Asks Oen about the order. `Some` when that settles the period; `None` when nothing was
/// charged and a new attempt may go ahead.
pub(super) async fn ask_oen_first(attempt: &Attempt<'_>) -> Option<Settled> {
    let txs = match attempt
        .deps
        .oen
        .order_transactions(&attempt.period.order_id)
        .await
    {
        Ok(txs) => txs,
        Err(e) => return Some(Settled::Unknown(format!("order query failed: {e}"))),
    };
    let now = attempt.deps.clock.now();
    let listing_too_young = may_have_sent_until(&attempt.prior)
        .is_some_and(|sent| !attempt.deps.policy.listing_trusted(sent, now));
    match OrderState::of(&txs) {
        OrderState::Paid(tx) => {
            let policy = &attempt.deps.policy;
            let anomalies = anomalies(&txs, &tx, &attempt.period, policy, now);
            Some(Settled::Paid {
                transaction: tx.id,
                auth_code: tx.auth_code,
                charged: false,
                anomalies,
            })
        }
        OrderState::InFlight => Some(Settled::Unknown(
            "a transaction of this order is still in flight".into(),
        )),
        // A request may have left moments ago and Oen's listing can lag it: not "no attempt".
        OrderState::NoAttempt | OrderState::AllFailed if listing_too_young => {
            Some(Settled::Unknown(
                "Oen's order listing is too young to rule out the last request".into(),
            ))
        }
        // Reconciled to "nothing was charged" on a subscription that may not be charged.
        OrderState::NoAttempt | OrderState::AllFailed if !may_be_charged(&attempt.sub.value) => {
            Some(Settled::Abandoned)
        }
        // The attempt whose outcome we did not know was declined after all: that is a decline,
        // and the dunning schedule decides when to try again (not at once, not forever).
        OrderState::AllFailed if may_have_sent_until(&attempt.prior).is_some() => {
            let code = txs.iter().rev().find_map(|t| t.reason.clone());
            Some(Settled::SoftDecline(
                code.unwrap_or_else(|| "FAILED".into()),
            ))
        }
        OrderState::NoAttempt | OrderState::AllFailed => None,
    }
}

/// Decrypts the card token (only now, right before the call) and charges the order.
async fn call_oen(attempt: Attempt<'_>) -> Result<WorkOutcome, WorkError> {
    let deps = attempt.deps;
    let customer = &attempt.customer;
    let binding = &attempt.sub.value.card;
    let card = match deps.store.card(customer, binding).await {
        Ok(Some(c)) => c.value,
        Ok(None) => {
            tracing::error!(customer = %customer, binding = %binding, "subscription points at a card that is not stored");
            let settled = Settled::Config("card record missing".into());
            return attempt.settle(settled).await;
        }
        Err(e) => return attempt.release_for_retry(e.to_string()).await,
    };
    let vault_ctx = VaultContext {
        merchant: deps.merchant.clone(),
        customer: customer.clone(),
        binding: card.binding.clone(),
    };
    let token = match deps.vault.decrypt(&card.ciphertext, &vault_ctx).await {
        Ok(t) => t,
        // Wrong key or context: retrying cannot help, and the card must not be charged blind.
        Err(e @ VaultError::ContextMismatch) => {
            tracing::error!(customer = %customer, binding = %binding, error = %e, "stored card token does not decrypt");
            crate::metrics::count("charger", "CardUndecryptable");
            return attempt.settle(Settled::Config(e.to_string())).await;
        }
        Err(e) => {
            let reason = format!("token not decrypted: {e}");
            return attempt.release_for_retry(reason).await;
        }
    };
    // Checked right before the request leaves: Oen's processing must end inside our lease.
    let now = deps.clock.now();
    let send_by = deps
        .policy
        .send_deadline(attempt.lease_until(), attempt.ctx.deadline);
    let Ok(send_within) = (send_by - now).to_std() else {
        drop(token);
        let reason = "no time left to send before the lease's send deadline".to_owned();
        return attempt.release_for_retry(reason).await;
    };
    let period = &attempt.period;
    let product_details = if period.product_details.is_empty() {
        attempt.plan.product_details_at(period.amount)
    } else {
        period.product_details.clone()
    };
    let request = ChargeRequest {
        token,
        order_id: period.order_id.clone(),
        amount: period.amount,
        product_details,
        user_id: Some(customer.to_string()),
        payer: attempt.sub.value.payer.clone(),
        note: None,
        send_within: Some(send_within),
    };
    let result = deps.oen.charge(&request).await;
    drop(request);
    attempt.settle_after_call(settled_by(result)).await
}

/// Every paid transaction of the order but `paying`, and `paying` itself when its amount is not
/// the period's.
fn anomalies(
    txs: &[Transaction],
    paying: &Transaction,
    period: &ChargePeriod,
    policy: &super::ChargePolicy,
    now: DateTime<Utc>,
) -> Vec<PaymentAnomaly> {
    let refund = |kind| match kind {
        AnomalyKind::Duplicate if policy.auto_refund_duplicates => AnomalyRefund::Pending,
        _ => AnomalyRefund::Manual,
    };
    let anomaly = |t: &Transaction, kind| PaymentAnomaly {
        transaction: t.id.clone(),
        amount: t.amount,
        kind,
        detected_at: now,
        refund: refund(kind),
    };
    let mut found: Vec<PaymentAnomaly> = txs
        .iter()
        .filter(|t| t.status.is_paid() && t.id != paying.id)
        .map(|t| anomaly(t, AnomalyKind::Duplicate))
        .collect();
    if paying.amount != i64::from(period.amount.ntd()) {
        found.push(anomaly(paying, AnomalyKind::AmountMismatch));
    }
    found
}

/// The last moment an earlier attempt may have sent a request, when its outcome is not known:
/// the end of a vanished holder's lease, or when an unknown outcome was recorded.
fn may_have_sent_until(prior: &PeriodState) -> Option<DateTime<Utc>> {
    match prior {
        PeriodState::Charging { lease_until, .. } => Some(*lease_until),
        PeriodState::Unknown { since, .. } => Some(*since),
        PeriodState::Open | PeriodState::Paid { .. } | PeriodState::Declined { .. } => None,
    }
}

/// What Oen's answer to a charge call means for the period.
fn settled_by(result: Result<ChargeReceipt, OenError>) -> Settled {
    match result {
        Ok(receipt) => Settled::Paid {
            transaction: receipt.transaction_number,
            auth_code: receipt.auth_code,
            charged: true,
            anomalies: Vec::new(),
        },
        Err(OenError::SoftDecline { code, .. }) => Settled::SoftDecline(code),
        Err(OenError::HardDecline { code, .. }) => Settled::HardDecline(code),
        Err(OenError::NotSent(reason)) => Settled::NotSent(reason),
        Err(e @ OenError::Config { .. }) => Settled::Config(e.to_string()),
        Err(e) => Settled::Unknown(e.to_string()),
    }
}
