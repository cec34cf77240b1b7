//! `merchant-api`: the merchant's backend operates the stack through these routes, each behind
//! API Gateway's `AWS_IAM` authorization (SigV4). JSON in and out; every error is
//! `{"error":{"code":"…","message":"…"}}` with a stable code ([`OpsError::code`], plus
//! `forbidden`, `too_large`, `method_not_allowed` here). The operations themselves live in
//! [`oen_pay::ops`], shared with the local dev stack.
//!
//! - `POST /v1/links` `{"customer","plan","ttlSeconds","email"?,"name"?}` → 201 a signed start link
//! - `GET /v1/customers/{customer}` → subscriptions (with recent periods) and cards (last 4)
//! - `GET /v1/subscriptions/{id}`
//! - `POST /v1/subscriptions/{id}/cancel` `{"at":"now"|"period_end"}`
//! - `POST /v1/subscriptions/{id}/resume` (undo a cancel at period end)
//! - `POST /v1/periods/{orderId}/refund` `{"amount"?,"reason"?}`
//! - `POST /v1/charges` (header `Idempotency-Key`) `{"customer","amount","description",
//!   "reference"?,"productDetails"?}` → the reply of [`oen_pay::oneoff`] (see [`charges`])
//! - `GET /v1/charges/{id}` → the one-off charge as it stands
//! - `POST /v1/charges/{id}/refund` `{"amount"?,"reason"?}` → a paid one-off charge refunded, by
//!   the rules of a period's refund (`{id}` is the charge's id or its order id)
//! - `GET /v1/reconciliation/{yyyy-MM-dd}` → the daily reconciliation report of that Taipei day
//! - `GET /v1/due?shard=0..15&after=…` → what the next scheduled run would do in that shard (a
//!   page of due subscriptions with their action and amount; nothing is written)
//! - `GET /v1/dead-letters/{charge|schedule}?limit=0..10` → the dead-letter queue's depth and a
//!   sample of its messages, each with what a redrive would do with it (nothing is moved)
//! - `POST /v1/dead-letters/{charge|schedule}/redrive` `{"max"?}` → moves up to `max` (100)
//!   messages' work to the charge queue ([`oen_pay::deadletter`]); asked again until
//!   `remaining` is 0
//!
//! Defence in depth: besides the route's authorization, the router refuses (403 `forbidden`)
//! any request whose API Gateway v2 request context carries no IAM identity
//! (`requestContext.authorizer.iam` with a `userArn` and an `accountId`), unless it was built
//! [`Access::LocalUnauthenticated`] for the local dev stack, which must be asked for by name.

mod access;
pub mod charges;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lambda_http::request::RequestContext;
use oen_pay::config::{Config, ConfigError, MerchantApiConfig, OenConfig, Vars};
use oen_pay::deadletter::DeadLetterOps;
use oen_pay::ops::{
    from_json, CancelRequest, ErrorBody, ErrorDetail, LinkRequest, Operations, OpsError,
    RefundRequest,
};
use oen_pay::web::request_id;
use serde::{Deserialize, Serialize};

pub use access::{iam_caller, Access, Caller};

/// The largest request body read (the bodies are a few small fields).
pub const MAX_BODY: usize = 16 * 1024;

/// Everything merchant-api reads from its environment, once per cold start, and nothing else.
#[derive(Debug, Clone)]
pub struct Configuration {
    pub config: Config,
    pub oen: OenConfig,
    pub api: MerchantApiConfig,
}

impl Configuration {
    pub fn read(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            config: Config::read(vars)?,
            oen: OenConfig::read(vars)?,
            api: MerchantApiConfig::read(vars)?,
        })
    }
}

/// What the handlers need, built once per cold start.
pub struct App {
    pub ops: Operations,
    pub dead_letters: DeadLetterOps,
    /// `START_LINK_URL`; without it links point at the domain the request came to.
    pub start_link_url: Option<String>,
}

pub fn router(app: Arc<App>, access: Access) -> Router {
    Router::new()
        .route("/v1/links", post(mint_link))
        .route("/v1/customers/{customer}", get(customer))
        .route("/v1/subscriptions/{id}", get(subscription))
        .route("/v1/subscriptions/{id}/cancel", post(cancel))
        .route("/v1/subscriptions/{id}/resume", post(resume))
        .route("/v1/periods/{order_id}/refund", post(refund))
        .route("/v1/due", get(due))
        .route("/v1/reconciliation/{date}", get(reconciliation))
        .route("/v1/charges", post(charges::create))
        .route("/v1/charges/{id}", get(charges::show))
        .route("/v1/charges/{id}/refund", post(refund_charge))
        .route("/v1/dead-letters/{queue}", get(dead_letters))
        .route("/v1/dead-letters/{queue}/redrive", post(redrive))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Our own check answers 413 in our format; axum's default (2 MiB) must not come first.
        .layer(DefaultBodyLimit::max(MAX_BODY + 1))
        .layer(middleware::from_fn_with_state(access, access::guard))
        .with_state(app)
}

fn error(rid: &str, status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: message.to_owned(),
        },
    };
    with_headers(rid, (status, Json(body)).into_response())
}

fn with_headers(rid: &str, mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

fn ok<T: Serialize>(rid: &str, status: StatusCode, body: &T) -> Response {
    with_headers(rid, (status, Json(body)).into_response())
}

/// An operation's failure: 5xx are ours and logged as errors with their detail (never sent).
fn failure(rid: &str, caller: &Caller, operation: &str, e: &OpsError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if e.is_server_error() {
        tracing::error!(request_id = %rid, caller = %caller.user_arn, operation, code = e.code(), detail = %e.detail(), "operation failed");
    } else {
        tracing::info!(request_id = %rid, caller = %caller.user_arn, operation, code = e.code(), reason = %e, "operation refused");
    }
    let body = e.body();
    with_headers(rid, (status, Json(body)).into_response())
}

/// Why a request is refused before its operation runs.
enum Refusal {
    Invalid(OpsError),
    TooLarge,
}

/// The request's caller (the guard put it there) and its id.
struct Call {
    rid: String,
    caller: Caller,
}

impl Call {
    fn of(parts: &Parts) -> Self {
        Self {
            rid: request_id(parts),
            caller: parts.extensions.get::<Caller>().cloned().unwrap_or(Caller {
                user_arn: "unknown".into(),
                account_id: "unknown".into(),
            }),
        }
    }

    /// The JSON body, or the answer refusing it (an answer is large, and made once per
    /// request: it is handed back as it is).
    #[allow(clippy::result_large_err)]
    fn body<T: serde::de::DeserializeOwned>(
        &self,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<T, Response> {
        let refusal = match body {
            Ok(b) if b.len() <= MAX_BODY => match from_json(&b) {
                Ok(request) => return Ok(request),
                Err(e) => Refusal::Invalid(e),
            },
            Err(e) if e.status() != StatusCode::PAYLOAD_TOO_LARGE => Refusal::Invalid(
                OpsError::InvalidRequest("the request body could not be read".into()),
            ),
            _ => Refusal::TooLarge,
        };
        Err(self.refuse(refusal))
    }

    /// The path parameter, or the answer refusing it.
    #[allow(clippy::result_large_err)]
    fn path(&self, path: Result<Path<String>, PathRejection>) -> Result<String, Response> {
        path.map(|Path(p)| p).map_err(|_| {
            self.refuse(Refusal::Invalid(OpsError::InvalidRequest(
                "the path is not valid UTF-8".into(),
            )))
        })
    }

    /// The answer to a request refused before any operation.
    fn refuse(&self, refusal: Refusal) -> Response {
        match refusal {
            Refusal::Invalid(e) => self.fail("read request", &e),
            Refusal::TooLarge => error(
                &self.rid,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("the request body is larger than {MAX_BODY} bytes"),
            ),
        }
    }

    fn fail(&self, operation: &str, e: &OpsError) -> Response {
        failure(&self.rid, &self.caller, operation, e)
    }

    fn done<T: Serialize>(
        &self,
        operation: &str,
        status: StatusCode,
        result: Result<T, OpsError>,
    ) -> Response {
        match result {
            Ok(view) => {
                tracing::info!(request_id = %self.rid, caller = %self.caller.user_arn, operation, "operation done");
                ok(&self.rid, status, &view)
            }
            Err(e) => self.fail(operation, &e),
        }
    }
}

/// Where a minted link points: `START_LINK_URL`, else the domain this request came to (the
/// same HTTP API serves `checkout-start`), else (locally) its `Host`.
fn start_url(app: &App, parts: &Parts) -> Result<String, OpsError> {
    if let Some(url) = &app.start_link_url {
        return Ok(url.clone());
    }
    let host_like = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    };
    if let Some(RequestContext::ApiGatewayV2(ctx)) = parts.extensions.get::<RequestContext>() {
        return match ctx.domain_name.as_deref().filter(|d| host_like(d)) {
            Some(domain) => Ok(format!("https://{domain}/checkout/start")),
            None => Err(OpsError::Internal(
                "no START_LINK_URL and no domain name in the request context".into(),
            )),
        };
    }
    match parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        Some(host) if host_like(host) => Ok(format!("http://{host}/checkout/start")),
        _ => Err(OpsError::Internal(
            "no START_LINK_URL and no Host header".into(),
        )),
    }
}

async fn mint_link(
    State(app): State<Arc<App>>,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let request: LinkRequest = call.body(body)?;
    let result = match start_url(&app, &parts) {
        Ok(url) => app.ops.mint_link(&url, request).await,
        Err(e) => Err(e),
    };
    Ok(call.done("mint link", StatusCode::CREATED, result))
}

async fn reconciliation(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let date = call.path(path)?;
    Ok(call.done(
        "reconciliation",
        StatusCode::OK,
        app.ops.reconciliation(&date).await,
    ))
}

#[derive(serde::Deserialize)]
struct DueQuery {
    shard: Option<String>,
    after: Option<String>,
}

/// `GET /v1/due?shard=…&after=…`: a dry run of the next scheduled run, one shard's page.
async fn due(
    State(app): State<Arc<App>>,
    parts: Parts,
    query: Result<axum::extract::Query<DueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let call = Call::of(&parts);
    let Ok(axum::extract::Query(query)) = query else {
        return call.fail(
            "due",
            &OpsError::InvalidRequest("the query string is malformed".into()),
        );
    };
    let Some(shard) = query.shard else {
        return call.fail(
            "due",
            &OpsError::InvalidRequest("the shard parameter is required (0 to 15)".into()),
        );
    };
    call.done(
        "due",
        StatusCode::OK,
        app.ops.due(&shard, query.after.as_deref()).await,
    )
}

#[derive(serde::Deserialize)]
struct DeadLetterQuery {
    limit: Option<String>,
}

/// `GET /v1/dead-letters/{queue}?limit=…`: the depth and a sample, nothing moved.
async fn dead_letters(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
    query: Result<axum::extract::Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let queue = call.path(path)?;
    let Ok(axum::extract::Query(query)) = query else {
        return Err(call.fail(
            "dead letters",
            &OpsError::InvalidRequest("the query string is malformed".into()),
        ));
    };
    Ok(call.done(
        "dead letters",
        StatusCode::OK,
        app.dead_letters.list(&queue, query.limit.as_deref()).await,
    ))
}

/// The body of a redrive: empty, `{}` or `{"max":n}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    max: Option<u64>,
}

/// `POST /v1/dead-letters/{queue}/redrive`.
async fn redrive(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let queue = call.path(path)?;
    let request: RedriveBody = call.body(body)?;
    let result = app.dead_letters.redrive(&queue, request.max).await;
    Ok(call.done("redrive", StatusCode::OK, result))
}

async fn customer(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let customer = call.path(path)?;
    Ok(call.done(
        "customer",
        StatusCode::OK,
        app.ops.customer(&customer).await,
    ))
}

async fn subscription(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let id = call.path(path)?;
    Ok(call.done(
        "subscription",
        StatusCode::OK,
        app.ops.subscription(&id).await,
    ))
}

async fn cancel(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let id = call.path(path)?;
    let request: CancelRequest = call.body(body)?;
    let result = app.ops.cancel(&call.caller.user_arn, &id, request).await;
    Ok(call.done("cancel", StatusCode::OK, result))
}

/// A body that must be empty or `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

async fn resume(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let id = call.path(path)?;
    let NoFields {} = call.body(body)?;
    let result = app.ops.resume(&call.caller.user_arn, &id).await;
    Ok(call.done("resume", StatusCode::OK, result))
}

async fn refund(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let order = call.path(path)?;
    let request: RefundRequest = call.body(body)?;
    let result = app.ops.refund(&call.caller.user_arn, &order, request).await;
    Ok(call.done("refund", StatusCode::OK, result))
}

async fn refund_charge(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let call = Call::of(&parts);
    let id = call.path(path)?;
    let request: RefundRequest = call.body(body)?;
    let result = app
        .ops
        .refund_charge(&call.caller.user_arn, &id, request)
        .await;
    Ok(call.done("refund_charge", StatusCode::OK, result))
}

async fn no_route(parts: Parts) -> Response {
    let rid = request_id(&parts);
    error(
        &rid,
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no route {} {}", parts.method, parts.uri.path()),
    )
}

async fn method_not_allowed(parts: Parts) -> Response {
    let rid = request_id(&parts);
    error(
        &rid,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("{} is not allowed on {}", parts.method, parts.uri.path()),
    )
}
