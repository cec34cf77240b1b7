//! The simulator's state and the operations on it. Every operation takes the simulated `now`
//! and runs under one lock, so the HTTP handlers, the admin API and the library methods all
//! act on the same ledger the same way.

use crate::cards::{self, CardBehaviour};
use crate::clock::SimClock;
use crate::delivery::DeliveryRecord;
use crate::envelope::ApiError;
use crate::ids;
use crate::model::{
    ms, Checkout, CheckoutState, ForceRule, ForceTarget, ForcedOutcome, Knobs, LedgerEntry, Settle,
    Snapshot, Status, TokenRecord, Transaction,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Transactions per page of `GET /transactions`.
pub(crate) const PAGE_SIZE: usize = 50;

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
}

/// A validated `POST /token/transactions`.
#[derive(Debug, Clone)]
pub(crate) struct ChargeRequest {
    pub token: String,
    pub order_id: String,
    pub amount: i64,
    pub note: Option<String>,
}

/// How to answer a charge once the ledger is updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChargeReply {
    Approved { number: String, auth_code: String },
    Fail(ApiError),
    GatewayTimeout,
    Drop,
}

/// A forced answer to an order query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryOverride {
    Fail(ApiError),
    GatewayTimeout,
    Drop,
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

fn decline_message(code: &str) -> &'static str {
    match code {
        "T0001" => "Transaction failed",
        "T0002" => "CVV error",
        "T0003" => "Card expired",
        "T0004" => "Insufficient credit",
        "T0005" => "Issuer refused",
        _ => "Declined",
    }
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

    fn take_forced(&mut self, matches: impl Fn(&ForceTarget) -> bool) -> Option<ForcedOutcome> {
        let index = self.forced.iter().position(|r| matches(&r.target))?;
        let rule = &mut self.forced[index];
        let outcome = rule.outcome.clone();
        rule.remaining = rule.remaining.saturating_sub(1);
        if rule.remaining == 0 {
            self.forced.remove(index);
        }
        Some(outcome)
    }

    // ---- charges ---------------------------------------------------------------------------

    pub(crate) fn charge(&mut self, req: &ChargeRequest) -> Result<ChargeReply, ApiError> {
        self.settle_due();
        let behaviour = match self.tokens.get(&req.token) {
            Some(t) => t.behaviour,
            None => return Err(ApiError::invalid("token not found")),
        };
        let forced = self.take_forced(|t| match t {
            ForceTarget::Token(tok) => *tok == req.token,
            ForceTarget::OrderId(order) => *order == req.order_id,
            ForceTarget::AnyCharge => true,
            ForceTarget::OrderQuery(_) => false,
        });
        let Some(forced) = forced else {
            return Ok(self.charge_as_card(req, behaviour));
        };
        Ok(match forced {
            ForcedOutcome::Respond {
                code,
                http_status,
                message,
            } => {
                let message = message.unwrap_or_else(|| decline_message(&code).to_string());
                if code.starts_with('T') {
                    self.record_final(req, Err(message.clone()));
                }
                ChargeReply::Fail(ApiError::coded(http_status, &code, message))
            }
            ForcedOutcome::Unknown { settles } => {
                self.record_unknown(req, settles);
                ChargeReply::Fail(ApiError::unknown_result())
            }
            ForcedOutcome::GatewayTimeoutAfterCommit => {
                self.commit_as_card(req, behaviour);
                ChargeReply::GatewayTimeout
            }
            ForcedOutcome::GatewayTimeoutBeforeCommit => ChargeReply::GatewayTimeout,
            ForcedOutcome::DropConnectionAfterCommit => {
                self.commit_as_card(req, behaviour);
                ChargeReply::Drop
            }
            ForcedOutcome::DropConnectionBeforeCommit => ChargeReply::Drop,
        })
    }

    fn charge_as_card(&mut self, req: &ChargeRequest, behaviour: CardBehaviour) -> ChargeReply {
        match behaviour {
            CardBehaviour::UnknownThenCharged => {
                self.record_unknown(req, Settle::Charged);
                ChargeReply::Fail(ApiError::unknown_result())
            }
            CardBehaviour::UnknownThenFailed => {
                self.record_unknown(req, Settle::Failed);
                ChargeReply::Fail(ApiError::unknown_result())
            }
            CardBehaviour::GatewayTimeoutAfterCommit => {
                self.record_final(req, Ok(()));
                ChargeReply::GatewayTimeout
            }
            CardBehaviour::DropAfterCommit => {
                self.record_final(req, Ok(()));
                ChargeReply::Drop
            }
            _ => self.commit_as_card(req, behaviour),
        }
    }

    /// Approves or declines as the card would; cards without a plain approve/decline answer
    /// are approved.
    fn commit_as_card(&mut self, req: &ChargeRequest, behaviour: CardBehaviour) -> ChargeReply {
        let decline = match behaviour {
            CardBehaviour::Decline(code) => Some(code),
            CardBehaviour::SucceedsAfter(n) => match self.tokens.get_mut(&req.token) {
                Some(t) if t.failures_so_far < n => {
                    t.failures_so_far += 1;
                    Some("T0001")
                }
                _ => None,
            },
            _ => None,
        };
        match decline {
            Some(code) => {
                let message = decline_message(code);
                self.record_final(req, Err(message.to_string()));
                ChargeReply::Fail(ApiError::coded(400, code, message))
            }
            None => {
                let (number, auth_code) = self.record_final(req, Ok(()));
                ChargeReply::Approved {
                    number,
                    auth_code: auth_code.unwrap_or_default(),
                }
            }
        }
    }

    fn new_transaction(&self, req: &ChargeRequest) -> Transaction {
        let now = self.now();
        Transaction {
            number: ids::transaction_number(now),
            transaction_id: ids::long_id(),
            order_id: req.order_id.clone(),
            amount: req.amount,
            token: req.token.clone(),
            created_at: now,
            history: vec![Snapshot {
                at: now,
                status: Status::Charging,
                paid_at: None,
                refund_amount: 0,
                refunded_at: None,
                auth_code: None,
                reason: None,
            }],
            pending_settle: None,
            successful_refunds: 0,
            note: req.note.clone(),
        }
    }

    /// Records a charge that ended at once: `Ok` = charged, `Err(reason)` = failed.
    /// Returns the transaction number and the auth code of a charged one.
    fn record_final(
        &mut self,
        req: &ChargeRequest,
        result: Result<(), String>,
    ) -> (String, Option<String>) {
        let mut tx = self.new_transaction(req);
        let now = tx.created_at;
        let snapshot = match result {
            Ok(()) => Snapshot {
                at: now,
                status: Status::Charged,
                paid_at: Some(now),
                refund_amount: 0,
                refunded_at: None,
                auth_code: Some(ids::auth_code()),
                reason: None,
            },
            Err(reason) => Snapshot {
                at: now,
                status: Status::Failed,
                paid_at: None,
                refund_amount: 0,
                refunded_at: None,
                auth_code: None,
                reason: Some(reason),
            },
        };
        let auth_code = snapshot.auth_code.clone();
        tx.push(snapshot);
        let number = tx.number.clone();
        self.transactions.push(tx);
        (number, auth_code)
    }

    fn record_unknown(&mut self, req: &ChargeRequest, settles: Settle) {
        let mut tx = self.new_transaction(req);
        tx.pending_settle = Some((
            tx.created_at + crate::clock::to_chrono(ms(self.knobs.settle_delay_ms)),
            settles,
        ));
        self.transactions.push(tx);
    }

    // ---- queries ---------------------------------------------------------------------------

    fn lag(&self) -> Duration {
        ms(self.knobs.consistency_lag_ms)
    }

    pub(crate) fn order_query_override(&mut self, order_id: &str) -> Option<QueryOverride> {
        let forced =
            self.take_forced(|t| matches!(t, ForceTarget::OrderQuery(o) if o == order_id))?;
        Some(match forced {
            ForcedOutcome::Respond {
                code,
                http_status,
                message,
            } => QueryOverride::Fail(ApiError::coded(
                http_status,
                &code,
                message.unwrap_or_else(|| "forced by the simulator".into()),
            )),
            ForcedOutcome::Unknown { .. } => QueryOverride::Fail(ApiError::unknown_result()),
            ForcedOutcome::GatewayTimeoutAfterCommit
            | ForcedOutcome::GatewayTimeoutBeforeCommit => QueryOverride::GatewayTimeout,
            ForcedOutcome::DropConnectionAfterCommit
            | ForcedOutcome::DropConnectionBeforeCommit => QueryOverride::Drop,
        })
    }

    pub(crate) fn order_transactions(&mut self, order_id: &str) -> Vec<Value> {
        self.settle_due();
        let (now, lag) = (self.now(), self.lag());
        self.transactions
            .iter()
            .filter(|t| t.order_id == order_id)
            .map(|t| t.to_json(t.visible(now, lag)))
            .collect()
    }

    pub(crate) fn transaction(&mut self, id: &str) -> Result<Value, ApiError> {
        self.settle_due();
        let (now, lag) = (self.now(), self.lag());
        let found = if ids::is_transaction_number(id) {
            self.transactions.iter().find(|t| t.number == id)
        } else if ids::is_long_id(id) {
            self.transactions.iter().find(|t| t.transaction_id == id)
        } else {
            None
        };
        found
            .map(|t| t.to_json(t.visible(now, lag)))
            .ok_or_else(|| ApiError::invalid("transaction not found"))
    }

    /// Newest first, 50 a page; `page` is 1-based. Returns the page and whether more follow.
    pub(crate) fn list_transactions(
        &mut self,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
        page: usize,
    ) -> (Vec<Value>, bool) {
        self.settle_due();
        let (now, lag) = (self.now(), self.lag());
        let matching: Vec<&Transaction> = self
            .transactions
            .iter()
            .rev()
            .filter(|t| match range {
                Some((start, end)) => t.created_at >= start && t.created_at <= end,
                None => true,
            })
            .collect();
        let skip = page.saturating_sub(1).saturating_mul(PAGE_SIZE);
        let items = matching
            .iter()
            .skip(skip)
            .take(PAGE_SIZE)
            .map(|t| t.to_json(t.visible(now, lag)))
            .collect();
        let more = matching.len() > skip.saturating_add(PAGE_SIZE);
        (items, more)
    }

    // ---- refunds ---------------------------------------------------------------------------

    pub(crate) fn refund(&mut self, number: &str, amount: Option<i64>) -> Result<Value, ApiError> {
        self.settle_due();
        let now = self.now();
        let tx = self
            .transactions
            .iter_mut()
            .find(|t| t.number == number)
            .ok_or_else(|| ApiError::invalid("transaction not found"))?;
        if tx.successful_refunds > 0 {
            return Err(ApiError::not_allowed("transaction already refunded"));
        }
        let current = tx.current().clone();
        if !current.status.is_paid() {
            return Err(ApiError::not_allowed(format!(
                "transaction status {} does not allow a refund",
                current.status
            )));
        }
        let amount = amount.unwrap_or(tx.amount);
        if amount < 1 {
            return Err(ApiError::invalid("INVALID_REFUND_AMOUNT"));
        }
        if amount > tx.amount {
            return Err(ApiError::invalid("REFUND_AMOUNT_EXCEED_CHARGE_AMOUNT"));
        }
        tx.push(Snapshot {
            at: now,
            status: Status::Refunded,
            refund_amount: amount,
            refunded_at: Some(now),
            ..current
        });
        tx.successful_refunds += 1;
        let mut body = tx.to_json(tx.current());
        if let Some(obj) = body.as_object_mut() {
            obj.insert("success".into(), Value::Bool(true));
        }
        Ok(body)
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
                    && now >= c.created_at + crate::clock::to_chrono(validity)
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
            auth_code: Some(ids::auth_code()),
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
