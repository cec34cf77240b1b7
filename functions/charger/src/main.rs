use std::sync::Arc;

use charger::Configuration;
use lambda_runtime::{service_fn, LambdaEvent};
use oen_pay::aws::wiring;
use oen_pay::config::{env_lookup, Vars};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let c = Configuration::read(&Vars::new(&env_lookup))?;
    let settings = charger::Settings::from_config(&c.charger);
    let aws = wiring::AwsConfig::from_environment();
    let secrets = wiring::secrets(&aws, &c.config);
    let deps = Arc::new(wiring::charge_deps(
        &c.config, &c.oen, &c.charger, &aws, secrets,
    )?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        charger::handle(deps.clone(), settings, event)
    }))
    .await
}
