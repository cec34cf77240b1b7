//! Oen's JSON shapes and the classification of every response into [`OenError`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::OenError;
use crate::domain::ProductDetail;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckoutBody<'a> {
    pub merchant_id: &'a str,
    // Oen requires both keys, null allowed: no `skip_serializing_if` here.
    pub success_url: Option<&'a str>,
    pub failure_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer_email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChargeBody<'a> {
    pub merchant_id: &'a str,
    pub amount: u32,
    pub currency: &'static str,
    pub token: &'a str,
    pub order_id: &'a str,
    pub product_details: &'a [ProductDetail],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_info: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RefundBody<'a> {
    pub merchant_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "<[ProductDetail]>::is_empty")]
    pub product_details: &'a [ProductDetail],
}

#[derive(Deserialize)]
pub(super) struct IdData {
    pub id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChargeData {
    pub id: String,
    #[serde(default)]
    pub auth_code: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct TransactionsData {
    pub transactions: Vec<super::Transaction>,
}

/// A page of `GET /transactions`: `page` names the next page (a string or a number), absent,
/// null or empty on the last one.
#[derive(Deserialize)]
pub(super) struct TransactionPageData {
    pub transactions: Vec<super::Transaction>,
    #[serde(default)]
    pub page: Option<PageValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum PageValue {
    Text(String),
    Number(u64),
}

impl PageValue {
    pub(super) fn into_token(self) -> Option<super::PageToken> {
        match self {
            PageValue::Text(t) => super::PageToken::new(t),
            PageValue::Number(n) => super::PageToken::new(n.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    code: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

/// Whether a call creates something at Oen (a page, a charge, a refund) or only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallKind {
    Create,
    Query,
}

const EXCERPT_CHARS: usize = 160;

/// A short excerpt of a response body for an error message. Long alphanumeric runs (tokens,
/// keys, ids) are masked so that nothing secret can ride along into logs.
pub(super) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 16 {
            out.push_str("[masked]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars().take(EXCERPT_CHARS) {
        if c.is_ascii_alphanumeric() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut run, &mut out);
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out.trim().to_owned()
}

/// Turns an HTTP answer from Oen into the `data` of a success or a classified error.
pub(super) fn classify(kind: CallKind, status: u16, body: &[u8]) -> Result<Value, OenError> {
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    let Some(env) = envelope else {
        return Err(match (status, kind) {
            (504, _) => OenError::Unknown(format!(
                "HTTP 504 after Oen's 29 s limit: {}",
                excerpt(body)
            )),
            (502 | 503, CallKind::Create) => {
                OenError::Unknown(format!("HTTP {status} from a proxy: {}", excerpt(body)))
            }
            (502 | 503, CallKind::Query) => OenError::Transient {
                status,
                message: excerpt(body),
            },
            _ => OenError::Unexpected {
                status,
                excerpt: excerpt(body),
            },
        });
    };
    let message = env.message.unwrap_or_default();
    let Some(code) = env.code else {
        return Err(match status {
            403 => OenError::Config {
                status,
                code: "FORBIDDEN".into(),
                message: format!(
                    "source IP not allowlisted by Oen ({})",
                    excerpt(message.as_bytes())
                ),
            },
            504 => OenError::Unknown("HTTP 504 after Oen's 29 s limit".into()),
            _ => OenError::Unexpected {
                status,
                excerpt: excerpt(body),
            },
        });
    };
    let message = excerpt(message.as_bytes());
    match code.as_str() {
        "S0000" if status == 200 => Ok(env.data.unwrap_or(Value::Null)),
        "C026" => Err(OenError::Unknown(format!(
            "C026 payment result unknown: {message}"
        ))),
        "T0001" | "T0004" | "E0001" => Err(OenError::SoftDecline { code, message }),
        "T0002" | "T0003" | "T0005" => Err(OenError::HardDecline { code, message }),
        "A0001" | "V0001" | "V0003" | "K0001" => Err(OenError::Config {
            status,
            code,
            message,
        }),
        "V0002" | "R0001" => Err(OenError::State { code, message }),
        "F0001" => Err(match kind {
            CallKind::Create => OenError::Unknown(format!("F0001 system error: {message}")),
            CallKind::Query => OenError::Transient { status, message },
        }),
        _ if status == 504 => Err(OenError::Unknown(format!("HTTP 504 ({code})"))),
        _ => Err(OenError::Unexpected {
            status,
            excerpt: format!("code {}: {message}", excerpt(code.as_bytes())),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallKind::{Create, Query};

    fn err(kind: CallKind, status: u16, body: &str) -> OenError {
        classify(kind, status, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn success_returns_data() {
        let data = classify(
            Create,
            200,
            br#"{"code":"S0000","data":{"id":"x"},"message":""}"#,
        )
        .unwrap();
        assert_eq!(data["id"], "x");
    }

    #[test]
    fn every_code_of_the_contract_is_classified() {
        let body = |c: &str| format!(r#"{{"code":"{c}","data":{{}},"message":"m"}}"#);
        assert!(
            matches!(err(Create, 401, &body("A0001")), OenError::Config { code, .. } if code == "A0001")
        );
        assert!(matches!(
            err(Create, 400, &body("V0001")),
            OenError::Config { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("V0002")),
            OenError::State { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("V0003")),
            OenError::Config { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("T0001")),
            OenError::SoftDecline { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("T0002")),
            OenError::HardDecline { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("T0003")),
            OenError::HardDecline { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("T0004")),
            OenError::SoftDecline { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("E0001")),
            OenError::SoftDecline { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("T0005")),
            OenError::HardDecline { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("R0001")),
            OenError::State { .. }
        ));
        assert!(matches!(
            err(Create, 400, &body("K0001")),
            OenError::Config { .. }
        ));
        assert!(matches!(
            err(Create, 409, &body("C026")),
            OenError::Unknown(_)
        ));
        assert!(matches!(
            err(Create, 500, &body("F0001")),
            OenError::Unknown(_)
        ));
        assert!(matches!(
            err(Query, 500, &body("F0001")),
            OenError::Transient { .. }
        ));
        assert!(matches!(
            err(Create, 403, r#"{"message":"Forbidden"}"#),
            OenError::Config { status: 403, .. }
        ));
        assert!(matches!(
            err(Create, 504, "<html>Gateway Timeout</html>"),
            OenError::Unknown(_)
        ));
        assert!(matches!(err(Query, 504, ""), OenError::Unknown(_)));
    }

    #[test]
    fn non_envelope_answers_are_unexpected_with_status_and_excerpt() {
        match err(Query, 404, "404 page not found") {
            OenError::Unexpected {
                status: 404,
                excerpt,
            } => assert_eq!(excerpt, "404 page not found"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            err(Create, 405, "Method Not Allowed"),
            OenError::Unexpected { status: 405, .. }
        ));
        assert!(matches!(
            err(Create, 200, "<html><body>hi</body></html>"),
            OenError::Unexpected { status: 200, .. }
        ));
        assert!(matches!(
            err(Create, 200, r#"{"code":"S0000","da"#),
            OenError::Unexpected { .. }
        ));
        assert!(matches!(
            err(Create, 200, r#"{"code":"Z9999","data":{}}"#),
            OenError::Unexpected { .. }
        ));
    }

    #[test]
    fn null_message_and_unknown_fields_are_tolerated() {
        let data = classify(
            Query,
            200,
            br#"{"code":"S0000","data":{"id":"x","new":1},"message":null,"extra":true}"#,
        )
        .unwrap();
        assert_eq!(data["id"], "x");
        assert!(matches!(
            err(Create, 400, r#"{"code":"T0004","message":null}"#),
            OenError::SoftDecline { .. }
        ));
    }

    #[test]
    fn excerpts_mask_long_alphanumeric_runs() {
        let e = excerpt(b"bad token 2HhnhWm8Qe0sPz4LbXv9KdYt1Ra here");
        assert_eq!(e, "bad token [masked] here");
        let long = "x ".repeat(500);
        assert!(excerpt(long.as_bytes()).chars().count() <= EXCERPT_CHARS + 1);
    }
}
