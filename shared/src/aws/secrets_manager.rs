//! AWS Secrets Manager adapter of the secret fetcher.

use async_trait::async_trait;

use crate::secrets::{FetchSecret, SecretError};

/// Reads the secret JSON from AWS Secrets Manager.
pub struct SecretsManagerFetcher {
    client: super::lazy::LazyClient<aws_sdk_secretsmanager::Client>,
    secret_id: String,
}

impl SecretsManagerFetcher {
    pub fn new(
        client: impl Into<super::lazy::LazyClient<aws_sdk_secretsmanager::Client>>,
        secret_id: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            secret_id: secret_id.into(),
        }
    }
}

#[async_trait]
impl FetchSecret for SecretsManagerFetcher {
    async fn fetch(&self) -> Result<String, SecretError> {
        let out = self
            .client
            .get()
            .await
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                SecretError::Unavailable(format!(
                    "GetSecretValue {}: {}",
                    self.secret_id,
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ))
            })?;
        out.secret_string.ok_or_else(|| {
            SecretError::Malformed(format!("{} has no SecretString", self.secret_id))
        })
    }
}
