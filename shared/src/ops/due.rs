//! The read-only views of the charger's work: the daily reconciliation report, and what the
//! next scheduled run would work on, without doing it: the due-date index read the
//! way the planner reads it (one shard, oldest first, in pages), each entry explained by the
//! subscription and period it names. Nothing is written and Oen is not called.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{parse_shard, Operations, OpsError};
use crate::domain::{PeriodState, SubscriptionStatus};
use crate::store::{DueCursor, StoreExt, DUE_SHARDS};

/// How many entries one page lists.
pub const DUE_PAGE: usize = 50;

/// One shard's page of due work.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DueView {
    pub shard: u16,
    /// How many shards the index has (the caller reads each).
    pub shards: u16,
    /// The instant "due" is measured against (the stack's clock).
    pub as_of: DateTime<Utc>,
    pub entries: Vec<DueItem>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What the charger would do for one due subscription.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DueItem {
    pub customer: String,
    pub plan: String,
    pub subscription: String,
    pub due_at: DateTime<Utc>,
    /// `charge` (a period's first attempt), `retry` (dunning), `reconcile` (an earlier
    /// attempt's outcome is unknown: Oen is asked, nothing is sent), `end` (canceled at period
    /// end: ends without a charge).
    pub action: &'static str,
    pub period: u32,
    /// NT$ a `charge` or `retry` would ask for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<u32>,
}

impl Operations {
    /// `GET /v1/reconciliation/{date}`: the daily reconciliation report of a Taipei day
    /// (`yyyy-MM-dd`), as far as its run got (`complete` says whether it finished).
    pub async fn reconciliation(
        &self,
        date: &str,
    ) -> Result<crate::reconcile::ReportView, OpsError> {
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .ok()
            .filter(|d| d.format("%Y-%m-%d").to_string() == date)
            .ok_or_else(|| OpsError::invalid("date", "must be a day as yyyy-MM-dd"))?;
        crate::reconcile::report(self.deps.store.as_ref(), day)
            .await?
            .ok_or_else(|| {
                OpsError::NotFound(format!(
                    "no reconciliation report for {date}: the job reconciles each Taipei day \
                     after it ends (00:30 Taipei by default); a manual run is the charger \
                     invoked with {{\"job\":\"reconcile\",\"date\":\"{date}\"}}"
                ))
            })
    }

    /// `GET /v1/due?shard=…&after=…`: one page of `shard`'s due subscriptions as of now.
    pub async fn due(&self, shard: &str, after: Option<&str>) -> Result<DueView, OpsError> {
        let shard = parse_shard(shard)?;
        let now = self.deps.clock.now();
        let after = match after {
            Some(a) if a.is_empty() || a.len() > 2048 => {
                return Err(OpsError::invalid("after", "is not a page cursor"))
            }
            a => a.map(|a| DueCursor(a.to_owned())),
        };
        let page = self
            .deps
            .store
            .due(shard, now, DUE_PAGE, after)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Invalid(m) => OpsError::invalid("after", m),
                other => other.into(),
            })?;
        let mut entries = Vec::with_capacity(page.entries.len());
        for entry in page.entries {
            // The index lags the table: what it names is read back, and left out if it is
            // no longer there or no longer due.
            let Some(sub) = self
                .deps
                .store
                .subscription(&entry.customer, &entry.plan)
                .await?
            else {
                continue;
            };
            let sub = sub.value;
            if sub.next_action_at.is_none_or(|t| t > now) {
                continue;
            }
            let period = self.deps.store.period(&sub.id, sub.period).await?;
            let state = period.as_ref().map(|p| &p.value.state);
            let uncertain = state.is_some_and(PeriodState::is_uncertain) || sub.carried.is_some();
            let plan_amount = self
                .deps
                .plans
                .get_or(&sub.plan, sub.terms.as_ref())
                .map(|p| p.amount.ntd());
            let amount = period
                .as_ref()
                .map(|p| p.value.amount.ntd())
                .or(plan_amount);
            let (action, amount) = if uncertain || sub.status == SubscriptionStatus::Canceled {
                ("reconcile", None)
            } else if sub.cancel_at_period_end {
                ("end", None)
            } else if sub.status == SubscriptionStatus::PastDue {
                ("retry", amount)
            } else {
                ("charge", amount)
            };
            entries.push(DueItem {
                customer: sub.customer.to_string(),
                plan: sub.plan.to_string(),
                subscription: sub.id.to_string(),
                due_at: entry.due_at,
                action,
                period: sub.period,
                amount,
            });
        }
        Ok(DueView {
            shard,
            shards: DUE_SHARDS,
            as_of: now,
            entries,
            next: page.next.map(|c| c.0),
        })
    }
}
