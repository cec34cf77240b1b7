//! A stateful simulator of the Oen Tech Payment API, for development and tests.
//!
//! It serves the API calls the project uses (`/checkout-token`, `/token/transactions`,
//! order and transaction queries, refunds) with Oen's envelopes, codes and id formats; the
//! hosted card-binding page; token webhooks with Oen's retry policy; test cards that pick
//! outcomes (declines, `C026`, 504 after commit, dropped connections, ...); knobs for webhook
//! misbehaviour and eventual consistency; and an admin API under `/_sim`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), oen_sim::SimError> {
//! let sim = oen_sim::Simulator::start(oen_sim::SimConfig {
//!     merchant_id: "ming".into(),
//!     api_token: "tok".into(),
//!     ..Default::default()
//! })
//! .await?;
//! let token = sim.create_token(oen_sim::cards::SUCCESS);
//! // POST {sim.base_url()}/token/transactions with `Authorization: Bearer tok` ...
//! # let _ = token;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

/// The README's library example, compiled by the doc tests so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExample;

mod admin;
mod api;
pub mod cards;
mod charges;
mod clock;
mod config;
mod connection;
mod control;
mod delivery;
mod envelope;
mod hosted;
pub mod ids;
mod inject;
mod model;
mod queries;
mod refunds;
mod reply;
mod server;
mod state;
mod timer;
mod webhook;

pub use config::{Cli, SimConfig, DEFAULT_API_TOKEN, DEFAULT_MERCHANT_ID, DEFAULT_PAGE_VALIDITY};
pub use delivery::{AttemptOutcome, DeliveryAttempt, DeliveryRecord, DeliveryState};
pub use inject::InjectError;
pub use model::{
    AuthCodeMode, ChargePayer, ForceTarget, ForcedOutcome, Knobs, LedgerEntry, Settle, Status,
};

use chrono::{DateTime, Utc};
use model::as_ms;
use state::{Shared, SharedRef, State};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why the simulator could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind the simulator to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the webhook HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("no webhook delivery with id {0}")]
    UnknownDelivery(u64),
    #[error("timed out after {0:?} waiting for the simulator")]
    Timeout(Duration),
}

/// A running simulator. It stops on [`Simulator::shutdown`] or when dropped.
pub struct Simulator {
    shared: SharedRef,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("merchant_id", &self.shared.merchant_id)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Binds `config.bind_host:config.port` (127.0.0.1:0 by default) and starts serving.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let wanted = SocketAddr::new(config.bind_host, config.port);
        let listener = TcpListener::bind(wanted)
            .await
            .map_err(|source| SimError::Bind {
                addr: wanted,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: wanted,
            source,
        })?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let shared = Arc::new(Shared {
            merchant_id: config.merchant_id,
            api_token: config.api_token,
            allowlist: config.production_allowlist,
            page_validity: config.page_validity,
            initial_knobs: config.knobs.clone(),
            initial_webhook_url: config.webhook_url.clone(),
            state: Mutex::new(State::new(config.knobs, config.webhook_url)),
            http,
            started: tokio::time::Instant::now(),
            tasks: Mutex::new(Vec::new()),
            clock_moved: tokio::sync::Notify::new(),
        });
        let router = server::router(Arc::clone(&shared));
        let server = tokio::spawn(server::serve(listener, router));
        tracing::info!(%addr, merchant_id = %shared.merchant_id, "oen-sim listening");
        Ok(Self {
            shared,
            addr,
            server: Some(server),
        })
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL, e.g. `http://127.0.0.1:PORT` (a wildcard bind is reported as
    /// loopback).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The hosted-page base URL with the merchant id **resolved**, e.g.
    /// `http://127.0.0.1:PORT/hosted/ming`: the local stand-in for `https://ming.testing.oen.tw`.
    /// A binding page is at `{hosted_base_url}/checkout/subscription/create/{id}`.
    pub fn hosted_base_url(&self) -> String {
        format!("{}/hosted/{}", self.base_url(), self.shared.merchant_id)
    }

    /// The hosted-page base URL with the literal `{merchantId}` placeholder, e.g.
    /// `http://127.0.0.1:PORT/hosted/{merchantId}`, for configuration that templates it.
    pub fn hosted_base_url_template(&self) -> String {
        format!("{}/hosted/{{merchantId}}", self.base_url())
    }

    /// The binding page of a checkout-token id.
    pub fn hosted_page_url(&self, checkout_id: &str) -> String {
        format!(
            "{}/checkout/subscription/create/{checkout_id}",
            self.hosted_base_url()
        )
    }

    pub fn merchant_id(&self) -> &str {
        &self.shared.merchant_id
    }

    pub fn api_token(&self) -> &str {
        &self.shared.api_token
    }

    /// Creates a card token directly (no page, no webhook); the card number picks how charges
    /// of the token behave (see [`cards`]).
    pub fn create_token(&self, card_number: &str) -> String {
        control::create_token(&self.shared, card_number)
    }

    /// Every transaction, oldest first, in its true current state.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        control::ledger(&self.shared)
    }

    // ---- Reconciliation test hooks (`inject`) ------------------------------------------------

    /// Injects a paid transaction of `amount` under `order_id`, created now and charged on no
    /// token of the project: an orphan when the order is not the project's. Its `P…` number.
    pub fn inject_paid(&self, order_id: &str, amount: i64) -> Result<String, InjectError> {
        self.shared.lock().inject_paid(order_id, amount)
    }

    /// Injects a second paid transaction (same amount and token, created now) under an order
    /// that already has a paid one. Its `P…` number.
    pub fn inject_second_payment(&self, order_id: &str) -> Result<String, InjectError> {
        self.shared.lock().inject_second_payment(order_id)
    }

    /// Makes Oen hold the transaction at another amount than the one charged.
    pub fn inject_amount(&self, transaction: &str, amount: i64) -> Result<(), InjectError> {
        self.shared.lock().inject_amount(transaction, amount)
    }

    /// Refunds the transaction outside the API (as from the merchant's back office), by the
    /// rules of `POST /refunds`; `None` refunds all of it.
    pub fn inject_refund(&self, transaction: &str, amount: Option<i64>) -> Result<(), InjectError> {
        self.shared.lock().inject_refund(transaction, amount)
    }

    /// The payer fields (`userEmail`, `userName`, `invoiceInfo`) of every charge request that
    /// passed validation, oldest first: what Oen was told for its e-invoices.
    pub fn charge_payers(&self) -> Vec<ChargePayer> {
        self.shared.lock().charge_payers.clone()
    }

    /// Whether the merchant's domain issues e-invoices (charges without `userEmail` refused).
    pub fn set_einvoice(&self, einvoice: bool) {
        self.update_knobs(|k| k.einvoice = einvoice);
    }

    /// The ledger entries of one order id.
    pub fn ledger_for_order(&self, order_id: &str) -> Vec<LedgerEntry> {
        self.ledger()
            .into_iter()
            .filter(|e| e.order_id == order_id)
            .collect()
    }

    /// Every webhook delivery (with its attempts), oldest first.
    pub fn webhook_deliveries(&self) -> Vec<DeliveryRecord> {
        control::deliveries(&self.shared)
    }

    /// Waits until at least `count` deliveries exist and all of them are finished (delivered,
    /// given up, dropped). Polls; fails after `timeout`.
    pub async fn wait_for_webhooks(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<DeliveryRecord>, SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let deliveries = self.webhook_deliveries();
            if deliveries.len() >= count && deliveries.iter().all(DeliveryRecord::is_finished) {
                return Ok(deliveries);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SimError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends a recorded webhook again as a new delivery (test-only: real Oen cannot).
    /// Returns the new delivery id.
    pub fn redeliver_webhook(&self, delivery_id: u64) -> Result<u64, SimError> {
        control::redeliver(&self.shared, delivery_id).ok_or(SimError::UnknownDelivery(delivery_id))
    }

    /// Releases webhooks held back by the hold knob; returns how many.
    pub fn release_held_webhooks(&self) -> usize {
        control::release_held(&self.shared)
    }

    /// Changes where webhooks go from now on.
    pub fn set_webhook_url(&self, url: Option<String>) {
        control::set_webhook_url(&self.shared, url);
    }

    /// Forces the next matching response (once).
    pub fn force_next(&self, target: ForceTarget, outcome: ForcedOutcome) {
        self.force_next_times(target, outcome, 1);
    }

    /// Forces the next `times` matching responses.
    pub fn force_next_times(&self, target: ForceTarget, outcome: ForcedOutcome, times: u32) {
        control::force(&self.shared, target, outcome, times);
    }

    /// Forgets forced responses not used yet.
    pub fn clear_forced(&self) {
        control::clear_forced(&self.shared);
    }

    /// The simulator clock.
    pub fn now(&self) -> DateTime<Utc> {
        control::now(&self.shared)
    }

    /// Moves the simulator clock forward (settles C026 transactions that come due).
    pub fn advance_clock(&self, by: Duration) {
        control::advance_clock(&self.shared, by);
    }

    /// Sets the simulator clock.
    pub fn set_clock(&self, to: DateTime<Utc>) {
        control::set_clock(&self.shared, to);
    }

    /// Freezes (or thaws) the simulator clock: frozen, only explicit changes move it.
    pub fn freeze_clock(&self, frozen: bool) {
        control::freeze_clock(&self.shared, frozen);
    }

    /// Settles every `C026` transaction now, whatever its settle delay; returns how many.
    pub fn settle_pending(&self) -> usize {
        control::settle_pending(&self.shared)
    }

    /// Forgets every transaction, checkout, token, webhook and forced response; knobs and the
    /// webhook URL return to the start-up configuration; the clock restarts from wall time.
    pub fn reset(&self) {
        control::reset(&self.shared);
    }

    /// The current knobs.
    pub fn knobs(&self) -> Knobs {
        control::knobs(&self.shared)
    }

    /// Replaces all knobs.
    pub fn set_knobs(&self, knobs: Knobs) {
        control::update_knobs(&self.shared, |k| *k = knobs);
    }

    /// Changes some knobs.
    pub fn update_knobs(&self, f: impl FnOnce(&mut Knobs)) {
        control::update_knobs(&self.shared, f);
    }

    /// A fixed latency for every API call (benchmarks).
    pub fn set_latency(&self, latency: Duration) {
        self.update_knobs(|k| k.latency_ms = as_ms(latency));
    }

    /// For this long after a change (simulator clock), queries show the previous status (a new
    /// transaction shows as `charging`; it is never hidden: see [`Simulator::set_listing_delay`]).
    pub fn set_consistency_lag(&self, lag: Duration) {
        self.update_knobs(|k| k.consistency_lag_ms = as_ms(lag));
    }

    /// Transactions younger than `delay` (simulator clock) are missing from the order listing
    /// and the transaction list (`GET /transactions/{id}` still finds them).
    pub fn set_listing_delay(&self, delay: Duration) {
        self.update_knobs(|k| k.listing_delay_ms = as_ms(delay));
    }

    /// How long (simulator clock) a `C026` transaction stays `charging`.
    pub fn set_settle_delay(&self, delay: Duration) {
        self.update_knobs(|k| k.settle_delay_ms = as_ms(delay));
    }

    /// How long a "504 after commit" takes to answer (real time).
    pub fn set_gateway_timeout_delay(&self, delay: Duration) {
        self.update_knobs(|k| k.gateway_timeout_delay_ms = as_ms(delay));
    }

    /// Drop (never send) the next `n` webhooks.
    pub fn drop_next_webhooks(&self, n: u32) {
        self.update_knobs(|k| k.webhook_drop_next = n);
    }

    /// Send each of the next `n` webhooks twice.
    pub fn duplicate_next_webhooks(&self, n: u32) {
        self.update_knobs(|k| k.webhook_duplicate_next = n);
    }

    /// Hold back the next `n` webhooks until a later one has been delivered (reordering).
    pub fn hold_next_webhooks(&self, n: u32) {
        self.update_knobs(|k| k.webhook_hold_next = n);
    }

    /// Wait this long (simulator clock) before the first attempt of each webhook.
    pub fn set_webhook_delay(&self, delay: Duration) {
        self.update_knobs(|k| k.webhook_delay_ms = as_ms(delay));
    }

    /// Send a `transactionId` different from `id`.
    pub fn set_webhook_transaction_id_differs(&self, on: bool) {
        self.update_knobs(|k| k.webhook_transaction_id_differs = on);
    }

    /// Send `"message": null`.
    pub fn set_webhook_null_message(&self, on: bool) {
        self.update_knobs(|k| k.webhook_null_message = on);
    }

    /// Timeout of one delivery attempt (simulator clock).
    pub fn set_webhook_timeout(&self, timeout: Duration) {
        self.update_knobs(|k| k.webhook_timeout_ms = as_ms(timeout));
    }

    /// Gaps between attempt starts, counted from the first attempt's start whether or not
    /// earlier attempts have answered (simulator clock; attempts = 1 + `delays.len()`).
    pub fn set_webhook_retry_delays(&self, delays: &[Duration]) {
        let delays = delays.iter().copied().map(as_ms).collect();
        self.update_knobs(|k| k.webhook_retry_delays_ms = delays);
    }

    /// Whether approved charges carry an `authCode`: always, never, or seeded at random.
    pub fn set_auth_code(&self, mode: AuthCodeMode) {
        self.update_knobs(|k| k.auth_code = mode);
    }

    /// Stops serving and cancels pending webhook deliveries.
    pub async fn shutdown(mut self) {
        self.shared.abort_tasks();
        if let Some(server) = self.server.take() {
            server.abort();
            // The only error here is the cancellation just requested.
            let _ = server.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shared.abort_tasks();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
