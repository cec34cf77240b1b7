use std::sync::Arc;

use oen_pay::aws::wiring;
use oen_pay::config::{env_lookup, Vars};
use webhook::{router, App, Configuration};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let c = Configuration::read(&Vars::new(&env_lookup))?;
    let aws = wiring::AwsConfig::from_environment();
    let app = App {
        deps: wiring::webhook_deps(&c.config, &c.webhook, &aws),
        secrets: wiring::secrets(&aws, &c.config),
        allowed_ips: c.allowed_ips,
    };
    lambda_http::run(router(Arc::new(app))).await
}
