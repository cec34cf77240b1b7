//! The invocation's deadline, as far as it can be believed.
//!
//! Lambda's `Lambda-Runtime-Deadline-Ms` is the wall-clock end of the invocation. Runtime
//! emulators may send something else: `cargo lambda watch` sends a fixed 600000 (ten minutes
//! after the epoch), which taken at its word hands every charge back as "too little time left".
//! A deadline already past when the invocation arrives is therefore unknown; the function's
//! timeout (`AWS_LAMBDA_FUNCTION_TIMEOUT`), counted from the arrival, stands in for it, and
//! without one the invocation has no deadline.

use std::sync::Once;

use oen_pay::chrono::{DateTime, Duration, Utc};

/// Warns about an unbelievable deadline once per process, not on every invocation.
static PAST_DEADLINE_WARNING: Once = Once::new();

/// The deadline to work by, for an invocation that arrived at `arrived` with the runtime's
/// `deadline_ms` (milliseconds since the epoch; 0 in a hand-made context, meaning none).
pub fn invocation_deadline(
    deadline_ms: u64,
    arrived: DateTime<Utc>,
    function_timeout: Option<Duration>,
) -> Option<DateTime<Utc>> {
    if deadline_ms == 0 {
        return None;
    }
    let given = i64::try_from(deadline_ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    if let Some(given) = given.filter(|d| *d > arrived) {
        return Some(given);
    }
    let fallback = function_timeout.map(|t| arrived + t);
    PAST_DEADLINE_WARNING.call_once(|| {
        tracing::warn!(
            deadline_ms,
            arrived = %arrived,
            fallback = ?fallback,
            "the runtime's invocation deadline had passed when the invocation arrived (a local \
             emulator?); working by AWS_LAMBDA_FUNCTION_TIMEOUT from the arrival, or without a \
             deadline when it is unset"
        );
    });
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrived() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2027-01-31T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_future_deadline_is_the_runtimes() {
        let deadline = arrived() + Duration::seconds(42);
        let ms = deadline.timestamp_millis() as u64;
        assert_eq!(
            invocation_deadline(ms, arrived(), Some(Duration::seconds(60))),
            Some(deadline)
        );
    }

    #[test]
    fn no_deadline_in_a_hand_made_context() {
        assert_eq!(
            invocation_deadline(0, arrived(), Some(Duration::seconds(60))),
            None
        );
    }

    #[test]
    fn a_deadline_in_1970_counts_the_function_timeout_from_the_arrival() {
        assert_eq!(
            invocation_deadline(600_000, arrived(), Some(Duration::seconds(60))),
            Some(arrived() + Duration::seconds(60))
        );
        assert_eq!(invocation_deadline(600_000, arrived(), None), None);
    }

    #[test]
    fn a_deadline_beyond_any_time_is_unknown_too() {
        assert_eq!(invocation_deadline(u64::MAX, arrived(), None), None);
    }
}
