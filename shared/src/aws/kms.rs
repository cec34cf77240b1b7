//! AWS KMS adapter: `Encrypt`/`Decrypt` with the encryption context.

use async_trait::async_trait;
use aws_sdk_kms::error::{DisplayErrorContext, SdkError};
use aws_sdk_kms::primitives::Blob;

use crate::domain::CardToken;
use crate::vault::{Ciphertext, TokenVault, VaultContext, VaultError};

pub struct KmsVault {
    client: super::lazy::LazyClient<aws_sdk_kms::Client>,
    key_id: String,
}

impl KmsVault {
    pub fn new(
        client: impl Into<super::lazy::LazyClient<aws_sdk_kms::Client>>,
        key_id: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            key_id: key_id.into(),
        }
    }
}

#[async_trait]
impl TokenVault for KmsVault {
    async fn encrypt(
        &self,
        token: &CardToken,
        ctx: &VaultContext,
    ) -> Result<Ciphertext, VaultError> {
        let mut req = self
            .client
            .get()
            .await
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(token.expose().as_bytes()));
        for (k, v) in ctx.pairs() {
            req = req.encryption_context(k, v);
        }
        let out = req.send().await.map_err(|e| {
            VaultError::Unavailable(format!("KMS Encrypt: {}", DisplayErrorContext(&e)))
        })?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| VaultError::Unavailable("KMS Encrypt returned no ciphertext".into()))?;
        Ok(Ciphertext(blob.into_inner()))
    }

    async fn decrypt(
        &self,
        ciphertext: &Ciphertext,
        ctx: &VaultContext,
    ) -> Result<CardToken, VaultError> {
        // Naming the key makes KMS refuse a ciphertext made under any other key.
        let mut req = self
            .client
            .get()
            .await
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(ciphertext.0.clone()));
        for (k, v) in ctx.pairs() {
            req = req.encryption_context(k, v);
        }
        let out = req.send().await.map_err(|e| match &e {
            SdkError::ServiceError(s)
                if s.err().is_invalid_ciphertext_exception()
                    || s.err().is_incorrect_key_exception() =>
            {
                VaultError::ContextMismatch
            }
            _ => VaultError::Unavailable(format!("KMS Decrypt: {}", DisplayErrorContext(&e))),
        })?;
        let plain = out
            .plaintext
            .ok_or_else(|| VaultError::Unavailable("KMS Decrypt returned no plaintext".into()))?;
        let text =
            String::from_utf8(plain.into_inner()).map_err(|_| VaultError::ContextMismatch)?;
        CardToken::parse(&text).map_err(|_| VaultError::ContextMismatch)
    }
}
