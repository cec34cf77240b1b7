//! AES-256-GCM with the encryption context as associated data: the same context-binding
//! semantics as KMS, for the dev stack and unit tests.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;

use super::{Ciphertext, TokenVault, VaultContext, VaultError};
use crate::domain::CardToken;

const NONCE_LEN: usize = 12;
const VERSION: u8 = 1;

pub struct LocalVault {
    cipher: Aes256Gcm,
}

impl LocalVault {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    /// A vault with a fresh random key (nothing it encrypts survives the process).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .expect("the operating system's random number generator is unavailable");
        Self::new(key)
    }

    fn aad(ctx: &VaultContext) -> Vec<u8> {
        // Length-prefixed, so no two different contexts serialise alike.
        let mut out = Vec::new();
        for (k, v) in ctx.pairs() {
            for part in [k, v] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }
}

#[async_trait]
impl TokenVault for LocalVault {
    async fn encrypt(
        &self,
        token: &CardToken,
        ctx: &VaultContext,
    ) -> Result<Ciphertext, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| VaultError::Unavailable(format!("no randomness: {e}")))?;
        let aad = Self::aad(ctx);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: token.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Unavailable("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(Ciphertext(out))
    }

    async fn decrypt(
        &self,
        ciphertext: &Ciphertext,
        ctx: &VaultContext,
    ) -> Result<CardToken, VaultError> {
        let bytes = &ciphertext.0;
        if bytes.len() < 1 + NONCE_LEN + 16 || bytes[0] != VERSION {
            return Err(VaultError::ContextMismatch);
        }
        let aad = Self::aad(ctx);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&bytes[1..1 + NONCE_LEN]),
                Payload {
                    msg: &bytes[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::ContextMismatch)?;
        let text = String::from_utf8(plain).map_err(|_| VaultError::ContextMismatch)?;
        CardToken::parse(&text).map_err(|_| VaultError::ContextMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BindingRef, CustomerId, MerchantId};

    fn ctx(customer: &str) -> VaultContext {
        VaultContext {
            merchant: MerchantId::parse("ming").unwrap(),
            customer: CustomerId::parse(customer).unwrap(),
            binding: BindingRef::parse("AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
        }
    }

    #[tokio::test]
    async fn round_trips_under_the_same_context_only() {
        let v = LocalVault::random();
        let token = CardToken::parse("2HhnhWm8Qe0sPz4LbXv9KdYt1Ra").unwrap();
        let ct = v.encrypt(&token, &ctx("c1")).await.unwrap();
        assert!(!ct.0.windows(10).any(|w| w == &b"2HhnhWm8Qe"[..]));
        assert_eq!(v.decrypt(&ct, &ctx("c1")).await.unwrap(), token);
        assert_eq!(
            v.decrypt(&ct, &ctx("c2")).await.unwrap_err(),
            VaultError::ContextMismatch
        );
        let mut tampered = ct.clone();
        let last = tampered.0.len() - 1;
        tampered.0[last] ^= 1;
        assert_eq!(
            v.decrypt(&tampered, &ctx("c1")).await.unwrap_err(),
            VaultError::ContextMismatch
        );
        assert_eq!(
            LocalVault::random()
                .decrypt(&ct, &ctx("c1"))
                .await
                .unwrap_err(),
            VaultError::ContextMismatch
        );
    }

    #[tokio::test]
    async fn each_encryption_uses_a_fresh_nonce() {
        let v = LocalVault::random();
        let token = CardToken::parse("abc").unwrap();
        let a = v.encrypt(&token, &ctx("c1")).await.unwrap();
        let b = v.encrypt(&token, &ctx("c1")).await.unwrap();
        assert_ne!(a, b);
    }
}
