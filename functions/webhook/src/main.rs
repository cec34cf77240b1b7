use std::sync::Arc;

use oen_pay::aws::wiring;
use oen_pay::config::Config;
use webhook::{router, App};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let allowed_ips = config.webhook_allowed_ips()?;
    let aws = wiring::aws_config().await;
    let secrets = wiring::secrets(&aws, &config);
    let app = App {
        deps: wiring::binding_deps(&config, &aws, secrets.clone()).await?,
        secrets,
        allowed_ips,
    };
    lambda_http::run(router(Arc::new(app))).await
}
