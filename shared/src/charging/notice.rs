//! Renewal notices: `subscription.renewal_upcoming`, the notice period (`RENEWAL_NOTICE_DAYS`,
//! [`ChargePolicy::renewal_notice`](super::ChargePolicy)) before each renewal charge, exactly
//! once per subscription period.
//!
//! **Which charges are announced.** A subscription's current period awaits its notice while
//! [`Subscription::renewal_awaiting_notice`] says so: it is active, not ending at period end,
//! carries nothing from a replaced subscription, and `renewal_noticed` does not cover the
//! period. The first period of a subscription due at once, a period a customer's new card pays
//! at once and one an operator charges early are covered from the start (`renewal_noticed` is
//! set with the write that makes them due now); the first charge after a trial is announced.
//!
//! **Finding them without a scan.** The store indexes those subscriptions by when the announced
//! charge is due ([`Store::renewals_due`](crate::store::Store::renewals_due), its own sparse
//! index in DynamoDB, sharded like the due index). The entry is derived from the subscription
//! on every write, so a payment (the next period), a cancel, a period-end cancel, a re-bind or
//! an operator's early charge moves or removes it in the same write. The first planning page
//! of each shard reads that shard up to now + the notice period and enqueues one
//! [`WorkMessage::Notice`] per subscription whose renewal is still ahead, paging on with
//! [`WorkMessage::PlanNotices`]. A renewal that planning first sees when it is already due
//! (notices were off, or the schedule moved it in) is charged without a notice.
//!
//! **Sending one.** The worker re-reads the subscription and, if the notice is still due,
//! opens the period: its amount and product lines are fixed then, as every period's are when
//! it opens, so the charge is exactly what the notice announced even if the plan's price
//! changes meanwhile. One commit writes the subscription (`renewal_noticed` = the period, which
//! takes it off the index, conditional on the version read), the period (put if absent) and the
//! event (id `subscription.renewal_upcoming:{subscription}:{period}`) in the outbox: duplicate
//! messages and repeated planning runs send one notice.

use chrono::{DateTime, Utc};

use super::{ChargeDeps, WorkError, WorkOutcome};
use crate::domain::{ChargePeriod, CustomerId, DomainEvent, OrderId, PeriodState, PlanId};
use crate::outbox;
use crate::queue::WorkMessage;
use crate::store::{DueCursor, Expect, Put, StoreError, StoreExt};

/// One page of one shard of the renewal-notice index, as of `now`: a notice message per
/// subscription whose renewal falls within the notice period. How many were enqueued, and
/// whether a page follows. Nothing when notices are off.
pub(super) async fn notice_page(
    deps: &ChargeDeps,
    shard: u16,
    now: DateTime<Utc>,
    cursor: Option<DueCursor>,
) -> Result<(usize, bool), WorkError> {
    let Some(ahead) = deps.policy.renewal_notice else {
        return Ok((0, false));
    };
    let page = deps
        .store
        .renewals_due(shard, now + ahead, deps.policy.plan_page, cursor)
        .await?;
    // A renewal already due is being charged by this very run: announcing it now would tell
    // the customer nothing in advance (its entry leaves the index when the charge moves the
    // subscription to its next period).
    let messages = page
        .entries
        .into_iter()
        .filter(|e| e.due_at > now)
        .map(|e| WorkMessage::Notice {
            customer: e.customer,
            plan: e.plan,
        })
        .collect();
    let next = page.next.map(|n| WorkMessage::PlanNotices {
        shard,
        now,
        cursor: Some(n.0),
    });
    super::plan::enqueue_page(deps, messages, next).await
}

/// A later page of one shard of the renewal-notice index.
pub(super) async fn plan_notices_page(
    deps: &ChargeDeps,
    shard: u16,
    now: DateTime<Utc>,
    cursor: Option<DueCursor>,
) -> Result<WorkOutcome, WorkError> {
    let (enqueued, continued) = notice_page(deps, shard, now, cursor).await?;
    Ok(WorkOutcome::Planned {
        enqueued,
        continued,
    })
}

/// Sends the renewal notice of `customer`'s subscription to `plan_id`, if it is due.
pub(super) async fn notify(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan_id: &PlanId,
) -> Result<WorkOutcome, WorkError> {
    // A conflict means the subscription changed under us (a charge, a cancel, a duplicate
    // message that sent the notice): read again and decide again.
    for _ in 0..3 {
        match try_notify(deps, customer, plan_id).await {
            Err(StoreError::Conflict(_)) => continue,
            other => return other.map_err(WorkError::from),
        }
    }
    Err(WorkError::Retry(
        "the subscription kept changing while its renewal notice was written".into(),
    ))
}

async fn try_notify(
    deps: &ChargeDeps,
    customer: &CustomerId,
    plan_id: &PlanId,
) -> Result<WorkOutcome, StoreError> {
    let Some(ahead) = deps.policy.renewal_notice else {
        return Ok(WorkOutcome::Skipped("renewal notices are off"));
    };
    let now = deps.clock.now();
    let Some(sub) = deps.store.subscription(customer, plan_id).await? else {
        return Ok(WorkOutcome::Skipped("no such subscription"));
    };
    let Some(charge_at) = sub.value.renewal_awaiting_notice() else {
        return Ok(WorkOutcome::Skipped("no renewal awaits a notice"));
    };
    if charge_at > now + ahead {
        return Ok(WorkOutcome::Skipped(
            "the renewal is not within the notice period",
        ));
    }
    let mut noticed = sub.value.clone();
    noticed.renewal_noticed = Some(noticed.period);
    noticed.updated_at = now;
    let mut puts = vec![Put::new(noticed.clone(), Expect::Version(sub.version))];
    let period = match deps.store.period(&noticed.id, noticed.period).await? {
        // An attempt began before any notice (notices were off, or planning lagged): too late
        // to announce; the subscription only leaves the index.
        Some(p) if p.value.state != PeriodState::Open || p.value.attempts > 0 => {
            deps.store.commit(puts).await?;
            return Ok(WorkOutcome::Skipped("the period's charge already began"));
        }
        Some(p) => p.value,
        None => {
            let Some(plan) = deps.plans.get_or(plan_id, noticed.terms.as_ref()).cloned() else {
                tracing::error!(plan = %plan_id, customer = %customer, "subscription to a plan missing from the catalog, with no terms of its own");
                crate::metrics::count("charger", "ConfigError");
                return Ok(WorkOutcome::ConfigError);
            };
            let opened = ChargePeriod {
                subscription: noticed.id.clone(),
                period: noticed.period,
                order_id: OrderId::for_period(&noticed.id, noticed.period),
                amount: plan.amount,
                state: PeriodState::Open,
                attempts: 0,
                last_error: None,
                updated_at: now,
                refunded: None,
                product_details: plan.product_details(),
                anomalies: Vec::new(),
                customer: Some(noticed.customer.clone()),
            };
            puts.push(Put::new(opened.clone(), Expect::Absent));
            opened
        }
    };
    let event = DomainEvent::subscription_renewal_upcoming(&noticed, &period, charge_at, now);
    let recorded = outbox::commit(deps, puts, vec![event]).await?;
    tracing::info!(subscription = %noticed.id, period = noticed.period, charge_at = %charge_at, "renewal notice recorded");
    outbox::ship(deps, recorded, "charger").await;
    Ok(WorkOutcome::Noticed {
        period: noticed.period,
        charge_at,
    })
}
