use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use oen_pay::aws::wiring;
use oen_pay::config::Config;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let settings = charger::Settings::from_config(&config);
    let aws = wiring::aws_config().await;
    let secrets = wiring::secrets(&aws, &config);
    let deps = Arc::new(wiring::charge_deps(&config, &aws, secrets).await?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        charger::handle(deps.clone(), settings, event)
    }))
    .await
}
