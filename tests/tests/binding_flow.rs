//! Flows 1–3 end to end: the real API Gateway events of `events/` through `lambda_http` into the
//! two HTTP functions, the simulator as Oen (hosted page, webhook delivery), and both storage
//! back ends: in memory, and moto's DynamoDB + KMS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use chrono::Utc;
use http_body_util::BodyExt;
use oen_pay::aws::KmsVault;
use oen_pay::binding::{BindingDeps, CustomId};
use oen_pay::clock::SystemClock;
use oen_pay::config::DEFAULT_LINK_MAX_TTL;
use oen_pay::domain::{
    BindingRef, CheckoutId, CustomerId, MerchantId, OrderId, PlanId, TransactionId,
};
use oen_pay::events::MemoryEvents;
use oen_pay::oen::{
    ChargeReceipt, ChargeRequest, CheckoutRequest, OenError, OenGateway, RefundRequest,
    Transaction, TransactionListQuery, TransactionPage,
};
use oen_pay::store::{
    BindingSession, Expect, MemoryStore, Put, Record, SessionState, Store, StoreExt,
    SubscriptionStatus, Versioned,
};
use oen_pay::vault::{LocalVault, TokenVault, VaultContext};
use oen_pay::web::Cidr;
use oen_pay::withheld::Withheld;
use oen_pay::{dev, links};
use oen_pay_integration as harness;
use oen_sim::{cards, SimConfig, Simulator};
use tower::ServiceExt;

const EVENT_TOKEN: &str = "2HhnhWm8Qe0sPz4LbXv9KdYt1Ra";
const EVENT_REF: &str = "Ref0000000000000000001";
const EVENT_CHECKOUT: &str = "2HhngP9sVb3mK1xYdQe7Wc0RtUi";
/// How long the test's start links live.
/// The merchant's return pages, allowed to read the status route from the browser.
const SHOP_ORIGIN: &str = "https://shop.example";

const LINK_LIFE: chrono::Duration = chrono::Duration::minutes(10);
/// The request id of `events/checkout-start-valid.json`.
const START_REQUEST_ID: &str = "JKJaXmPLvHcESHA=";

fn event(name: &str) -> serde_json::Value {
    let path = harness::repo_root().join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Sends an API Gateway v2 event through lambda_http's parser into a router.
async fn invoke(router: &Router, event: &serde_json::Value) -> (StatusCode, HeaderMap, String) {
    let request =
        lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The sample start event carrying a link minted now for cust-1001 (premium, with an e-mail)
/// that expires `expires_in` from now. The sample's own link expires in 2100, further ahead than
/// a link may live. Links minted within one second with one `expires_in` are one link.
fn start_event(expires_in: chrono::Duration) -> serde_json::Value {
    start_event_for_plan("premium", expires_in)
}

fn start_event_for_plan(plan: &str, expires_in: chrono::Duration) -> serde_json::Value {
    let link = links::mint(
        "https://pay.example.com/checkout/start",
        dev::DEV_LINK_SIGNING_KEY.as_bytes(),
        &CustomerId::parse("cust-1001").unwrap(),
        &PlanId::parse(plan).unwrap(),
        Utc::now() + expires_in,
        Some("mei@example.com"),
    );
    let mut e = event("checkout-start-valid.json");
    e["rawQueryString"] = link.split_once('?').unwrap().1.into();
    e
}

fn webhook_event(body: &serde_json::Value) -> serde_json::Value {
    let mut e = event("webhook-token-success.json");
    e["body"] = serde_json::Value::String(body.to_string());
    e
}

enum Backend {
    Memory,
    Moto,
}

/// Oen as the simulator answers it, for the binding flows: counts `POST /checkout-token` calls,
/// and while held, makes each wait until released, so a test can send requests while one is in
/// flight.
struct CountingOen {
    inner: Arc<dyn OenGateway>,
    checkouts: AtomicUsize,
    held: AtomicBool,
    gate: tokio::sync::Semaphore,
}

impl CountingOen {
    fn new(inner: Arc<dyn OenGateway>) -> Self {
        Self {
            inner,
            checkouts: AtomicUsize::new(0),
            held: AtomicBool::new(false),
            gate: tokio::sync::Semaphore::new(0),
        }
    }

    fn checkouts(&self) -> usize {
        self.checkouts.load(Ordering::SeqCst)
    }

    fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.gate.add_permits(1);
    }

    /// Waits until `n` checkout-token calls have been made.
    async fn wait_for_checkouts(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.checkouts() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "Oen saw {} calls",
                self.checkouts()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[oen_pay::async_trait::async_trait]
impl OenGateway for CountingOen {
    fn merchant_id(&self) -> &MerchantId {
        self.inner.merchant_id()
    }
    async fn create_checkout(&self, req: &CheckoutRequest) -> Result<CheckoutId, OenError> {
        self.checkouts.fetch_add(1, Ordering::SeqCst);
        if self.held.load(Ordering::SeqCst) {
            // Dropped at once: one permit lets every held call through in turn.
            let _ = self.gate.acquire().await;
        }
        self.inner.create_checkout(req).await
    }
    // The binding flows (checkout-start and the webhook) ask Oen for hosted pages only.
    async fn charge(&self, _: &ChargeRequest) -> Result<ChargeReceipt, OenError> {
        unreachable!("the binding flows never charge a card")
    }
    async fn order_transactions(&self, _: &OrderId) -> Result<Vec<Transaction>, OenError> {
        unreachable!("the binding flows never read orders")
    }
    async fn transaction(&self, _: &TransactionId) -> Result<Transaction, OenError> {
        unreachable!("the binding flows never read transactions")
    }
    async fn refund(&self, _: &RefundRequest) -> Result<(), OenError> {
        unreachable!("the binding flows never refund")
    }

    async fn list_transactions(
        &self,
        _: &TransactionListQuery,
    ) -> Result<TransactionPage, OenError> {
        unreachable!("the binding flows never list Oen's transactions")
    }
}

struct Stack {
    deps: BindingDeps,
    oen: Arc<CountingOen>,
    events: Arc<MemoryEvents>,
    checkout: Router,
    webhook: Router,
    sim: Simulator,
    store: Arc<dyn Store>,
    memory: Option<Arc<MemoryStore>>,
    vault: Arc<dyn TokenVault>,
    table: Option<String>,
    webhook_server: tokio::task::JoinHandle<()>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.webhook_server.abort();
    }
}

async fn stack(backend: Backend, allowed_ips: Vec<Cidr>) -> Stack {
    let memory = matches!(backend, Backend::Memory).then(|| Arc::new(MemoryStore::new()));
    let (store, vault, table): (Arc<dyn Store>, Arc<dyn TokenVault>, Option<String>) = match backend
    {
        Backend::Memory => (
            memory.clone().unwrap(),
            Arc::new(LocalVault::random()),
            None,
        ),
        Backend::Moto => {
            let dynamo = harness::dynamo_client().await;
            let table = harness::create_table(&dynamo).await;
            let kms = harness::kms_client().await;
            let key = harness::create_kms_key(&kms).await;
            (
                Arc::new(oen_pay::aws::DynamoStore::new(dynamo, table.clone())),
                Arc::new(KmsVault::new(kms, key)),
                Some(table),
            )
        }
    };
    let secrets = dev::dev_secrets(dev::DEV_API_TOKEN);
    let sim = Simulator::start(SimConfig {
        api_token: dev::DEV_API_TOKEN.into(),
        knobs: Default::default(),
        ..Default::default()
    })
    .await
    .unwrap();
    sim.set_webhook_retry_delays(&[Duration::from_millis(20), Duration::from_millis(40)]);
    let oen = Arc::new(CountingOen::new(Arc::new(
        dev::local_oen(&sim.base_url(), secrets.clone()).unwrap(),
    )));
    let events = Arc::new(MemoryEvents::default());
    let deps = dev::binding_deps(
        store.clone(),
        vault.clone(),
        oen.clone(),
        events.clone(),
        Arc::new(SystemClock),
    );
    let checkout = checkout_router(deps.clone(), &sim);
    // Wired as deployed: the webhook holds no Oen client.
    let webhook = webhook::router(Arc::new(webhook::App {
        deps: BindingDeps {
            oen: Arc::new(Withheld::new("webhook", dev::dev_merchant())),
            ..deps.clone()
        },
        secrets,
        allowed_ips,
    }));
    // The simulator delivers its webhooks over loopback HTTP to the same router.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = webhook
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let webhook_server = tokio::spawn(async move {
        let _ = axum::serve(listener, served).await;
    });
    sim.set_webhook_url(Some(format!(
        "http://{addr}/oen/webhook/{}",
        dev::DEV_WEBHOOK_PATH_KEY
    )));
    Stack {
        deps,
        oen,
        events,
        checkout,
        webhook,
        sim,
        store,
        memory,
        vault,
        table,
        webhook_server,
    }
}

/// `checkout-start` on `deps`, with the development keys and the simulator's hosted pages.
/// Wired as deployed: it holds no token key and no event bus.
fn checkout_router(deps: BindingDeps, sim: &Simulator) -> Router {
    checkout_router_for(deps, sim, false)
}

/// [`checkout_router`] for a merchant that issues e-invoices (`EINVOICE`) or not.
fn checkout_router_for(deps: BindingDeps, sim: &Simulator, einvoice: bool) -> Router {
    let withheld = Arc::new(Withheld::new("checkout-start", dev::dev_merchant()));
    checkout_start::router(Arc::new(checkout_start::App {
        deps: BindingDeps {
            vault: withheld.clone(),
            events: withheld,
            ..deps
        },
        secrets: dev::dev_secrets(dev::DEV_API_TOKEN),
        success_url: "https://shop.example/card/bound".into(),
        failure_url: "https://shop.example/card/failed".into(),
        hosted_base_url: sim.hosted_base_url_template(),
        link_max_ttl: DEFAULT_LINK_MAX_TTL,
        status_allowed_origins: vec![SHOP_ORIGIN.into()],
        einvoice,
    }))
}

/// The status answer `want` is readable by the merchant's page (`SHOP_ORIGIN`, however the
/// browser cases it) and by no other origin, and says that it varies by origin.
async fn assert_status_cors(s: &Stack, status_event: &serde_json::Value, want: StatusCode) {
    for (origin, allowed) in [
        (Some(SHOP_ORIGIN), Some(SHOP_ORIGIN)),
        (Some("https://SHOP.example"), Some(SHOP_ORIGIN)),
        (Some("https://evil.example"), None),
        (Some("https://shop.example.evil.example"), None),
        (Some("http://shop.example"), None),
        (None, None),
    ] {
        let mut e = status_event.clone();
        if let Some(origin) = origin {
            e["headers"]["origin"] = origin.into();
        }
        let (status, headers, _) = invoke(&s.checkout, &e).await;
        assert_eq!(status, want, "{origin:?}");
        assert_eq!(
            headers
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            allowed,
            "{origin:?}"
        );
        assert!(
            headers
                .get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap().eq_ignore_ascii_case("origin")),
            "{origin:?}: {headers:?}"
        );
    }
}

#[tokio::test]
async fn the_merchants_page_can_read_a_status_error_from_another_origin() {
    let s = stack(Backend::Memory, Vec::new()).await;
    let mut status_event = event("checkout-status.json");
    status_event["rawQueryString"] = "ref=Ref0000000000000000404".into();
    assert_status_cors(&s, &status_event, StatusCode::NOT_FOUND).await;
    status_event["rawQueryString"] = "ref=not-a-reference".into();
    assert_status_cors(&s, &status_event, StatusCode::BAD_REQUEST).await;
}

fn ctx(customer: &str, binding: &BindingRef) -> VaultContext {
    VaultContext {
        merchant: dev::dev_merchant(),
        customer: CustomerId::parse(customer).unwrap(),
        binding: binding.clone(),
    }
}

fn ref_from(url: &str) -> BindingRef {
    let r = url.split("ref=").nth(1).unwrap().split('&').next().unwrap();
    BindingRef::parse(r).unwrap()
}

/// Start (with `start`, an event of [`start_event`]) → hosted page → submit → webhook → card
/// stored; returns the binding reference, the token Oen delivered and the return URL.
async fn bind_through_the_hosted_page(
    s: &Stack,
    start: &serde_json::Value,
    card: &str,
) -> (BindingRef, Option<String>, String) {
    let (status, headers, _) = invoke(&s.checkout, start).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["cache-control"], "no-store");
    let page = headers["location"].to_str().unwrap().to_owned();
    assert!(page.starts_with(&s.sim.hosted_base_url()), "{page}");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = browser.get(&page).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(
        form.text().await.unwrap().contains("mei@example.com"),
        "payerEmail pre-fills the page"
    );
    let before = s.sim.webhook_deliveries().len();
    let submitted = browser
        .post(&page)
        .form(&[("email", "mei@example.com"), ("cardNumber", card)])
        .send()
        .await
        .unwrap();
    assert!(submitted.status().is_redirection());
    let back = submitted.headers()["location"].to_str().unwrap().to_owned();
    let deliveries = s
        .sim
        .wait_for_webhooks(before + 1, Duration::from_secs(10))
        .await
        .unwrap();
    let delivery = deliveries.last().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s
        .sim
        .webhook_deliveries()
        .last()
        .unwrap()
        .attempts
        .is_empty()
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let token = delivery
        .payload
        .get("token")
        .and_then(|t| t.as_str())
        .map(str::to_owned);
    (ref_from(&back), token, back)
}

async fn wait_for_session_state(store: &dyn Store, r: &BindingRef, want: &str) -> BindingSession {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = store.session(r).await.unwrap().unwrap().value;
        let state = match s.state {
            SessionState::Pending => "pending",
            SessionState::Bound { .. } => "bound",
            SessionState::Failed { .. } => "failed",
        };
        if state == want {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "session stayed {state}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn full_flow_stores_only_ciphertext_that_decrypts_under_its_context(backend: Backend) {
    let logs = oen_pay_integration::logs::capture();
    let s = stack(backend, vec![]).await;
    let (reference, token, back) =
        bind_through_the_hosted_page(&s, &start_event(LINK_LIFE), cards::SUCCESS).await;
    let token = token.expect("a success webhook carries the token");
    assert!(
        back.starts_with("https://shop.example/card/bound?ref="),
        "{back}"
    );
    let session = wait_for_session_state(s.store.as_ref(), &reference, "bound").await;
    assert_eq!(session.customer.as_str(), "cust-1001");

    let card = s
        .store
        .card(&session.customer, &reference)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(card.last4.as_deref(), Some("4242"));
    let plain = s
        .vault
        .decrypt(&card.ciphertext, &ctx("cust-1001", &reference))
        .await
        .unwrap();
    assert_eq!(plain.expose(), token);
    assert!(s
        .vault
        .decrypt(&card.ciphertext, &ctx("cust-9999", &reference))
        .await
        .is_err());

    let sub = s
        .store
        .subscription(&session.customer, &PlanId::parse("premium").unwrap())
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.card, reference);
    assert!(
        sub.next_action_at.unwrap() <= Utc::now(),
        "the first period is due at once"
    );
    let bound: Vec<_> = s
        .events
        .all()
        .into_iter()
        .filter(|e| e.kind == "card.bound")
        .collect();
    // Oen's retries start on their own schedule even while an attempt is still being answered,
    // so overlapping copies may each acknowledge the binding: always under its one stable id.
    assert!(!bound.is_empty());
    assert!(
        bound
            .iter()
            .all(|e| e.id == format!("card.bound:{reference}")),
        "{bound:?}"
    );

    let mut status_event = event("checkout-status.json");
    status_event["rawQueryString"] = format!("ref={reference}").into();
    let (status, _, body) = invoke(&s.checkout, &status_event).await;
    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["state"], "bound");
    assert_eq!(body["last4"], "4242");
    assert!(!body.to_string().contains(&token));
    assert_status_cors(&s, &status_event, StatusCode::OK).await;

    // Nothing anywhere holds the plaintext token.
    if let Some(table) = &s.table {
        let items = harness::scan_all(&harness::dynamo_client().await, table).await;
        assert!(!items.is_empty());
        let dump = format!("{items:?}");
        assert!(!dump.contains(&token), "plaintext token in the table");
    }
    let logs = logs.text();
    assert!(
        logs.contains("card bound"),
        "the flow logged nothing: {logs}"
    );
    assert!(!logs.contains(&token), "plaintext token in the logs");
    assert!(!format!("{:?}", s.events.all()).contains(&token));
}

#[tokio::test(flavor = "current_thread")]
async fn full_flow_in_memory() {
    full_flow_stores_only_ciphertext_that_decrypts_under_its_context(Backend::Memory).await;
}

#[tokio::test(flavor = "current_thread")]
async fn full_flow_on_moto() {
    full_flow_stores_only_ciphertext_that_decrypts_under_its_context(Backend::Moto).await;
}

#[tokio::test]
async fn a_failed_binding_is_reported_with_oens_reason() {
    let s = stack(Backend::Memory, vec![]).await;
    let (reference, token, back) =
        bind_through_the_hosted_page(&s, &start_event(LINK_LIFE), cards::ABANDONED_3DS).await;
    assert!(token.is_none());
    assert!(
        back.starts_with("https://shop.example/card/failed?ref="),
        "{back}"
    );
    assert!(back.contains("payment_error="));
    wait_for_session_state(s.store.as_ref(), &reference, "failed").await;
    let mut status_event = event("checkout-status.json");
    status_event["rawQueryString"] = format!("ref={reference}").into();
    let (_, _, body) = invoke(&s.checkout, &status_event).await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["state"], "failed");
    assert_eq!(body["reason"], "3DS_ABANDONED");
}

#[tokio::test]
async fn duplicate_and_transaction_id_mismatched_deliveries_store_one_card() {
    let s = stack(Backend::Memory, vec![]).await;
    s.sim.duplicate_next_webhooks(1);
    s.sim.set_webhook_transaction_id_differs(true);
    s.sim.set_webhook_null_message(true);
    let (reference, token, _) =
        bind_through_the_hosted_page(&s, &start_event(LINK_LIFE), cards::SUCCESS).await;
    assert!(token.is_some());
    wait_for_session_state(s.store.as_ref(), &reference, "bound").await;
    let deliveries = s
        .sim
        .wait_for_webhooks(2, Duration::from_secs(10))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s
        .sim
        .webhook_deliveries()
        .iter()
        .any(|d| d.attempts.is_empty())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(
        deliveries[0].payload["transactionId"],
        deliveries[0].payload["id"]
    );
    for d in s.sim.webhook_deliveries() {
        let last = d.attempts.last().expect("delivered");
        assert!(
            matches!(last.outcome, oen_sim::AttemptOutcome::Status { code: 200 }),
            "{d:?}"
        );
    }
    // Redelivering (Oen cannot, the simulator can) changes nothing either.
    let first = s.sim.webhook_deliveries()[0].delivery_id;
    s.sim.redeliver_webhook(first).unwrap();
    s.sim
        .wait_for_webhooks(3, Duration::from_secs(10))
        .await
        .unwrap();
    let cards: Vec<_> = snapshot(&s)
        .into_iter()
        .filter(|r| matches!(r, Record::Card(_)))
        .collect();
    assert_eq!(cards.len(), 1);
    let audits = snapshot(&s)
        .into_iter()
        .filter(|r| matches!(r, Record::Audit(_)))
        .count();
    assert_eq!(audits, 1, "one audit entry per token write");
}

fn snapshot(s: &Stack) -> Vec<Record> {
    s.memory
        .as_ref()
        .expect("an in-memory stack")
        .snapshot()
        .into_iter()
        .map(|v| v.value)
        .collect()
}

/// The session that `events/webhook-token-*.json` name.
async fn seed_event_session(s: &Stack, expires_in: chrono::Duration) -> BindingSession {
    let now = Utc::now();
    let session = BindingSession {
        reference: BindingRef::parse(EVENT_REF).unwrap(),
        customer: CustomerId::parse("cust-1001").unwrap(),
        plan: PlanId::parse("premium").unwrap(),
        created_at: now - chrono::Duration::minutes(1),
        expires_at: now + expires_in,
        checkout_id: Some(CheckoutId::parse(EVENT_CHECKOUT).unwrap()),
        state: SessionState::Pending,
        terms: None,
        payer: Default::default(),
    };
    s.store
        .commit(vec![Put::new(session.clone(), Expect::Absent)])
        .await
        .unwrap();
    session
}

fn success_body() -> serde_json::Value {
    serde_json::from_str(
        event("webhook-token-success.json")["body"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn the_sample_webhook_events_are_accepted_once_and_replays_change_nothing() {
    let logs = oen_pay_integration::logs::capture();
    let s = stack(Backend::Memory, vec![]).await;
    seed_event_session(&s, chrono::Duration::minutes(9)).await;
    let (status, _, _) = invoke(&s.webhook, &event("webhook-token-success.json")).await;
    assert_eq!(status, StatusCode::OK);
    let after_first = snapshot(&s);
    assert_eq!(
        after_first
            .iter()
            .filter(|r| matches!(r, Record::Card(_)))
            .count(),
        1
    );
    let (status, _, _) = invoke(&s.webhook, &event("webhook-token-success.json")).await;
    assert_eq!(status, StatusCode::OK, "a duplicate is a harmless 2xx");
    assert_eq!(snapshot(&s), after_first, "a duplicate changed the store");
    // A failure arriving after the success (reordered) changes nothing.
    let (status, _, _) = invoke(&s.webhook, &event("webhook-token-failure.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(snapshot(&s), after_first);
    // Another token for the consumed session is refused.
    let mut other = success_body();
    other["token"] = "OtherTokenValue000000000001".into();
    let (status, _, body) = invoke(&s.webhook, &webhook_event(&other)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.contains("bound"), "no detail in the body: {body}");
    assert_eq!(snapshot(&s), after_first);
    // The event ids are stable across redeliveries.
    let ids: std::collections::BTreeSet<_> = s.events.all().into_iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 1);
    let text = logs.text();
    assert!(
        !text.contains(EVENT_TOKEN) && !text.contains("OtherTokenValue000000000001"),
        "token in logs"
    );
    for r in &after_first {
        assert!(
            !format!("{r:?}").contains(EVENT_TOKEN),
            "plaintext token in a record"
        );
    }
}

#[tokio::test]
async fn the_sample_failure_event_marks_the_session_failed() {
    let s = stack(Backend::Memory, vec![]).await;
    seed_event_session(&s, chrono::Duration::minutes(9)).await;
    let (status, _, _) = invoke(&s.webhook, &event("webhook-token-failure.json")).await;
    assert_eq!(status, StatusCode::OK);
    let session = s
        .store
        .session(&BindingRef::parse(EVENT_REF).unwrap())
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(
        matches!(session.state, SessionState::Failed { ref reason, .. } if reason == "3DS_ABANDONED"),
        "{session:?}"
    );
    // The customer retries on the same page and succeeds: the card binds.
    let (status, _, _) = invoke(&s.webhook, &event("webhook-token-success.json")).await;
    assert_eq!(status, StatusCode::OK);
    wait_for_session_state(
        s.store.as_ref(),
        &BindingRef::parse(EVENT_REF).unwrap(),
        "bound",
    )
    .await;
}

#[tokio::test]
async fn forged_foreign_and_stale_webhooks_are_refused_and_store_nothing() {
    let s = stack(Backend::Memory, vec![]).await;
    let session = seed_event_session(&s, chrono::Duration::minutes(9)).await;
    let before = snapshot(&s);
    let custom = |r: &str, c: &str, p: &str| {
        serde_json::to_string(&CustomId {
            reference: BindingRef::parse(r).unwrap(),
            customer: CustomerId::parse(c).unwrap(),
            plan: PlanId::parse(p).unwrap(),
        })
        .unwrap()
    };
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "unknown session",
            Box::new(move |b| {
                b["customId"] = custom("Ref0000000000000000999", "cust-1001", "premium").into()
            }),
        ),
        (
            "customer mismatch",
            Box::new(move |b| b["customId"] = custom(EVENT_REF, "cust-2002", "premium").into()),
        ),
        (
            "plan mismatch",
            Box::new(move |b| b["customId"] = custom(EVENT_REF, "cust-1001", "yearly").into()),
        ),
        (
            "customId not ours",
            Box::new(|b| b["customId"] = "M001".into()),
        ),
        (
            "customId missing",
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("customId");
            }),
        ),
        (
            "id of another page",
            Box::new(|b| b["id"] = "2HhngP9sVb3mK1xYdQe7Wc0RtUj".into()),
        ),
        (
            "matching transactionId but wrong id",
            Box::new(|b| {
                b["id"] = "X".into();
                b["transactionId"] = EVENT_CHECKOUT.into();
            }),
        ),
        (
            "foreign merchant",
            Box::new(|b| b["merchantId"] = "other".into()),
        ),
        (
            "success without token",
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("token");
            }),
        ),
    ];
    for (name, mutate) in cases {
        let mut body = success_body();
        mutate(&mut body);
        let (status, _, text) = invoke(&s.webhook, &webhook_event(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(
            text, r#"{"error":"rejected","requestId":null}"#,
            "{name}: no detail in the body"
        );
        assert_eq!(snapshot(&s), before, "{name} changed the store");
    }
    // Expired: the same valid body after the session (and its grace) ran out.
    let mut stale = session.clone();
    stale.expires_at = Utc::now() - oen_pay::binding::WEBHOOK_GRACE - chrono::Duration::seconds(1);
    s.store
        .commit(vec![Put::new(stale, Expect::Version(1))])
        .await
        .unwrap();
    let before = snapshot(&s);
    let (status, _, _) = invoke(&s.webhook, &event("webhook-token-success.json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "expired session");
    assert_eq!(snapshot(&s), before);
    assert!(s.events.all().is_empty());
}

#[tokio::test]
async fn bad_transport_is_refused_before_any_work() {
    let s = stack(Backend::Memory, vec![]).await;
    seed_event_session(&s, chrono::Duration::minutes(9)).await;
    let before = snapshot(&s);
    let mut wrong_key = event("webhook-token-success.json");
    wrong_key["rawPath"] = "/oen/webhook/guessed-key-000000000000".into();
    wrong_key["requestContext"]["http"]["path"] = "/oen/webhook/guessed-key-000000000000".into();
    assert_eq!(
        invoke(&s.webhook, &wrong_key).await.0,
        StatusCode::NOT_FOUND
    );
    let mut malformed = event("webhook-token-success.json");
    malformed["body"] = "{\"purpose\":\"token\",".into();
    assert_eq!(
        invoke(&s.webhook, &malformed).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut huge = success_body();
    huge["note"] = "x".repeat(70 * 1024).into();
    assert_eq!(
        invoke(&s.webhook, &webhook_event(&huge)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let mut charge = success_body();
    charge["purpose"] = "charge".into();
    assert_eq!(
        invoke(&s.webhook, &webhook_event(&charge)).await.0,
        StatusCode::OK,
        "other purposes are acknowledged"
    );
    assert_eq!(snapshot(&s), before);
}

#[tokio::test]
async fn the_source_address_allowlist_applies() {
    let s = stack(
        Backend::Memory,
        Cidr::parse_list("198.51.100.0/24").unwrap(),
    )
    .await;
    seed_event_session(&s, chrono::Duration::minutes(9)).await;
    let before = snapshot(&s);
    assert_eq!(
        invoke(&s.webhook, &event("webhook-token-success.json"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(snapshot(&s), before);
    let mut allowed = event("webhook-token-success.json");
    allowed["requestContext"]["http"]["sourceIp"] = "198.51.100.7".into();
    assert_eq!(invoke(&s.webhook, &allowed).await.0, StatusCode::OK);
}

#[tokio::test]
async fn start_links_that_fail_verification_never_reach_oen() {
    let s = stack(Backend::Memory, vec![]).await;
    // The unknown-plan sample expires in 2100, further ahead than a link may live: a link of
    // that plan minted now shows the plan's refusal.
    let unknown_plan = start_event_for_plan("gold", LINK_LIFE);
    for (name, start, status) in [
        (
            "checkout-start-bad-signature.json",
            event("checkout-start-bad-signature.json"),
            StatusCode::FORBIDDEN,
        ),
        (
            "checkout-start-expired.json",
            event("checkout-start-expired.json"),
            StatusCode::GONE,
        ),
        (
            "unknown plan",
            unknown_plan.clone(),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, headers, body) = invoke(&s.checkout, &start).await;
        assert_eq!(got, status, "{name}");
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(body.contains("This link cannot be used"), "{name}: {body}");
    }
    let (_, _, body) = invoke(&s.checkout, &unknown_plan).await;
    assert!(body.contains("gold"), "the reason names the plan: {body}");
    assert!(snapshot(&s).is_empty(), "a refused link created a session");
    assert_eq!(s.oen.checkouts(), 0);
    let mut missing = event("checkout-start-valid.json");
    missing["rawQueryString"] = "customer=cust-1001&plan=premium".into();
    assert_eq!(invoke(&s.checkout, &missing).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn oen_failing_to_open_a_page_is_a_502_and_the_session_is_marked_failed() {
    let mut s = stack(Backend::Memory, vec![]).await;
    // Point the Oen client at a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut deps = s.deps.clone();
    deps.oen = Arc::new(dev::local_oen(&url, dev::dev_secrets(dev::DEV_API_TOKEN)).unwrap());
    s.checkout = checkout_router(deps, &s.sim);
    let (status, _, body) = invoke(&s.checkout, &start_event(LINK_LIFE)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("try again"), "{body}");
    let sessions: Vec<_> = snapshot(&s)
        .into_iter()
        .filter_map(|r| match r {
            Record::Session(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(sessions.len(), 1);
    assert!(matches!(sessions[0].state, SessionState::Failed { .. }));
}

#[tokio::test]
async fn rebinding_after_a_hard_decline_resumes_the_subscription_now() {
    let s = stack(Backend::Memory, vec![]).await;
    let (first, _, _) =
        bind_through_the_hosted_page(&s, &start_event(LINK_LIFE), cards::SUCCESS).await;
    wait_for_session_state(s.store.as_ref(), &first, "bound").await;
    let customer = CustomerId::parse("cust-1001").unwrap();
    let plan = PlanId::parse("premium").unwrap();
    let sub = s
        .store
        .subscription(&customer, &plan)
        .await
        .unwrap()
        .unwrap();
    let mut declined = sub.value.clone();
    declined.status = SubscriptionStatus::RequiresPaymentMethod;
    declined.next_action_at = None;
    s.store
        .commit(vec![Put::new(declined, Expect::Version(sub.version))])
        .await
        .unwrap();
    // The merchant mints a new link: the first one was used.
    let new_link = start_event(LINK_LIFE + chrono::Duration::minutes(1));
    let (second, _, _) = bind_through_the_hosted_page(&s, &new_link, cards::SUCCESS).await;
    wait_for_session_state(s.store.as_ref(), &second, "bound").await;
    let resumed = s
        .store
        .subscription(&customer, &plan)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(resumed.status, SubscriptionStatus::Active);
    assert_eq!(resumed.card, second);
    assert_eq!(resumed.id, sub.value.id, "the same subscription resumes");
    assert!(resumed.next_action_at.is_some_and(|t| t <= Utc::now()));
}

/// A store whose next `n` commits (of those writing a record of `kind`, if given) fail as if
/// DynamoDB were unreachable.
struct FlakyStore {
    inner: Arc<MemoryStore>,
    failures: std::sync::atomic::AtomicUsize,
    kind: Option<&'static str>,
}

#[oen_pay::async_trait::async_trait]
impl Store for FlakyStore {
    async fn get(
        &self,
        key: &oen_pay::store::Key,
    ) -> Result<Option<oen_pay::store::Versioned<Record>>, oen_pay::store::StoreError> {
        self.inner.get(key).await
    }
    async fn commit(&self, puts: Vec<Put>) -> Result<(), oen_pay::store::StoreError> {
        let left = self.failures.load(std::sync::atomic::Ordering::SeqCst);
        let targeted = self
            .kind
            .is_none_or(|kind| puts.iter().any(|p| p.record.kind() == kind));
        if left > 0 && targeted {
            self.failures
                .store(left - 1, std::sync::atomic::Ordering::SeqCst);
            return Err(oen_pay::store::StoreError::Unavailable(
                "injected: DynamoDB unreachable".into(),
            ));
        }
        self.inner.commit(puts).await
    }
    async fn due(
        &self,
        shard: u16,
        now: chrono::DateTime<Utc>,
        limit: usize,
        after: Option<oen_pay::store::DueCursor>,
    ) -> Result<oen_pay::store::DuePage, oen_pay::store::StoreError> {
        self.inner.due(shard, now, limit, after).await
    }
    async fn outbox_pending(
        &self,
        shard: u16,
        until: chrono::DateTime<Utc>,
        limit: usize,
        after: Option<oen_pay::store::DueCursor>,
    ) -> Result<oen_pay::store::OutboxPage, oen_pay::store::StoreError> {
        self.inner.outbox_pending(shard, until, limit, after).await
    }
    async fn cards_of(
        &self,
        customer: &oen_pay::domain::CustomerId,
    ) -> Result<Vec<oen_pay::store::Versioned<oen_pay::store::Card>>, oen_pay::store::StoreError>
    {
        self.inner.cards_of(customer).await
    }
    async fn charges_due(
        &self,
        shard: u16,
        now: chrono::DateTime<Utc>,
        limit: usize,
        after: Option<oen_pay::store::DueCursor>,
    ) -> Result<oen_pay::store::ChargeDuePage, oen_pay::store::StoreError> {
        self.inner.charges_due(shard, now, limit, after).await
    }

    async fn customer_records(
        &self,
        customer: &CustomerId,
    ) -> Result<oen_pay::store::CustomerRecords, oen_pay::store::StoreError> {
        self.inner.customer_records(customer).await
    }
    async fn subscription_by_id(
        &self,
        id: &oen_pay::domain::SubscriptionId,
    ) -> Result<
        Option<oen_pay::store::Versioned<oen_pay::store::Subscription>>,
        oen_pay::store::StoreError,
    > {
        self.inner.subscription_by_id(id).await
    }
    async fn recent_periods(
        &self,
        subscription: &oen_pay::domain::SubscriptionId,
        limit: usize,
    ) -> Result<
        Vec<oen_pay::store::Versioned<oen_pay::store::ChargePeriod>>,
        oen_pay::store::StoreError,
    > {
        self.inner.recent_periods(subscription, limit).await
    }

    // Renewal notices.
    async fn renewals_due(
        &self,
        shard: u16,
        until: chrono::DateTime<Utc>,
        limit: usize,
        after: Option<oen_pay::store::DueCursor>,
    ) -> Result<oen_pay::store::DuePage, oen_pay::store::StoreError> {
        self.inner.renewals_due(shard, until, limit, after).await
    }
}

#[tokio::test]
async fn a_store_failure_is_a_5xx_with_nothing_half_written_and_oens_retry_succeeds() {
    let mut s = stack(Backend::Memory, vec![]).await;
    seed_event_session(&s, chrono::Duration::minutes(9)).await;
    let before = snapshot(&s);
    let flaky = Arc::new(FlakyStore {
        inner: s.memory.clone().unwrap(),
        failures: 1.into(),
        kind: None,
    });
    let mut deps = s.deps.clone();
    deps.store = flaky.clone();
    s.webhook = webhook::router(Arc::new(webhook::App {
        deps,
        secrets: dev::dev_secrets(dev::DEV_API_TOKEN),
        allowed_ips: vec![],
    }));
    let (status, _, body) = invoke(&s.webhook, &event("webhook-token-success.json")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["requestId"], "OPOfCrUQAMhJXMF=",
        "the 5xx names the request id"
    );
    assert_eq!(snapshot(&s), before, "nothing half-written");
    // Oen's next attempt goes through.
    let (status, _, _) = invoke(&s.webhook, &event("webhook-token-success.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        snapshot(&s)
            .iter()
            .filter(|r| matches!(r, Record::Card(_)))
            .count(),
        1
    );
}

/// How many records of `kind` the stack's store holds (a scan of the table on moto).
async fn stored(s: &Stack, kind: &str) -> usize {
    match &s.table {
        Some(table) => harness::scan_all(&harness::dynamo_client().await, table)
            .await
            .iter()
            .filter(|item| {
                item.get("kind")
                    .and_then(|k| k.as_s().ok())
                    .map(String::as_str)
                    == Some(kind)
            })
            .count(),
        None => snapshot(s).iter().filter(|r| r.kind() == kind).count(),
    }
}

/// The session that the link of `start` (an event of [`start_event`]) opened.
async fn claimed_session(s: &Stack, start: &serde_json::Value) -> Versioned<BindingSession> {
    let link = links::verify(
        start["rawQueryString"].as_str().unwrap(),
        dev::DEV_LINK_SIGNING_KEY.as_bytes(),
        &dev::dev_plans(),
        Utc::now(),
        DEFAULT_LINK_MAX_TTL,
    )
    .unwrap();
    let claim = s.store.link_claim(&link.id).await.unwrap().unwrap().value;
    s.store.session(&claim.binding).await.unwrap().unwrap()
}

fn location(headers: &HeaderMap) -> String {
    headers["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_link_that_lives_longer_than_link_max_ttl_is_refused_before_oen() {
    let s = stack(Backend::Memory, vec![]).await;
    let too_long = DEFAULT_LINK_MAX_TTL + chrono::Duration::minutes(1);
    for (name, start) in [
        (
            "the sample link, expiring in 2100",
            event("checkout-start-valid.json"),
        ),
        ("a link a minute too long", start_event(too_long)),
    ] {
        let (status, headers, body) = invoke(&s.checkout, &start).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(
            body.contains("lives too long") && body.contains("86400 seconds"),
            "{name}: {body}"
        );
    }
    assert_eq!(s.oen.checkouts(), 0, "Oen was called");
    assert!(snapshot(&s).is_empty(), "a refused link wrote to the store");
    let longest = DEFAULT_LINK_MAX_TTL - chrono::Duration::minutes(1);
    assert_eq!(
        invoke(&s.checkout, &start_event(longest)).await.0,
        StatusCode::FOUND
    );
}

async fn a_replayed_link_shows_the_same_page_and_oen_opens_one(backend: Backend) {
    let s = stack(backend, vec![]).await;
    let start = start_event(LINK_LIFE);
    let (status, headers, _) = invoke(&s.checkout, &start).await;
    assert_eq!(status, StatusCode::FOUND);
    let page = location(&headers);
    for _ in 0..2 {
        let (status, headers, _) = invoke(&s.checkout, &start).await;
        assert_eq!(status, StatusCode::FOUND);
        assert_eq!(location(&headers), page, "a replay opened another page");
        assert_eq!(headers["cache-control"], "no-store");
    }
    assert_eq!(s.oen.checkouts(), 1);
    assert_eq!(stored(&s, "session").await, 1);
    assert_eq!(stored(&s, "link").await, 1);
    // The same page, still open at Oen.
    let form = reqwest::get(&page).await.unwrap();
    assert_eq!(form.status(), 200);
}

async fn a_replay_after_binding_is_a_409_and_calls_no_one(backend: Backend) {
    let s = stack(backend, vec![]).await;
    let start = start_event(LINK_LIFE);
    let (reference, _, _) = bind_through_the_hosted_page(&s, &start, cards::SUCCESS).await;
    let bound = wait_for_session_state(s.store.as_ref(), &reference, "bound").await;
    let (status, headers, body) = invoke(&s.checkout, &start).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.contains("already used to bind a card"), "{body}");
    assert!(body.contains(START_REQUEST_ID), "{body}");
    assert_eq!(s.oen.checkouts(), 1);
    assert_eq!(stored(&s, "session").await, 1);
    let session = s.store.session(&reference).await.unwrap().unwrap().value;
    assert_eq!(session, bound, "the replay changed the session");
}

#[tokio::test]
async fn a_replay_after_the_binding_failed_or_its_page_expired_is_a_409() {
    let s = stack(Backend::Memory, vec![]).await;
    let failed_link = start_event(LINK_LIFE);
    let (reference, _, _) =
        bind_through_the_hosted_page(&s, &failed_link, cards::ABANDONED_3DS).await;
    wait_for_session_state(s.store.as_ref(), &reference, "failed").await;
    let (status, _, body) = invoke(&s.checkout, &failed_link).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("failed; go back to the shop"), "{body}");

    let expiring_link = start_event(LINK_LIFE + chrono::Duration::minutes(1));
    assert_eq!(
        invoke(&s.checkout, &expiring_link).await.0,
        StatusCode::FOUND
    );
    let opened = claimed_session(&s, &expiring_link).await;
    let mut expired = opened.value.clone();
    expired.expires_at = Utc::now() - chrono::Duration::seconds(1);
    s.store
        .commit(vec![Put::new(expired, Expect::Version(opened.version))])
        .await
        .unwrap();
    let (status, _, body) = invoke(&s.checkout, &expiring_link).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("has expired"), "{body}");
    assert_eq!(s.oen.checkouts(), 2, "one page per link");
}

/// A free-for-all race, on the in-memory store only: moto's PutItem reads, checks and writes
/// without a lock, and under a burst of concurrent requests two put-if-absent writes of one item
/// can both succeed there, which DynamoDB rules out. On moto the race is lined up instead (the
/// next test), so that each conditional write meets an item already written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_uses_of_one_link_call_oen_once() {
    let s = stack(Backend::Memory, vec![]).await;
    let start = start_event(LINK_LIFE);
    let uses = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(uses));
    let tasks: Vec<_> = (0..uses)
        .map(|_| {
            let (router, start, barrier) = (s.checkout.clone(), start.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                invoke(&router, &start).await
            })
        })
        .collect();
    let mut pages = std::collections::BTreeSet::new();
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, headers, body) = t.await.unwrap();
        statuses.push(status.as_u16());
        match status {
            StatusCode::FOUND => {
                pages.insert(location(&headers));
            }
            // The claim was taken while its page was being asked for.
            StatusCode::CONFLICT => assert!(body.contains("reload this page"), "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(
        s.oen.checkouts(),
        1,
        "Oen was asked for more than one page: {statuses:?}"
    );
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(stored(&s, "session").await, 1);
    assert_eq!(stored(&s, "link").await, 1);
    // Once the page is open, every use of the link shows it.
    let (status, headers, _) = invoke(&s.checkout, &start).await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(pages.contains(&location(&headers)));
}

/// Uses of a link that arrive, all at once, while its first use is asking Oen for the page.
async fn a_link_used_while_its_page_is_being_asked_for_gets_a_409_then_the_page(backend: Backend) {
    let s = stack(backend, vec![]).await;
    let start = start_event(LINK_LIFE);
    s.oen.hold();
    let used = |s: &Stack| {
        let (router, start) = (s.checkout.clone(), start.clone());
        tokio::spawn(async move { invoke(&router, &start).await })
    };
    let first = used(&s);
    s.oen.wait_for_checkouts(1).await;
    let replays: Vec<_> = (0..4).map(|_| used(&s)).collect();
    for replay in replays {
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), replay)
            .await
            .expect("a replay waited for Oen")
            .unwrap();
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            body.contains("opening the card page in another window"),
            "{body}"
        );
    }
    assert_eq!(stored(&s, "session").await, 1);
    assert_eq!(stored(&s, "link").await, 1);
    s.oen.release();
    let (status, headers, _) = first.await.unwrap();
    assert_eq!(status, StatusCode::FOUND);
    let (status, again, _) = invoke(&s.checkout, &start).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location(&again), location(&headers));
    assert_eq!(s.oen.checkouts(), 1);
}

#[tokio::test]
async fn a_store_failure_is_a_5xx_with_the_request_id_and_the_link_still_opens_one_page() {
    // Claiming the link fails (nothing is written), or storing its session fails (the claim
    // stands alone, and the link's next use stores the session).
    for (failing, left_behind) in [("link", vec![]), ("session", vec!["link"])] {
        let mut s = stack(Backend::Memory, vec![]).await;
        let mut deps = s.deps.clone();
        deps.store = Arc::new(FlakyStore {
            inner: s.memory.clone().unwrap(),
            failures: 1.into(),
            kind: Some(failing),
        });
        s.checkout = checkout_router(deps, &s.sim);
        let start = start_event(LINK_LIFE);
        let (status, _, body) = invoke(&s.checkout, &start).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{failing}");
        assert!(
            body.contains(START_REQUEST_ID),
            "{failing}: no request id: {body}"
        );
        let kinds: Vec<_> = snapshot(&s).iter().map(|r| r.kind()).collect();
        assert_eq!(kinds, left_behind, "{failing}");
        assert_eq!(s.oen.checkouts(), 0, "{failing}");
        let (status, headers, _) = invoke(&s.checkout, &start).await;
        assert_eq!(status, StatusCode::FOUND, "{failing}: the link is lost");
        let (status, again, _) = invoke(&s.checkout, &start).await;
        assert_eq!(status, StatusCode::FOUND, "{failing}");
        assert_eq!(location(&again), location(&headers), "{failing}");
        assert_eq!(s.oen.checkouts(), 1, "{failing}");
        assert_eq!(stored(&s, "session").await, 1, "{failing}");
    }
}

/// An `in_memory` and an `on_moto` test of each scenario, in a module named after it.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn in_memory() {
                super::$scenario(super::Backend::Memory).await;
            }

            #[tokio::test]
            async fn on_moto() {
                super::$scenario(super::Backend::Moto).await;
            }
        }
    )*};
}

on_both_backends!(
    a_replayed_link_shows_the_same_page_and_oen_opens_one,
    a_replay_after_binding_is_a_409_and_calls_no_one,
    a_link_used_while_its_page_is_being_asked_for_gets_a_409_then_the_page,
);

// E-invoicing (`EINVOICE`): the start link's email, name and invoiceInfo.

fn start_event_with_payer(payer: links::LinkPayer) -> serde_json::Value {
    let link = links::mint_with(
        "https://pay.example.com/checkout/start",
        dev::DEV_LINK_SIGNING_KEY.as_bytes(),
        &CustomerId::parse("cust-1001").unwrap(),
        &PlanId::parse("premium").unwrap(),
        Utc::now() + LINK_LIFE,
        payer,
    );
    let mut e = event("checkout-start-valid.json");
    e["rawQueryString"] = link.split_once('?').unwrap().1.into();
    e
}

#[tokio::test]
async fn an_einvoice_shop_refuses_a_link_without_a_valid_email_before_oen() {
    let mut s = stack(Backend::Memory, vec![]).await;
    s.checkout = checkout_router_for(s.deps.clone(), &s.sim, true);
    let no_email = start_event_with_payer(links::LinkPayer {
        name: Some("Mei"),
        ..Default::default()
    });
    let (status, _, body) = invoke(&s.checkout, &no_email).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("email is missing: this shop issues e-invoices"),
        "{body}"
    );
    let malformed = start_event_with_payer(links::LinkPayer {
        email: Some("mei@example"),
        ..Default::default()
    });
    let (status, _, body) = invoke(&s.checkout, &malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("email is not an e-mail address: the domain after @ has no dot"),
        "{body}"
    );
    assert!(
        !body.contains("mei@example"),
        "the page repeats the address"
    );
    assert_eq!(s.oen.checkouts(), 0, "Oen was never asked for a page");
    assert!(snapshot(&s).is_empty(), "a refused link created a session");
    // Without EINVOICE the same link without email opens a page as before.
    s.checkout = checkout_router_for(s.deps.clone(), &s.sim, false);
    assert_eq!(invoke(&s.checkout, &no_email).await.0, StatusCode::FOUND);
    assert_eq!(s.oen.checkouts(), 1);
}

#[tokio::test]
async fn an_einvoice_links_payer_is_kept_with_the_card_and_the_subscription_on_moto() {
    let logs = oen_pay_integration::logs::capture();
    let mut s = stack(Backend::Moto, vec![]).await;
    s.checkout = checkout_router_for(s.deps.clone(), &s.sim, true);
    let start = start_event_with_payer(links::LinkPayer {
        email: Some("mei@example.com"),
        name: Some("林美"),
        invoice: Some(r#"{"carrierType":"3J0002","carrierId":"/MEI+123"}"#),
    });
    let (reference, _, _) = bind_through_the_hosted_page(&s, &start, cards::SUCCESS).await;
    let session = wait_for_session_state(s.store.as_ref(), &reference, "bound").await;
    let customer = CustomerId::parse("cust-1001").unwrap();
    let sub = s
        .store
        .subscription(&customer, &PlanId::parse("premium").unwrap())
        .await
        .unwrap()
        .unwrap()
        .value;
    let card = s.store.card(&customer, &reference).await.unwrap().unwrap();
    for payer in [&session.payer, &sub.payer, &card.value.payer] {
        assert_eq!(
            payer.email.as_ref().map(|e| e.as_str()),
            Some("mei@example.com")
        );
        assert_eq!(payer.name.as_ref().map(|n| n.as_str()), Some("林美"));
        assert_eq!(
            payer.invoice_info.as_ref().map(|i| i.to_json()),
            Some(serde_json::json!({"carrierType": "3J0002", "carrierId": "/MEI+123"}))
        );
    }
    // Personal data stays out of the logs at info level and above.
    let logged = logs.text();
    assert!(!logged.contains("mei@example.com"), "{logged}");
    assert!(!logged.contains("/MEI+123"), "{logged}");
}
