//! A fake Lambda Runtime API on loopback, for one cold start: it hands out one invocation on the
//! first `GET /runtime/invocation/next`, reports what the function does through a channel, and
//! holds every later `next` open until it is shut down (as Lambda does while the sandbox is idle).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const PREFIX: &str = "/2018-06-01/runtime";

/// The one invocation a run serves.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub function_arn: String,
    /// How long the function has: the deadline header is now plus this, when `next` is asked.
    pub timeout: Duration,
    pub event: Vec<u8>,
}

/// What the function did, as the fake Runtime API saw it.
#[derive(Debug)]
pub enum Seen {
    /// The first `GET .../invocation/next` (the end of init), when its request arrived.
    Next(Instant),
    /// `POST .../invocation/{id}/response`.
    Response { at: Instant, body: Vec<u8> },
    /// `POST .../invocation/{id}/error`.
    Error { at: Instant, body: Vec<u8> },
    /// `POST .../init/error`.
    InitError { body: Vec<u8> },
}

struct Shared {
    invocation: Mutex<Option<Invocation>>,
    seen: mpsc::UnboundedSender<Seen>,
    shutdown: watch::Receiver<bool>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    /// Listens on a free loopback port, ready to hand out `invocation` once.
    pub async fn start(invocation: Invocation) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            invocation: Mutex::new(Some(invocation)),
            seen: seen_tx,
            shutdown: shutdown_rx,
        });
        let app = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(shared);
        let mut stop = shutdown.subscribe();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
        Ok(Self {
            addr,
            seen,
            shutdown,
            server,
        })
    }

    /// Releases the held `next` requests and stops serving.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let mut server = self.server;
        // The function is gone by now; a connection that lingers must not hold up the next run.
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
}

fn epoch_ms(after: Duration) -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(after)
        .as_millis()
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let at = Instant::now();
    let invocation = shared
        .invocation
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let Some(invocation) = invocation else {
        // Idle: no more invocations until the run ends.
        let mut shutdown = shared.shutdown.clone();
        let _ = shutdown.wait_for(|s| *s).await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let _ = shared.seen.send(Seen::Next(at));
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("content-type", "application/json".into());
    put("lambda-runtime-aws-request-id", invocation.request_id);
    put(
        "lambda-runtime-deadline-ms",
        epoch_ms(invocation.timeout).to_string(),
    );
    put(
        "lambda-runtime-invoked-function-arn",
        invocation.function_arn,
    );
    put(
        "lambda-runtime-trace-id",
        "Root=1-65f0a1b2-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0".into(),
    );
    (StatusCode::OK, headers, invocation.event).into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(_id): Path<String>,
    body: Bytes,
) -> Response {
    let _ = shared.seen.send(Seen::Response {
        at: Instant::now(),
        body: body.to_vec(),
    });
    accepted()
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(_id): Path<String>,
    body: Bytes,
) -> Response {
    let _ = shared.seen.send(Seen::Error {
        at: Instant::now(),
        body: body.to_vec(),
    });
    accepted()
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let _ = shared.seen.send(Seen::InitError {
        body: body.to_vec(),
    });
    accepted()
}
