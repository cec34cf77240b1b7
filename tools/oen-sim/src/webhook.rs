//! Token webhook delivery: unsigned JSON POSTs to the configured URL, at most three attempts
//! (0 s, +2 s, +4 s by default), any 2xx is success, redirects are failures and never
//! followed. Every attempt is recorded so tests can inspect it.

use crate::delivery::{AttemptOutcome, DeliveryAttempt, DeliveryRecord, DeliveryState};
use crate::ids;
use crate::model::{as_ms, ms, Checkout};
use crate::state::SharedRef;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Builds the token webhook body exactly as Oen sends it, applying the payload knobs.
pub(crate) fn token_payload(
    shared: &SharedRef,
    checkout: &Checkout,
    token: Option<&str>,
    card_last4: &str,
    message: &str,
) -> Value {
    let knobs = shared.lock().knobs.clone();
    let mut o = Map::new();
    o.insert("purpose".into(), json!("token"));
    o.insert("merchantId".into(), json!(shared.merchant_id));
    o.insert("id".into(), json!(checkout.id));
    let transaction_id = if knobs.webhook_transaction_id_differs {
        ids::long_id()
    } else {
        checkout.id.clone()
    };
    o.insert("transactionId".into(), json!(transaction_id));
    o.insert("success".into(), json!(token.is_some()));
    if let Some(token) = token {
        o.insert("token".into(), json!(token));
    }
    o.insert("paymentInfo".into(), json!(card_last4));
    if let Some(custom_id) = &checkout.custom_id {
        o.insert("customId".into(), json!(custom_id));
    }
    let message = if knobs.webhook_null_message {
        Value::Null
    } else {
        json!(message)
    };
    o.insert("message".into(), message);
    Value::Object(o)
}

/// Queues a webhook, applying the drop / duplicate / hold knobs. Returns the delivery ids.
pub(crate) fn enqueue(shared: &SharedRef, checkout_id: &str, payload: Value) -> Vec<u64> {
    let (to_send, ids) = {
        let mut st = shared.lock();
        let dropped = take_one(&mut st.knobs.webhook_drop_next);
        let duplicated = !dropped && take_one(&mut st.knobs.webhook_duplicate_next);
        let held = !dropped && take_one(&mut st.knobs.webhook_hold_next);
        let state = if dropped {
            DeliveryState::Dropped
        } else if held {
            DeliveryState::Held
        } else {
            DeliveryState::Pending
        };
        let first = next_id(&st.deliveries);
        let mut ids = vec![first];
        st.deliveries
            .push(record(first, checkout_id, &payload, state, None, None));
        if duplicated {
            let second = first + 1;
            st.deliveries.push(record(
                second,
                checkout_id,
                &payload,
                state,
                Some(first),
                None,
            ));
            ids.push(second);
        }
        let to_send = if state == DeliveryState::Pending {
            ids.clone()
        } else {
            Vec::new()
        };
        (to_send, ids)
    };
    for id in to_send {
        spawn_delivery(shared, id);
    }
    ids
}

/// Sends a recorded webhook again as a new delivery (test-only: real Oen cannot).
pub(crate) fn redeliver(shared: &SharedRef, delivery_id: u64) -> Option<u64> {
    let id = {
        let mut st = shared.lock();
        let original = st
            .deliveries
            .iter()
            .find(|d| d.delivery_id == delivery_id)?
            .clone();
        let id = next_id(&st.deliveries);
        st.deliveries.push(record(
            id,
            &original.checkout_id,
            &original.payload,
            DeliveryState::Pending,
            None,
            Some(delivery_id),
        ));
        id
    };
    spawn_delivery(shared, id);
    Some(id)
}

/// Releases every held webhook; returns how many.
pub(crate) fn release_held(shared: &SharedRef) -> usize {
    let ids: Vec<u64> = {
        let mut st = shared.lock();
        st.deliveries
            .iter_mut()
            .filter(|d| d.state == DeliveryState::Held)
            .map(|d| {
                d.state = DeliveryState::Pending;
                d.delivery_id
            })
            .collect()
    };
    for id in &ids {
        spawn_delivery(shared, *id);
    }
    ids.len()
}

fn take_one(counter: &mut u32) -> bool {
    if *counter > 0 {
        *counter -= 1;
        true
    } else {
        false
    }
}

fn next_id(deliveries: &[DeliveryRecord]) -> u64 {
    deliveries.last().map_or(1, |d| d.delivery_id + 1)
}

fn record(
    delivery_id: u64,
    checkout_id: &str,
    payload: &Value,
    state: DeliveryState,
    duplicate_of: Option<u64>,
    redelivery_of: Option<u64>,
) -> DeliveryRecord {
    DeliveryRecord {
        delivery_id,
        checkout_id: checkout_id.to_string(),
        payload: payload.clone(),
        url: None,
        state,
        attempts: Vec::new(),
        duplicate_of,
        redelivery_of,
    }
}

fn spawn_delivery(shared: &SharedRef, delivery_id: u64) {
    let task = tokio::spawn(deliver(Arc::clone(shared), delivery_id));
    shared.track(task.abort_handle());
}

fn update(shared: &SharedRef, delivery_id: u64, f: impl FnOnce(&mut DeliveryRecord)) {
    let mut st = shared.lock();
    if let Some(d) = st
        .deliveries
        .iter_mut()
        .find(|d| d.delivery_id == delivery_id)
    {
        f(d);
    }
}

async fn deliver(shared: SharedRef, delivery_id: u64) {
    let (url, body, knobs) = {
        let st = shared.lock();
        let Some(d) = st.deliveries.iter().find(|d| d.delivery_id == delivery_id) else {
            return;
        };
        (
            st.webhook_url.clone(),
            serde_json::to_vec(&d.payload).unwrap_or_default(),
            st.knobs.clone(),
        )
    };
    let Some(url) = url else {
        update(&shared, delivery_id, |d| d.state = DeliveryState::NoUrl);
        tracing::warn!(delivery_id, "no webhook URL configured; webhook not sent");
        release_held(&shared);
        return;
    };
    update(&shared, delivery_id, |d| d.url = Some(url.clone()));
    if knobs.webhook_delay_ms > 0 {
        tokio::time::sleep(ms(knobs.webhook_delay_ms)).await;
    }
    let attempts = 1 + knobs.webhook_retry_delays_ms.len();
    let mut delivered = false;
    for attempt in 0..attempts {
        if attempt > 0 {
            let delay = knobs.webhook_retry_delays_ms[attempt - 1];
            tokio::time::sleep(ms(delay)).await;
        }
        let outcome = match shared
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .timeout(ms(knobs.webhook_timeout_ms))
            .send()
            .await
        {
            Ok(resp) => AttemptOutcome::Status {
                code: resp.status().as_u16(),
            },
            Err(e) => AttemptOutcome::Error {
                message: describe(&e),
            },
        };
        let number = u32::try_from(attempt + 1).unwrap_or(u32::MAX);
        tracing::info!(delivery_id, attempt = number, outcome = ?outcome, "webhook attempt");
        delivered =
            matches!(outcome, AttemptOutcome::Status { code } if (200..300).contains(&code));
        let at = shared.lock().now();
        let elapsed_ms = as_ms(shared.started.elapsed());
        update(&shared, delivery_id, |d| {
            d.attempts.push(DeliveryAttempt {
                number,
                at,
                elapsed_ms,
                outcome,
            });
        });
        if delivered {
            break;
        }
    }
    update(&shared, delivery_id, |d| {
        d.state = if delivered {
            DeliveryState::Delivered
        } else {
            DeliveryState::Failed
        };
    });
    // A held (reordered) webhook goes out once a later one has been dealt with.
    release_held(&shared);
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    format!("{kind}: {e}")
}
