//! One-off charges of a saved card (an add-on, a late fee) and the idempotency keys that make
//! `POST /v1/charges` safe to repeat. The protocol is in `crate::oneoff`; these are its records.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    random_alphanumeric, Amount, BindingRef, CustomerId, MerchantId, OrderId, ProductDetail,
    TransactionId,
};
use crate::error::InvalidInput;

/// Our id of a one-off charge: 20 random alphanumerics (≈ 119 bits), also the stem of its order
/// id ([`OrderId::for_one_off`]) and the last segment of its status URL.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChargeId(String);

impl ChargeId {
    pub const LEN: usize = 20;

    pub fn generate() -> Self {
        Self(random_alphanumeric(Self::LEN))
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        if raw.len() != Self::LEN || !raw.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(InvalidInput::new(
                "charge id",
                format!("must be {} ASCII alphanumerics", Self::LEN),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChargeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChargeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChargeId({:?})", self.0)
    }
}

impl<'de> Deserialize<'de> for ChargeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl OrderId {
    /// The order id of a one-off charge: `C` and the charge id (21 characters), the same for
    /// every attempt of that charge. A subscription period's order id is 23 characters
    /// (`{subscription id}P{period:06}`), so the two kinds never collide, and both fit Oen's
    /// 32 alphanumerics.
    pub fn for_one_off(charge: &ChargeId) -> Self {
        Self::parse(&format!("C{}", charge.as_str()))
            .unwrap_or_else(|_| unreachable!("C and 20 alphanumerics is a valid order id"))
    }

    /// Whether this is a one-off charge's order id. By length, not by the leading `C`: a
    /// subscription id may begin with `C` too.
    pub fn is_one_off(&self) -> bool {
        let s = self.as_str();
        s.len() == 1 + ChargeId::LEN && s.starts_with('C')
    }
}

/// The merchant's `Idempotency-Key`: 8 to 128 of `A–Z a–z 0–9 - _ . :` (a UUID fits). Scoped
/// per merchant: the same key of two merchants names two requests.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MIN: usize = 8;
    pub const MAX: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let what = "idempotency key";
        if raw.len() < Self::MIN || raw.len() > Self::MAX {
            return Err(InvalidInput::new(
                what,
                format!("must be {} to {} characters", Self::MIN, Self::MAX),
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
        if !raw.chars().all(allowed) {
            // The value is the merchant's; it is not echoed (it may carry anything).
            return Err(InvalidInput::new(
                what,
                "may contain only A-Z a-z 0-9 - _ . :",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Where a one-off charge stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChargeState {
    /// A request (or the janitor) holds the lease and may be talking to Oen right now.
    Charging {
        lease_owner: String,
        lease_until: DateTime<Utc>,
    },
    /// An attempt may have reached Oen and its result is not known: reconciled by the
    /// charger's janitor, never charged blind.
    Unknown {
        since: DateTime<Utc>,
        reconcile_at: DateTime<Utc>,
        checks: u32,
    },
    Paid {
        transaction: TransactionId,
        auth_code: Option<String>,
        paid_at: DateTime<Utc>,
    },
    /// Declined by the card's issuer: final, the key replays the decline.
    Declined {
        code: String,
        hard: bool,
        at: DateTime<Utc>,
    },
    /// Nothing was charged (Oen unreachable, our configuration refused, the token not
    /// decrypted) and the key was released: a retry with the same key and parameters charges
    /// this same order, after asking Oen about it.
    NotCharged { reason: String, at: DateTime<Utc> },
}

impl ChargeState {
    /// Settled for good: the key's reply can be built from it.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ChargeState::Paid { .. } | ChargeState::Declined { .. }
        )
    }
}

/// A one-off charge of a customer's saved card. Never holds the token or its ciphertext: the
/// card is named by its binding and read (and decrypted) only to charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneOffCharge {
    pub id: ChargeId,
    pub merchant: MerchantId,
    pub customer: CustomerId,
    /// The binding whose card is charged, fixed when the charge is created.
    pub card: BindingRef,
    pub last4: Option<String>,
    pub order_id: OrderId,
    pub amount: Amount,
    pub description: String,
    /// The merchant's own reference of the charge.
    pub reference: Option<String>,
    pub product_details: Vec<ProductDetail>,
    pub state: ChargeState,
    /// Charge requests that may have reached Oen for this order.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The key that created the charge.
    pub idempotency_key: IdempotencyKey,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the charger's janitor should look at the charge: the end of a running attempt's
    /// lease (its holder may die) or an unknown outcome's reconcile time. `None` keeps it out
    /// of the due index.
    pub next_action_at: Option<DateTime<Utc>>,
    /// Refunded amount, once a refund succeeded (Oen allows one per transaction). Absent on
    /// charges stored before refunds of one-off charges existed.
    #[serde(default)]
    pub refunded: Option<Amount>,
}

/// A reply as it was first given, kept to be replayed to the same key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReply {
    pub status: u16,
    pub body: serde_json::Value,
}

/// What one merchant's idempotency key stands for: the request's parameters (as a canonical
/// hash), the charge it created and, once known, the reply to replay. Valid until
/// `expires_at` (24 h); afterwards the key may name a new request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub merchant: MerchantId,
    pub key: IdempotencyKey,
    /// Lowercase hex SHA-256 of the canonical request parameters.
    pub request_hash: String,
    pub charge: ChargeId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The first final reply; `None` while no final reply was given.
    pub reply: Option<StoredReply>,
}

impl IdempotencyRecord {
    /// Whether the key still stands for its request at `now`. DynamoDB removes expired items
    /// only eventually (and moto never): expiry is decided here, not by the store.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_off_order_ids_never_look_like_period_order_ids() {
        let charge = ChargeId::generate();
        let order = OrderId::for_one_off(&charge);
        assert_eq!(order.as_str().len(), 21);
        assert_eq!(order, OrderId::for_one_off(&charge));
        let period = OrderId::for_period(&crate::domain::SubscriptionId::generate(), 0);
        assert_ne!(order.as_str().len(), period.as_str().len());
        assert!(order.is_one_off());
        assert!(!period.is_one_off());
        let subscription = crate::domain::SubscriptionId::parse(&format!("C{}", "x".repeat(15)));
        let c_period = OrderId::for_period(&subscription.unwrap(), 0);
        assert!(c_period.as_str().starts_with('C') && !c_period.is_one_off());
        assert_eq!(ChargeId::parse(charge.as_str()).unwrap(), charge);
        assert!(ChargeId::parse("short").is_err());
        assert!(ChargeId::parse(&"a-".repeat(10)).is_err());
    }

    #[test]
    fn a_charge_stored_before_refunds_existed_reads_as_not_refunded() {
        let charge = crate::store::contract::one_off_charge("cust-1", None);
        let mut stored = serde_json::to_value(&charge).unwrap();
        stored.as_object_mut().unwrap().remove("refunded");
        let read: OneOffCharge = serde_json::from_value(stored).unwrap();
        assert_eq!((read.refunded, &read), (None, &charge));
    }

    #[test]
    fn idempotency_keys_are_bounded_and_plain() {
        assert!(IdempotencyKey::parse("4f0c6a1e-8d2b-4c1a-9e57-0b1d2c3e4f5a").is_ok());
        assert!(IdempotencyKey::parse("order:42.fee_1").is_ok());
        assert!(IdempotencyKey::parse("short").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(128)).is_ok());
        for bad in [
            "key with space",
            "key#hash#",
            "ключ-ключ-ключ",
            "key/slash/",
        ] {
            let err = IdempotencyKey::parse(bad).unwrap_err();
            assert!(!err.to_string().contains(bad), "{err}");
        }
    }
}
