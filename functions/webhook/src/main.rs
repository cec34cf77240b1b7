use std::sync::Arc;

use oen_pay::config::Config;
use oen_pay::web::Cidr;
use oen_pay::wiring;
use webhook::{router, App};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let allowed_ips =
        Cidr::parse_list(&std::env::var("WEBHOOK_ALLOWED_IPS").unwrap_or_default())
            .map_err(|e| format!("environment variable WEBHOOK_ALLOWED_IPS is invalid: {e}"))?;
    let aws = wiring::aws_config().await;
    let secrets = wiring::secrets(&aws, &config);
    let app = App {
        deps: wiring::binding_deps(&config, &aws, secrets.clone()).await?,
        secrets,
        allowed_ips,
    };
    lambda_http::run(router(Arc::new(app))).await
}
