//! What an operation answers when it does not succeed: a stable code, the HTTP status it
//! maps to (4xx for what the caller caused, 5xx for ours or Oen's), and a message a caller may
//! read. The detail behind a 5xx (store or Oen errors) is for the log only.

use serde::Serialize;
use thiserror::Error;

use crate::charging::OperationError;
use crate::oen::OenError;
use crate::store::StoreError;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum OpsError {
    /// 400: the request itself is wrong (a malformed id, a missing or unknown field, a value
    /// out of range).
    #[error("{0}")]
    InvalidRequest(String),
    /// 404: nothing under that id.
    #[error("{0}")]
    NotFound(String),
    /// 409: the record's state does not allow it (already canceled, already refunded with
    /// another amount, not paid).
    #[error("{0}")]
    Conflict(String),
    /// 422: Oen refused it (e.g. `R0001` at the acquirer, `V0002`).
    #[error("{0}")]
    Refused(String),
    /// 502: Oen could not be reached or its answer was lost or unreadable. Nothing is assumed:
    /// repeating the request reads Oen before anything is sent again.
    #[error("{public}")]
    UpstreamUnavailable { public: String, detail: String },
    /// 503: our own store (or secret) is unavailable for now.
    #[error("temporarily unavailable; try again")]
    Unavailable(String),
    /// 500: our bug or our configuration.
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of an error: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: &'static str,
    pub message: String,
}

impl OpsError {
    /// The stable code callers branch on.
    pub fn code(&self) -> &'static str {
        match self {
            OpsError::InvalidRequest(_) => "invalid_request",
            OpsError::NotFound(_) => "not_found",
            OpsError::Conflict(_) => "conflict",
            OpsError::Refused(_) => "refused",
            OpsError::UpstreamUnavailable { .. } => "upstream_unavailable",
            OpsError::Unavailable(_) => "unavailable",
            OpsError::Internal(_) => "internal",
        }
    }

    /// The HTTP status of the error.
    pub fn status(&self) -> u16 {
        match self {
            OpsError::InvalidRequest(_) => 400,
            OpsError::NotFound(_) => 404,
            OpsError::Conflict(_) => 409,
            OpsError::Refused(_) => 422,
            OpsError::Internal(_) => 500,
            OpsError::UpstreamUnavailable { .. } => 502,
            OpsError::Unavailable(_) => 503,
        }
    }

    /// Ours (or Oen's) rather than the caller's: logged with the request id.
    pub fn is_server_error(&self) -> bool {
        self.status() >= 500
    }

    /// What the log gets beside the code: the internal detail of a 5xx, else the message.
    pub fn detail(&self) -> &str {
        match self {
            OpsError::InvalidRequest(m)
            | OpsError::NotFound(m)
            | OpsError::Conflict(m)
            | OpsError::Refused(m)
            | OpsError::Unavailable(m)
            | OpsError::Internal(m) => m,
            OpsError::UpstreamUnavailable { detail, .. } => detail,
        }
    }

    /// The body a caller sees: the code and the public message, never the internal detail.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        }
    }

    pub(crate) fn invalid(what: &str, reason: impl std::fmt::Display) -> Self {
        OpsError::InvalidRequest(format!("{what}: {reason}"))
    }
}

impl From<StoreError> for OpsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => OpsError::Conflict(
                "the record changed while it was being updated; read it again and retry".into(),
            ),
            StoreError::Unavailable(d) => OpsError::Unavailable(d),
            StoreError::Corrupt(d) | StoreError::Invalid(d) => OpsError::Internal(d),
        }
    }
}

impl From<OenError> for OpsError {
    fn from(e: OenError) -> Self {
        match &e {
            OenError::State { code, message } => {
                OpsError::Refused(format!("Oen refused it ({code}): {message}"))
            }
            OenError::SoftDecline { code, message } | OenError::HardDecline { code, message } => {
                OpsError::Refused(format!("Oen declined it ({code}): {message}"))
            }
            OenError::Config { .. } => OpsError::Internal(e.to_string()),
            OenError::NotSent(_)
            | OenError::Unknown(_)
            | OenError::Transient { .. }
            | OenError::Unexpected { .. } => OpsError::UpstreamUnavailable {
                public: "Oen did not answer, or its answer was lost; nothing is assumed: repeat the request, which reads Oen before sending anything again".into(),
                detail: e.to_string(),
            },
        }
    }
}

impl From<OperationError> for OpsError {
    fn from(e: OperationError) -> Self {
        match e {
            OperationError::NotFound => OpsError::NotFound("no such subscription".into()),
            OperationError::Refused(m) => OpsError::Conflict(m),
            OperationError::Oen(e) => e.into(),
            OperationError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_errors_are_4xx_and_ours_5xx_with_stable_codes() {
        let cases = [
            (OpsError::InvalidRequest("x".into()), 400, "invalid_request"),
            (OpsError::NotFound("x".into()), 404, "not_found"),
            (OpsError::Conflict("x".into()), 409, "conflict"),
            (OpsError::Refused("x".into()), 422, "refused"),
            (OpsError::Internal("x".into()), 500, "internal"),
            (OpsError::Unavailable("x".into()), 503, "unavailable"),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status(), e.code()), (status, code));
            assert_eq!(e.is_server_error(), status >= 500);
        }
    }

    #[test]
    fn a_5xx_body_never_carries_the_internal_detail() {
        let store: OpsError =
            StoreError::Unavailable("DynamoDB PutItem: arn:aws:dynamodb:secret-table".into())
                .into();
        let oen: OpsError = OenError::Unknown("read timed out from 10.0.0.1".into()).into();
        let config: OpsError = OenError::Config {
            status: 401,
            code: "A0001".into(),
            message: "token invalid".into(),
        }
        .into();
        for e in [store, oen, config] {
            let body = serde_json::to_string(&e.body()).unwrap();
            assert!(!body.contains(e.detail()), "{body}");
            assert!(e.is_server_error());
        }
    }
}
