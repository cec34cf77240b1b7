//! How the simulator answers a call that can go wrong on the way back: Oen's success envelope,
//! an Oen failure, a 504 after the gateway's time limit, or a connection closed without an
//! answer. Charges, refunds and order queries all answer this way, forced or not.

use crate::envelope::ApiError;
use crate::model::ForcedOutcome;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// HTTP 200 `S0000` with this `data`.
    Success(Value),
    Fail(ApiError),
    /// 504 after the gateway-timeout delay.
    GatewayTimeout,
    /// The connection is closed without a response.
    Drop,
}

impl Reply {
    /// The answer a forced outcome gives in place of the normal one. Whatever the outcome
    /// records in the ledger is the caller's business; `default_message` words a `respond`
    /// outcome that brought no message of its own.
    pub(crate) fn forced(
        outcome: &ForcedOutcome,
        default_message: fn(&str) -> &'static str,
    ) -> Self {
        match outcome {
            ForcedOutcome::Respond {
                code,
                http_status,
                message,
            } => Reply::Fail(ApiError::coded(
                *http_status,
                code,
                message
                    .clone()
                    .unwrap_or_else(|| default_message(code).to_string()),
            )),
            ForcedOutcome::Unknown { .. } => Reply::Fail(ApiError::unknown_result()),
            ForcedOutcome::GatewayTimeoutAfterCommit
            | ForcedOutcome::GatewayTimeoutBeforeCommit => Reply::GatewayTimeout,
            ForcedOutcome::DropConnectionAfterCommit
            | ForcedOutcome::DropConnectionBeforeCommit => Reply::Drop,
            ForcedOutcome::SystemErrorAfterCommit { message } => Reply::Fail(ApiError::system(
                message
                    .clone()
                    .unwrap_or_else(|| "System error".to_string()),
            )),
        }
    }
}
