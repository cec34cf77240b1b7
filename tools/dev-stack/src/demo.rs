//! The state the demo's pages and buttons share: the stack's adapters and simulator (when it
//! plays Oen), the plans on offer, and what the charger did last.

use std::sync::{Arc, Mutex};

use oen_pay::domain::Catalog;
use oen_sim::Simulator;

use crate::Adapters;

/// What the demo pages need.
pub(crate) struct Demo {
    /// This server's base URL (no trailing slash).
    pub url: String,
    pub plans: Catalog,
    pub adapters: Adapters,
    /// The simulator playing Oen; `None` when Oen's testing environment does.
    pub sim: Option<Arc<Simulator>>,
    pub last_run: LastRun,
    /// What the last operation from the state page did.
    pub last_operation: LastRun,
}

/// What the charger's last run did, kept for the inspection page.
#[derive(Default)]
pub(crate) struct LastRun(Mutex<Vec<String>>);

impl LastRun {
    pub(crate) fn set(&self, lines: Vec<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = lines;
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
