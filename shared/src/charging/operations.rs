//! What an operator does to a subscription: charge now, cancel (now or at period end), refund.
//! Each goes through the same store conditions as the charger, so an operator and a worker
//! racing on one subscription cannot both win.

use chrono::{DateTime, Utc};
use thiserror::Error;

use super::worker::{self, Trigger};
use super::{ChargeDeps, WorkContext, WorkError, WorkOutcome};
use crate::domain::{
    Amount, AuditEntry, ChargeId, ChargePeriod, ChargeState, CustomerId, DomainEvent, OneOffCharge,
    OrderId, PeriodState, Plan, PlanId, ProductDetail, Subscription, SubscriptionId,
    SubscriptionStatus, TransactionId,
};
use crate::oen::{OenError, RefundRequest};
use crate::outbox;
use crate::store::{Expect, Put, StoreError, StoreExt, Versioned};

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

/// Operator action: charge (or reconcile) a subscription's current period now, whatever its
/// schedule says, under the same protocol.
pub async fn charge_now(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan: &PlanId,
    ctx: &WorkContext,
) -> Result<WorkOutcome, WorkError> {
    worker::charge(deps, customer, plan, ctx, Trigger::Operator).await
}

/// A charge ahead of schedule first makes the subscription due now, so that if the worker dies
/// while Oen may be charging, the next scheduled run reconciles the period at once instead of
/// on its due date (the charge itself moves the schedule on). The subscription as now stored.
pub(super) async fn made_due(
    deps: &ChargeDeps,
    sub: Versioned<Subscription>,
    now: DateTime<Utc>,
) -> Result<Versioned<Subscription>, WorkError> {
    if !worker::may_be_charged(&sub.value) {
        return Ok(sub);
    }
    let mut due = sub.value;
    due.next_action_at = Some(now);
    // Charged now by an operator: a notice of a charge to come would arrive after it.
    due.renewal_noticed = Some(due.period);
    due.updated_at = now;
    let put = Put::new(due.clone(), Expect::Version(sub.version));
    match deps.store.commit(vec![put]).await {
        Ok(()) => Ok(Versioned {
            value: due,
            version: sub.version + 1,
        }),
        Err(StoreError::Conflict(_)) => Err(WorkError::Retry(
            "the subscription changed; charge again".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn subscription(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan: &PlanId,
) -> Result<Versioned<Subscription>, OperationError> {
    let found = deps.store.subscription(customer, plan).await?;
    found.ok_or(OperationError::NotFound)
}

/// Operator action: cancel now, or at the end of the paid period.
pub async fn cancel(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan: &PlanId,
    at_period_end: bool,
) -> Result<(), OperationError> {
    let sub = subscription(deps, customer, plan).await?;
    cancel_subscription(deps, sub, at_period_end, "operator").await
}

/// [`cancel`] of the subscription as read (at its version): if it changed since, or another
/// subscription replaced it, nothing is written ([`StoreError::Conflict`]). `actor` names who
/// in the audit entry.
pub async fn cancel_subscription(
    deps: &ChargeDeps,
    sub: Versioned<Subscription>,
    at_period_end: bool,
    actor: &str,
) -> Result<(), OperationError> {
    let now = deps.clock.now();
    if sub.value.status == SubscriptionStatus::Canceled {
        return Ok(());
    }
    if at_period_end {
        let mut s = sub.value.clone();
        s.cancel_at_period_end = true;
        s.updated_at = now;
        let audit = AuditEntry::new(
            s.customer.clone(),
            now,
            actor,
            "cancel.at_period_end",
            None,
            "",
        );
        deps.store
            .commit(vec![
                Put::new(s, Expect::Version(sub.version)),
                Put::new(audit, Expect::Absent),
            ])
            .await?;
        return Ok(());
    }
    let period = deps.store.period(&sub.value.id, sub.value.period).await?;
    let (puts, event) = cancellation(&sub, period, actor, "operator", now);
    let recorded = outbox::commit(deps, puts, vec![event]).await?;
    outbox::ship(deps, recorded, deps.function).await;
    Ok(())
}

/// Operator action: undo a cancel at period end, so the subscription renews as before.
/// Idempotent: a subscription not set to end is left alone (`Ok(false)`). A subscription
/// already canceled cannot be resumed: the customer binds a card again instead.
pub async fn resume(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan: &PlanId,
) -> Result<bool, OperationError> {
    let sub = subscription(deps, customer, plan).await?;
    resume_subscription(deps, sub, "operator").await
}

/// [`resume`] of the subscription as read (at its version): if it changed since, or another
/// subscription replaced it, nothing is written ([`StoreError::Conflict`]). `actor` names who
/// in the audit entry.
pub async fn resume_subscription(
    deps: &ChargeDeps,
    sub: Versioned<Subscription>,
    actor: &str,
) -> Result<bool, OperationError> {
    let now = deps.clock.now();
    if sub.value.status == SubscriptionStatus::Canceled {
        return Err(OperationError::Refused(
            "the subscription is canceled already; the customer must bind a card again to subscribe anew".into(),
        ));
    }
    if !sub.value.cancel_at_period_end {
        return Ok(false);
    }
    let mut s = sub.value.clone();
    s.cancel_at_period_end = false;
    s.updated_at = now;
    let audit = AuditEntry::new(s.customer.clone(), now, actor, "resume", None, "");
    deps.store
        .commit(vec![
            Put::new(s, Expect::Version(sub.version)),
            Put::new(audit, Expect::Absent),
        ])
        .await?;
    Ok(true)
}

/// A subscription set to end at period end has reached it with nothing uncertain: cancel it.
pub(super) async fn end_at_period_end(
    deps: &ChargeDeps,
    sub: &Versioned<Subscription>,
    period: Option<Versioned<ChargePeriod>>,
    now: DateTime<Utc>,
) -> Result<WorkOutcome, WorkError> {
    let (puts, event) = cancellation(sub, period, "charger", "ended at period end", now);
    let recorded = match outbox::commit(deps, puts, vec![event]).await {
        Ok(recorded) => recorded,
        Err(StoreError::Conflict(_)) => {
            return Ok(WorkOutcome::Skipped("subscription changed concurrently"))
        }
        Err(e) => return Err(e.into()),
    };
    outbox::ship(deps, recorded, "charger").await;
    Ok(WorkOutcome::Canceled)
}

/// The writes that cancel `sub` now, and the event they record. A period with
/// no attempt running is closed; one whose outcome is unknown stays due for reconciliation,
/// because money may have moved.
fn cancellation(
    sub: &Versioned<Subscription>,
    period: Option<Versioned<ChargePeriod>>,
    actor: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> (Vec<Put>, DomainEvent) {
    let mut s = sub.value.clone();
    s.status = SubscriptionStatus::Canceled;
    s.updated_at = now;
    let uncertain = period
        .as_ref()
        .is_some_and(|p| p.value.state.is_uncertain());
    // A carried period of a replaced subscription is still reconciled through this one.
    if !uncertain && s.carried.is_none() {
        s.next_action_at = None;
    }
    let event = DomainEvent::subscription_canceled(&s, reason, now);
    let audit = AuditEntry::new(
        s.customer.clone(),
        now,
        actor,
        "subscription.canceled",
        None,
        reason,
    );
    let mut puts = vec![Put::new(s, Expect::Version(sub.version))];
    if let Some(p) = period.filter(|p| p.value.state == PeriodState::Open) {
        let mut closed = p.value;
        closed.state = PeriodState::Declined {
            code: "CANCELED".into(),
            at: now,
        };
        closed.updated_at = now;
        puts.push(Put::new(closed, Expect::Version(p.version)));
    }
    puts.push(Put::new(audit, Expect::Absent));
    (puts, event)
}

/// Operator action: refund a paid period (whole, or `amount`). Oen allows one successful refund
/// per transaction; after an unknown outcome the transaction is read before anything is resent.
pub async fn refund(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan: &PlanId,
    period: u32,
    amount: Option<Amount>,
    reason: Option<String>,
) -> Result<Amount, OperationError> {
    let sub = subscription(deps, customer, plan).await?;
    refund_period(
        deps,
        &sub.value.customer,
        &sub.value.id,
        period,
        amount,
        reason,
        "operator",
    )
    .await
}

/// [`refund`] of period `period` of subscription `subscription` of `customer`, as the caller
/// found them (the subscription by its key or its id, or, once it was replaced, the period's
/// own record); the period's own version guards the write. `actor` names who in the audit
/// entry.
pub async fn refund_period(
    deps: &ChargeDeps,
    customer: &CustomerId,
    subscription: &SubscriptionId,
    period: u32,
    amount: Option<Amount>,
    reason: Option<String>,
    actor: &str,
) -> Result<Amount, OperationError> {
    let now = deps.clock.now();
    let p = deps
        .store
        .period(subscription, period)
        .await?
        .ok_or_else(|| OperationError::Refused(format!("period {period} has no charge")))?;
    let (transaction, wanted) = Refundable::of_period(&p.value).to_refund(amount)?;
    // The plan is read only for a period whose own lines cannot serve (opened before they were
    // kept): the catalog's, else the terms the subscription keeps (none once it was replaced).
    let plan = if ProductDetail::total(&p.value.product_details) == u64::from(p.value.amount.ntd())
    {
        None
    } else {
        deps.store
            .subscription_by_id(subscription)
            .await?
            .and_then(|sub| {
                deps.plans
                    .get_or(&sub.value.plan, sub.value.terms.as_ref())
                    .cloned()
            })
    };
    let (charged, fallback) = period_lines(&p.value, plan.as_ref());
    let lines = ProductDetail::refund_lines(&charged, p.value.amount, wanted, &fallback);
    let refunded = send_refund(deps, &transaction, wanted, amount, reason, lines).await?;
    let mut updated = p.value.clone();
    updated.refunded = Some(refunded);
    updated.updated_at = now;
    let event = DomainEvent::payment_refunded(customer, &p.value, &transaction, refunded, now);
    let update = Put::new(updated, Expect::Version(p.version));
    record_refund(
        deps,
        customer,
        &p.value.order_id,
        refunded,
        update,
        event,
        actor,
    )
    .await?;
    Ok(refunded)
}

/// Records a refund Oen made: the refunded record (`update`, guarded by the version read), its
/// audit entry and `event`, in one commit, then ships the event.
async fn record_refund(
    deps: &ChargeDeps,
    customer: &CustomerId,
    order: &OrderId,
    refunded: Amount,
    update: Put,
    event: DomainEvent,
    actor: &str,
) -> Result<(), OperationError> {
    let audit = AuditEntry::new(
        customer.clone(),
        deps.clock.now(),
        actor,
        "refund",
        None,
        format!("order {order}, {refunded}"),
    );
    let puts = vec![update, Put::new(audit, Expect::Absent)];
    let recorded = outbox::commit(deps, puts, vec![event]).await?;
    outbox::ship(deps, recorded, deps.function).await;
    Ok(())
}

/// What a refund needs of a paid period or one-off charge, read off its record: the refund
/// here and the operator's layer (`crate::ops`) judge it from the same facts.
pub struct Refundable {
    /// How a refusal names it: `period 3`, `charge …`.
    pub what: String,
    pub order_id: OrderId,
    pub charged: Amount,
    /// The transaction that paid it, if it is paid.
    pub paid_by: Option<TransactionId>,
    pub refunded: Option<Amount>,
}

impl Refundable {
    pub fn of_period(p: &ChargePeriod) -> Self {
        Self {
            what: format!("period {}", p.period),
            order_id: p.order_id.clone(),
            charged: p.amount,
            paid_by: match &p.state {
                PeriodState::Paid { transaction, .. } => Some(transaction.clone()),
                _ => None,
            },
            refunded: p.refunded,
        }
    }

    pub fn of_charge(c: &OneOffCharge) -> Self {
        Self {
            what: format!("charge {}", c.id),
            order_id: c.order_id.clone(),
            charged: c.amount,
            paid_by: match &c.state {
                ChargeState::Paid { transaction, .. } => Some(transaction.clone()),
                _ => None,
            },
            refunded: c.refunded,
        }
    }

    /// The transaction to refund and the amount, or why it cannot be refunded `amount` (all
    /// when `None`).
    fn to_refund(&self, amount: Option<Amount>) -> Result<(TransactionId, Amount), OperationError> {
        let what = &self.what;
        let Some(transaction) = &self.paid_by else {
            return Err(OperationError::Refused(format!("{what} is not paid")));
        };
        if self.refunded.is_some() {
            return Err(OperationError::Refused(format!(
                "{what} was already refunded (Oen allows one refund per transaction)"
            )));
        }
        let (charged, wanted) = (self.charged, amount.unwrap_or(self.charged));
        if wanted > charged {
            return Err(OperationError::Refused(format!(
                "cannot refund {wanted} of a {charged} charge"
            )));
        }
        Ok((transaction.clone(), wanted))
    }
}

/// Operator action: refund a paid one-off charge (whole, or `amount`), under the same rules
/// as a period: one refund per Oen transaction, and after a lost answer the transaction is
/// read before anything is resent. The charge's own version guards the write; `actor` names
/// who in the audit entry.
pub async fn refund_one_off(
    deps: &ChargeDeps,
    charge: &ChargeId,
    amount: Option<Amount>,
    reason: Option<String>,
    actor: &str,
) -> Result<Amount, OperationError> {
    let now = deps.clock.now();
    let c = deps
        .store
        .one_off_charge(charge)
        .await?
        .ok_or_else(|| OperationError::Refused(format!("charge {charge} does not exist")))?;
    let (transaction, wanted) = Refundable::of_charge(&c.value).to_refund(amount)?;
    let fallback = ProductDetail {
        production_code: "CHARGE".into(),
        description: c.value.description.clone(),
        quantity: 1,
        unit: "item".into(),
        unit_price: c.value.amount.ntd(),
    };
    let charged = &c.value.product_details;
    let lines = ProductDetail::refund_lines(charged, c.value.amount, wanted, &fallback);
    let refunded = send_refund(deps, &transaction, wanted, amount, reason, lines).await?;
    let mut updated = c.value.clone();
    updated.refunded = Some(refunded);
    updated.updated_at = now;
    let event = DomainEvent::payment_refunded_of_charge(&updated, &transaction, refunded, now);
    let customer = updated.customer.clone();
    let order = updated.order_id.clone();
    let update = Put::new(updated, Expect::Version(c.version));
    record_refund(deps, &customer, &order, refunded, update, event, actor).await?;
    Ok(refunded)
}

/// The lines a period was charged with, and the product a refund names when they cannot be
/// used: the period's own lines; for a period opened before they were kept, its plan's lines at
/// its amount; the plan's product, else a plain "subscription period" line.
pub(super) fn period_lines(
    p: &ChargePeriod,
    plan: Option<&Plan>,
) -> (Vec<ProductDetail>, ProductDetail) {
    let fallback = match plan {
        Some(plan) => plan.product_details_at(p.amount).remove(0),
        None => ProductDetail {
            production_code: "SUBSCRIPTION".into(),
            description: format!("Subscription period {}", p.period),
            quantity: 1,
            unit: "period".into(),
            unit_price: p.amount.ntd(),
        },
    };
    let lines = if p.product_details.is_empty() {
        plan.map(|plan| plan.product_details_at(p.amount))
            .unwrap_or_default()
    } else {
        p.product_details.clone()
    };
    (lines, fallback)
}

/// Asks Oen for the refund; when the answer is lost (or Oen says the state changed), reads the
/// transaction back instead of sending again. The amount refunded.
pub(super) async fn send_refund(
    deps: &ChargeDeps,
    transaction: &TransactionId,
    wanted: Amount,
    amount: Option<Amount>,
    reason: Option<String>,
    lines: Vec<ProductDetail>,
) -> Result<Amount, OperationError> {
    let request = RefundRequest {
        transaction_number: transaction.clone(),
        amount,
        reason,
        product_details: lines,
    };
    match deps.oen.refund(&request).await {
        Ok(()) => Ok(wanted),
        Err(e) if e.money_may_have_moved() || matches!(e, OenError::State { .. }) => {
            let t = deps
                .oen
                .transaction(transaction)
                .await
                .map_err(OperationError::Oen)?;
            match t.refund_amount.filter(|r| *r > 0) {
                Some(r) => Ok(Amount::new(r).unwrap_or(wanted)),
                None => Err(OperationError::Oen(e)),
            }
        }
        Err(e) => Err(OperationError::Oen(e)),
    }
}
