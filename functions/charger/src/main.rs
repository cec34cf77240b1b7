use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use oen_pay::config::Config;
use oen_pay::wiring;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let concurrency = match std::env::var("CHARGER_CONCURRENCY") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|c| (1..=64).contains(c))
            .ok_or(
                "environment variable CHARGER_CONCURRENCY must be a whole number from 1 to 64",
            )?,
        Err(_) => charger::DEFAULT_CONCURRENCY,
    };
    let aws = wiring::aws_config().await;
    let secrets = wiring::secrets(&aws, &config);
    let deps = Arc::new(wiring::charge_deps(&config, &aws, secrets).await?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        charger::handle(deps.clone(), concurrency, event)
    }))
    .await
}
