//! The HTTP server: router assembly, request logging and an accept loop of our own.
//!
//! `axum::serve` cannot close a connection without answering, which "connection dropped after
//! commit" needs, so each connection is served by hyper directly and a handler can pull its
//! connection's plug through [`ConnectionKill`].

use crate::connection::{ConnectionKill, PeerAddr};
use crate::envelope::{method_not_allowed, not_found};
use crate::model::as_ms;
use crate::state::SharedRef;
use crate::{admin, api, hosted};
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower_service::Service;

pub(crate) fn router(shared: SharedRef) -> Router {
    Router::new()
        .merge(api::routes(shared.clone()))
        .merge(hosted::routes())
        .merge(admin::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(shared)
}

/// One JSON log line per request: method, path, status, latency. Never headers (the
/// Authorization header) nor bodies (card tokens).
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = tokio::time::Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        target: "oen_sim::request",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        latency_ms = as_ms(started.elapsed()),
        "request"
    );
    response
}

pub(crate) async fn serve(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE under load: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let router = router.clone();
        connections.spawn(async move {
            let plug = ConnectionKill::default();
            let kill = plug.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req.extensions_mut().insert(kill.clone());
                router.clone().call(req)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                // Dropping the connection future closes the socket, mid-request.
                () = plug.killed() => {}
            }
        });
    }
}
