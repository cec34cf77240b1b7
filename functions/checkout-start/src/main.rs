use std::sync::Arc;

use checkout_start::{router, App, Configuration};
use oen_pay::aws::wiring;
use oen_pay::config::{env_lookup, Vars};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let c = Configuration::read(&Vars::new(&env_lookup))?;
    let aws = wiring::AwsConfig::from_environment();
    let secrets = wiring::secrets(&aws, &c.config);
    let app = App {
        deps: wiring::checkout_start_deps(&c.config, &c.oen, &aws, secrets.clone())?,
        secrets,
        success_url: c.checkout.success_url,
        failure_url: c.checkout.failure_url,
        hosted_base_url: c.checkout.hosted_base_url,
        link_max_ttl: c.checkout.link_max_ttl,
        status_allowed_origins: c.checkout.status_allowed_origins,
        einvoice: c.checkout.einvoice,
    };
    lambda_http::run(router(Arc::new(app))).await
}
