//! The Oen API key and the project's own keys, read from Secrets Manager (or the environment
//! for local use) and cached per warm container.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::Mutex;

/// The secret's JSON: `{"apiToken":"…","linkSigningKey":"…","webhookPathKey":"…"}`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OenSecrets {
    /// The Oen API bearer token.
    pub api_token: SecretString,
    /// HMAC key of the merchant's signed start links.
    pub link_signing_key: SecretString,
    /// The unguessable path segment of the webhook URL registered with Oen.
    pub webhook_path_key: SecretString,
}

impl OenSecrets {
    pub fn parse(json: &str) -> Result<Self, SecretError> {
        let s: OenSecrets = serde_json::from_str(json).map_err(|e| {
            // serde's message names the missing field; it never contains the values.
            SecretError::Malformed(format!(
                "expected a JSON object with apiToken, linkSigningKey and webhookPathKey ({})",
                redact_serde(&e)
            ))
        })?;
        for (name, value) in [
            ("apiToken", &s.api_token),
            ("linkSigningKey", &s.link_signing_key),
            ("webhookPathKey", &s.webhook_path_key),
        ] {
            if value.expose_secret().trim().is_empty() {
                return Err(SecretError::Malformed(format!("{name} is empty")));
            }
        }
        if s.link_signing_key.expose_secret().len() < 32 {
            return Err(SecretError::Malformed(
                "linkSigningKey must be at least 32 characters".into(),
            ));
        }
        if s.webhook_path_key.expose_secret().len() < 16 {
            return Err(SecretError::Malformed(
                "webhookPathKey must be at least 16 characters".into(),
            ));
        }
        Ok(s)
    }
}

impl std::fmt::Debug for OenSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OenSecrets([redacted])")
    }
}

/// serde_json's error text can quote a piece of the input (`invalid type: string "…"`): keep
/// only the category and position.
fn redact_serde(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.contains("missing field") {
        text
    } else {
        format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret could not be read: {0}")]
    Unavailable(String),
    #[error("secret is malformed: {0}")]
    Malformed(String),
}

/// Where the raw secret JSON comes from.
#[async_trait]
pub trait FetchSecret: Send + Sync {
    async fn fetch(&self) -> Result<String, SecretError>;
}

/// A value of the secrets together with a generation number, so that a forced refresh after an
/// `A0001` happens once even when many requests saw the stale key at the same time.
#[derive(Clone, Debug)]
pub struct SecretsVersion {
    pub secrets: Arc<OenSecrets>,
    pub generation: u64,
}

/// The port the domain and the Oen client read secrets through.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn current(&self) -> Result<SecretsVersion, SecretError>;
    /// Re-reads the secret unless a newer generation than `stale` is already cached.
    async fn refresh(&self, stale: u64) -> Result<SecretsVersion, SecretError>;
}

struct Cached {
    version: SecretsVersion,
    fetched: Instant,
}

/// An in-process cache in front of a [`FetchSecret`]: one fetch per TTL per warm container.
pub struct CachedSecrets<F> {
    fetcher: F,
    ttl: Duration,
    cache: Mutex<Option<Cached>>,
}

impl<F: FetchSecret> CachedSecrets<F> {
    pub fn new(fetcher: F, ttl: Duration) -> Self {
        Self {
            fetcher,
            ttl,
            cache: Mutex::new(None),
        }
    }

    async fn load(&self, cache: &mut Option<Cached>) -> Result<SecretsVersion, SecretError> {
        let raw = self.fetcher.fetch().await?;
        let secrets = Arc::new(OenSecrets::parse(&raw)?);
        let generation = cache.as_ref().map_or(1, |c| c.version.generation + 1);
        let version = SecretsVersion {
            secrets,
            generation,
        };
        *cache = Some(Cached {
            version: version.clone(),
            fetched: Instant::now(),
        });
        Ok(version)
    }
}

#[async_trait]
impl<F: FetchSecret> SecretSource for CachedSecrets<F> {
    async fn current(&self) -> Result<SecretsVersion, SecretError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if c.fetched.elapsed() < self.ttl {
                return Ok(c.version.clone());
            }
        }
        self.load(&mut cache).await
    }

    async fn refresh(&self, stale: u64) -> Result<SecretsVersion, SecretError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if c.version.generation > stale {
                return Ok(c.version.clone());
            }
        }
        self.load(&mut cache).await
    }
}

/// A fixed secret JSON, e.g. from an environment variable for local development.
pub struct StaticSecret(SecretString);

impl StaticSecret {
    pub fn new(json: impl Into<String>) -> Self {
        Self(SecretString::from(json.into()))
    }

    /// From the environment variable `name` (the local dev stack uses `OEN_SECRET_JSON`).
    pub fn from_env(name: &str) -> Result<Self, SecretError> {
        std::env::var(name).map(Self::new).map_err(|_| {
            SecretError::Unavailable(format!("environment variable {name} is not set"))
        })
    }
}

#[async_trait]
impl FetchSecret for StaticSecret {
    async fn fetch(&self) -> Result<String, SecretError> {
        Ok(self.0.expose_secret().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    pub(crate) const JSON: &str = r#"{"apiToken":"api-token-value","linkSigningKey":"0123456789abcdef0123456789abcdef","webhookPathKey":"path-key-0123456789"}"#;

    struct Counting {
        calls: AtomicUsize,
        values: Vec<String>,
    }

    #[async_trait]
    impl FetchSecret for Counting {
        async fn fetch(&self) -> Result<String, SecretError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(self.values[n.min(self.values.len() - 1)].clone())
        }
    }

    #[tokio::test]
    async fn one_fetch_per_ttl_and_refresh_coalesces() {
        let rotated = JSON.replace("api-token-value", "rotated-value");
        let src = CachedSecrets::new(
            Counting {
                calls: AtomicUsize::new(0),
                values: vec![JSON.into(), rotated],
            },
            Duration::from_secs(300),
        );
        let a = src.current().await.unwrap();
        let b = src.current().await.unwrap();
        assert_eq!(src.fetcher.calls.load(Ordering::SeqCst), 1);
        assert_eq!(a.generation, b.generation);
        // Two callers saw the stale generation; only the first refresh fetches.
        let r1 = src.refresh(a.generation).await.unwrap();
        let r2 = src.refresh(a.generation).await.unwrap();
        assert_eq!(src.fetcher.calls.load(Ordering::SeqCst), 2);
        assert_eq!(r1.generation, r2.generation);
        assert_eq!(r1.secrets.api_token.expose_secret(), "rotated-value");
    }

    #[tokio::test]
    async fn expired_ttl_refetches() {
        let src = CachedSecrets::new(
            Counting {
                calls: AtomicUsize::new(0),
                values: vec![JSON.into()],
            },
            Duration::ZERO,
        );
        src.current().await.unwrap();
        src.current().await.unwrap();
        assert_eq!(src.fetcher.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn malformed_secret_errors_name_the_field_but_never_a_value() {
        let err = OenSecrets::parse(r#"{"apiToken":"abc"}"#).unwrap_err();
        assert!(err.to_string().contains("linkSigningKey"), "{err}");
        let err = OenSecrets::parse(r#"{"apiToken":"very-secret","linkSigningKey":"short","webhookPathKey":"path-key-0123456789"}"#).unwrap_err();
        assert!(err.to_string().contains("at least 32"));
        assert!(!err.to_string().contains("very-secret"));
        let err =
            OenSecrets::parse(r#"{"apiToken":12345678,"linkSigningKey":"x","webhookPathKey":"y"}"#)
                .unwrap_err();
        assert!(!err.to_string().contains("12345678"), "{err}");
        assert_eq!(
            format!("{:?}", OenSecrets::parse(JSON).unwrap()),
            "OenSecrets([redacted])"
        );
    }
}
