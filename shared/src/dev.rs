//! Embedded defaults for local development and tests: never for production.

use std::sync::Arc;
use std::time::Duration;

use crate::binding::BindingDeps;
use crate::clock::Clock;
use crate::domain::{Catalog, MerchantId};
use crate::events::EventSink;
use crate::oen::{HttpOenGateway, OenClientConfig, OenError};
use crate::secrets::{CachedSecrets, SecretSource, StaticSecret};
use crate::store::Store;
use crate::vault::TokenVault;

pub const DEV_MERCHANT_ID: &str = "ming";
/// The simulator's default API token.
pub const DEV_API_TOKEN: &str = "oen-sim-dev-token";
pub const DEV_LINK_SIGNING_KEY: &str = "dev-link-signing-key-0123456789abcdef";
pub const DEV_WEBHOOK_PATH_KEY: &str = "dev-webhook-path-key-0123456789";

pub const DEV_PLANS: &str = r#"[
  {"id":"premium","description":"Premium plan","amount":500,"intervalMonths":1},
  {"id":"yearly","description":"Premium, yearly","amount":5000,"intervalMonths":12},
  {"id":"trial","description":"Premium with a 14-day trial","amount":500,"intervalMonths":1,"trialDays":14}
]"#;

/// The secret JSON with the development keys (the `events/` samples are signed with them).
pub fn dev_secret_json(api_token: &str) -> String {
    serde_json::json!({
        "apiToken": api_token,
        "linkSigningKey": DEV_LINK_SIGNING_KEY,
        "webhookPathKey": DEV_WEBHOOK_PATH_KEY,
    })
    .to_string()
}

pub fn dev_secrets(api_token: &str) -> Arc<dyn SecretSource> {
    Arc::new(CachedSecrets::new(
        StaticSecret::new(dev_secret_json(api_token)),
        Duration::from_secs(3600),
    ))
}

pub fn dev_plans() -> Catalog {
    Catalog::parse(DEV_PLANS).unwrap_or_else(|e| unreachable!("the embedded plans are valid: {e}"))
}

pub fn dev_merchant() -> MerchantId {
    MerchantId::parse(DEV_MERCHANT_ID)
        .unwrap_or_else(|e| unreachable!("the embedded merchant id is valid: {e}"))
}

/// An Oen client for a local API base (the simulator), with short timeouts.
pub fn local_oen(
    base_url: &str,
    secrets: Arc<dyn SecretSource>,
) -> Result<HttpOenGateway, OenError> {
    let mut cfg = OenClientConfig::new(base_url, dev_merchant());
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.request_timeout = Duration::from_secs(10);
    cfg.query_backoff = Duration::from_millis(50);
    HttpOenGateway::new(cfg, secrets)
}

/// Binding dependencies from explicit adapters, with the development catalog and merchant.
pub fn binding_deps(
    store: Arc<dyn Store>,
    vault: Arc<dyn TokenVault>,
    oen: Arc<dyn crate::oen::OenGateway>,
    events: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
) -> BindingDeps {
    BindingDeps {
        store,
        vault,
        oen,
        events,
        clock,
        plans: dev_plans(),
        merchant: dev_merchant(),
    }
}
