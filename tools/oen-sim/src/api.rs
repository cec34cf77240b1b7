//! The Oen Payment API routes: envelope, authentication, validation and the calls
//! themselves.

use crate::charges::ChargeRequest;
use crate::connection::{ConnectionKill, PeerAddr};
use crate::envelope::{forbidden, gateway_timeout, success, ApiError};
use crate::ids;
use crate::model::{ms, Checkout, CheckoutState, ForceTarget};
use crate::reply::Reply;
use crate::state::SharedRef;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;

/// Amounts from this value up need high-amount enablement (`V0003`).
const HIGH_AMOUNT: i64 = 200_000;

pub(crate) fn routes(shared: SharedRef) -> Router<SharedRef> {
    Router::new()
        .route("/checkout-token", post(checkout_token))
        .route("/token/transactions", post(charge))
        .route("/order/{order_id}/transactions", get(order_transactions))
        .route("/transactions/{id}", get(transaction))
        .route("/transactions", get(list_transactions))
        .route("/refunds/{id}", post(refund))
        .route_layer(middleware::from_fn_with_state(shared, gate))
}

/// Production allowlist (403), fixed latency, then the Bearer token (401 `A0001`).
async fn gate(State(shared): State<SharedRef>, req: Request, next: Next) -> Response {
    if let Some(allowlist) = &shared.allowlist {
        let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
        let allowed = peer.is_some_and(|ip| allowlist.iter().any(|a| same_ip(*a, ip)));
        if !allowed {
            return forbidden();
        }
    }
    let latency = shared.lock().knobs.latency_ms;
    if latency > 0 {
        tokio::time::sleep(ms(latency)).await;
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if presented != Some(shared.api_token.as_str()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Parses a JSON body the way Oen does: malformed JSON is 500 `F0001`, a `merchantId` that is
/// not the token's domain is 400 `V0001`, wrong or missing fields are 400 `V0001`, unknown
/// fields are ignored.
fn parse_body<T: DeserializeOwned>(
    shared: &SharedRef,
    body: &[u8],
) -> Result<(T, Map<String, Value>), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::system(format!("Malformed JSON body: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    match map.get("merchantId") {
        Some(Value::String(m)) if *m == shared.merchant_id => {}
        _ => {
            return Err(ApiError::invalid(
                "merchantId does not match the API token's domain",
            ))
        }
    }
    let parsed = serde_json::from_value(Value::Object(map.clone()))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((parsed, map))
}

// ---- POST /checkout-token ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckoutTokenBody {
    success_url: Option<String>,
    failure_url: Option<String>,
    custom_id: Option<String>,
    payer_email: Option<String>,
}

async fn checkout_token(State(shared): State<SharedRef>, body: Bytes) -> Response {
    match create_checkout(&shared, &body) {
        Ok(id) => success(json!({ "id": id })),
        Err(e) => e.into_response(),
    }
}

fn create_checkout(shared: &SharedRef, body: &[u8]) -> Result<String, ApiError> {
    let (req, map): (CheckoutTokenBody, _) = parse_body(shared, body)?;
    for key in ["successUrl", "failureUrl"] {
        if !map.contains_key(key) {
            return Err(ApiError::invalid(format!(
                "{key} is required (its value may be null)"
            )));
        }
    }
    for url in [&req.success_url, &req.failure_url].into_iter().flatten() {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ApiError::invalid(format!("not an http(s) URL: {url}")));
        }
    }
    let mut st = shared.lock();
    let now = st.now();
    Ok(st.create_checkout(Checkout {
        id: ids::long_id(),
        created_at: now,
        success_url: req.success_url,
        failure_url: req.failure_url,
        custom_id: req.custom_id,
        payer_email: req.payer_email,
        state: CheckoutState::Open,
    }))
}

// ---- POST /token/transactions --------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChargeBody {
    amount: i64,
    token: String,
    order_id: String,
    product_details: Vec<ProductDetail>,
    currency: Option<String>,
    note: Option<String>,
    user_email: Option<String>,
    user_name: Option<String>,
    invoice_info: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductDetail {
    #[allow(dead_code)]
    production_code: String,
    #[allow(dead_code)]
    description: String,
    quantity: i64,
    #[allow(dead_code)]
    unit: String,
    unit_price: i64,
}

/// Σ quantity × unit price of `productDetails`, or why the lines are refused.
fn lines_total(lines: &[ProductDetail]) -> Result<i64, ApiError> {
    if lines.is_empty() {
        return Err(ApiError::invalid("productDetails is required"));
    }
    if lines.iter().any(|p| p.quantity < 1) {
        return Err(ApiError::invalid(
            "productDetails quantity must be at least 1",
        ));
    }
    lines
        .iter()
        .try_fold(0i64, |acc, p| {
            p.quantity
                .checked_mul(p.unit_price)
                .and_then(|line| acc.checked_add(line))
        })
        .ok_or_else(|| ApiError::invalid("PRODUCT_AMOUNT_NOT_MATCH"))
}

fn validate_charge(shared: &SharedRef, body: &[u8]) -> Result<ChargeRequest, ApiError> {
    let (req, _): (ChargeBody, _) = parse_body(shared, body)?;
    if req.token.is_empty() {
        return Err(ApiError::invalid("token is required"));
    }
    if req.order_id.is_empty() {
        return Err(ApiError::invalid("orderId is required"));
    }
    if req.currency.as_deref().is_some_and(|c| c != "TWD") {
        return Err(ApiError::invalid("currency must be TWD"));
    }
    if req.amount < 1 {
        return Err(ApiError::invalid("amount must be an integer of at least 1"));
    }
    if req.amount >= HIGH_AMOUNT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "V0003",
            "amount exceeds the single-transaction limit",
        ));
    }
    if lines_total(&req.product_details)? != req.amount {
        return Err(ApiError::invalid("PRODUCT_AMOUNT_NOT_MATCH"));
    }
    let mut state = shared.lock();
    if state.knobs.einvoice && req.user_email.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            "userEmail is required: this domain issues e-invoices",
        ));
    }
    state.charge_payers.push(crate::model::ChargePayer {
        order_id: req.order_id.clone(),
        user_email: req.user_email,
        user_name: req.user_name,
        invoice_info: req.invoice_info,
    });
    drop(state);
    Ok(ChargeRequest {
        token: req.token,
        order_id: req.order_id,
        amount: req.amount,
        note: req.note,
    })
}

async fn charge(
    State(shared): State<SharedRef>,
    kill: Option<Extension<ConnectionKill>>,
    body: Bytes,
) -> Response {
    let reply = validate_charge(&shared, &body)
        .and_then(|req| shared.lock().charge(&req))
        .unwrap_or_else(Reply::Fail);
    send(&shared, kill, "/token/transactions", reply).await
}

/// Answers as `reply` says: the envelope, Oen's 504 after the gateway-timeout delay, or a
/// connection closed without an answer.
async fn send(
    shared: &SharedRef,
    kill: Option<Extension<ConnectionKill>>,
    path: &str,
    reply: Reply,
) -> Response {
    match reply {
        Reply::Success(data) => success(data),
        Reply::Fail(e) => e.into_response(),
        Reply::GatewayTimeout => {
            let delay = shared.lock().knobs.gateway_timeout_delay_ms;
            tokio::time::sleep(ms(delay)).await;
            gateway_timeout()
        }
        Reply::Drop => drop_connection(kill, path).await,
    }
}

/// Closes the client's connection without an answer.
async fn drop_connection(kill: Option<Extension<ConnectionKill>>, path: &str) -> Response {
    tracing::info!(
        target: "oen_sim::request",
        path,
        status = 0,
        outcome = "connection dropped",
        "request"
    );
    match kill {
        Some(Extension(kill)) => {
            kill.kill();
            std::future::pending::<Response>().await
        }
        // Only reachable when the router runs outside the simulator's own server.
        None => (StatusCode::BAD_GATEWAY, "connection dropped").into_response(),
    }
}

// ---- queries -------------------------------------------------------------------------------

async fn order_transactions(
    State(shared): State<SharedRef>,
    kill: Option<Extension<ConnectionKill>>,
    Path(order_id): Path<String>,
) -> Response {
    let reply = shared.lock().order_query(&order_id);
    send(&shared, kill, "/order/{orderId}/transactions", reply).await
}

async fn transaction(State(shared): State<SharedRef>, Path(id): Path<String>) -> Response {
    match shared.lock().transaction(&id) {
        Ok(t) => success(t),
        Err(e) => e.into_response(),
    }
}

async fn list_transactions(
    State(shared): State<SharedRef>,
    kill: Option<Extension<ConnectionKill>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let forced = shared
        .lock()
        .take_forced(|t| matches!(t, ForceTarget::TransactionList));
    if let Some(forced) = forced {
        let reply = Reply::forced(&forced, |_| "forced by the simulator");
        return send(&shared, kill, "/transactions", reply).await;
    }
    let range = match (params.get("start"), params.get("end")) {
        (None, None) => None,
        (Some(start), Some(end)) => match (parse_day(start, false), parse_day(end, true)) {
            (Some(s), Some(e)) => Some((s, e)),
            _ => return ApiError::system("Invalid date").into_response(),
        },
        _ => return ApiError::system("Invalid date").into_response(),
    };
    let after = params
        .get("page")
        .map(String::as_str)
        .filter(|p| !p.is_empty());
    match shared.lock().list_transactions(range, after) {
        Ok((transactions, next)) => success(json!({ "transactions": transactions, "page": next })),
        Err(e) => e.into_response(),
    }
}

/// A Taipei calendar day, written `2026-09-01`, `2026/09/01` or as the Unix milliseconds of
/// any moment in it: windows are whole Taipei days, from 00:00 of `start` to 23:59:59.999 of
/// `end`.
fn parse_day(s: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
    let date = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let millis: i64 = s.parse().ok()?;
        DateTime::from_timestamp_millis(millis)?
            .with_timezone(&ids::taipei())
            .date_naive()
    } else {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(s, "%Y/%m/%d"))
            .ok()?
    };
    let time = if end_of_day {
        date.and_hms_milli_opt(23, 59, 59, 999)?
    } else {
        date.and_hms_opt(0, 0, 0)?
    };
    let local = ids::taipei().from_local_datetime(&time).single()?;
    Some(local.with_timezone(&Utc))
}

// ---- POST /refunds/{id} --------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefundBody {
    amount: Option<i64>,
    /// Required when an e-invoice was issued for the transaction (the `einvoice` knob).
    product_details: Option<Vec<ProductDetail>>,
}

async fn refund(
    State(shared): State<SharedRef>,
    kill: Option<Extension<ConnectionKill>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let reply = parse_body::<RefundBody>(&shared, &body)
        .and_then(|(req, _)| {
            if !ids::is_transaction_number(&id) {
                return Err(ApiError::invalid(
                    "refunds take the 17-character P… transaction number",
                ));
            }
            let lines = match &req.product_details {
                None => None,
                Some(lines) => Some(lines_total(lines)?),
            };
            shared.lock().refund(&id, req.amount, lines)
        })
        .unwrap_or_else(Reply::Fail);
    send(&shared, kill, "/refunds/{id}", reply).await
}
