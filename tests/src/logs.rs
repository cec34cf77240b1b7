//! Captures what the code logs, so tests can prove no secret reaches a log line.
//!
//! One global subscriber per test binary writes every DEBUG-and-above event into one buffer.
//! (A per-test scoped subscriber would miss events: tracing caches each call site's interest
//! process-wide, and a test running without a subscriber can switch a call site off for all.)
//! A test that searches the buffer therefore searches every test's logs, which only makes
//! "no token anywhere" stronger.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything the subscriber printed.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// The buffer of this test binary's logs, installing the subscriber on first use.
pub fn capture() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let sink = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the integration tests");
            tracing::callsite::rebuild_interest_cache();
            captured
        })
        .clone()
}
