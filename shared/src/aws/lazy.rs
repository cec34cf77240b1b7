//! The AWS SDK configuration and clients, made on their first use rather than at init.
//!
//! Neither is free: loading the configuration resolves the region, the credentials chain and
//! every other setting from the environment and the profile files, and constructing a service
//! client assembles its runtime plugins and an endpoint resolver that parses the service's copy
//! of the AWS partitions table. Measured with `tools/coldstart`, doing both at init was most of
//! what a function's cold start spent beyond a hello-world's, and many containers never use
//! some of their clients (a charger container that only plans never decrypts a token). The
//! first request that needs a client pays for it, once per process.

use std::fmt;
use std::sync::Arc;

use aws_config::SdkConfig;
use tokio::sync::OnceCell;

/// The SDK configuration, loaded on first use and shared by every client built from it.
#[derive(Clone)]
pub struct AwsConfig {
    config: Arc<OnceCell<SdkConfig>>,
}

impl AwsConfig {
    /// The configuration from the standard variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, …) and
    /// the default credentials chain, with the wiring's HTTPS client; loaded on first use.
    pub fn from_environment() -> Self {
        Self {
            config: Arc::new(OnceCell::new()),
        }
    }

    /// A configuration loaded already (tests point theirs at moto).
    pub fn loaded(config: SdkConfig) -> Self {
        Self {
            config: Arc::new(OnceCell::new_with(Some(config))),
        }
    }

    /// Whether the configuration has been loaded yet.
    pub fn is_loaded(&self) -> bool {
        self.config.initialized()
    }

    pub async fn get(&self) -> &SdkConfig {
        self.config
            .get_or_init(|| async {
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(super::wiring::https_client())
                    .load()
                    .await
            })
            .await
    }
}

impl fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsConfig")
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

/// Builds a client from the SDK configuration (`aws_sdk_dynamodb::Client::new` and the like).
type Build<C> = fn(&SdkConfig) -> C;

/// A service client, built from the [`AwsConfig`] the first time it is used.
pub struct LazyClient<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    client: OnceCell<C>,
    /// How to build it; `None` when it was handed over already built.
    source: Option<(AwsConfig, Build<C>)>,
}

impl<C> LazyClient<C> {
    /// A client that `build` makes from `config` when it is first used.
    pub fn on_first_use(config: &AwsConfig, build: Build<C>) -> Self {
        Self {
            inner: Arc::new(Inner {
                client: OnceCell::new(),
                source: Some((config.clone(), build)),
            }),
        }
    }

    /// Whether the client has been built yet.
    pub fn is_built(&self) -> bool {
        self.inner.client.initialized()
    }

    /// The client, built now if this is its first use.
    pub async fn get(&self) -> &C {
        self.inner
            .client
            .get_or_init(|| async {
                let (config, build) = self
                    .inner
                    .source
                    .as_ref()
                    .expect("a LazyClient without a source is built at construction");
                build(config.get().await)
            })
            .await
    }
}

impl<C> From<C> for LazyClient<C> {
    /// A client built already (tests build theirs).
    fn from(client: C) -> Self {
        Self {
            inner: Arc::new(Inner {
                client: OnceCell::new_with(Some(client)),
                source: None,
            }),
        }
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

    #[tokio::test]
    async fn the_client_is_built_on_first_use_and_once_for_every_clone() {
        let config = AwsConfig::loaded(SdkConfig::builder().build());
        let lazy = LazyClient::on_first_use(&config, build);
        let clone = lazy.clone();
        assert!(!lazy.is_built());
        assert_eq!(BUILT.load(Ordering::SeqCst), 0);
        let (_, _) = tokio::join!(clone.get(), lazy.get());
        assert!(lazy.is_built() && clone.is_built());
        assert_eq!(BUILT.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_configuration_is_loaded_on_first_use() {
        let config = AwsConfig::from_environment();
        let lazy = LazyClient::on_first_use(&config, |_| ());
        assert!(!config.is_loaded() && !lazy.is_built());
        lazy.get().await;
        assert!(config.is_loaded() && lazy.is_built());
    }

    #[tokio::test]
    async fn a_client_handed_over_is_used_as_it_is() {
        let lazy = LazyClient::from(7_u32);
        assert!(lazy.is_built());
        assert_eq!(*lazy.get().await, 7);
    }
}
