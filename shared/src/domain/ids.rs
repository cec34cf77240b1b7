//! Identifiers that can only be built valid ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;

fn check_id(
    kind: &'static str,
    raw: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), InvalidInput> {
    if raw.is_empty() {
        return Err(InvalidInput::new(kind, "must not be empty"));
    }
    if raw.len() > max {
        return Err(InvalidInput::new(
            kind,
            format!("must be at most {max} characters"),
        ));
    }
    if let Some(bad) = raw.chars().find(|c| !allowed(*c)) {
        return Err(InvalidInput::new(
            kind,
            format!("contains a character that is not allowed: {bad:?}"),
        ));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr, $allowed:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
                check_id($kind, raw, $max, $allowed)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

string_id!(
    /// The merchant's own identifier of a customer: 1–64 of `A–Z a–z 0–9 - _ .`.
    CustomerId, "customer id", 64, id_char
);
string_id!(
    /// A plan of the catalog: 1–32 of `A–Z a–z 0–9 - _ .`.
    PlanId, "plan id", 32, id_char
);
string_id!(
    /// The merchant's Oen domain name (`ming` for `ming.oen.tw`).
    MerchantId, "merchant id", 63, |c: char| c.is_ascii_alphanumeric() || c == '-'
);
string_id!(
    /// The order id sent to Oen: stable for one subscription period and reused by every attempt
    /// of that period, so that `GET /order/{orderId}/transactions` finds every attempt.
    /// At most 32 ASCII alphanumerics.
    OrderId, "order id", 32, |c: char| c.is_ascii_alphanumeric()
);
string_id!(
    /// Oen's id of a hosted checkout page (27 alphanumerics in practice).
    CheckoutId, "checkout id", 64, |c: char| c.is_ascii_alphanumeric()
);
string_id!(
    /// Oen's transaction number (`P…`) or 27-character transaction id.
    TransactionId, "transaction id", 64, |c: char| c.is_ascii_alphanumeric()
);
string_id!(
    /// Our own id of a subscription: 16 random alphanumerics, the stem of its order ids.
    SubscriptionId, "subscription id", 16, |c: char| c.is_ascii_alphanumeric()
);

string_id!(
    /// A verified start link's stable id: the lowercase hex SHA-256 of its signature (64
    /// characters). The signature itself is never stored: with the link's parameters it would
    /// be the link, usable until it expires; its hash names the link and opens nothing.
    LinkId, "link id", 64, |c: char| matches!(c, '0'..='9' | 'a'..='f')
);

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` characters drawn uniformly from the 62 alphanumerics with the operating system's RNG.
pub(crate) fn random_alphanumeric(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)
            .expect("the operating system's random number generator is unavailable");
        for &b in &buf {
            // 248 = 4 * 62: rejecting the rest keeps the draw unbiased.
            if b < 248 && out.len() < len {
                out.push(ALPHANUMERIC[(b % 62) as usize] as char);
            }
        }
    }
    out
}

impl SubscriptionId {
    pub fn generate() -> Self {
        Self(random_alphanumeric(16))
    }
}

impl OrderId {
    /// The order id of period `period` of a subscription: `{subscription id}P{period:06}`
    /// (23 characters), the same for every attempt of that period.
    pub fn for_period(subscription: &SubscriptionId, period: u32) -> Self {
        Self(format!("{}P{:06}", subscription.as_str(), period))
    }
}

impl LinkId {
    /// The id of the link whose HMAC is `signature` (the MAC's bytes, not its hex spelling, so
    /// that upper- and lower-case spellings of one signature are one link).
    pub fn of_signature(signature: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        Self(hex::encode(Sha256::digest(signature)))
    }
}

/// Our unguessable reference of a binding session: 22 alphanumerics (≈ 131 bits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BindingRef(String);

impl BindingRef {
    pub const LEN: usize = 22;

    pub fn generate() -> Self {
        Self(random_alphanumeric(Self::LEN))
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        check_id("binding reference", raw, Self::LEN, |c| {
            c.is_ascii_alphanumeric()
        })?;
        if raw.len() != Self::LEN {
            return Err(InvalidInput::new(
                "binding reference",
                format!("must be {} characters", Self::LEN),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BindingRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BindingRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BindingRef({:?})", self.0)
    }
}

impl<'de> Deserialize<'de> for BindingRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_id_rejects_empty_long_and_odd_characters() {
        assert!(CustomerId::parse("cust-42_a.b").is_ok());
        assert!(CustomerId::parse("").is_err());
        assert!(CustomerId::parse(&"a".repeat(65)).is_err());
        let err = CustomerId::parse("a b").unwrap_err();
        assert!(err.to_string().contains("customer id"), "{err}");
    }

    #[test]
    fn order_id_is_stable_per_period_and_fits_oen() {
        let sub = SubscriptionId::generate();
        let a = OrderId::for_period(&sub, 7);
        assert_eq!(a, OrderId::for_period(&sub, 7));
        assert_ne!(a, OrderId::for_period(&sub, 8));
        assert!(a.as_str().len() <= 32);
        assert!(OrderId::parse(a.as_str()).is_ok());
        assert!(OrderId::parse(&"A".repeat(33)).is_err());
        assert!(OrderId::parse("abc-1").is_err());
    }

    #[test]
    fn link_ids_hash_the_signature_and_parse_back() {
        let a = LinkId::of_signature(&[1, 2, 3]);
        assert_eq!(a, LinkId::of_signature(&[1, 2, 3]));
        assert_ne!(a, LinkId::of_signature(&[1, 2, 4]));
        assert_eq!(a.as_str().len(), 64);
        assert_eq!(LinkId::parse(a.as_str()).unwrap(), a);
        assert!(LinkId::parse(&a.as_str().to_uppercase()).is_err());
    }

    #[test]
    fn binding_refs_are_long_random_and_distinct() {
        let a = BindingRef::generate();
        let b = BindingRef::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        assert!(BindingRef::parse(a.as_str()).is_ok());
        assert!(BindingRef::parse("short").is_err());
    }
}
