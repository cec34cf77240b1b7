//! A request's connection as handlers see it: the peer's address (for the production
//! allowlist) and a plug that closes the connection without an answer. The server puts both
//! into every request's extensions.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// The client's address, inserted into every request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

/// Closes the request's connection without a response.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionKill(Arc<Notify>);

impl ConnectionKill {
    pub(crate) fn kill(&self) {
        self.0.notify_one();
    }

    /// Completes once [`ConnectionKill::kill`] has been called, even if that was before.
    pub(crate) async fn killed(&self) {
        self.0.notified().await;
    }
}
