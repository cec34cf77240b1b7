//! `webhook`: `POST /oen/webhook/{key}` — Oen's token webhook.
//!
//! Oen signs nothing, so the defences are ours: the unguessable `{key}` path segment (the
//! secret's `webhookPathKey`, compared in constant time), an optional source-IP allowlist, a
//! 64 KiB body limit, and above all the match against a binding session we created (see
//! `oen_pay::binding`). Refusals are 4xx with no detail in the body; our own failures are 5xx so
//! that Oen retries (it tries three times within about six seconds).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use oen_pay::binding::{self, BindingDeps, WebhookError, WebhookOutcome};
use oen_pay::config::{Config, ConfigError, Vars, WebhookConfig};
use oen_pay::metrics;
use oen_pay::oen::Notification;
use oen_pay::secrets::SecretSource;
use oen_pay::web::{json_error, request_id, source_ip, Cidr};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

/// Oen's webhook bodies are a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Everything the webhook reads from its environment, once per cold start, and nothing else.
#[derive(Debug, Clone)]
pub struct Configuration {
    pub config: Config,
    pub webhook: WebhookConfig,
    /// `WEBHOOK_ALLOWED_IPS`, parsed; empty allows every source.
    pub allowed_ips: Vec<Cidr>,
}

impl Configuration {
    pub fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let config = Config::read(vars)?;
        let webhook = WebhookConfig::read(vars)?;
        let allowed_ips = webhook.allowed_ips()?;
        Ok(Self {
            config,
            webhook,
            allowed_ips,
        })
    }
}

pub struct App {
    pub deps: BindingDeps,
    pub secrets: Arc<dyn SecretSource>,
    /// `WEBHOOK_ALLOWED_IPS`; empty allows every source.
    pub allowed_ips: Vec<Cidr>,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/oen/webhook/{key}", post(receive))
        // Our own limit below answers 413; axum's default (2 MiB) must not come first.
        .layer(DefaultBodyLimit::max(MAX_BODY + 1))
        .with_state(app)
}

fn refuse(rid: &str, status: StatusCode, reason: &str) -> Response {
    tracing::warn!(request_id = %rid, reason, "webhook refused");
    metrics::count("webhook", "WebhookRefused");
    json_error(status, "rejected", None)
}

async fn receive(
    State(app): State<Arc<App>>,
    parts: Parts,
    Path(key): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let rid = request_id(&parts);
    let secrets = match app.secrets.current().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(request_id = %rid, error = %e, "secret unavailable");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable",
                Some(&rid),
            );
        }
    };
    let expected = secrets.secrets.webhook_path_key.expose_secret().as_bytes();
    if !bool::from(key.as_bytes().ct_eq(expected)) {
        return refuse(&rid, StatusCode::NOT_FOUND, "wrong path key");
    }
    if !app.allowed_ips.is_empty() {
        let allowed =
            source_ip(&parts).is_some_and(|ip| app.allowed_ips.iter().any(|c| c.contains(ip)));
        if !allowed {
            return refuse(
                &rid,
                StatusCode::FORBIDDEN,
                "source address not allowlisted",
            );
        }
    }
    let body = match body {
        Ok(b) if b.len() <= MAX_BODY => b,
        Ok(_) => {
            return refuse(
                &rid,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body larger than 64 KiB",
            )
        }
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refuse(
                &rid,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body larger than 64 KiB",
            )
        }
        Err(_) => return refuse(&rid, StatusCode::BAD_REQUEST, "body unreadable"),
    };
    let notification = match Notification::parse(&body) {
        Ok(n) => n,
        Err(e) => return refuse(&rid, StatusCode::BAD_REQUEST, e.0),
    };
    match binding::accept_webhook(&app.deps, notification).await {
        Ok(outcome) => {
            match &outcome {
                WebhookOutcome::Bound {
                    reference,
                    subscription,
                } => {
                    tracing::info!(request_id = %rid, binding = %reference, subscription = %subscription, "token stored");
                }
                WebhookOutcome::Duplicate => {
                    tracing::info!(request_id = %rid, "duplicate webhook acknowledged")
                }
                WebhookOutcome::Failed => {
                    tracing::info!(request_id = %rid, "binding failed at Oen")
                }
                WebhookOutcome::Ignored(purpose) => {
                    tracing::info!(request_id = %rid, purpose = %purpose, "webhook purpose not acted on")
                }
            }
            (StatusCode::OK, "ok").into_response()
        }
        Err(WebhookError::Refused(reason)) => refuse(&rid, StatusCode::BAD_REQUEST, &reason),
        Err(WebhookError::Internal(e)) => {
            tracing::error!(request_id = %rid, error = %e, "webhook not processed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                Some(&rid),
            )
        }
    }
}
