//! CPU time per request of the webhook handler, with in-memory adapters.
//!
//! `cargo bench -p webhook` sends N distinct, valid token webhooks through `webhook::router`
//! (each for its own pending binding session, so every request does the whole bind: parse,
//! match, encrypt, a 4-record commit, an event), then the same N again (duplicate deliveries of
//! already-bound sessions). Each request is one `tower::ServiceExt::oneshot` on a current-thread
//! runtime, so all of its work happens on this thread; the figure is the **thread's CPU time**
//! (`CLOCK_THREAD_CPUTIME_ID`) around that call — time spent waiting is not counted, and none is
//! expected since no adapter does I/O. No tracing subscriber is installed, so log formatting is
//! not part of the figure.
//!
//! Environment: `BENCH_N` (default 5000) requests per kind, `BENCH_WARMUP` (default 200).
//! Nothing here asserts on time: the target is printed next to the result.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use oen_pay::binding::CustomId;
use oen_pay::chrono::Utc;
use oen_pay::clock::SystemClock;
use oen_pay::dev;
use oen_pay::domain::{BindingRef, CheckoutId, CustomerId, PlanId};
use oen_pay::events::MemoryEvents;
use oen_pay::store::{BindingSession, Expect, MemoryStore, Put, Record, SessionState, Store};
use oen_pay::vault::LocalVault;
use tower::ServiceExt;

/// The median a first delivery should stay under (printed, never asserted).
const TARGET_MEDIAN_US: f64 = 50.0;

/// Webhook never calls Oen; this address is only there to build the gateway (port 9 is
/// "discard", nothing listens on it here).
const UNUSED_OEN: &str = "http://127.0.0.1:9";

/// The calling thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> u64 {
    cpu_time::ThreadTime::now().as_duration().as_nanos() as u64
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

/// One pre-seeded pending session and the webhook body that binds it.
struct Case {
    body: String,
}

/// Seeds `n` pending sessions (customers `{tag}-{i}`) and returns their webhook bodies. `tag` is
/// four letters, so that checkout ids are 27 alphanumerics like Oen's.
async fn seed(store: &MemoryStore, tag: &str, n: usize) -> Vec<Case> {
    let now = Utc::now();
    let plan = PlanId::parse("premium").expect("premium is a dev plan");
    let mut cases = Vec::with_capacity(n);
    for i in 0..n {
        let reference = BindingRef::generate();
        let customer = CustomerId::parse(&format!("{tag}-{i}")).expect("valid customer id");
        let checkout = format!("{tag}{i:023}");
        let token = format!("Tok{i:024}");
        let session = BindingSession {
            reference: reference.clone(),
            customer: customer.clone(),
            plan: plan.clone(),
            created_at: now,
            expires_at: now + oen_pay::binding::SESSION_LIFETIME,
            checkout_id: Some(CheckoutId::parse(&checkout).expect("valid checkout id")),
            state: SessionState::Pending,
            terms: None,
            payer: Default::default(),
        };
        store
            .commit(vec![Put::new(session, Expect::Absent)])
            .await
            .expect("seeding a session into an empty store");
        let custom_id = serde_json::to_string(&CustomId {
            reference,
            customer,
            plan: plan.clone(),
        })
        .expect("a custom id serialises");
        let body = serde_json::json!({
            "purpose": "token",
            "merchantId": dev::DEV_MERCHANT_ID,
            "id": checkout,
            "transactionId": checkout,
            "success": true,
            "token": token,
            "paymentInfo": "4242",
            "customId": custom_id,
            "message": "",
        })
        .to_string();
        cases.push(Case { body });
    }
    cases
}

fn request(body: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(format!("/oen/webhook/{}", dev::DEV_WEBHOOK_PATH_KEY))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("a valid request")
}

/// CPU and wall nanoseconds of each request.
struct Samples {
    cpu: Vec<u64>,
    wall: Vec<u64>,
}

/// Sends every case once and measures each call. A non-200 answer aborts the benchmark: the
/// figures would not be of the path we mean to measure.
fn run(rt: &tokio::runtime::Runtime, router: &Router, cases: &[Case], what: &str) -> Samples {
    let mut samples = Samples {
        cpu: Vec::with_capacity(cases.len()),
        wall: Vec::with_capacity(cases.len()),
    };
    for (i, case) in cases.iter().enumerate() {
        // Building the request and cloning the router are the caller's work, not the handler's.
        let req = request(&case.body);
        let svc = router.clone();
        let wall = Instant::now();
        let cpu = thread_cpu_ns();
        let response = rt.block_on(svc.oneshot(req));
        let cpu = thread_cpu_ns() - cpu;
        let wall = wall.elapsed();
        let response = response.unwrap_or_else(|e| match e {});
        let status = response.status();
        if status != StatusCode::OK {
            let body = rt
                .block_on(response.into_body().collect())
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            panic!("{what} #{i}: expected 200, got {status}: {body}");
        }
        samples.cpu.push(cpu);
        samples.wall.push(wall.as_nanos() as u64);
    }
    samples
}

struct Summary {
    median: f64,
    p90: f64,
    p99: f64,
    mean: f64,
}

fn summarise(ns: &[u64]) -> Summary {
    let mut sorted = ns.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| {
        // Nearest rank.
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64 / 1000.0
    };
    Summary {
        median: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        mean: sorted.iter().sum::<u64>() as f64 / sorted.len() as f64 / 1000.0,
    }
}

fn line(label: &str, n: usize, s: &Summary) {
    println!(
        "  {label:<34} n={n:<6} median {:>7.1} µs   p90 {:>7.1} µs   p99 {:>7.1} µs   mean {:>7.1} µs",
        s.median, s.p90, s.p99, s.mean
    );
}

/// The cost of the two clock reads themselves, for reading the figures.
fn timer_overhead_ns() -> u64 {
    let mut v: Vec<u64> = (0..1000)
        .map(|_| {
            let t = thread_cpu_ns();
            thread_cpu_ns() - t
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument means "not this benchmark".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"webhook".contains(a.as_str()))
    {
        return;
    }
    let n = env_usize("BENCH_N", 5000).max(1);
    let warmup = env_usize("BENCH_WARMUP", 200);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime");
    let store = Arc::new(MemoryStore::new());
    let events = Arc::new(MemoryEvents::default());
    let secrets = dev::dev_secrets(dev::DEV_API_TOKEN);
    let oen = dev::local_oen(UNUSED_OEN, secrets.clone()).expect("an Oen client");
    let deps = dev::binding_deps(
        store.clone(),
        Arc::new(LocalVault::random()),
        Arc::new(oen),
        events.clone(),
        Arc::new(SystemClock),
    );
    let router = webhook::router(Arc::new(webhook::App {
        deps,
        secrets,
        allowed_ips: vec![],
    }));

    let warm = rt.block_on(seed(&store, "WARM", warmup));
    let cases = rt.block_on(seed(&store, "BNCH", n));

    // Warm-up: the secret cache's first load, allocator growth, lazy statics.
    run(&rt, &router, &warm, "warm-up");
    let first = run(&rt, &router, &cases, "first delivery");
    let duplicate = run(&rt, &router, &cases, "duplicate delivery");

    // Sanity, not timing: every first delivery stored exactly one card.
    let cards = store
        .snapshot()
        .iter()
        .filter(|r| matches!(r.value, Record::Card(_)))
        .count();
    assert_eq!(cards, warmup + n, "every first delivery stores one card");
    assert_eq!(
        events.all().len(),
        warmup + 2 * n,
        "one card.bound event per delivery (duplicates publish again)"
    );

    let overhead = timer_overhead_ns();
    let first_cpu = summarise(&first.cpu);
    println!();
    println!("webhook handler — POST /oen/webhook/{{key}} through webhook::router, tower oneshot,");
    println!(
        "current-thread tokio runtime, in-memory adapters (MemoryStore, LocalVault AES-256-GCM,"
    );
    println!("MemoryEvents), no tracing subscriber. {warmup} warm-up requests not counted.");
    println!();
    println!("CPU time per request (this thread's CPU clock, CLOCK_THREAD_CPUTIME_ID):");
    line("first delivery (full bind)", first.cpu.len(), &first_cpu);
    line(
        "duplicate delivery (already bound)",
        duplicate.cpu.len(),
        &summarise(&duplicate.cpu),
    );
    println!("Wall time per request, for comparison:");
    line("first delivery (full bind)", n, &summarise(&first.wall));
    line(
        "duplicate delivery (already bound)",
        n,
        &summarise(&duplicate.wall),
    );
    println!(
        "Timer overhead (two CPU-clock reads, median): {:.2} µs, included above.",
        overhead as f64 / 1000.0
    );
    println!();
    let verdict = if first_cpu.median <= TARGET_MEDIAN_US {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "Target: ≤ {TARGET_MEDIAN_US:.0} µs median CPU per first delivery — {verdict} ({:.1} µs).",
        first_cpu.median
    );
}
