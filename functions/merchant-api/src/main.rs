use std::sync::Arc;

use merchant_api::{router, Access, App, Configuration};
use oen_pay::aws::wiring;
use oen_pay::config::{env_lookup, Vars};
use oen_pay::ops::Operations;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let c = Configuration::read(&Vars::new(&env_lookup))?;
    let aws = wiring::AwsConfig::from_environment();
    let secrets = wiring::secrets(&aws, &c.config);
    let app = App {
        ops: Operations {
            deps: wiring::merchant_api_deps(&c.config, &c.oen, &c.api, &aws, secrets.clone())?,
            secrets,
            link_max_ttl: c.api.link_max_ttl,
        },
        dead_letters: wiring::dead_letters(&aws, &c.api),
        start_link_url: c.api.start_link_url,
    };
    lambda_http::run(router(Arc::new(app), Access::RequireIam)).await
}
