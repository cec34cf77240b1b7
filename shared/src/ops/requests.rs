//! The request bodies the operations take, as JSON (camelCase). Unknown fields are refused, so
//! a misspelt `ammount` is a 400 rather than a full refund.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::OpsError;

/// `POST /v1/links`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkRequest {
    pub customer: String,
    pub plan: String,
    pub ttl_seconds: i64,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Oen's `invoiceInfo` for this customer's charges (a JSON object, e-invoice merchants).
    #[serde(default)]
    pub invoice_info: Option<serde_json::Value>,
}

/// When a cancel takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelAt {
    /// At once: nothing is charged again.
    Now,
    /// When the paid period ends; [`resume`](super::Operations::resume) undoes it until then.
    PeriodEnd,
}

/// `POST /v1/subscriptions/{id}/cancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub at: CancelAt,
}

/// `POST /v1/periods/{orderId}/refund`: the whole charge without `amount`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundRequest {
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A request body read as `T`, or a 400 that says what is wrong with it (malformed JSON, a
/// missing or unknown field, a value of the wrong type). An empty body reads as `{}`.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, OpsError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "the request body does not fit",
            _ => "the request body is not valid JSON",
        };
        OpsError::InvalidRequest(format!("{what}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_and_every_mistake_is_named() {
        let link: LinkRequest =
            from_json(br#"{"customer":"c1","plan":"premium","ttlSeconds":600}"#).unwrap();
        assert_eq!(link.ttl_seconds, 600);
        assert_eq!(
            from_json::<CancelRequest>(br#"{"at":"period_end"}"#).unwrap(),
            CancelRequest {
                at: CancelAt::PeriodEnd
            }
        );
        assert_eq!(
            from_json::<RefundRequest>(b"").unwrap(),
            RefundRequest::default()
        );
        let errors = [
            (
                from_json::<CancelRequest>(br#"{"at":"later"}"#).unwrap_err(),
                "unknown variant `later`",
            ),
            (
                from_json::<CancelRequest>(b"{}").unwrap_err(),
                "missing field `at`",
            ),
            (
                from_json::<RefundRequest>(br#"{"ammount":5}"#).unwrap_err(),
                "unknown field `ammount`",
            ),
            (
                from_json::<RefundRequest>(br#"{"amount":"5"}"#).unwrap_err(),
                "invalid type",
            ),
            (
                from_json::<RefundRequest>(b"{not json").unwrap_err(),
                "is not valid JSON",
            ),
        ];
        for (e, want) in errors {
            assert_eq!(e.code(), "invalid_request");
            assert!(e.to_string().contains(want), "{e} lacks {want}");
        }
    }
}
