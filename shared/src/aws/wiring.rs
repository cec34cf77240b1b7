//! Builds each function's AWS-backed adapters once per cold start. Each builder exists only
//! with the features of the services it uses, so a function that enables fewer cannot call it.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, OenConfig};
use crate::oen::{HttpOenGateway, OenClientConfig, OenError};
use crate::secrets::SecretSource;

#[cfg(feature = "aws-dynamodb")]
use crate::binding::BindingDeps;
#[cfg(feature = "aws-dynamodb")]
use crate::clock::SystemClock;

/// How long a warm container trusts its copy of the secret. An `A0001` from Oen forces a
/// re-read sooner, so a rotated API key takes effect on the next call.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

/// The AWS SDK configuration from the standard variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, …).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The secret (Oen API token, webhook path key, link keys), cached for [`SECRET_TTL`].
#[cfg(feature = "aws-secretsmanager")]
pub fn secrets(aws: &aws_config::SdkConfig, config: &Config) -> Arc<dyn SecretSource> {
    Arc::new(crate::secrets::CachedSecrets::new(
        super::SecretsManagerFetcher::new(
            aws_sdk_secretsmanager::Client::new(aws),
            config.secret_id.clone(),
        ),
        SECRET_TTL,
    ))
}

/// The Oen client of the functions that call Oen.
pub fn oen(
    config: &Config,
    oen: &OenConfig,
    secrets: Arc<dyn SecretSource>,
) -> Result<HttpOenGateway, OenError> {
    HttpOenGateway::new(
        OenClientConfig::new(oen.api_base_url.clone(), config.merchant_id.clone()),
        secrets,
    )
}

#[cfg(feature = "aws-dynamodb")]
fn store(aws: &aws_config::SdkConfig, config: &Config) -> Arc<super::DynamoStore> {
    Arc::new(super::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(aws),
        config.table_name.clone(),
    ))
}

#[cfg(feature = "aws-kms")]
fn vault(aws: &aws_config::SdkConfig, key_id: &str) -> Arc<super::KmsVault> {
    Arc::new(super::KmsVault::new(
        aws_sdk_kms::Client::new(aws),
        key_id.to_owned(),
    ))
}

#[cfg(feature = "aws-eventbridge")]
fn events(aws: &aws_config::SdkConfig, bus: &str) -> Arc<super::EventBridgeSink> {
    Arc::new(super::EventBridgeSink::new(
        aws_sdk_eventbridge::Client::new(aws),
        bus.to_owned(),
    ))
}

/// What checkout-start needs: the store and Oen. It never touches a card token and publishes
/// no event, so it holds no key and no event bus ([`Withheld`](crate::withheld::Withheld)).
#[cfg(all(feature = "aws-dynamodb", feature = "aws-secretsmanager"))]
pub fn checkout_start_deps(
    config: &Config,
    oen_config: &OenConfig,
    aws: &aws_config::SdkConfig,
    secrets: Arc<dyn SecretSource>,
) -> Result<BindingDeps, OenError> {
    let withheld = Arc::new(crate::withheld::Withheld::new(
        "checkout-start",
        config.merchant_id.clone(),
    ));
    Ok(BindingDeps {
        store: store(aws, config),
        vault: withheld.clone(),
        oen: Arc::new(oen(config, oen_config, secrets)?),
        events: withheld,
        clock: Arc::new(SystemClock),
        plans: config.plans.clone(),
        merchant: config.merchant_id.clone(),
    })
}

/// What the webhook needs: the store, the key to encrypt card tokens, the event bus. It only
/// receives Oen's posts and never calls Oen ([`Withheld`](crate::withheld::Withheld)).
#[cfg(all(
    feature = "aws-dynamodb",
    feature = "aws-kms",
    feature = "aws-eventbridge"
))]
pub fn webhook_deps(
    config: &Config,
    webhook: &crate::config::WebhookConfig,
    aws: &aws_config::SdkConfig,
) -> BindingDeps {
    BindingDeps {
        store: store(aws, config),
        vault: vault(aws, &webhook.token_key_id),
        oen: Arc::new(crate::withheld::Withheld::new(
            "webhook",
            config.merchant_id.clone(),
        )),
        events: events(aws, &webhook.event_bus_name),
        clock: Arc::new(SystemClock),
        plans: config.plans.clone(),
        merchant: config.merchant_id.clone(),
    }
}

/// What the charger needs: every adapter, plus the work queue.
#[cfg(all(
    feature = "aws-dynamodb",
    feature = "aws-kms",
    feature = "aws-sqs",
    feature = "aws-eventbridge",
    feature = "aws-secretsmanager"
))]
pub fn charge_deps(
    config: &Config,
    oen_config: &OenConfig,
    charger: &crate::config::ChargerConfig,
    aws: &aws_config::SdkConfig,
    secrets: Arc<dyn SecretSource>,
) -> Result<crate::charging::ChargeDeps, OenError> {
    let binding = BindingDeps {
        store: store(aws, config),
        vault: vault(aws, &charger.token_key_id),
        oen: Arc::new(oen(config, oen_config, secrets)?),
        events: events(aws, &charger.event_bus_name),
        clock: Arc::new(SystemClock),
        plans: config.plans.clone(),
        merchant: config.merchant_id.clone(),
    };
    let queue = super::SqsQueue::new(
        aws_sdk_sqs::Client::new(aws),
        charger.charge_queue_url.clone(),
    );
    Ok(crate::charging::ChargeDeps::new(
        binding,
        Arc::new(queue),
        charger.charge_policy.clone(),
    ))
}
