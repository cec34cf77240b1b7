//! Builds the AWS-backed adapters once per cold start.

use std::sync::Arc;
use std::time::Duration;

use super::{DynamoStore, EventBridgeSink, KmsVault, SecretsManagerFetcher, SqsQueue};
use crate::binding::BindingDeps;
use crate::clock::SystemClock;
use crate::config::{Config, ConfigError};
use crate::oen::{HttpOenGateway, OenClientConfig, OenError};
use crate::secrets::{CachedSecrets, SecretSource};

/// How long a warm container trusts its copy of the secret. An `A0001` from Oen forces a
/// re-read sooner, so a rotated API key takes effect on the next call.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Oen(#[from] OenError),
}

/// The AWS SDK configuration from the standard variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, …).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

pub fn secrets(aws: &aws_config::SdkConfig, config: &Config) -> Arc<dyn SecretSource> {
    Arc::new(CachedSecrets::new(
        SecretsManagerFetcher::new(
            aws_sdk_secretsmanager::Client::new(aws),
            config.secret_id.clone(),
        ),
        SECRET_TTL,
    ))
}

pub fn oen(config: &Config, secrets: Arc<dyn SecretSource>) -> Result<HttpOenGateway, OenError> {
    HttpOenGateway::new(
        OenClientConfig::new(config.api_base_url.clone(), config.merchant_id.clone()),
        secrets,
    )
}

/// What `checkout-start` and `webhook` need, on AWS.
pub async fn binding_deps(
    config: &Config,
    aws: &aws_config::SdkConfig,
    secrets: Arc<dyn SecretSource>,
) -> Result<BindingDeps, WiringError> {
    Ok(BindingDeps {
        store: Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            config.table_name.clone(),
        )),
        vault: Arc::new(KmsVault::new(
            aws_sdk_kms::Client::new(aws),
            config.token_key_id()?.to_owned(),
        )),
        oen: Arc::new(oen(config, secrets)?),
        events: Arc::new(EventBridgeSink::new(
            aws_sdk_eventbridge::Client::new(aws),
            config.event_bus_name()?.to_owned(),
        )),
        clock: Arc::new(SystemClock),
        plans: config.plans.clone(),
        merchant: config.merchant_id.clone(),
    })
}

/// What `charger` needs, on AWS: the same adapters, plus the work queue.
pub async fn charge_deps(
    config: &Config,
    aws: &aws_config::SdkConfig,
    secrets: Arc<dyn SecretSource>,
) -> Result<crate::charging::ChargeDeps, WiringError> {
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(aws),
        config.charge_queue_url()?.to_owned(),
    );
    Ok(crate::charging::ChargeDeps::new(
        binding_deps(config, aws, secrets).await?,
        Arc::new(queue),
        config.charge_policy.clone(),
    ))
}
