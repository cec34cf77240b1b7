//! The admin API under `/_sim/…` (JSON, unauthenticated: never expose it beyond localhost).

use crate::clock::oen_time;
use crate::control;
use crate::model::{ForceTarget, ForcedOutcome, Knobs};
use crate::state::SharedRef;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) fn routes() -> Router<SharedRef> {
    Router::new()
        .route("/_sim/reset", post(reset))
        .route("/_sim/ledger", get(ledger))
        .route("/_sim/clock", get(clock).post(move_clock))
        .route("/_sim/settle", post(settle))
        .route("/_sim/tokens", post(create_token))
        .route("/_sim/force", post(force).delete(clear_forced))
        .route("/_sim/knobs", get(knobs).post(patch_knobs))
        .route("/_sim/webhook-url", get(webhook_url).put(set_webhook_url))
        .route("/_sim/webhooks", get(deliveries))
        .route("/_sim/webhooks/release", post(release))
        .route("/_sim/webhooks/{delivery_id}/redeliver", post(redeliver))
        .route("/_sim/config", get(config))
        .route("/_sim/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/_sim/knobs/reset", post(reset_knobs))
        .route("/_sim/inject/paid", post(inject_paid))
        .route("/_sim/inject/second-payment", post(inject_second_payment))
        .route("/_sim/inject/amount", post(inject_amount))
        .route("/_sim/inject/refund", post(inject_refund))
}

// ---- Reconciliation test hooks (`inject`) ----------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InjectPaid {
    order_id: String,
    amount: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InjectSecondPayment {
    order_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InjectAmount {
    transaction: String,
    amount: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InjectRefund {
    transaction: String,
    amount: Option<i64>,
}

fn injected(result: Result<Value, crate::inject::InjectError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => bad_request(e.to_string()),
    }
}

/// `{"orderId","amount"}` → `{"id":"P…"}`: a paid transaction under any order id.
async fn inject_paid(State(shared): State<SharedRef>, Json(req): Json<InjectPaid>) -> Response {
    let made = shared.lock().inject_paid(&req.order_id, req.amount);
    injected(made.map(|id| json!({ "id": id })))
}

/// `{"orderId"}` → `{"id":"P…"}`: the order's paid transaction, paid a second time.
async fn inject_second_payment(
    State(shared): State<SharedRef>,
    Json(req): Json<InjectSecondPayment>,
) -> Response {
    let made = shared.lock().inject_second_payment(&req.order_id);
    injected(made.map(|id| json!({ "id": id })))
}

/// `{"transaction","amount"}`: Oen holds the transaction at another amount.
async fn inject_amount(State(shared): State<SharedRef>, Json(req): Json<InjectAmount>) -> Response {
    let done = shared.lock().inject_amount(&req.transaction, req.amount);
    injected(done.map(|()| json!({ "id": req.transaction, "amount": req.amount })))
}

/// `{"transaction","amount"?}`: a refund made outside the API.
async fn inject_refund(State(shared): State<SharedRef>, Json(req): Json<InjectRefund>) -> Response {
    let done = shared.lock().inject_refund(&req.transaction, req.amount);
    injected(done.map(|()| json!({ "id": req.transaction, "refunded": true })))
}

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.into()})),
    )
        .into_response()
}

async fn reset(State(shared): State<SharedRef>) -> Json<Value> {
    control::reset(&shared);
    Json(json!({"reset": true}))
}

async fn ledger(State(shared): State<SharedRef>) -> Json<Value> {
    Json(json!({"transactions": control::ledger(&shared)}))
}

fn clock_body(shared: &SharedRef) -> Json<Value> {
    Json(json!({
        "now": oen_time(control::now(shared)),
        "frozen": control::clock_frozen(shared),
    }))
}

async fn clock(State(shared): State<SharedRef>) -> Json<Value> {
    clock_body(&shared)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClockChange {
    advance_ms: Option<u64>,
    set: Option<DateTime<Utc>>,
    frozen: Option<bool>,
}

async fn move_clock(
    State(shared): State<SharedRef>,
    Json(change): Json<ClockChange>,
) -> Json<Value> {
    if let Some(frozen) = change.frozen {
        control::freeze_clock(&shared, frozen);
    }
    if let Some(to) = change.set {
        control::set_clock(&shared, to);
    }
    if let Some(ms) = change.advance_ms {
        control::advance_clock(&shared, Duration::from_millis(ms));
    }
    clock_body(&shared)
}

async fn settle(State(shared): State<SharedRef>) -> Json<Value> {
    Json(json!({"settled": control::settle_pending(&shared)}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewToken {
    card_number: String,
}

async fn create_token(State(shared): State<SharedRef>, Json(req): Json<NewToken>) -> Response {
    if !crate::cards::is_plausible(&req.card_number) {
        return bad_request("cardNumber must have 12 to 19 digits");
    }
    let token = control::create_token(&shared, &req.card_number);
    Json(json!({"token": token, "paymentInfo": crate::cards::last4(&req.card_number)}))
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Force {
    target: ForceTarget,
    outcome: ForcedOutcome,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

async fn force(State(shared): State<SharedRef>, Json(req): Json<Force>) -> Json<Value> {
    control::force(&shared, req.target, req.outcome, req.times);
    Json(json!({"forced": req.times}))
}

async fn clear_forced(State(shared): State<SharedRef>) -> Json<Value> {
    control::clear_forced(&shared);
    Json(json!({"cleared": true}))
}

async fn knobs(State(shared): State<SharedRef>) -> Json<Knobs> {
    Json(control::knobs(&shared))
}

/// Merges a partial JSON object into the current knobs.
async fn patch_knobs(State(shared): State<SharedRef>, Json(patch): Json<Value>) -> Response {
    let Value::Object(patch) = patch else {
        return bad_request("expected a JSON object of knobs");
    };
    let mut merged = match serde_json::to_value(control::knobs(&shared)) {
        Ok(Value::Object(m)) => m,
        _ => return bad_request("knobs could not be read"),
    };
    for (key, value) in patch {
        if !merged.contains_key(&key) {
            return bad_request(format!("unknown knob: {key}"));
        }
        merged.insert(key, value);
    }
    match serde_json::from_value::<Knobs>(Value::Object(merged)) {
        Ok(knobs) => Json(control::update_knobs(&shared, |k| *k = knobs)).into_response(),
        Err(e) => bad_request(e.to_string()),
    }
}

async fn reset_knobs(State(shared): State<SharedRef>) -> Json<Knobs> {
    let initial = shared.initial_knobs.clone();
    Json(control::update_knobs(&shared, |k| *k = initial))
}

async fn webhook_url(State(shared): State<SharedRef>) -> Json<Value> {
    Json(json!({"url": control::webhook_url(&shared)}))
}

#[derive(Debug, Deserialize)]
struct WebhookUrl {
    url: Option<String>,
}

async fn set_webhook_url(
    State(shared): State<SharedRef>,
    Json(req): Json<WebhookUrl>,
) -> Json<Value> {
    control::set_webhook_url(&shared, req.url);
    Json(json!({"url": control::webhook_url(&shared)}))
}

async fn deliveries(State(shared): State<SharedRef>) -> Json<Value> {
    Json(json!({"deliveries": control::deliveries(&shared)}))
}

async fn release(State(shared): State<SharedRef>) -> Json<Value> {
    Json(json!({"released": control::release_held(&shared)}))
}

async fn redeliver(State(shared): State<SharedRef>, Path(delivery_id): Path<u64>) -> Response {
    match control::redeliver(&shared, delivery_id) {
        Some(id) => Json(json!({"deliveryId": id})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no delivery {delivery_id}")})),
        )
            .into_response(),
    }
}

async fn config(State(shared): State<SharedRef>) -> Json<Value> {
    Json(json!({
        "merchantId": shared.merchant_id,
        "productionMode": shared.allowlist.is_some(),
        "allowlist": shared.allowlist,
        "pageValiditySecs": shared.page_validity.as_secs(),
    }))
}
