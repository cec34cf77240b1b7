//! Token webhook delivery: unsigned JSON POSTs to the configured URL, at most three attempts
//! started about 0 s, +2 s and +4 s after the first one started (by default), any 2xx is
//! success, redirects are failures and never followed. Every attempt is recorded so tests can
//! inspect it.

use crate::clock::after;
use crate::delivery::{AttemptOutcome, DeliveryAttempt, DeliveryRecord, DeliveryState};
use crate::ids;
use crate::model::{as_ms, ms, Checkout};
use crate::state::SharedRef;
use axum::body::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

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

/// Sends one webhook: attempt k starts at the first attempt's start plus the first k retry
/// delays (Oen: about 0 s, +2 s, +4 s), however long earlier attempts take to answer, so a
/// receiver that hangs sees its retries on time. Attempts that overlap run side by side; none
/// starts once one got a 2xx. All timing is on the simulator clock.
async fn deliver(shared: SharedRef, delivery_id: u64) {
    let (url, body, knobs) = {
        let st = shared.lock();
        let Some(d) = st.deliveries.iter().find(|d| d.delivery_id == delivery_id) else {
            return;
        };
        (
            st.webhook_url.clone(),
            Bytes::from(serde_json::to_vec(&d.payload).unwrap_or_default()),
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
    let queued = shared.now();
    // How long after the first attempt's start each attempt starts: 0, then the running sum
    // of the retry delays.
    let offsets = std::iter::once(Duration::ZERO).chain(knobs.webhook_retry_delays_ms.iter().scan(
        Duration::ZERO,
        |sum, delay| {
            *sum = sum.saturating_add(ms(*delay));
            Some(*sum)
        },
    ));
    let timeout = ms(knobs.webhook_timeout_ms);
    let mut first_start = None;
    let mut in_flight = JoinSet::new();
    let mut delivered = false;
    'attempts: for (number, offset) in (1u32..).zip(offsets) {
        let due = match first_start {
            None => after(queued, ms(knobs.webhook_delay_ms)),
            Some(first) => after(first, offset),
        };
        loop {
            tokio::select! {
                () = shared.sleep_until(due) => break,
                Some(ended) = in_flight.join_next() => {
                    delivered |= record_attempt(&shared, delivery_id, ended);
                    if delivered {
                        break 'attempts;
                    }
                }
            }
        }
        let at = shared.now();
        first_start.get_or_insert(at);
        let attempt = Attempt {
            shared: Arc::clone(&shared),
            url: url.clone(),
            body: body.clone(),
            number,
            at,
            elapsed_ms: as_ms(shared.started.elapsed()),
            timeout,
        };
        in_flight.spawn(attempt.send(delivery_id));
    }
    while let Some(ended) = in_flight.join_next().await {
        delivered |= record_attempt(&shared, delivery_id, ended);
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

/// One POST of a webhook body.
struct Attempt {
    shared: SharedRef,
    url: String,
    body: Bytes,
    number: u32,
    /// When it started (simulator clock) and the real milliseconds since the simulator started.
    at: DateTime<Utc>,
    elapsed_ms: u64,
    timeout: Duration,
}

impl Attempt {
    /// Posts the body and waits for an answer until the timeout (simulator clock).
    async fn send(self, delivery_id: u64) -> DeliveryAttempt {
        let request = self
            .shared
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(self.body)
            .send();
        let outcome = tokio::select! {
            result = request => match result {
                Ok(resp) => AttemptOutcome::Status {
                    code: resp.status().as_u16(),
                },
                Err(e) => AttemptOutcome::Error {
                    message: describe(&e),
                },
            },
            () = self.shared.sleep_until(after(self.at, self.timeout)) => AttemptOutcome::Error {
                message: format!("timeout: no answer within {} ms", as_ms(self.timeout)),
            },
        };
        tracing::info!(delivery_id, attempt = self.number, outcome = ?outcome, "webhook attempt");
        DeliveryAttempt {
            number: self.number,
            at: self.at,
            elapsed_ms: self.elapsed_ms,
            ended_at: self.shared.now(),
            outcome,
        }
    }
}

/// Records an ended attempt in number order; returns whether it got a 2xx.
fn record_attempt(
    shared: &SharedRef,
    delivery_id: u64,
    ended: Result<DeliveryAttempt, tokio::task::JoinError>,
) -> bool {
    // An attempt only fails to end when the simulator is shutting down.
    let Ok(attempt) = ended else {
        return false;
    };
    let delivered =
        matches!(attempt.outcome, AttemptOutcome::Status { code } if (200..300).contains(&code));
    update(shared, delivery_id, |d| {
        d.attempts.push(attempt);
        d.attempts.sort_by_key(|a| a.number);
    });
    delivered
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
