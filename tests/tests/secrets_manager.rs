//! The Oen secret read from Secrets Manager (moto) through the per-container cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oen_pay::aws::SecretsManagerFetcher;
use oen_pay::secrets::{CachedSecrets, FetchSecret, SecretError, SecretSource};
use oen_pay_integration::{create_secret, secrets_client, unique_name};
use secrecy::ExposeSecret;

const LINK_KEY: &str = "0123456789abcdef0123456789abcdef";
const PATH_KEY: &str = "path-key-0123456789";
const LONG_TTL: Duration = Duration::from_secs(300);

fn secret_json(api_token: &str) -> String {
    serde_json::json!({
        "apiToken": api_token,
        "linkSigningKey": LINK_KEY,
        "webhookPathKey": PATH_KEY,
    })
    .to_string()
}

async fn rotate(client: &aws_sdk_secretsmanager::Client, id: &str, json: &str) {
    client
        .put_secret_value()
        .secret_id(id)
        .secret_string(json)
        .send()
        .await
        .unwrap();
}

/// Counts the fetches that reach Secrets Manager.
struct Counting<F> {
    inner: F,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl<F: FetchSecret> FetchSecret for Counting<F> {
    async fn fetch(&self) -> Result<String, SecretError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch().await
    }
}

#[tokio::test]
async fn reads_the_secret_json_from_secrets_manager() {
    let client = secrets_client().await;
    let id = create_secret(&client, &secret_json("api-token-one")).await;
    let source = CachedSecrets::new(SecretsManagerFetcher::new(client, &id), LONG_TTL);
    let current = source.current().await.unwrap();
    assert_eq!(current.secrets.api_token.expose_secret(), "api-token-one");
    assert_eq!(current.secrets.link_signing_key.expose_secret(), LINK_KEY);
    assert_eq!(current.secrets.webhook_path_key.expose_secret(), PATH_KEY);
    assert_eq!(current.generation, 1);
}

#[tokio::test]
async fn a_warm_container_reads_the_secret_once_per_ttl() {
    let client = secrets_client().await;
    let id = create_secret(&client, &secret_json("api-token-one")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let source = CachedSecrets::new(
        Counting {
            inner: SecretsManagerFetcher::new(client.clone(), &id),
            calls: calls.clone(),
        },
        LONG_TTL,
    );
    let first = source.current().await.unwrap();
    // Rotated in Secrets Manager, but the cache still serves what it read.
    rotate(&client, &id, &secret_json("api-token-two")).await;
    let second = source.current().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(second.generation, first.generation);
    assert_eq!(second.secrets.api_token.expose_secret(), "api-token-one");
}

#[tokio::test]
async fn refresh_picks_up_a_rotated_secret_once() {
    let client = secrets_client().await;
    let id = create_secret(&client, &secret_json("api-token-one")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let source = CachedSecrets::new(
        Counting {
            inner: SecretsManagerFetcher::new(client.clone(), &id),
            calls: calls.clone(),
        },
        LONG_TTL,
    );
    let stale = source.current().await.unwrap();
    rotate(&client, &id, &secret_json("api-token-two")).await;

    let fresh = source.refresh(stale.generation).await.unwrap();
    assert_eq!(fresh.secrets.api_token.expose_secret(), "api-token-two");
    assert_eq!(fresh.generation, stale.generation + 1);
    // A second caller that saw the same stale generation gets the new value without a fetch.
    let again = source.refresh(stale.generation).await.unwrap();
    assert_eq!(again.generation, fresh.generation);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        source
            .current()
            .await
            .unwrap()
            .secrets
            .api_token
            .expose_secret(),
        "api-token-two"
    );
}

#[tokio::test]
async fn a_missing_secret_is_unavailable_and_named() {
    let id = unique_name("oen-pay-missing");
    let source = CachedSecrets::new(
        SecretsManagerFetcher::new(secrets_client().await, &id),
        LONG_TTL,
    );
    let err = source.current().await.unwrap_err();
    let SecretError::Unavailable(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains(&id), "{message}");
    assert!(message.contains("ResourceNotFound"), "{message}");
}

#[tokio::test]
async fn a_malformed_secret_is_refused_without_echoing_values() {
    let client = secrets_client().await;
    let cases = [
        // Not JSON at all: a plain password pasted into the console.
        "plain-text-password-value-9876".to_owned(),
        // A field of the wrong type.
        serde_json::json!({
            "apiToken": 98765432123_u64,
            "linkSigningKey": LINK_KEY,
            "webhookPathKey": PATH_KEY,
        })
        .to_string(),
        // A missing field.
        serde_json::json!({ "apiToken": "api-token-secret-value", "linkSigningKey": LINK_KEY })
            .to_string(),
        // A signing key too short to be safe.
        serde_json::json!({
            "apiToken": "api-token-secret-value",
            "linkSigningKey": "short-signing-key",
            "webhookPathKey": PATH_KEY,
        })
        .to_string(),
    ];
    let values = [
        "plain-text-password-value-9876",
        "98765432123",
        "api-token-secret-value",
        "short-signing-key",
        LINK_KEY,
        PATH_KEY,
    ];
    for json in cases {
        let id = create_secret(&client, &json).await;
        let source = CachedSecrets::new(SecretsManagerFetcher::new(client.clone(), &id), LONG_TTL);
        let err = source.current().await.unwrap_err();
        assert!(matches!(err, SecretError::Malformed(_)), "{err:?}");
        let shown = format!("{err} {err:?}");
        for value in values {
            assert!(!shown.contains(value), "{shown} echoes {value}");
        }
    }
}
