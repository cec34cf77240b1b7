//! The simulator's state and the operations on it. Every operation takes the simulated `now`
//! and runs under one lock, so the HTTP handlers, the admin API and the library methods all
//! act on the same ledger the same way.

use crate::cards::{self, CardBehaviour};
use crate::charges::decline_message;
use crate::clock::SimClock;
use crate::delivery::DeliveryRecord;
use crate::ids;
use crate::model::{
    Checkout, CheckoutState, ForceRule, ForceTarget, ForcedOutcome, Knobs, LedgerEntry, Settle,
    Snapshot, Status, TokenRecord, Transaction,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// What the server and every task share.
pub(crate) struct Shared {
    pub merchant_id: String,
    pub api_token: String,
    /// `Some` in production mode: only these source IPs may call the API.
    pub allowlist: Option<Vec<IpAddr>>,
    pub page_validity: Duration,
    pub initial_knobs: Knobs,
    pub initial_webhook_url: Option<String>,
    pub state: Mutex<State>,
    pub http: reqwest::Client,
    pub started: Instant,
    pub tasks: Mutex<Vec<AbortHandle>>,
    /// Signalled whenever the simulator clock is changed explicitly (see `timer`).
    pub clock_moved: Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the ledger half-written in a way that
        // matters more than keeping the simulator answering.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn track(&self, handle: AbortHandle) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    pub(crate) fn abort_tasks(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}

pub(crate) type SharedRef = Arc<Shared>;

#[derive(Debug)]
pub(crate) struct State {
    pub clock: SimClock,
    pub knobs: Knobs,
    pub webhook_url: Option<String>,
    pub transactions: Vec<Transaction>,
    pub checkouts: HashMap<String, Checkout>,
    pub tokens: HashMap<String, TokenRecord>,
    pub deliveries: Vec<DeliveryRecord>,
    pub forced: Vec<ForceRule>,
    /// The payer fields of every charge request that passed validation, oldest first.
    pub charge_payers: Vec<crate::model::ChargePayer>,
}

/// The outcome of submitting the hosted binding form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BindOutcome {
    Bound {
        token: String,
    },
    Failed {
        /// The `payment_error` for the failure redirect.
        code: &'static str,
        /// The webhook `message`.
        message: &'static str,
    },
}

impl State {
    pub(crate) fn new(knobs: Knobs, webhook_url: Option<String>) -> Self {
        Self {
            clock: SimClock::new(),
            knobs,
            webhook_url,
            transactions: Vec::new(),
            checkouts: HashMap::new(),
            tokens: HashMap::new(),
            deliveries: Vec::new(),
            forced: Vec::new(),
            charge_payers: Vec::new(),
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Settles every `C026` transaction whose settle time has come (simulator clock).
    pub(crate) fn settle_due(&mut self) {
        let now = self.now();
        for tx in &mut self.transactions {
            if let Some((due, how)) = tx.pending_settle {
                if due <= now {
                    settle(tx, due, how);
                }
            }
        }
    }

    /// Settles every pending `C026` transaction now; returns how many.
    pub(crate) fn settle_all(&mut self) -> usize {
        let now = self.now();
        let mut n = 0;
        for tx in &mut self.transactions {
            if let Some((_, how)) = tx.pending_settle {
                settle(tx, now, how);
                n += 1;
            }
        }
        n
    }

    pub(crate) fn ledger(&mut self) -> Vec<LedgerEntry> {
        self.settle_due();
        self.transactions
            .iter()
            .map(Transaction::ledger_entry)
            .collect()
    }

    pub(crate) fn create_token(&mut self, card_number: &str) -> String {
        let token = ids::long_id();
        self.tokens.insert(
            token.clone(),
            TokenRecord {
                behaviour: cards::behaviour_of(card_number),
                failures_so_far: 0,
            },
        );
        token
    }

    pub(crate) fn force(&mut self, target: ForceTarget, outcome: ForcedOutcome, times: u32) {
        if times > 0 {
            self.forced.push(ForceRule {
                target,
                outcome,
                remaining: times,
            });
        }
    }

    pub(crate) fn take_forced(
        &mut self,
        matches: impl Fn(&ForceTarget) -> bool,
    ) -> Option<ForcedOutcome> {
        let index = self.forced.iter().position(|r| matches(&r.target))?;
        let rule = &mut self.forced[index];
        let outcome = rule.outcome.clone();
        rule.remaining = rule.remaining.saturating_sub(1);
        if rule.remaining == 0 {
            self.forced.remove(index);
        }
        Some(outcome)
    }

    // ---- hosted binding --------------------------------------------------------------------

    pub(crate) fn create_checkout(&mut self, checkout: Checkout) -> String {
        let id = checkout.id.clone();
        self.checkouts.insert(id.clone(), checkout);
        id
    }

    /// Marks an open checkout expired if its page validity has run out; returns whether the
    /// page is (now) expired.
    pub(crate) fn expire_if_due(&mut self, checkout_id: &str, validity: Duration) -> bool {
        let now = self.now();
        match self.checkouts.get_mut(checkout_id) {
            Some(c) => {
                if c.state == CheckoutState::Open
                    && now >= crate::clock::after(c.created_at, validity)
                {
                    c.state = CheckoutState::Expired;
                }
                c.state == CheckoutState::Expired
            }
            None => false,
        }
    }

    pub(crate) fn bind(&mut self, checkout_id: &str, card_number: &str) -> Option<BindOutcome> {
        if !self.checkouts.contains_key(checkout_id) {
            return None;
        }
        let behaviour = cards::behaviour_of(card_number);
        let outcome = match behaviour {
            CardBehaviour::BindAbandoned3ds => BindOutcome::Failed {
                code: "T0001",
                message: "3DS_ABANDONED",
            },
            CardBehaviour::BindDecline(code) => BindOutcome::Failed {
                code,
                message: code,
            },
            _ => BindOutcome::Bound {
                token: self.create_token(card_number),
            },
        };
        let checkout = self.checkouts.get_mut(checkout_id)?;
        checkout.state = match outcome {
            BindOutcome::Bound { .. } => CheckoutState::Bound,
            BindOutcome::Failed { .. } => CheckoutState::Failed,
        };
        Some(outcome)
    }
}

fn settle(tx: &mut Transaction, at: DateTime<Utc>, how: Settle) {
    let current = tx.current().clone();
    let snapshot = match how {
        Settle::Charged => Snapshot {
            at,
            status: Status::Charged,
            paid_at: Some(at),
            auth_code: tx.auth_code_on_approval.clone(),
            ..current
        },
        Settle::Failed => Snapshot {
            at,
            status: Status::Failed,
            reason: Some(decline_message("T0001").to_string()),
            ..current
        },
    };
    tx.push(snapshot);
    tx.pending_settle = None;
}
