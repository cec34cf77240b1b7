//! The charging policy: how long to wait after each outcome. The values come from the
//! environment through [`crate::config`]; the defaults suit a monthly subscription business.

use chrono::{DateTime, Duration, Utc};

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
    /// The wait before reconciliation number `checks` (0 for the first).
    pub fn reconcile_after(&self, checks: u32) -> Duration {
        let last = self.reconcile_backoff.len().saturating_sub(1);
        self.reconcile_backoff
            .get((checks as usize).min(last))
            .copied()
            .unwrap_or(Duration::days(1))
    }

    /// The wait before dunning retry `retry` (1 for the first), or `None` once the schedule is
    /// exhausted and the subscription is canceled.
    pub fn dunning_wait(&self, retry: u32) -> Option<Duration> {
        let index = (retry as usize).checked_sub(1)?;
        self.dunning.get(index).copied()
    }

    /// Until when a worker's lease lasts: past the invocation's deadline (plus a margin) when it
    /// has one, else the policy's own lease.
    pub fn lease_until(
        &self,
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        deadline.map_or(now + self.lease, |d| d + Duration::seconds(10))
    }

    /// Whether a worker with `deadline` still has time for an attempt at `now`.
    pub fn has_time_for_attempt(
        &self,
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        deadline.is_none_or(|d| d - now >= self.min_time_for_attempt)
    }
}
