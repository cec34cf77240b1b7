//! AWS SDK clients built on their first use.
//!
//! Constructing a service client is not free: each one assembles its runtime plugins and its
//! endpoint resolver, which parses the service's copy of the AWS partitions table. Measured with
//! `tools/coldstart`, building every client at init was most of what a function's cold start
//! spent beyond a hello-world's, and many containers never call some of their clients (a
//! charger container that only plans never decrypts a token). A [`LazyClient`] holds the SDK
//! configuration and builds its client the first time it is used, once per process.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;

/// A service client, built from the SDK configuration the first time it is dereferenced.
pub struct LazyClient<C> {
    inner: Arc<Inner<C>>,
}

/// Builds a client from the SDK configuration (`aws_sdk_dynamodb::Client::new` and the like).
type Build<C> = fn(&SdkConfig) -> C;

struct Inner<C> {
    client: OnceLock<C>,
    /// How to build it; `None` when it was handed over already built.
    source: Option<(SdkConfig, Build<C>)>,
}

impl<C> LazyClient<C> {
    /// A client that `build` makes from `config` when it is first used.
    pub fn on_first_use(config: &SdkConfig, build: Build<C>) -> Self {
        Self {
            inner: Arc::new(Inner {
                client: OnceLock::new(),
                source: Some((config.clone(), build)),
            }),
        }
    }

    /// Whether the client has been built yet.
    pub fn is_built(&self) -> bool {
        self.inner.client.get().is_some()
    }
}

impl<C> From<C> for LazyClient<C> {
    /// A client built already (tests build theirs).
    fn from(client: C) -> Self {
        Self {
            inner: Arc::new(Inner {
                client: OnceLock::from(client),
                source: None,
            }),
        }
    }
}

impl<C> Deref for LazyClient<C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.inner.client.get_or_init(|| {
            let (config, build) = self
                .inner
                .source
                .as_ref()
                .expect("a LazyClient without a source is built at construction");
            build(config)
        })
    }
}

impl<C> Clone for LazyClient<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.is_built())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static BUILT: AtomicUsize = AtomicUsize::new(0);

    struct Counted;

    fn build(_: &SdkConfig) -> Counted {
        BUILT.fetch_add(1, Ordering::SeqCst);
        Counted
    }

    #[test]
    fn the_client_is_built_on_first_use_and_once_for_every_clone() {
        let config = SdkConfig::builder().build();
        let lazy = LazyClient::on_first_use(&config, build);
        let clone = lazy.clone();
        assert!(!lazy.is_built());
        assert_eq!(BUILT.load(Ordering::SeqCst), 0);
        let _: &Counted = &clone;
        let _: &Counted = &lazy;
        assert!(lazy.is_built() && clone.is_built());
        assert_eq!(BUILT.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_client_handed_over_is_used_as_it_is() {
        let lazy = LazyClient::from(7_u32);
        assert!(lazy.is_built());
        assert_eq!(*lazy, 7);
    }
}
