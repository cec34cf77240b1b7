//! Money: an integer number of New Taiwan dollars.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;

/// An amount Oen accepts on a single charge: 1 to 199 999 NT$ (200 000 and more needs Oen's
/// high-amount enablement and is refused with `V0003`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Amount(u32);

impl Amount {
    pub const MAX: u32 = 199_999;

    pub fn new(ntd: i64) -> Result<Self, InvalidInput> {
        if ntd < 1 {
            return Err(InvalidInput::new("amount", "must be at least NT$1"));
        }
        if ntd > i64::from(Self::MAX) {
            return Err(InvalidInput::new(
                "amount",
                format!(
                    "must be at most NT${} (Oen refuses larger single charges)",
                    Self::MAX
                ),
            ));
        }
        Ok(Self(ntd as u32))
    }

    pub fn ntd(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NT${}", self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount(NT${})", self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(d)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_bounds_follow_oen() {
        assert!(Amount::new(0).is_err());
        assert!(Amount::new(-5).is_err());
        assert_eq!(Amount::new(1).unwrap().ntd(), 1);
        assert_eq!(Amount::new(199_999).unwrap().ntd(), 199_999);
        assert!(Amount::new(200_000).is_err());
        assert!(serde_json::from_str::<Amount>("500.5").is_err());
    }
}
