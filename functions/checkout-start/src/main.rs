use std::sync::Arc;

use checkout_start::{router, App};
use oen_pay::aws::wiring;
use oen_pay::config::Config;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = wiring::aws_config().await;
    let secrets = wiring::secrets(&aws, &config);
    let app = App {
        deps: wiring::binding_deps(&config, &aws, secrets.clone()).await?,
        secrets,
        success_url: config.success_url()?.to_owned(),
        failure_url: config.failure_url()?.to_owned(),
        hosted_base_url: config.hosted_base_url.clone(),
        link_max_ttl: config.link_max_ttl,
    };
    lambda_http::run(router(Arc::new(app))).await
}
