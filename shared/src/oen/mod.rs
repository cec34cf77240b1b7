//! The Oen Payment API as a port, with every outcome classified into what the domain can act on.
//!
//! Oen has no idempotency: the same charge sent twice charges twice. So the classification
//! separates "the request never left" ([`OenError::NotSent`], safe to resend) from "it may have
//! been acted on" ([`OenError::Unknown`], reconcile by querying the order before anything else).

mod client;
mod webhook;
mod wire;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::{
    Amount, CardToken, CheckoutId, MerchantId, OrderId, Payer, ProductDetail, TransactionId,
};

pub use client::{HttpOenGateway, OenClientConfig};
pub use webhook::{BindingResult, Notification, NotificationError, TokenNotification};

/// `POST /checkout-token`.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub success_url: Option<String>,
    pub failure_url: Option<String>,
    pub custom_id: Option<String>,
    pub payer_email: Option<String>,
    pub note: Option<String>,
}

/// `POST /token/transactions`.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub token: CardToken,
    pub order_id: OrderId,
    pub amount: Amount,
    pub product_details: Vec<ProductDetail>,
    pub user_id: Option<String>,
    /// `userEmail`, `userName` and `invoiceInfo`: what Oen's e-invoicing needs (`Debug`
    /// redacts them).
    pub payer: Payer,
    pub note: Option<String>,
    /// No request (a first send or a resend) leaves after this much time from the call: past
    /// it, Oen could still be working on it when the caller's lease ends.
    pub send_within: Option<std::time::Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeReceipt {
    /// The 17-character `P…` transaction number that refunds use.
    pub transaction_number: TransactionId,
    pub auth_code: Option<String>,
}

/// `POST /refunds/{P…}`.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub transaction_number: TransactionId,
    /// `None` refunds the whole amount.
    pub amount: Option<Amount>,
    pub reason: Option<String>,
    /// What is refunded (adding up to it): required by Oen once an e-invoice was issued for
    /// the transaction, and always sent.
    pub product_details: Vec<ProductDetail>,
}

/// A transaction's status as Oen reports it. Unknown strings are kept, not refused: Oen may add
/// statuses, and an unrecognised one must never be taken for "failed" (that would allow a charge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TxStatus {
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
    #[serde(untagged)]
    Other(String),
}

impl TxStatus {
    /// Money moved: `charged` or `claimed` (refunds of a paid transaction still mean it was paid).
    pub fn is_paid(&self) -> bool {
        matches!(
            self,
            TxStatus::Charged
                | TxStatus::Claimed
                | TxStatus::Refunding
                | TxStatus::Refunded
                | TxStatus::RefundedPostPayout
        )
    }

    /// Definitely no money moved and none will.
    pub fn is_final_failure(&self) -> bool {
        matches!(self, TxStatus::Failed | TxStatus::Cancelled)
    }
}

/// A transaction object from the query endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    /// `P…` number.
    pub id: TransactionId,
    #[serde(default)]
    pub transaction_id: Option<String>,
    pub amount: i64,
    pub status: TxStatus,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub paid_at: Option<String>,
    #[serde(default)]
    pub refund_amount: Option<i64>,
    #[serde(default)]
    pub auth_code: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Oen's opaque continuation of `GET /transactions`: the `page` a page names as the next one,
/// sent back as the `page` query parameter. Oen gives it as a string or a number; both are
/// kept as text and never interpreted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PageToken(String);

impl PageToken {
    /// A token as Oen gave it; an empty one names no page.
    pub fn new(raw: impl Into<String>) -> Option<Self> {
        let raw = raw.into();
        (!raw.is_empty()).then_some(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PageToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `GET /transactions?start=&end=&page=`: the money movements created on the Taipei calendar
/// days `start` to `end` (both included, written `yyyy-MM-dd`), 50 a page, from the first page
/// (`page: None`) or from the page a previous one named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListQuery {
    pub start: chrono::NaiveDate,
    pub end: chrono::NaiveDate,
    pub page: Option<PageToken>,
}

/// One page of `GET /transactions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionPage {
    pub transactions: Vec<Transaction>,
    /// The next page, `None` on the last one.
    pub next: Option<PageToken>,
}

/// Transactions per page of `GET /transactions`, as the contract says.
pub const TRANSACTIONS_PER_PAGE: usize = 50;

/// What every attempt of an order adds up to, for the exactly-once protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderState {
    /// No transaction at all: nothing reached the acquirer.
    NoAttempt,
    /// A transaction is `charged`/`claimed` (or refunded after): the period is paid.
    Paid(Box<Transaction>),
    /// Something is still in flight or in a state we do not recognise: wait, do not charge.
    InFlight,
    /// Every attempt failed: a new attempt is allowed.
    AllFailed,
}

impl OrderState {
    pub fn of(transactions: &[Transaction]) -> Self {
        if let Some(paid) = transactions.iter().find(|t| t.status.is_paid()) {
            return OrderState::Paid(Box::new(paid.clone()));
        }
        if transactions.is_empty() {
            OrderState::NoAttempt
        } else if transactions.iter().all(|t| t.status.is_final_failure()) {
            OrderState::AllFailed
        } else {
            OrderState::InFlight
        }
    }
}

/// Every way an Oen call can go wrong, classified by what the caller may do next.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum OenError {
    /// The request never left this process (connection refused, DNS, connect timeout): resending
    /// is safe.
    #[error("request not sent to Oen: {0}")]
    NotSent(String),
    /// The request may have been acted on (409 `C026`, 504, a timeout or dropped connection after
    /// the request was sent, 500 `F0001` on a creating call): never resend blind; reconcile.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The card was declined for now (`T0001`, `T0004`, `E0001`): retry later per dunning.
    #[error("soft decline {code}: {message}")]
    SoftDecline { code: String, message: String },
    /// The card cannot be charged (`T0002` CVV, `T0003` expired, `T0005` issuer refused): the
    /// customer must bind a new card.
    #[error("hard decline {code}: {message}")]
    HardDecline { code: String, message: String },
    /// Our configuration or our request is wrong (`A0001`, `V0001`, `V0003`, `K0001`, 403 without a
    /// code): alarm, never retry, change no customer state.
    #[error("Oen refused the request as misconfigured (HTTP {status}, {code}): {message}")]
    Config {
        status: u16,
        code: String,
        message: String,
    },
    /// The transaction's state does not allow it (`V0002`, `R0001`): query its state first.
    #[error("Oen refused the request in the transaction's current state ({code}): {message}")]
    State { code: String, message: String },
    /// A query failed in a way worth retrying later (500 `F0001`, 502/503 on a GET).
    #[error("Oen is temporarily unavailable (HTTP {status}): {message}")]
    Transient { status: u16, message: String },
    /// A response that is not Oen's JSON envelope (plain-text 404/405, HTML, malformed JSON, an
    /// unknown code). Carries the status and a short excerpt that never contains a token.
    #[error("unexpected response from Oen (HTTP {status}): {excerpt}")]
    Unexpected { status: u16, excerpt: String },
}

impl OenError {
    /// The Oen code, where the response had one.
    pub fn code(&self) -> Option<&str> {
        match self {
            OenError::SoftDecline { code, .. }
            | OenError::HardDecline { code, .. }
            | OenError::Config { code, .. }
            | OenError::State { code, .. } => Some(code),
            _ => None,
        }
    }

    /// `A0001`: the API key was regenerated (or is wrong); the secret should be re-read.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, OenError::Config { code, .. } if code == "A0001")
    }

    /// For a creating call (charge, refund): may money have moved? Everything that is not a
    /// definite answer from Oen and not `NotSent` may have.
    pub fn money_may_have_moved(&self) -> bool {
        matches!(
            self,
            OenError::Unknown(_) | OenError::Unexpected { .. } | OenError::Transient { .. }
        )
    }
}

/// The Oen Payment API, one method per endpoint the project uses.
#[async_trait]
pub trait OenGateway: Send + Sync {
    fn merchant_id(&self) -> &MerchantId;
    /// `POST /checkout-token`: the id of a hosted binding page. Never retried automatically.
    async fn create_checkout(&self, req: &CheckoutRequest) -> Result<CheckoutId, OenError>;
    /// `POST /token/transactions`. Never retried automatically.
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeReceipt, OenError>;
    /// `GET /order/{orderId}/transactions`; retried with bounded back-off.
    async fn order_transactions(&self, order: &OrderId) -> Result<Vec<Transaction>, OenError>;
    /// `GET /transactions/{id}`; retried with bounded back-off.
    async fn transaction(&self, id: &TransactionId) -> Result<Transaction, OenError>;
    /// `POST /refunds/{P…}`. Never retried automatically.
    async fn refund(&self, req: &RefundRequest) -> Result<(), OenError>;
    /// `GET /transactions?start=&end=&page=`: one page of the money movements of a window of
    /// Taipei days; retried with bounded back-off. A page that would not advance (it names
    /// itself as the next one, or names a next page while empty) is [`OenError::Unexpected`].
    async fn list_transactions(
        &self,
        query: &TransactionListQuery,
    ) -> Result<TransactionPage, OenError>;
}

/// The URL of the hosted binding page for a checkout id.
pub fn hosted_page_url(hosted_base: &str, merchant: &MerchantId, checkout: &CheckoutId) -> String {
    let base = hosted_base.replace("{merchantId}", merchant.as_str());
    format!(
        "{}/checkout/subscription/create/{}",
        base.trim_end_matches('/'),
        checkout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(status: &str) -> Transaction {
        serde_json::from_value(
            serde_json::json!({"id":"P20260928IJ90KL12","amount":500,"status":status}),
        )
        .unwrap()
    }

    #[test]
    fn order_state_follows_the_protocol() {
        assert_eq!(OrderState::of(&[]), OrderState::NoAttempt);
        assert_eq!(
            OrderState::of(&[tx("failed"), tx("failed")]),
            OrderState::AllFailed
        );
        assert_eq!(
            OrderState::of(&[tx("failed"), tx("charging")]),
            OrderState::InFlight
        );
        assert!(matches!(
            OrderState::of(&[tx("failed"), tx("charged")]),
            OrderState::Paid(_)
        ));
        assert!(matches!(
            OrderState::of(&[tx("claimed")]),
            OrderState::Paid(_)
        ));
        assert!(matches!(
            OrderState::of(&[tx("charging"), tx("refunded")]),
            OrderState::Paid(_)
        ));
        // A status Oen adds later is never taken for a failure.
        assert_eq!(
            OrderState::of(&[tx("failed"), tx("holding")]),
            OrderState::InFlight
        );
        assert_eq!(OrderState::of(&[tx("initiated")]), OrderState::InFlight);
    }

    #[test]
    fn hosted_url_fills_the_merchant() {
        let m = MerchantId::parse("ming").unwrap();
        let c = CheckoutId::parse("abc").unwrap();
        assert_eq!(
            hosted_page_url("https://{merchantId}.testing.oen.tw/", &m, &c),
            "https://ming.testing.oen.tw/checkout/subscription/create/abc"
        );
    }
}
