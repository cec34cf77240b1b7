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

pub use super::lazy::AwsConfig;

/// The SDK's default HTTPS client (rustls with aws-lc, the system's root certificates, the
/// connection pool), minus one thing: the default builds and drops a connector whenever a
/// client is constructed, so that the root certificates load then, once for the configuration
/// and again for every service client. Measured with `tools/coldstart`, that was most of what
/// each function's cold start spent beyond a hello-world's. Here the first AWS request builds
/// the connector, once per process; it is cached and reused as before. (Unlike the default, it
/// reads no proxy from the environment: Lambda's network needs none.)
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_runtime_api::client::http::SharedHttpClient::new(OnFirstRequest(
        aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_https(),
    ))
}

/// Forwards to the inner client everything but the validation hook that loads certificates at
/// construction.
#[derive(Debug)]
struct OnFirstRequest(aws_smithy_runtime_api::client::http::SharedHttpClient);

impl aws_smithy_runtime_api::client::http::HttpClient for OnFirstRequest {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The secret (Oen API token, webhook path key, link keys), cached for [`SECRET_TTL`].
#[cfg(feature = "aws-secretsmanager")]
pub fn secrets(aws: &AwsConfig, config: &Config) -> Arc<dyn SecretSource> {
    Arc::new(crate::secrets::CachedSecrets::new(
        super::SecretsManagerFetcher::new(
            super::lazy::LazyClient::on_first_use(aws, aws_sdk_secretsmanager::Client::new),
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
fn store(aws: &AwsConfig, config: &Config) -> Arc<super::DynamoStore> {
    Arc::new(super::DynamoStore::new(
        super::lazy::LazyClient::on_first_use(aws, aws_sdk_dynamodb::Client::new),
        config.table_name.clone(),
    ))
}

#[cfg(feature = "aws-kms")]
fn vault(aws: &AwsConfig, key_id: &str) -> Arc<super::KmsVault> {
    Arc::new(super::KmsVault::new(
        super::lazy::LazyClient::on_first_use(aws, aws_sdk_kms::Client::new),
        key_id.to_owned(),
    ))
}

#[cfg(feature = "aws-eventbridge")]
fn events(aws: &AwsConfig, bus: &str) -> Arc<super::EventBridgeSink> {
    Arc::new(super::EventBridgeSink::new(
        super::lazy::LazyClient::on_first_use(aws, aws_sdk_eventbridge::Client::new),
        bus.to_owned(),
    ))
}

/// A function's binding dependencies around the three ports it is wired with: the store, the
/// clock, the plans and the merchant are the same for every function.
#[cfg(feature = "aws-dynamodb")]
fn binding_deps(
    aws: &AwsConfig,
    config: &Config,
    vault: Arc<dyn crate::vault::TokenVault>,
    oen: Arc<dyn crate::oen::OenGateway>,
    events: Arc<dyn crate::events::EventSink>,
) -> BindingDeps {
    BindingDeps {
        store: store(aws, config),
        vault,
        oen,
        events,
        clock: Arc::new(SystemClock),
        plans: config.plans.clone(),
        merchant: config.merchant_id.clone(),
    }
}

/// What checkout-start needs: the store and Oen. It never touches a card token and publishes
/// no event, so it holds no key and no event bus ([`Withheld`](crate::withheld::Withheld)).
#[cfg(all(feature = "aws-dynamodb", feature = "aws-secretsmanager"))]
pub fn checkout_start_deps(
    config: &Config,
    oen_config: &OenConfig,
    aws: &AwsConfig,
    secrets: Arc<dyn SecretSource>,
) -> Result<BindingDeps, OenError> {
    let withheld = Arc::new(crate::withheld::Withheld::new(
        "checkout-start",
        config.merchant_id.clone(),
    ));
    Ok(binding_deps(
        aws,
        config,
        withheld.clone(),
        Arc::new(oen(config, oen_config, secrets)?),
        withheld,
    ))
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
    aws: &AwsConfig,
) -> BindingDeps {
    binding_deps(
        aws,
        config,
        vault(aws, &webhook.token_key_id),
        Arc::new(crate::withheld::Withheld::new(
            "webhook",
            config.merchant_id.clone(),
        )),
        events(aws, &webhook.event_bus_name),
    )
}

/// The binding dependencies of a function that charges card tokens (the charger, and the
/// merchant API for one-off charges): the key that decrypts them, Oen, and the event bus.
#[cfg(all(
    feature = "aws-dynamodb",
    feature = "aws-kms",
    feature = "aws-eventbridge",
    feature = "aws-secretsmanager"
))]
fn charging_binding(
    aws: &AwsConfig,
    config: &Config,
    oen_config: &OenConfig,
    token_key_id: &str,
    event_bus_name: &str,
    secrets: Arc<dyn SecretSource>,
) -> Result<BindingDeps, OenError> {
    Ok(binding_deps(
        aws,
        config,
        vault(aws, token_key_id),
        Arc::new(oen(config, oen_config, secrets)?),
        events(aws, event_bus_name),
    ))
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
    aws: &AwsConfig,
    secrets: Arc<dyn SecretSource>,
) -> Result<crate::charging::ChargeDeps, OenError> {
    let binding = charging_binding(
        aws,
        config,
        oen_config,
        &charger.token_key_id,
        &charger.event_bus_name,
        secrets,
    )?;
    let queue = super::SqsQueue::new(
        super::lazy::LazyClient::on_first_use(aws, aws_sdk_sqs::Client::new),
        charger.charge_queue_url.clone(),
    );
    Ok(crate::charging::ChargeDeps::new(
        binding,
        Arc::new(queue),
        charger.charge_policy.clone(),
    ))
}

/// What the merchant API needs: the store, the key to decrypt card tokens (a one-off charge
/// is made while the merchant waits for its answer), Oen (charges and refunds) and the event
/// bus (cancels, refunds and charges report there). It never encrypts a token and never
/// enqueues charge work, so it holds no queue ([`Withheld`](crate::withheld::Withheld)).
#[cfg(all(
    feature = "aws-dynamodb",
    feature = "aws-kms",
    feature = "aws-eventbridge",
    feature = "aws-secretsmanager"
))]
pub fn merchant_api_deps(
    config: &Config,
    oen_config: &OenConfig,
    api: &crate::config::MerchantApiConfig,
    aws: &AwsConfig,
    secrets: Arc<dyn SecretSource>,
) -> Result<crate::charging::ChargeDeps, OenError> {
    let binding = charging_binding(
        aws,
        config,
        oen_config,
        &api.token_key_id,
        &api.event_bus_name,
        secrets,
    )?;
    Ok(crate::charging::ChargeDeps::new(
        binding,
        Arc::new(crate::withheld::Withheld::new(
            "merchant-api",
            config.merchant_id.clone(),
        )),
        crate::charging::ChargePolicy::default(),
    )
    .in_function("merchant-api"))
}

/// The merchant API's dead-letter operations: both dead-letter queues (look, receive, delete)
/// and the charge queue, where redriven work goes (send only).
#[cfg(feature = "aws-sqs")]
pub fn dead_letters(
    aws: &AwsConfig,
    api: &crate::config::MerchantApiConfig,
) -> crate::deadletter::DeadLetterOps {
    let client = super::lazy::LazyClient::on_first_use(aws, aws_sdk_sqs::Client::new);
    crate::deadletter::DeadLetterOps {
        letters: Arc::new(super::SqsDeadLetters::new(
            client.clone(),
            api.charge_dead_letter_queue_url.clone(),
            api.schedule_dead_letter_queue_url.clone(),
        )),
        queue: Arc::new(super::SqsQueue::new(client, api.charge_queue_url.clone())),
    }
}
