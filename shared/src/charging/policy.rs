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
    /// How long a claim holds the period. No charge request leaves later than
    /// [`Self::send_deadline`], so whatever Oen does with it is over before the lease ends.
    pub lease: Duration,
    /// The longest Oen may work on a request before it answers (its documented 29 s).
    pub oen_processing: Duration,
    /// Slack beyond Oen's processing time: clocks, the network, our own write.
    pub margin: Duration,
    /// Time a charge attempt needs before the invocation's deadline (asking Oen about the order,
    /// decrypting, Oen's processing and our writes); with less left, a worker hands the work
    /// back instead of claiming it.
    pub min_time_for_attempt: Duration,
    /// Oen's order listing can lag a fresh transaction: "nothing there" is trusted only this
    /// long after the last moment a request may have been sent.
    pub listing_trusted_after: Duration,
    /// Refund a second payment of one order as soon as it is found (`AUTO_REFUND_DUPLICATES`).
    pub auto_refund_duplicates: bool,
    /// After a configuration error (`A0001`, `V0001`, 403, …) the subscription is looked at
    /// again this much later, with no change to the customer's state.
    pub config_error_retry: Duration,
    /// Entries a planning message takes from the due index.
    pub plan_page: usize,
    /// How long before a renewal charge `subscription.renewal_upcoming` is sent
    /// (`RENEWAL_NOTICE_DAYS`); `None` sends none.
    pub renewal_notice: Option<Duration>,
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
            lease: Duration::seconds(90),
            oen_processing: Duration::seconds(29),
            margin: Duration::seconds(10),
            min_time_for_attempt: Duration::seconds(45),
            listing_trusted_after: Duration::minutes(5),
            auto_refund_duplicates: true,
            config_error_retry: Duration::hours(1),
            plan_page: 200,
            renewal_notice: Some(Duration::days(7)),
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

    /// Until when a lease taken at `now` lasts.
    pub fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.lease
    }

    /// The last moment a charge request may leave under a lease ending at `lease_until`, or
    /// under an invocation ending at `deadline`: Oen's processing and the margin must fit after.
    pub fn send_deadline(
        &self,
        lease_until: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
    ) -> DateTime<Utc> {
        let end = deadline.map_or(lease_until, |d| d.min(lease_until));
        end - self.oen_processing - self.margin
    }

    /// Whether a worker with `deadline` still has time for an attempt at `now`.
    pub fn has_time_for_attempt(
        &self,
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        deadline.is_none_or(|d| d - now >= self.min_time_for_attempt)
    }

    /// Whether an order listing read at `now` that shows nothing new can be believed, when the
    /// last request for the order may have left as late as `sent_before`.
    pub fn listing_trusted(&self, sent_before: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - sent_before >= self.listing_trusted_after
    }
}
