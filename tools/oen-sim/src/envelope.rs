//! Oen's response envelope and error answers.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// An answer in Oen's failure envelope: `{"code":"V0001","data":{},"message":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// `C026` answers carry `"retryable": false`.
    pub retryable: Option<bool>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            retryable: None,
        }
    }

    /// 400 `V0001`: invalid parameters.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "V0001", message)
    }

    /// 400 `V0002`: the state does not allow it.
    pub(crate) fn not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "V0002", message)
    }

    /// 500 `F0001`: system error (also malformed JSON).
    pub(crate) fn system(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "F0001", message)
    }

    /// 401 `A0001`.
    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "A0001", "Unauthorized")
    }

    /// 409 `C026`: payment result unknown.
    pub(crate) fn unknown_result() -> Self {
        Self {
            retryable: Some(false),
            ..Self::new(
                StatusCode::CONFLICT,
                "C026",
                "Payment result unknown; do not retry, query the transaction later",
            )
        }
    }

    /// A forced or declined answer with an arbitrary code and HTTP status.
    pub(crate) fn coded(http_status: u16, code: &str, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "data": {}, "message": self.message});
        if let (Some(retryable), Some(obj)) = (self.retryable, body.as_object_mut()) {
            obj.insert("retryable".into(), json!(retryable));
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// HTTP 200 `{"code":"S0000","data":...,"message":""}`.
pub(crate) fn success(data: Value) -> Response {
    axum::Json(json!({"code": "S0000", "data": data, "message": ""})).into_response()
}

/// 403 `{"message":"Forbidden"}` with no `code`, as Oen's IP allowlist answers.
pub(crate) fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(json!({"message": "Forbidden"})),
    )
        .into_response()
}

/// 504 after the API's time limit (the operation may still have completed).
pub(crate) fn gateway_timeout() -> Response {
    (
        StatusCode::GATEWAY_TIMEOUT,
        axum::Json(json!({"message": "Endpoint request timed out"})),
    )
        .into_response()
}

/// Plain-text 404, as Oen answers unknown paths.
pub(crate) async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "Not Found")
}

/// Plain-text 405, as Oen answers an unsupported method.
pub(crate) async fn method_not_allowed() -> Response {
    plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}
