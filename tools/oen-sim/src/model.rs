//! The simulator's data: transactions, checkouts, tokens, knobs and forced responses.

use crate::clock::{oen_time, to_chrono};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Oen's transaction statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Initiated,
    Charging,
    Authorized,
    Charged,
    Claimed,
    Failed,
    Cancelled,
    Refunding,
    Refunded,
    RefundedPostPayout,
}

impl Status {
    /// The wire name (`charged`, `refundedPostPayout`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Initiated => "initiated",
            Status::Charging => "charging",
            Status::Authorized => "authorized",
            Status::Charged => "charged",
            Status::Claimed => "claimed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Refunding => "refunding",
            Status::Refunded => "refunded",
            Status::RefundedPostPayout => "refundedPostPayout",
        }
    }

    /// Paid means `charged` or `claimed`.
    pub fn is_paid(self) -> bool {
        matches!(self, Status::Charged | Status::Claimed)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transaction as the admin ledger shows it: the true, current state (never delayed by the
/// eventual-consistency knob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// The `P…` transaction number.
    pub id: String,
    /// The 27-character internal id.
    pub transaction_id: String,
    pub order_id: String,
    pub amount: i64,
    pub status: Status,
    /// The card token that was charged.
    pub token: String,
    pub refund_amount: i64,
    pub auth_code: Option<String>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
}

/// The mutable part of a transaction at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub at: DateTime<Utc>,
    pub status: Status,
    pub paid_at: Option<DateTime<Utc>>,
    pub refund_amount: i64,
    pub refunded_at: Option<DateTime<Utc>>,
    pub auth_code: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Transaction {
    pub number: String,
    pub transaction_id: String,
    pub order_id: String,
    pub amount: i64,
    pub token: String,
    pub created_at: DateTime<Utc>,
    /// Every state the transaction went through; the first is visible at once, each later one
    /// becomes visible to queries `consistency_lag` after it happened.
    pub history: Vec<Snapshot>,
    /// A `charging` transaction whose result becomes known at the given time.
    pub pending_settle: Option<(DateTime<Utc>, Settle)>,
    pub successful_refunds: u32,
    pub note: Option<String>,
    /// The `authCode` the transaction carries once approved (the auth-code knob decides at
    /// charge time whether it has one).
    pub auth_code_on_approval: Option<String>,
}

/// How an unknown (`C026`) payment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Settle {
    Charged,
    Failed,
}

impl Transaction {
    pub(crate) fn current(&self) -> &Snapshot {
        // `history` is never empty: it is created with its first snapshot.
        &self.history[self.history.len() - 1]
    }

    /// What a query sees at `now` when changes take `lag` to show.
    pub(crate) fn visible(&self, now: DateTime<Utc>, lag: Duration) -> &Snapshot {
        let lag = to_chrono(lag);
        self.history
            .iter()
            .enumerate()
            .rev()
            .find(|(i, s)| *i == 0 || s.at.checked_add_signed(lag).is_some_and(|t| t <= now))
            .map(|(_, s)| s)
            .unwrap_or_else(|| self.current())
    }

    pub(crate) fn push(&mut self, snapshot: Snapshot) {
        self.history.push(snapshot);
    }

    pub(crate) fn ledger_entry(&self) -> LedgerEntry {
        let s = self.current();
        LedgerEntry {
            id: self.number.clone(),
            transaction_id: self.transaction_id.clone(),
            order_id: self.order_id.clone(),
            amount: self.amount,
            status: s.status,
            token: self.token.clone(),
            refund_amount: s.refund_amount,
            auth_code: s.auth_code.clone(),
            reason: s.reason.clone(),
            created_at: self.created_at,
            paid_at: s.paid_at,
            refunded_at: s.refunded_at,
        }
    }

    /// The Oen transaction object for a snapshot; fields without a value are omitted.
    pub(crate) fn to_json(&self, s: &Snapshot) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.number));
        o.insert("transactionId".into(), json!(self.transaction_id));
        o.insert("action".into(), json!("onetime"));
        o.insert("amount".into(), json!(self.amount));
        o.insert("paymentMethod".into(), json!("card"));
        o.insert("paymentInfo".into(), json!({"method": "card"}));
        o.insert("status".into(), json!(s.status.as_str()));
        o.insert("orderId".into(), json!(self.order_id));
        o.insert("createdAt".into(), json!(oen_time(self.created_at)));
        if let Some(t) = s.paid_at {
            o.insert("paidAt".into(), json!(oen_time(t)));
        }
        o.insert("refundAmount".into(), json!(s.refund_amount));
        if let Some(t) = s.refunded_at {
            o.insert("refundedAt".into(), json!(oen_time(t)));
        }
        if let Some(code) = &s.auth_code {
            o.insert("authCode".into(), json!(code));
        }
        if let Some(reason) = &s.reason {
            o.insert("reason".into(), json!(reason));
        }
        if let Some(note) = &self.note {
            o.insert("note".into(), json!(note));
        }
        Value::Object(o)
    }
}

/// A hosted binding page created by `POST /checkout-token`.
#[derive(Debug, Clone)]
pub(crate) struct Checkout {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub success_url: Option<String>,
    pub failure_url: Option<String>,
    pub custom_id: Option<String>,
    pub payer_email: Option<String>,
    pub state: CheckoutState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckoutState {
    Open,
    Bound,
    Failed,
    Expired,
}

/// A card token and what charging it does.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub behaviour: crate::cards::CardBehaviour,
    /// Charges already declined for a "succeeds after N failures" card.
    pub failures_so_far: u32,
}

/// Which requests a forced response applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ForceTarget {
    /// `POST /token/transactions` charging this token.
    Token(String),
    /// `POST /token/transactions` with this `orderId`.
    OrderId(String),
    /// `GET /order/{orderId}/transactions` for this `orderId`.
    OrderQuery(String),
    /// Any `POST /token/transactions`.
    AnyCharge,
    /// `POST /refunds/{id}` of this `P…` transaction number.
    Refund(String),
    /// Any `POST /refunds/{id}`.
    AnyRefund,
    /// `GET /transactions`, any window and page.
    TransactionList,
}

/// A response to force instead of the normal behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ForcedOutcome {
    /// Answer with this code and HTTP status. For a charge, a `T…` code also records a
    /// `failed` transaction (as a real decline does); other codes record nothing. A refund
    /// answered so (400 `R0001`: failed at the acquirer) refunds nothing.
    #[serde(rename_all = "camelCase")]
    Respond {
        code: String,
        http_status: u16,
        #[serde(default)]
        message: Option<String>,
    },
    /// 409 `C026`; a charge stays `charging` and settles as given (a refund or an order
    /// query answered so changes nothing; `settles` is then unused).
    Unknown { settles: Settle },
    /// Commit the charge (the card's own approve/decline, else `charged`) or the refund, then
    /// answer 504.
    GatewayTimeoutAfterCommit,
    /// Answer 504 without charging or refunding anything.
    GatewayTimeoutBeforeCommit,
    /// Commit the charge or the refund, then close the connection without a response.
    DropConnectionAfterCommit,
    /// Close the connection without charging or refunding anything.
    DropConnectionBeforeCommit,
    /// Commit the charge (the card's own approve/decline, else `charged`) or the refund, then
    /// answer 500 `F0001`: the money moved although the answer says system error.
    #[serde(rename_all = "camelCase")]
    SystemErrorAfterCommit {
        #[serde(default)]
        message: Option<String>,
    },
}

impl ForcedOutcome {
    /// True for the "after commit" outcomes: the call is carried out, then answered wrongly.
    pub(crate) fn commits_first(&self) -> bool {
        matches!(
            self,
            ForcedOutcome::GatewayTimeoutAfterCommit
                | ForcedOutcome::DropConnectionAfterCommit
                | ForcedOutcome::SystemErrorAfterCommit { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ForceRule {
    pub target: ForceTarget,
    pub outcome: ForcedOutcome,
    pub remaining: u32,
}

/// Whether an approved charge carries an `authCode`; Oen's answer "may" lack it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthCodeMode {
    /// Every approved charge has one.
    #[default]
    Present,
    /// No approved charge has one.
    Absent,
    /// About half have none, chosen by `seed` and the transaction's place in the ledger: the
    /// same seed and the same calls give the same answers.
    Random { seed: u64 },
}

impl AuthCodeMode {
    /// The `authCode` of the transaction at `ledger_index` once approved, if it gets one.
    pub(crate) fn issue(self, ledger_index: usize) -> Option<String> {
        let absent = match self {
            AuthCodeMode::Present => false,
            AuthCodeMode::Absent => true,
            AuthCodeMode::Random { seed } => seeded_coin(seed, ledger_index),
        };
        (!absent).then(crate::ids::auth_code)
    }
}

/// A fair coin for draw number `n` of a seed: SplitMix64's output at that step.
fn seeded_coin(seed: u64, n: usize) -> bool {
    let step = u64::try_from(n).unwrap_or(u64::MAX);
    let mut z = seed.wrapping_add(step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 63 == 1
}

/// Behaviour switches; every field can be changed at run time (`POST /_sim/knobs` merges a
/// partial JSON object into the current knobs). Durations are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Knobs {
    /// Fixed latency added to every API call (not the admin API or hosted pages).
    pub latency_ms: u64,
    /// For this long (simulator clock) after a transaction changes, queries still show its
    /// previous state. A new transaction is never hidden by this lag: its first state
    /// (`charging`) shows at once, and its result `consistency_lag_ms` later.
    pub consistency_lag_ms: u64,
    /// A transaction younger than this (simulator clock, from `createdAt`) is missing from
    /// `GET /order/{orderId}/transactions` and `GET /transactions`; `GET /transactions/{id}`
    /// still finds it.
    pub listing_delay_ms: u64,
    /// How long (simulator clock) a `C026` transaction stays `charging`.
    pub settle_delay_ms: u64,
    /// How long a "504 after commit" waits before answering (real time; Oen waits 29 s).
    pub gateway_timeout_delay_ms: u64,
    /// Drop (never send) the next N webhooks.
    pub webhook_drop_next: u32,
    /// Send each of the next N webhooks twice.
    pub webhook_duplicate_next: u32,
    /// Hold back the next N webhooks until a later webhook has been delivered (or given up
    /// on), or until `POST /_sim/webhooks/release`: this reorders deliveries.
    pub webhook_hold_next: u32,
    /// Wait this long (simulator clock) before the first attempt of every webhook.
    pub webhook_delay_ms: u64,
    /// Put a `transactionId` different from `id` in token webhooks.
    pub webhook_transaction_id_differs: bool,
    /// Send `"message": null` in token webhooks.
    pub webhook_null_message: bool,
    /// Timeout of one delivery attempt (simulator clock).
    pub webhook_timeout_ms: u64,
    /// Gaps between attempt starts (simulator clock): attempt k starts this list's first k-1
    /// delays after the first attempt started, whether or not earlier attempts have answered.
    /// Attempts = 1 + its length.
    pub webhook_retry_delays_ms: Vec<u64>,
    /// Whether approved charges carry an `authCode` (in the answer, in queries and in the
    /// ledger): `"present"`, `"absent"` or `{"random":{"seed":N}}`.
    pub auth_code: AuthCodeMode,
    /// The merchant's domain issues e-invoices: a charge without `userEmail` is refused with
    /// 400 `V0001`, as Oen documents it as required then.
    pub einvoice: bool,
}

/// What one charge request accepted by validation told Oen about its payer (e-invoicing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargePayer {
    pub order_id: String,
    pub user_email: Option<String>,
    pub user_name: Option<String>,
    pub invoice_info: Option<serde_json::Value>,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            consistency_lag_ms: 0,
            listing_delay_ms: 0,
            settle_delay_ms: 60_000,
            gateway_timeout_delay_ms: 200,
            webhook_drop_next: 0,
            webhook_duplicate_next: 0,
            webhook_hold_next: 0,
            webhook_delay_ms: 0,
            webhook_transaction_id_differs: false,
            webhook_null_message: false,
            webhook_timeout_ms: 10_000,
            webhook_retry_delays_ms: vec![2_000, 2_000],
            auth_code: AuthCodeMode::Present,
            einvoice: false,
        }
    }
}

pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

pub(crate) fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
