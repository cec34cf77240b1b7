//! The token vault: card tokens are encrypted before they are stored, bound to an encryption
//! context (merchant, customer, binding reference), and decrypted only to charge.

mod local;

use async_trait::async_trait;
use thiserror::Error;

pub use crate::domain::Ciphertext;
use crate::domain::{BindingRef, CardToken, CustomerId, MerchantId};

pub use local::LocalVault;

/// What a ciphertext is bound to. Decrypting under any other context fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultContext {
    pub merchant: MerchantId,
    pub customer: CustomerId,
    pub binding: BindingRef,
}

impl VaultContext {
    /// The context as ordered key/value pairs (KMS encryption context; AEAD associated data).
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            ("merchant", self.merchant.as_str()),
            ("customer", self.customer.as_str()),
            ("binding", self.binding.as_str()),
        ]
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum VaultError {
    /// Wrong key, wrong context or tampered bytes: the ciphertext does not belong here.
    #[error("the card token cannot be decrypted under this context (wrong key, context or tampered ciphertext)")]
    ContextMismatch,
    #[error("the key service failed: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait TokenVault: Send + Sync {
    async fn encrypt(
        &self,
        token: &CardToken,
        ctx: &VaultContext,
    ) -> Result<Ciphertext, VaultError>;
    async fn decrypt(
        &self,
        ciphertext: &Ciphertext,
        ctx: &VaultContext,
    ) -> Result<CardToken, VaultError>;
}
