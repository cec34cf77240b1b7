//! `oen-dev`: the whole card-binding flow on localhost, with no AWS account.
//!
//! One HTTP server serves, side by side:
//! - the real `checkout-start` router (`/checkout/start`, `/checkout/status`) and the real
//!   `webhook` router (`/oen/webhook/{key}`), exactly as they run on Lambda;
//! - a small merchant demo (`/`, `/demo/start`, `/demo/return`) and an inspection page
//!   (`/demo/state`) for a person to click through.
//!
//! Oen is played by the simulator (`oen_sim::Simulator`), started in-process on its own loopback
//! port; its back-office webhook URL points at this server's webhook route. With
//! `--oen testing` Oen's real testing environment plays it instead ([`oen_target`]): the same
//! routes, Oen's API and card pages, and Oen's webhook arriving through the developer's tunnel.
//! The store
//! ([`MemoryStore`]), the token key ([`LocalVault::random`]) and the domain events
//! ([`MemoryEvents`]) live in memory: stopping the process forgets everything.
//!
//! [`start`] returns a [`DevStack`] with the handles a test needs (address, simulator, store,
//! events); `main.rs` is a thin wrapper that prints where to go and waits for Ctrl-C.

mod charger;
mod demo;
mod inspect;
pub mod oen_target;
mod operations;
mod page;
mod shop;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use oen_pay::binding::BindingDeps;
use oen_pay::charging::{ChargeDeps, ChargePolicy};
use oen_pay::clock::{Clock, ShiftedClock};
use oen_pay::config;
use oen_pay::deadletter::{DeadLetterOps, MemoryDeadLetters};
use oen_pay::dev;
use oen_pay::domain::MerchantId;
use oen_pay::events::MemoryEvents;
use oen_pay::oen::{HttpOenGateway, OenClientConfig, OenError};
use oen_pay::ops::Operations;
use oen_pay::queue::MemoryQueue;
use oen_pay::secrets::{CachedSecrets, SecretSource, StaticSecret};
use oen_pay::store::MemoryStore;
use oen_pay::vault::LocalVault;
use oen_pay::web::html_error;
use oen_sim::{SimConfig, SimError, Simulator};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::demo::Demo;
pub use crate::oen_target::{OenSettings, OenSetupError, OenTarget, TestingOen};

/// How long a graceful shutdown waits for open requests before it cuts them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serve the whole card-binding flow on localhost: the checkout-start and webhook functions,
/// the Oen simulator as Oen (or Oen's testing environment), in-memory storage, and a demo
/// merchant page to click through.
#[derive(Debug, Clone, Parser)]
#[command(name = "oen-dev", version)]
pub struct Options {
    /// Address to listen on (the simulator listens on the same address).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free port (the URL to open is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Port of the Oen simulator; 0 (the default) picks a free port.
    #[arg(long, default_value_t = 0)]
    pub sim_port: u16,
    /// Who plays Oen: the project's simulator, in this process, or Oen's real testing
    /// environment (its API token in OEN_API_TOKEN; needs --merchant-id and --public-url).
    #[arg(long, value_enum, default_value_t = OenTarget::Simulator)]
    pub oen: OenTarget,
    /// With --oen testing: your merchant id at Oen (`ming` for ming.oen.tw).
    #[arg(long)]
    pub merchant_id: Option<String>,
    /// With --oen testing: the https URL at which Oen reaches this stack (a tunnel of yours
    /// forwarding to it); the webhook URL to register at Oen is printed from it.
    #[arg(long)]
    pub public_url: Option<String>,
    /// With --oen testing: the webhook URL's path key (at least 16 letters, digits, - or _).
    /// Without it a random key is made for the run, and the URL registered at Oen changes.
    #[arg(long)]
    pub webhook_path_key: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            sim_port: 0,
            oen: OenTarget::Simulator,
            merchant_id: None,
            public_url: None,
            webhook_path_key: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevStackError {
    #[error("cannot listen on {addr}: {source} (pass --port 0 to pick a free port)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the Oen simulator did not start: {0}")]
    Simulator(#[from] SimError),
    #[error("the Oen client could not be built: {0}")]
    Oen(#[from] OenError),
    #[error(transparent)]
    Setup(#[from] OenSetupError),
}

/// The adapters the stack's functions share, in memory. The charger is built from these same
/// values: it decrypts with the `vault` that `webhook` encrypted with, charges through the same
/// Oen (the simulator, or Oen's testing environment), and writes to the same store and event
/// log.
#[derive(Clone)]
pub struct Adapters {
    pub store: Arc<MemoryStore>,
    pub vault: Arc<LocalVault>,
    pub oen: Arc<HttpOenGateway>,
    pub events: Arc<MemoryEvents>,
    /// The machine's clock, which the demo can skip ahead to make periods due.
    pub clock: Arc<ShiftedClock>,
    pub queue: Arc<MemoryQueue>,
    /// The dead-letter queues: a message the charger fails on waits in the charge one (the
    /// stack tries each once, where SQS would try five times), for `oenpay dlq`.
    pub dead_letters: Arc<MemoryDeadLetters>,
    pub secrets: Arc<dyn SecretSource>,
    /// The merchant at Oen: the simulator's, or the one given with `--oen testing`.
    pub merchant: MerchantId,
}

impl Adapters {
    /// What `checkout-start` and `webhook` need, with the development catalog.
    pub fn binding_deps(&self) -> BindingDeps {
        BindingDeps {
            merchant: self.merchant.clone(),
            ..dev::binding_deps(
                self.store.clone(),
                self.vault.clone(),
                self.oen.clone(),
                self.events.clone(),
                self.clock.clone(),
            )
        }
    }

    /// What `charger` needs; its queue is drained in process by the demo.
    pub fn charge_deps(&self) -> ChargeDeps {
        ChargeDeps::new(
            self.binding_deps(),
            self.queue.clone(),
            ChargePolicy::default(),
        )
    }

    pub fn now(&self) -> oen_pay::chrono::DateTime<oen_pay::chrono::Utc> {
        self.clock.now()
    }
}

/// A running dev stack. [`DevStack::shutdown`] stops it gracefully; dropping it stops it at once.
pub struct DevStack {
    addr: SocketAddr,
    url: String,
    // Shared with the inspection page, which reads the simulator's webhook log. None when Oen's
    // testing environment plays Oen.
    sim: Option<Arc<Simulator>>,
    adapters: Adapters,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DevStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevStack")
            .field("addr", &self.addr)
            .field("sim", &self.sim)
            .finish_non_exhaustive()
    }
}

impl DevStack {
    /// The bound address of the stack's server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the stack, e.g. `http://127.0.0.1:8080` (no trailing slash); the demo
    /// page is at `{url}/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The simulator playing Oen; `None` with `--oen testing`.
    pub fn sim(&self) -> Option<&Simulator> {
        self.sim.as_deref()
    }

    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.adapters.store
    }

    pub fn events(&self) -> &Arc<MemoryEvents> {
        &self.adapters.events
    }

    pub fn adapters(&self) -> &Adapters {
        &self.adapters
    }

    /// Stops accepting connections, lets open requests finish (up to a few seconds), then
    /// stops the simulator.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the server already ended.
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
            {
                tracing::warn!("open requests did not finish in time; closing them");
                server.abort();
                // Only the cancellation just requested can come back.
                let _ = server.await;
            }
        }
        // The simulator stops when its last handle drops: ours, here, now that the server (and
        // the inspection page with it) is gone.
    }
}

impl Drop for DevStack {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// `http://{addr}` with a wildcard address shown as loopback (a browser cannot open 0.0.0.0).
fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Starts the stack with the Oen that `opts` name, reading `OEN_API_TOKEN` from the process's
/// environment (see [`OenSettings::resolve`]); returns once it is listening.
pub async fn start(opts: Options) -> Result<DevStack, DevStackError> {
    let oen = OenSettings::resolve(
        &opts,
        &config::env_lookup,
        oen_target::random_webhook_path_key,
    )?;
    start_with(opts, oen).await
}

/// Starts the simulator (unless Oen's testing environment plays Oen) and serves the stack;
/// returns once both are listening.
pub async fn start_with(opts: Options, oen: OenSettings) -> Result<DevStack, DevStackError> {
    // Bind first: the simulator's webhook URL must name our port.
    let wanted = SocketAddr::new(opts.host, opts.port);
    let bind_err = |source| DevStackError::Bind {
        addr: wanted,
        source,
    };
    let listener = TcpListener::bind(wanted).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let url = base_url(addr);

    let OenSide {
        sim,
        secrets,
        gateway,
        merchant,
        hosted_base_url,
    } = OenSide::start(oen, &opts, &url).await?;

    let adapters = Adapters {
        store: Arc::new(MemoryStore::new()),
        vault: Arc::new(LocalVault::random()),
        oen: Arc::new(gateway),
        events: Arc::new(MemoryEvents::default()),
        clock: Arc::new(ShiftedClock::default()),
        queue: Arc::new(MemoryQueue::default()),
        dead_letters: Arc::new(MemoryDeadLetters::default()),
        secrets,
        merchant,
    };

    // The merchant API's operations take no authentication here: only on a loopback address.
    let operations = addr.ip().is_loopback();
    if !operations {
        tracing::warn!(%addr, "not a loopback address: the operations API (/v1) is off");
    }
    let app = router(&adapters, &url, sim.clone(), hosted_base_url, operations);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        })
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the dev stack's server stopped");
        }
    });
    match &sim {
        Some(sim) => tracing::info!(%addr, sim = %sim.base_url(), "oen-dev listening"),
        None => {
            tracing::info!(%addr, merchant = %adapters.merchant, "oen-dev listening, Oen's testing environment plays Oen")
        }
    }

    Ok(DevStack {
        addr,
        url,
        sim,
        adapters,
        stop: Some(stop),
        server: Some(server),
    })
}

/// Oen as the stack reaches it: the simulator started here, or Oen's testing environment.
struct OenSide {
    sim: Option<Arc<Simulator>>,
    secrets: Arc<dyn SecretSource>,
    gateway: HttpOenGateway,
    merchant: MerchantId,
    /// Where checkout-start sends the browser, with `{merchantId}` in it.
    hosted_base_url: String,
}

impl OenSide {
    /// `url` is the stack's own base URL, where the simulator delivers its webhooks.
    async fn start(oen: OenSettings, opts: &Options, url: &str) -> Result<Self, DevStackError> {
        match oen {
            OenSettings::Simulator => {
                let sim = Simulator::start(SimConfig {
                    merchant_id: dev::DEV_MERCHANT_ID.into(),
                    api_token: dev::DEV_API_TOKEN.into(),
                    webhook_url: Some(format!("{url}/oen/webhook/{}", dev::DEV_WEBHOOK_PATH_KEY)),
                    bind_host: opts.host,
                    port: opts.sim_port,
                    ..SimConfig::default()
                })
                .await?;
                let secrets = dev::dev_secrets(dev::DEV_API_TOKEN);
                Ok(Self {
                    gateway: dev::local_oen(&sim.base_url(), secrets.clone())?,
                    hosted_base_url: sim.hosted_base_url_template(),
                    sim: Some(Arc::new(sim)),
                    secrets,
                    merchant: dev::dev_merchant(),
                })
            }
            OenSettings::Testing(testing) => {
                let secrets: Arc<dyn SecretSource> = Arc::new(CachedSecrets::new(
                    StaticSecret::new(testing.secret_json()),
                    Duration::from_secs(3600),
                ));
                // The client's deployed timeouts and back-off, not the simulator's short ones:
                // this is Oen's real API.
                let gateway = HttpOenGateway::new(
                    OenClientConfig::new(&testing.api_base_url, testing.merchant.clone()),
                    secrets.clone(),
                )?;
                Ok(Self {
                    sim: None,
                    secrets,
                    gateway,
                    merchant: testing.merchant,
                    hosted_base_url: testing.hosted_base_url,
                })
            }
        }
    }
}

/// Every route of the stack on one router.
fn router(
    adapters: &Adapters,
    url: &str,
    sim: Option<Arc<Simulator>>,
    hosted_base_url: String,
    operations: bool,
) -> Router {
    let deps = adapters.binding_deps();
    // Oen sends the browser back here, with `ref` added by checkout-start.
    let return_url = format!("{url}/demo/return");
    let checkout = checkout_start::router(Arc::new(checkout_start::App {
        deps: deps.clone(),
        secrets: adapters.secrets.clone(),
        success_url: return_url.clone(),
        failure_url: return_url,
        hosted_base_url,
        link_max_ttl: config::DEFAULT_LINK_MAX_TTL,
        // The demo's return page is served from the stack's own origin.
        status_allowed_origins: Vec::new(),
        einvoice: false,
    }));
    let webhook = webhook::router(Arc::new(webhook::App {
        deps,
        secrets: adapters.secrets.clone(),
        // The simulator calls over loopback; Oen's testing environment through the developer's
        // tunnel, whose source addresses are the tunnel's: an allowlist has nothing to add.
        allowed_ips: vec![],
    }));
    let demo = Arc::new(Demo {
        url: url.to_owned(),
        plans: dev::dev_plans(),
        adapters: adapters.clone(),
        sim,
        last_run: Default::default(),
        last_operation: Default::default(),
    });
    let mut app = checkout.merge(webhook).merge(demo_router(demo));
    if operations {
        // The merchant API's routes and code, unauthenticated: `oenpay --endpoint {url}`.
        let merchant = merchant_api::router(
            Arc::new(merchant_api::App {
                ops: Operations {
                    deps: adapters.charge_deps(),
                    secrets: adapters.secrets.clone(),
                    link_max_ttl: config::DEFAULT_LINK_MAX_TTL,
                },
                start_link_url: Some(format!("{url}/checkout/start")),
                dead_letters: DeadLetterOps {
                    letters: adapters.dead_letters.clone(),
                    queue: adapters.queue.clone(),
                },
            }),
            merchant_api::Access::LocalUnauthenticated,
        );
        // Nested under /v1, then handed its whole path again (its routes name /v1): its own
        // 404s and 405s answer in its JSON, and no path parameter of ours reaches it.
        let merchant = tower::ServiceExt::map_request(
            merchant.into_service::<axum::body::Body>(),
            |mut request: axum::extract::Request| {
                let tail = request
                    .uri()
                    .path_and_query()
                    .map_or("", |p| p.as_str())
                    .to_owned();
                if let Ok(uri) = format!("/v1{tail}").parse() {
                    *request.uri_mut() = uri;
                }
                request
            },
        );
        app = app.nest_service("/v1", merchant);
    }
    app.fallback(|| async {
        html_error(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing at this address. The demo starts at /.",
            None,
        )
    })
}

/// The demo's own pages and buttons: the shop, the inspection page and the charger.
fn demo_router(demo: Arc<Demo>) -> Router {
    Router::new()
        .route("/", get(shop::index))
        .route("/demo/start", post(shop::start))
        .route("/demo/return", get(shop::return_page))
        .route("/demo/state", get(inspect::state_page))
        .route("/demo/charge", post(charger::run))
        .route("/demo/skip", post(charger::skip))
        .route(
            "/demo/ops/subscriptions/{id}/cancel",
            post(operations::cancel),
        )
        .route(
            "/demo/ops/subscriptions/{id}/resume",
            post(operations::resume),
        )
        .route("/demo/ops/periods/{order}/refund", post(operations::refund))
        .route("/demo/ops/charges", post(operations::charge))
        .route(
            "/demo/ops/charges/{id}/refund",
            post(operations::refund_charge),
        )
        .with_state(demo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_address_is_shown_as_loopback() {
        assert_eq!(
            base_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(base_url("[::]:8080".parse().unwrap()), "http://[::1]:8080");
        assert_eq!(
            base_url("192.0.2.7:80".parse().unwrap()),
            "http://192.0.2.7:80"
        );
    }

    #[test]
    fn the_command_line_defaults_to_localhost_8080() {
        let opts = Options::parse_from(["oen-dev"]);
        assert_eq!(opts.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(opts.port, 8080);
        assert_eq!(opts.oen, OenTarget::Simulator);
        let opts = Options::parse_from(["oen-dev", "--port", "0", "--host", "0.0.0.0"]);
        assert_eq!(opts.port, 0);
        assert!(opts.host.is_unspecified());
    }
}
