//! Helpers shared by the simulator's integration tests: a simulator on a random loopback
//! port, a tiny webhook receiver, and request helpers.
#![allow(dead_code)]

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use oen_sim::{SimConfig, Simulator};
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TOKEN: &str = "test-api-token";
pub const MERCHANT: &str = "ming";
/// Generous: polling normally ends within milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub async fn start_sim(webhook_url: Option<String>) -> Simulator {
    start_sim_with(|_| {}, webhook_url).await
}

/// A simulator whose clock only moves when a test moves it.
pub async fn start_frozen_sim() -> Simulator {
    let sim = start_sim(None).await;
    sim.freeze_clock(true);
    sim
}

pub async fn start_sim_with(
    tweak: impl FnOnce(&mut SimConfig),
    webhook_url: Option<String>,
) -> Simulator {
    let mut config = SimConfig {
        merchant_id: MERCHANT.into(),
        api_token: TOKEN.into(),
        webhook_url,
        ..Default::default()
    };
    // Retries keep Oen's spacing (about 0, +2, +4 s): a receiver answers long before the first
    // retry is due, so a test sees one attempt unless it asks for more. Tests of the retries
    // drive the simulator clock.
    config.knobs.webhook_timeout_ms = 2_000;
    config.knobs.gateway_timeout_delay_ms = 10;
    tweak(&mut config);
    Simulator::start(config).await.unwrap()
}

thread_local! {
    // Each test runs on its own thread with its own runtime, so one client per thread never
    // crosses runtimes; building a client per request would dominate the test time.
    static CLIENT: reqwest::Client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
}

/// An HTTP client that never follows redirects.
pub fn client() -> reqwest::Client {
    CLIENT.with(Clone::clone)
}

/// A response: HTTP status, content type, raw body and (when it parses) JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }
    pub fn data(&self) -> &Value {
        &self.json["data"]
    }
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let location = header("location");
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        content_type,
        location,
        text,
        json,
    }
}

pub async fn post_raw(sim: &Simulator, path: &str, token: &str, body: Vec<u8>) -> Reply {
    let resp = client()
        .post(format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    reply(resp).await
}

pub async fn post_json(sim: &Simulator, path: &str, body: &Value) -> Reply {
    post_raw(sim, path, TOKEN, serde_json::to_vec(body).unwrap()).await
}

/// Like [`post_json`], but a connection closed without an answer is an `Err`, not a panic.
pub async fn try_post_json(
    sim: &Simulator,
    path: &str,
    body: &Value,
) -> Result<Reply, reqwest::Error> {
    let resp = client()
        .post(format!("{}{path}", sim.base_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await?;
    Ok(reply(resp).await)
}

pub async fn get(sim: &Simulator, path: &str) -> Reply {
    let resp = client()
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    reply(resp).await
}

pub fn charge_body(token: &str, order_id: &str, amount: i64) -> Value {
    json!({
        "merchantId": MERCHANT,
        "amount": amount,
        "token": token,
        "orderId": order_id,
        "productDetails": [{
            "productionCode": "PLAN-M",
            "description": "Monthly plan",
            "quantity": 1,
            "unit": "month",
            "unitPrice": amount
        }]
    })
}

pub async fn charge(sim: &Simulator, token: &str, order_id: &str, amount: i64) -> Reply {
    post_json(
        sim,
        "/token/transactions",
        &charge_body(token, order_id, amount),
    )
    .await
}

/// Charges successfully; returns the `P…` transaction number.
pub async fn charged(sim: &Simulator, token: &str, order_id: &str, amount: i64) -> String {
    let r = charge(sim, token, order_id, amount).await;
    assert_eq!(r.code(), "S0000", "{}", r.text);
    r.data()["id"].as_str().unwrap().to_string()
}

/// A simulator with one paid transaction per amount (orders `o1`, `o2`, ...); returns it and
/// the transaction numbers.
pub async fn start_sim_with_paid(amounts: &[i64]) -> (Simulator, Vec<String>) {
    let sim = start_sim(None).await;
    let token = sim.create_token(oen_sim::cards::SUCCESS);
    let mut numbers = Vec::new();
    for (i, amount) in amounts.iter().enumerate() {
        numbers.push(charged(&sim, &token, &format!("o{}", i + 1), *amount).await);
    }
    (sim, numbers)
}

/// The body of `POST /refunds/{id}`: a full refund without `amount`.
pub fn refund_body(amount: Option<i64>) -> Value {
    match amount {
        Some(amount) => json!({"merchantId": MERCHANT, "amount": amount}),
        None => json!({"merchantId": MERCHANT}),
    }
}

pub async fn refund(sim: &Simulator, number: &str, amount: Option<i64>) -> Reply {
    post_json(sim, &format!("/refunds/{number}"), &refund_body(amount)).await
}

pub async fn checkout_token(
    sim: &Simulator,
    success: Option<&str>,
    failure: Option<&str>,
    custom_id: &str,
) -> String {
    let r = post_json(
        sim,
        "/checkout-token",
        &json!({
            "merchantId": MERCHANT,
            "successUrl": success,
            "failureUrl": failure,
            "customId": custom_id,
            "payerEmail": "buyer@example.com"
        }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()["id"].as_str().unwrap().to_string()
}

/// Submits the hosted binding form.
pub async fn submit_card(page_url: &str, email: &str, card: &str) -> Reply {
    let body = format!(
        "email={}&cardNumber={}",
        form_encode(email),
        form_encode(card)
    );
    let resp = client()
        .post(page_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    reply(resp).await
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A webhook receiver: records every body it gets and answers with a settable status, or
/// never answers while told to hang.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    hang: Arc<AtomicBool>,
}

impl Receiver {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let hang = Arc::new(AtomicBool::new(false));
        let (rec, st, hg) = (
            Arc::clone(&received),
            Arc::clone(&status),
            Arc::clone(&hang),
        );
        let app = Router::new().route(
            "/webhook",
            post(move |body: axum::body::Bytes| {
                let (rec, st, hg) = (Arc::clone(&rec), Arc::clone(&st), Arc::clone(&hg));
                async move {
                    // Read before the body is recorded: a test that sees the body and stops the
                    // hanging must not release this request.
                    let hang = hg.load(Ordering::SeqCst);
                    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    rec.lock().unwrap().push(value);
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    let code = StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                    (code, [("location", "http://127.0.0.1:9/elsewhere")], "").into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: format!("http://{addr}/webhook"),
            received,
            status,
            hang,
        }
    }

    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// While on, every request that arrives is recorded and never answered.
    pub fn hang(&self, on: bool) {
        self.hang.store(on, Ordering::SeqCst);
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let me = self.clone();
        eventually(&format!("{n} webhook(s) at the receiver"), || {
            let bodies = me.bodies();
            async move { (bodies.len() >= n).then_some(bodies) }
        })
        .await
    }
}
