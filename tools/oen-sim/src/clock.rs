//! The simulator's own clock.
//!
//! Simulated time = wall time at start-up + time elapsed since (tokio's clock, so tests that
//! pause tokio time control it too) + manual advances. It can be frozen so that only explicit
//! advances move it. Everything time-dependent in the simulator (createdAt, the 10-minute
//! hosted-page validity, C026 settling, eventual consistency, the listing delay, webhook
//! timing) reads this clock; only latency and the 504 delay are real time.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct SimClock {
    /// Simulated time at `anchor`.
    base: DateTime<Utc>,
    anchor: Instant,
    /// When frozen, real elapsed time no longer moves the clock.
    frozen: bool,
}

impl SimClock {
    pub(crate) fn new() -> Self {
        Self {
            base: Utc::now(),
            anchor: Instant::now(),
            frozen: false,
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        if self.frozen {
            return self.base;
        }
        after(self.base, self.anchor.elapsed())
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        self.base = after(self.base, by);
    }

    pub(crate) fn set(&mut self, to: DateTime<Utc>) {
        self.base = to;
        self.anchor = Instant::now();
    }

    pub(crate) fn set_frozen(&mut self, frozen: bool) {
        let now = self.now();
        self.frozen = frozen;
        self.set(now);
    }

    pub(crate) fn is_frozen(&self) -> bool {
        self.frozen
    }
}

pub(crate) fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `t + d`, stopping at the end of the calendar instead of overflowing: durations come from
/// knobs and admin calls, and a huge one must not bring a request down.
pub(crate) fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(to_chrono(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Formats a time the way Oen does: UTC, ISO 8601 with milliseconds.
pub(crate) fn oen_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward() {
        let mut clock = SimClock::new();
        clock.set_frozen(true);
        let before = clock.now();
        clock.advance(Duration::from_secs(600));
        assert_eq!(clock.now() - before, chrono::Duration::seconds(600));
    }

    #[test]
    fn advancing_past_the_end_of_the_calendar_stops_there() {
        let mut clock = SimClock::new();
        clock.set_frozen(true);
        clock.advance(Duration::from_millis(u64::MAX));
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn oen_time_has_millis_and_z() {
        let t = DateTime::parse_from_rfc3339("2026-09-28T02:40:25.502Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(oen_time(t), "2026-09-28T02:40:25.502Z");
    }
}
