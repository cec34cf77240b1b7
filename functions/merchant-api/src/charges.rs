//! One-off charges: `POST /v1/charges` (header `Idempotency-Key`) and `GET /v1/charges/{id}`,
//! answered by [`oen_pay::oneoff`] with the status and body it gives (`201` paid, `202`
//! unknown with a `statusUrl`, `402` declined, `409`/`422` for the key, …), plus
//! `Idempotent-Replayed: true` when the answer is the key's stored one.
//!
//! # Time
//! The merchant waits for the answer behind API Gateway, which gives up on the integration
//! after 30 s. A request therefore works by [`REQUEST_BUDGET`] from its arrival (or the Lambda
//! invocation's deadline, when that is sooner and believable), and charges under
//! [`one_off_policy`]: a lease that ends by then, and a charge request that leaves early enough
//! for our Oen client's whole wait (20 s) to fit inside it. Oen itself may work up to 29 s on a
//! charge; what it does after we stopped waiting is covered by the protocol, not by the lease:
//! the answer is then `202`, and anyone who later takes the charge over trusts Oen's order
//! listing only `listing_trusted_after` (5 min) after the last moment a request may have left.

use std::sync::{Arc, Once};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{request::Parts, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lambda_http::Context;
use oen_pay::charging::{ChargePolicy, WorkContext};
use oen_pay::chrono::{DateTime, Duration, Utc};
use oen_pay::oneoff::{self, OneOffDeps, OneOffError, OneOffRequest, Reply};

use crate::{with_headers, App, Call, MAX_BODY};

/// The name metrics of one-off charges are counted under (`Function` dimension).
pub const FUNCTION: &str = "merchant-api";

/// How long a charge request may work from its arrival: API Gateway's 30 s integration
/// timeout, less 2 s for the answer's way back.
pub const REQUEST_BUDGET: Duration = Duration::seconds(28);

/// The header that names a request for idempotency.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Set (to `true`) on an answer replayed from the key rather than produced now.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The charging policy of a request whose caller is waiting: `base` (back-off, alarms) with a
/// lease and a send deadline that fit in [`REQUEST_BUDGET`].
///
/// A request that claims its charge within 4 s of arriving holds the lease no later than 30 s
/// after its arrival; its charge request leaves no later than 4 s after the claim, and our Oen
/// client stops waiting 20 s after that (`OenClientConfig`'s `request_timeout`), leaving 2 s
/// to write the outcome. A claim later than that (a store taking seconds to answer) finds no
/// time left to send and answers 503 with nothing charged.
pub fn one_off_policy(base: &ChargePolicy) -> ChargePolicy {
    ChargePolicy {
        lease: Duration::seconds(26),
        oen_processing: Duration::seconds(20),
        margin: Duration::seconds(2),
        ..base.clone()
    }
}

/// Warns about an unbelievable deadline once per process, not on every request.
static PAST_DEADLINE_WARNING: Once = Once::new();

/// The deadline a request arrived at `arrived` works by: [`REQUEST_BUDGET`] after its arrival,
/// or the Lambda invocation's deadline (`deadline_ms`, milliseconds since the epoch) when that
/// comes sooner. A deadline already past on arrival is not believed: `cargo lambda watch`
/// sends one in 1970 (0 means none: a hand-made context).
pub fn work_deadline(deadline_ms: Option<u64>, arrived: DateTime<Utc>) -> DateTime<Utc> {
    let budget = arrived + REQUEST_BUDGET;
    let Some(ms) = deadline_ms.filter(|ms| *ms != 0) else {
        return budget;
    };
    let given = i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    match given.filter(|d| *d > arrived) {
        Some(given) => given.min(budget),
        None => {
            PAST_DEADLINE_WARNING.call_once(|| {
                tracing::warn!(
                    deadline_ms = ms,
                    arrived = %arrived,
                    "the invocation's deadline had passed when the request arrived (a local \
                     emulator?); working by the request budget from the arrival"
                );
            });
            budget
        }
    }
}

/// What one-off charges need, borrowed from the app, with the policy for a waiting caller.
fn deps<'a>(app: &'a App, policy: &'a ChargePolicy) -> OneOffDeps<'a> {
    OneOffDeps::new(&app.ops.deps.adapters, policy, FUNCTION)
}

/// The raw `Idempotency-Key`, or why the request is refused without one.
fn idempotency_key(parts: &Parts) -> Result<&str, OneOffError> {
    let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
    match (values.next(), values.next()) {
        (None, _) => Err(OneOffError::InvalidRequest(
            "the Idempotency-Key header is required: 8 to 128 characters of A-Z a-z 0-9 - _ . : \
             naming this charge (send the same key again to repeat it safely)"
                .into(),
        )),
        (Some(_), Some(_)) => Err(OneOffError::InvalidRequest(
            "send the Idempotency-Key header once".into(),
        )),
        (Some(v), None) => v.to_str().map_err(|_| {
            OneOffError::InvalidRequest(
                "the Idempotency-Key header must be 8 to 128 characters of A-Z a-z 0-9 - _ . :"
                    .into(),
            )
        }),
    }
}

/// The body, within [`MAX_BODY`].
fn body(body: Result<Bytes, BytesRejection>) -> Result<OneOffRequest, Refused> {
    match body {
        Ok(b) if b.len() <= MAX_BODY => OneOffRequest::from_json(&b).map_err(Refused::Invalid),
        Err(e) if e.status() != StatusCode::PAYLOAD_TOO_LARGE => Err(Refused::Invalid(
            OneOffError::InvalidRequest("the request body could not be read".into()),
        )),
        _ => Err(Refused::TooLarge),
    }
}

enum Refused {
    Invalid(OneOffError),
    TooLarge,
}

pub(crate) async fn create(
    State(app): State<Arc<App>>,
    parts: Parts,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = Call::of(&parts);
    let key = match idempotency_key(&parts) {
        Ok(key) => key,
        Err(e) => return refused(&call, "charge", &e),
    };
    let request = match body(raw) {
        Ok(request) => request,
        Err(Refused::Invalid(e)) => return refused(&call, "charge", &e),
        Err(Refused::TooLarge) => return call.refuse(crate::Refusal::TooLarge),
    };
    let arrived = app.ops.deps.adapters.clock.now();
    let lambda_deadline = parts.extensions.get::<Context>().map(|c| c.deadline);
    let ctx = WorkContext {
        owner: call.rid.clone(),
        deadline: Some(work_deadline(lambda_deadline, arrived)),
    };
    let policy = one_off_policy(&app.ops.deps.policy);
    match oneoff::create(&deps(&app, &policy), Some(key), &request, &ctx).await {
        Ok(reply) => answered(&call, reply),
        Err(e) => refused(&call, "charge", &e),
    }
}

pub(crate) async fn show(
    State(app): State<Arc<App>>,
    parts: Parts,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let call = Call::of(&parts);
    let id = match call.path(path) {
        Ok(id) => id,
        Err(refused) => return refused,
    };
    let policy = one_off_policy(&app.ops.deps.policy);
    match oneoff::get(&deps(&app, &policy), &id).await {
        Ok(view) => {
            tracing::info!(request_id = %call.rid, caller = %call.caller.user_arn, operation = "charge status", charge = %view.id, "operation done");
            with_headers(&call.rid, (StatusCode::OK, Json(view)).into_response())
        }
        Err(e) => refused(&call, "charge status", &e),
    }
}

/// A reply of the protocol: its status and body as they are, marked when replayed.
fn answered(call: &Call, reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let charge = reply
        .body
        .get("id")
        .or_else(|| reply.body.pointer("/error/charge/id"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    tracing::info!(request_id = %call.rid, caller = %call.caller.user_arn, operation = "charge", charge, status = reply.status, replayed = reply.replayed, stored = reply.stored, "operation done");
    let mut response = with_headers(&call.rid, (status, Json(reply.body)).into_response());
    if reply.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// An error of the protocol (never stored): 5xx are logged as errors with the request id; the
/// body carries the stable code and a message without internals.
fn refused(call: &Call, operation: &str, e: &OneOffError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(request_id = %call.rid, caller = %call.caller.user_arn, operation, code = e.code(), reason = %e, "operation failed");
    } else {
        tracing::info!(request_id = %call.rid, caller = %call.caller.user_arn, operation, code = e.code(), reason = %e, "operation refused");
    }
    with_headers(&call.rid, (status, Json(e.body())).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oen_pay::chrono::TimeZone;

    fn arrived() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 31, 2, 0, 0).unwrap()
    }

    fn ms(t: DateTime<Utc>) -> Option<u64> {
        u64::try_from(t.timestamp_millis()).ok()
    }

    #[test]
    fn a_request_works_by_its_budget_or_the_invocations_sooner_deadline() {
        let budget = arrived() + REQUEST_BUDGET;
        assert_eq!(work_deadline(None, arrived()), budget);
        assert_eq!(work_deadline(Some(0), arrived()), budget);
        let sooner = arrived() + Duration::seconds(12);
        assert_eq!(work_deadline(ms(sooner), arrived()), sooner);
        let later = arrived() + Duration::seconds(900);
        assert_eq!(work_deadline(ms(later), arrived()), budget);
    }

    #[test]
    fn a_deadline_already_past_is_not_believed() {
        // `cargo lambda watch` sends ten minutes after the epoch.
        assert_eq!(
            work_deadline(Some(600_000), arrived()),
            arrived() + REQUEST_BUDGET
        );
        assert_eq!(
            work_deadline(ms(arrived()), arrived()),
            arrived() + REQUEST_BUDGET
        );
        assert_eq!(
            work_deadline(Some(u64::MAX), arrived()),
            arrived() + REQUEST_BUDGET
        );
    }

    #[test]
    fn a_prompt_claim_leaves_time_to_send_and_ends_its_lease_before_api_gateway_gives_up() {
        let policy = one_off_policy(&ChargePolicy::default());
        let deadline = work_deadline(None, arrived());
        for claimed_after in [0, 1, 4] {
            let claimed = arrived() + Duration::seconds(claimed_after);
            let lease_until = policy.lease_until(claimed);
            assert!(lease_until <= arrived() + Duration::seconds(30));
            let send_by = policy.send_deadline(lease_until, Some(deadline));
            assert!(
                send_by >= claimed,
                "no time to send after {claimed_after} s"
            );
            // Our client's whole wait, then the write, fit before the answer must leave.
            assert!(send_by + policy.oen_processing + policy.margin <= deadline);
        }
        // A claim too late for a whole wait sends nothing.
        let late = arrived() + Duration::seconds(7);
        assert!(policy.send_deadline(policy.lease_until(late), Some(deadline)) < late);
    }

    #[test]
    fn the_wait_the_policy_allows_for_is_the_oen_clients() {
        let client = oen_pay::oen::OenClientConfig::new(
            "https://payment-api.testing.oen.tw",
            oen_pay::domain::MerchantId::parse("ming").unwrap(),
        );
        let policy = one_off_policy(&ChargePolicy::default());
        assert_eq!(
            policy.oen_processing.to_std().ok(),
            Some(client.request_timeout)
        );
    }
}
