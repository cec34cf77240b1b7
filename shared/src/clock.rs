//! Time comes from a port so tests can move it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when a test says so. Clones share the same time.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    pub fn at(t: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(t)))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The machine's clock shifted by an offset that can grow: the dev stack's "skip ahead a
/// month" button, with time still ticking.
#[derive(Debug, Clone, Default)]
pub struct ShiftedClock(Arc<Mutex<Duration>>);

impl ShiftedClock {
    pub fn skip(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    pub fn offset(&self) -> Duration {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_only_when_told_and_clones_share_time() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let c = TestClock::at(t0);
        let c2 = c.clone();
        assert_eq!(c.now(), t0);
        c.advance(Duration::minutes(5));
        assert_eq!(c2.now(), t0 + Duration::minutes(5));
        c2.set(t0);
        assert_eq!(c.now(), t0);
    }

    #[test]
    fn shifted_clock_runs_ahead_by_its_offset() {
        let c = ShiftedClock::default();
        c.skip(Duration::days(30));
        let ahead = c.now() - Utc::now();
        assert!(
            ahead > Duration::days(29) && ahead <= Duration::days(30),
            "{ahead}"
        );
    }
}
