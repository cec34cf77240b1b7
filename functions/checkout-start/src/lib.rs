//! `checkout-start`: turns a merchant-signed start link into an Oen hosted card page, and
//! reports the state of a binding to the merchant's return page.
//!
//! Routes (API Gateway HTTP API, payload v2):
//! - `GET /checkout/start?customer=…&plan=…&expires=…[&email=…]&sig=…` → 302 to Oen's page;
//!   403 bad signature, 410 expired, 400 a link that lives longer than `LINK_MAX_TTL`, an
//!   unknown plan, a malformed customer, `email`, `name` or `invoice`, or (with `EINVOICE=true`)
//!   no `email`, each before any call to Oen; 502 Oen failed. A link opens one binding session: used
//!   again, it answers 302 to the same page while that is open, else 409.
//! - `GET /checkout/status?ref=…` → `{"state":"pending|bound|failed|expired","last4":…,"reason":…}`.
//!   A page on one of `STATUS_ALLOWED_ORIGINS` may read it from another origin: the answer, errors
//!   included, carries `Access-Control-Allow-Origin` for that origin (a plain GET needs no
//!   preflight); any other origin gets no CORS header, so its browser withholds the answer.

use std::sync::Arc;

use axum::extract::{Query, RawQuery, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use oen_pay::binding::{self, BindingDeps, StartError};
use oen_pay::chrono::Duration;
use oen_pay::config::{CheckoutConfig, Config, ConfigError, OenConfig, Vars};
use oen_pay::domain::BindingRef;
use oen_pay::links::{self, LinkError};
use oen_pay::secrets::SecretSource;
use oen_pay::web::{html_error, json_error, request_id};
use secrecy::ExposeSecret;
use serde::Deserialize;

/// What the handlers need, built once per cold start.
/// Everything checkout-start reads from its environment, once per cold start, and nothing else.
#[derive(Debug, Clone)]
pub struct Configuration {
    pub config: Config,
    pub oen: OenConfig,
    pub checkout: CheckoutConfig,
}

impl Configuration {
    pub fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let config = Config::read(vars)?;
        let oen = OenConfig::read(vars)?;
        let checkout = CheckoutConfig::read(vars, oen.environment)?;
        Ok(Self {
            config,
            oen,
            checkout,
        })
    }
}

pub struct App {
    pub deps: BindingDeps,
    pub secrets: Arc<dyn SecretSource>,
    pub success_url: String,
    pub failure_url: String,
    pub hosted_base_url: String,
    /// How far ahead of its use a start link may expire (`LINK_MAX_TTL`).
    pub link_max_ttl: Duration,
    /// Origins whose pages may read the status route (`STATUS_ALLOWED_ORIGINS`).
    pub status_allowed_origins: Vec<String>,
    /// The merchant issues e-invoices (`EINVOICE`): a start link without `email` is refused.
    pub einvoice: bool,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/checkout/start", get(start))
        .route("/checkout/status", get(status))
        .with_state(app)
}

async fn start(State(app): State<Arc<App>>, parts: Parts, RawQuery(query): RawQuery) -> Response {
    let rid = request_id(&parts);
    let secrets = match app.secrets.current().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(request_id = %rid, error = %e, "secret unavailable");
            return html_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Please try again in a moment.",
                Some(&rid),
            );
        }
    };
    let key = secrets.secrets.link_signing_key.expose_secret().as_bytes();
    let link = match links::verify(
        query.as_deref().unwrap_or(""),
        key,
        &app.deps.plans,
        app.deps.clock.now(),
        app.link_max_ttl,
    )
    .and_then(|link| link.require_invoice_email(app.einvoice).map(|()| link))
    {
        Ok(link) => link,
        Err(e) => {
            let status = match e {
                LinkError::BadSignature => StatusCode::FORBIDDEN,
                LinkError::Expired(_) => StatusCode::GONE,
                LinkError::LivesTooLong { .. } | LinkError::Invalid(_) => StatusCode::BAD_REQUEST,
            };
            tracing::warn!(request_id = %rid, reason = %e, "start link refused");
            return html_error(
                status,
                "This link cannot be used",
                &e.to_string(),
                Some(&rid),
            );
        }
    };
    match binding::start(
        &app.deps,
        &link,
        &app.success_url,
        &app.failure_url,
        &app.hosted_base_url,
    )
    .await
    {
        Ok(started) => {
            let what = if started.resumed {
                "binding resumed: the link's page again"
            } else {
                "binding started"
            };
            tracing::info!(request_id = %rid, binding = %started.reference, customer = %link.customer, "{what}");
            let mut r = StatusCode::FOUND.into_response();
            match HeaderValue::from_str(&started.hosted_url) {
                Ok(location) => {
                    r.headers_mut().insert(header::LOCATION, location);
                }
                Err(_) => {
                    tracing::error!(request_id = %rid, "hosted page URL is not a valid header");
                    return html_error(
                        StatusCode::BAD_GATEWAY,
                        "Card page unavailable",
                        "Please try again.",
                        Some(&rid),
                    );
                }
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(StartError::LinkUsed(used)) => {
            tracing::warn!(request_id = %rid, customer = %link.customer, reason = %used, "start link used before");
            html_error(
                StatusCode::CONFLICT,
                "This link was already used",
                &used.to_string(),
                Some(&rid),
            )
        }
        Err(StartError::Oen(e)) => {
            tracing::error!(request_id = %rid, error = %e, "Oen could not open the card page");
            html_error(
                StatusCode::BAD_GATEWAY,
                "Card page unavailable",
                "The payment provider could not open the card page. Please go back and try again in a minute.",
                Some(&rid),
            )
        }
        Err(StartError::Store(e)) => {
            tracing::error!(request_id = %rid, error = %e, "binding session not stored");
            html_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Please try again in a moment.",
                Some(&rid),
            )
        }
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

async fn status(
    State(app): State<Arc<App>>,
    parts: Parts,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut r = binding_status(&app, &parts, query).await;
    allow_origin(&app.status_allowed_origins, &parts, &mut r);
    r
}

/// CORS for the status route: an allowed `Origin` is echoed back; the answer varies by it.
fn allow_origin(allowed: &[String], parts: &Parts, r: &mut Response) {
    if allowed.is_empty() {
        return;
    }
    r.headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return;
    };
    let allowed = origin
        .to_str()
        .ok()
        .and_then(|o| allowed.iter().find(|a| a.eq_ignore_ascii_case(o)));
    if let Some(value) = allowed.and_then(|a| HeaderValue::from_str(a).ok()) {
        r.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
}

async fn binding_status(
    app: &App,
    parts: &Parts,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let rid = request_id(parts);
    let raw = query.ok().and_then(|q| q.0.reference);
    let Some(raw) = raw else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the ref parameter is required",
            None,
        );
    };
    let Ok(reference) = BindingRef::parse(&raw) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "ref is not a binding reference",
            None,
        );
    };
    match binding::status(app.deps.store.as_ref(), &reference, app.deps.clock.now()).await {
        Ok(Some(s)) => {
            let mut r = Json(s).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(None) => json_error(StatusCode::NOT_FOUND, "no such binding", None),
        Err(e) => {
            tracing::error!(request_id = %rid, error = %e, "binding status unavailable");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable",
                Some(&rid),
            )
        }
    }
}
