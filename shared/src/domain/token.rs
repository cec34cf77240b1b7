//! The card token: a password-like secret that only ever exists in memory, in plaintext.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::InvalidInput;

/// An Oen card token. `Debug` and `Display` print `[redacted]`; the plaintext is reachable only
/// through [`CardToken::expose`], which the vault and the Oen client call.
#[derive(Clone)]
pub struct CardToken(SecretString);

impl CardToken {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        if raw.is_empty() || raw.len() > 128 || !raw.chars().all(|c| c.is_ascii_alphanumeric()) {
            // Never echo the value: it may be a real token with a typo.
            return Err(InvalidInput::new(
                "card token",
                "must be 1–128 ASCII alphanumerics",
            ));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// A one-way fingerprint (SHA-256, hex) that tells two tokens apart without storing either.
    /// Tokens carry ~160 bits of entropy, so the fingerprint cannot be inverted by guessing.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.expose().as_bytes()))
    }
}

impl Eq for CardToken {}

impl PartialEq for CardToken {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl fmt::Debug for CardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardToken([redacted])")
    }
}

impl fmt::Display for CardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A card token encrypted by the vault, as stored: bytes that mean nothing without the key and
/// the encryption context. Stored as binary (DynamoDB `B`), never as a string.
#[derive(Clone, PartialEq, Eq)]
pub struct Ciphertext(pub Vec<u8>);

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ciphertext({} bytes)", self.0.len())
    }
}

impl Serialize for Ciphertext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Ciphertext {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_bytes::ByteBuf::deserialize(d).map(|b| Ciphertext(b.into_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact_the_token() {
        let t = CardToken::parse("2HhnhWm8Qe0sPz4LbXv9KdYt1Ra").unwrap();
        assert_eq!(format!("{t}"), "[redacted]");
        assert!(!format!("{t:?}").contains("2Hhnh"));
        assert_eq!(t.expose(), "2HhnhWm8Qe0sPz4LbXv9KdYt1Ra");
    }

    #[test]
    fn invalid_token_error_does_not_echo_it() {
        let err = CardToken::parse("secret value with spaces").unwrap_err();
        assert!(!err.to_string().contains("secret value"));
    }

    #[test]
    fn fingerprint_distinguishes_tokens() {
        let a = CardToken::parse("aaaa").unwrap();
        let b = CardToken::parse("aaab").unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            a.fingerprint(),
            CardToken::parse("aaaa").unwrap().fingerprint()
        );
    }
}
