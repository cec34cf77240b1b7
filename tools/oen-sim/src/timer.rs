//! Waiting on the simulator clock. A wait ends when the simulated moment comes, whether real
//! time brings it (a running clock) or an explicit change does (advancing, setting or thawing
//! the clock), so tests can drive time-based behaviour without sleeping.

use crate::state::Shared;
use chrono::{DateTime, Utc};

impl Shared {
    /// The simulator clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.lock().now()
    }

    /// Wakes every wait so it reads the clock again; call after changing the clock.
    pub(crate) fn clock_moved(&self) {
        self.clock_moved.notify_waiters();
    }

    /// Returns once the simulator clock shows `due` or later.
    pub(crate) async fn sleep_until(&self, due: DateTime<Utc>) {
        loop {
            // Registered before reading the clock, so a change in between is not missed.
            let moved = self.clock_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let (now, frozen) = {
                let st = self.lock();
                (st.now(), st.clock.is_frozen())
            };
            if now >= due {
                return;
            }
            if frozen {
                moved.await;
                continue;
            }
            let remaining = (due - now).to_std().unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(remaining) => {}
                () = moved => {}
            }
        }
    }
}
