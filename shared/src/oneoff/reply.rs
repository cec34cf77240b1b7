//! What `POST /v1/charges` and `GET /v1/charges/{id}` answer: the charge as the merchant sees
//! it ([`ChargeView`], never token material), the replies an idempotency key stores and
//! replays ([`Reply`]), and the errors it never stores ([`OneOffError`]), each with a stable
//! code.

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

use crate::domain::{ChargeState, OneOffCharge, ProductDetail, StoredReply};
use crate::store::StoreError;

/// The charge's status as the merchant sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    /// Paid: Oen's transaction is `charged` (or `claimed`).
    Succeeded,
    /// Being charged, or the outcome is unknown and being reconciled with Oen: look again at
    /// `statusUrl`. Never charged a second time.
    Pending,
    /// Declined, or nothing was charged.
    Failed,
}

/// Why a charge failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeFailure {
    /// Oen's decline code (`T0001`…), or `not_charged` when the request never took money.
    pub code: String,
    pub message: String,
    /// A hard decline: this card will not be charged successfully; the customer must bind a
    /// new one.
    pub hard: bool,
}

/// A one-off charge as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeView {
    pub id: String,
    pub object: &'static str,
    pub status: ChargeStatus,
    pub customer: String,
    pub amount: u32,
    pub currency: &'static str,
    pub description: String,
    pub reference: Option<String>,
    pub product_details: Vec<ProductDetail>,
    /// The order id the charge has at Oen, the same for every attempt.
    pub order_id: String,
    pub card_last4: Option<String>,
    /// Oen's `P…` transaction number, once paid.
    pub transaction: Option<String>,
    pub failure: Option<ChargeFailure>,
    /// NT$ refunded, once a refund succeeded (`POST /v1/charges/{id}/refund`). Absent from the
    /// first reply that a key replays: a refund comes later, and the charge's status URL shows
    /// it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded: Option<u32>,
    pub status_url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a charge's status is read.
pub fn status_url(charge: &OneOffCharge) -> String {
    format!("/v1/charges/{}", charge.id)
}

impl ChargeView {
    pub fn of(charge: &OneOffCharge) -> Self {
        let (status, transaction, failure) = match &charge.state {
            ChargeState::Charging { .. } | ChargeState::Unknown { .. } => {
                (ChargeStatus::Pending, None, None)
            }
            ChargeState::Paid { transaction, .. } => {
                (ChargeStatus::Succeeded, Some(transaction.to_string()), None)
            }
            ChargeState::Declined { code, hard, .. } => {
                let failure = ChargeFailure {
                    code: code.clone(),
                    message: decline_message(*hard),
                    hard: *hard,
                };
                (ChargeStatus::Failed, None, Some(failure))
            }
            ChargeState::NotCharged { .. } => {
                let failure = ChargeFailure {
                    code: "not_charged".into(),
                    message: "nothing was charged; retrying with the same Idempotency-Key \
                              tries again, unless its first reply is being replayed"
                        .into(),
                    hard: false,
                };
                (ChargeStatus::Failed, None, Some(failure))
            }
        };
        Self {
            id: charge.id.to_string(),
            object: "charge",
            status,
            customer: charge.customer.to_string(),
            amount: charge.amount.ntd(),
            currency: "TWD",
            description: charge.description.clone(),
            reference: charge.reference.clone(),
            product_details: charge.product_details.clone(),
            order_id: charge.order_id.to_string(),
            card_last4: charge.last4.clone(),
            transaction,
            failure,
            refunded: charge.refunded.map(|a| a.ntd()),
            status_url: status_url(charge),
            created_at: charge.created_at,
            updated_at: charge.updated_at,
        }
    }
}

fn decline_message(hard: bool) -> String {
    if hard {
        "the card was declined and cannot be charged; the customer must bind a new card".into()
    } else {
        "the card was declined; a later charge may succeed".into()
    }
}

/// An answer of `POST /v1/charges` that the idempotency key keeps: `201` paid, `202` outcome
/// unknown (being reconciled; the body's `statusUrl` tells how it ends), `402` declined.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
    /// Replayed from the key rather than produced by this request (the route may say so in an
    /// `Idempotent-Replayed: true` header).
    pub replayed: bool,
    /// Whether this reply is the key's stored reply. A `202` given when our own write failed
    /// is not: a later request with the key may then get the settled outcome.
    pub stored: bool,
}

impl Reply {
    /// The final reply for a charge in `charge`'s state, `None` while it is being charged.
    pub(super) fn of(charge: &OneOffCharge) -> Option<Self> {
        let view = ChargeView::of(charge);
        let (status, body) = match &charge.state {
            ChargeState::Paid { .. } => (201, to_json(&view)),
            ChargeState::Unknown { .. } => (202, to_json(&view)),
            ChargeState::Declined { code, hard, .. } => {
                let body = serde_json::json!({"error": {
                    "code": "card_declined",
                    "message": decline_message(*hard),
                    "declineCode": code,
                    "charge": view,
                }});
                (402, body)
            }
            ChargeState::Charging { .. } | ChargeState::NotCharged { .. } => return None,
        };
        Some(Self {
            status,
            body,
            replayed: false,
            stored: true,
        })
    }

    /// A `202` for a charge whose outcome we could not write down: its lease runs out, and
    /// the next request with the key (or the janitor) reconciles it with Oen.
    pub(super) fn unrecorded(charge: &OneOffCharge) -> Self {
        let mut view = ChargeView::of(charge);
        view.status = ChargeStatus::Pending;
        Self {
            status: 202,
            body: to_json(&view),
            replayed: false,
            stored: false,
        }
    }

    pub(super) fn replay(stored: &StoredReply) -> Self {
        Self {
            status: stored.status,
            body: stored.body.clone(),
            replayed: true,
            stored: true,
        }
    }

    pub(super) fn to_stored(&self) -> StoredReply {
        StoredReply {
            status: self.status,
            body: self.body.clone(),
        }
    }
}

fn to_json(view: &ChargeView) -> serde_json::Value {
    // A view is plain strings, numbers and timestamps: it always serialises.
    serde_json::to_value(view).unwrap_or_default()
}

/// Every answer of the one-off charge operations that is not a [`Reply`]. None is stored: the
/// same request may get a different answer later (a `409` finishes, a `503` recovers).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum OneOffError {
    /// 400 `invalid_request`: the body or the key is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// 400 `idempotency_key_missing`.
    #[error("the Idempotency-Key header is required")]
    MissingKey,
    /// 404 `no_saved_card`: the customer has no bound card.
    #[error("customer {0} has no saved card")]
    NoSavedCard(String),
    /// 404 `charge_not_found`.
    #[error("no such charge")]
    NotFound,
    /// 409 `idempotency_key_in_use`: a request with this key is still running.
    #[error("a request with this Idempotency-Key is still in progress; retry shortly")]
    InProgress,
    /// 422 `idempotency_key_reused`: the key was used with other parameters.
    #[error("this Idempotency-Key was used with different parameters")]
    KeyReused,
    /// 502 `payment_gateway_misconfigured`: Oen refused our credentials or our request
    /// (`A0001`, `V0001`, 403, …), or the stored card cannot be decrypted. Nothing was
    /// charged; the key is free for a retry once the configuration is fixed.
    #[error("the payment gateway refused our configuration; nothing was charged")]
    GatewayMisconfigured,
    /// 503 `payment_gateway_unavailable`: the charge never reached Oen (or the key service
    /// failed first). Nothing was charged; retry with the same key.
    #[error("the payment gateway could not be reached; nothing was charged, retry later")]
    GatewayUnavailable,
    /// 503 `temporarily_unavailable`: our store failed.
    #[error("temporarily unavailable; retry later")]
    Unavailable,
    /// 500 `internal_error`.
    #[error("internal error")]
    Internal,
}

impl OneOffError {
    pub fn status(&self) -> u16 {
        match self {
            OneOffError::InvalidRequest(_) | OneOffError::MissingKey => 400,
            OneOffError::NoSavedCard(_) | OneOffError::NotFound => 404,
            OneOffError::InProgress => 409,
            OneOffError::KeyReused => 422,
            OneOffError::GatewayMisconfigured => 502,
            OneOffError::GatewayUnavailable | OneOffError::Unavailable => 503,
            OneOffError::Internal => 500,
        }
    }

    /// The stable code of the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            OneOffError::InvalidRequest(_) => "invalid_request",
            OneOffError::MissingKey => "idempotency_key_missing",
            OneOffError::NoSavedCard(_) => "no_saved_card",
            OneOffError::NotFound => "charge_not_found",
            OneOffError::InProgress => "idempotency_key_in_use",
            OneOffError::KeyReused => "idempotency_key_reused",
            OneOffError::GatewayMisconfigured => "payment_gateway_misconfigured",
            OneOffError::GatewayUnavailable => "payment_gateway_unavailable",
            OneOffError::Unavailable => "temporarily_unavailable",
            OneOffError::Internal => "internal_error",
        }
    }

    /// `{"error":{"code","message"}}`; the message never carries internals.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}})
    }
}

impl From<crate::InvalidInput> for OneOffError {
    fn from(e: crate::InvalidInput) -> Self {
        OneOffError::InvalidRequest(e.to_string())
    }
}

impl From<StoreError> for OneOffError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(_) | StoreError::Invalid(_) => {
                tracing::error!(error = %e, "one-off charge: store refused or returned garbage");
                OneOffError::Internal
            }
            StoreError::Unavailable(_) | StoreError::Conflict(_) => {
                tracing::warn!(error = %e, "one-off charge: store unavailable");
                OneOffError::Unavailable
            }
        }
    }
}
