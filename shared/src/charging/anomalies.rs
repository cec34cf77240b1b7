//! Refunding a second payment of one order. Oen allows one successful refund per transaction,
//! and a refund whose answer was lost is read back, never resent blind, so each duplicate is
//! refunded at most once; the period records how each one ended.

use super::operations::{period_lines, send_refund};
use super::ChargeDeps;
use crate::domain::{Amount, AnomalyRefund, Plan, ProductDetail, SubscriptionId};
use crate::store::{Expect, Put, StoreError, StoreExt};

/// Refunds every duplicate of the period still marked pending. Failures are recorded on the
/// period and alarmed on; nothing here is retried blind.
pub(super) async fn refund_pending(
    deps: &ChargeDeps,
    subscription: &SubscriptionId,
    period: u32,
    plan: &Plan,
) {
    for _ in 0..8 {
        match refund_next(deps, subscription, period, plan).await {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                tracing::error!(subscription = %subscription, period, error = %e, "duplicate refund not recorded; reconcile by hand");
                crate::metrics::count("charger", "DuplicateRefundFailed");
                return;
            }
        }
    }
}

/// Refunds the first pending duplicate; `Ok(false)` when none is left.
async fn refund_next(
    deps: &ChargeDeps,
    subscription: &SubscriptionId,
    period: u32,
    plan: &Plan,
) -> Result<bool, StoreError> {
    let Some(p) = deps.store.period(subscription, period).await? else {
        return Ok(false);
    };
    let Some(i) = p
        .value
        .anomalies
        .iter()
        .position(|a| a.refund == AnomalyRefund::Pending)
    else {
        return Ok(false);
    };
    let anomaly = &p.value.anomalies[i];
    let now = deps.clock.now();
    let (charged, fallback) = period_lines(&p.value, Some(plan));
    let outcome = match Amount::new(anomaly.amount) {
        Ok(amount) => {
            let reason = Some("duplicate charge".to_owned());
            // The second payment charged the period's lines when it charged its amount.
            let lines = ProductDetail::refund_lines(&charged, amount, amount, &fallback);
            let transaction = &anomaly.transaction;
            match send_refund(deps, transaction, amount, Some(amount), reason, lines).await {
                Ok(refunded) => AnomalyRefund::Refunded {
                    amount: refunded,
                    at: now,
                },
                Err(e) => AnomalyRefund::Failed {
                    reason: e.to_string(),
                    at: now,
                },
            }
        }
        Err(e) => AnomalyRefund::Failed {
            reason: e.to_string(),
            at: now,
        },
    };
    match &outcome {
        AnomalyRefund::Refunded { amount, .. } => {
            tracing::warn!(order = %p.value.order_id, transaction = %anomaly.transaction, amount = %amount, "duplicate payment refunded")
        }
        _ => {
            tracing::error!(order = %p.value.order_id, transaction = %anomaly.transaction, "duplicate payment not refunded; refund it by hand");
            crate::metrics::count("charger", "DuplicateRefundFailed");
        }
    }
    let mut updated = p.value.clone();
    updated.anomalies[i].refund = outcome;
    updated.updated_at = now;
    let put = Put::new(updated, Expect::Version(p.version));
    match deps.store.commit(vec![put]).await {
        // Someone else wrote the period meanwhile: look again (a refund Oen already made is
        // read back, not repeated).
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(true),
        Err(e) => Err(e),
    }
}
