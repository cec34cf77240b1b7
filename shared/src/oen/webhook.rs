//! Oen's webhook body, parsed once at the edge into what it can mean. Oen signs nothing, so a
//! parsed notification is only a claim: [`crate::binding`] decides whether it matches a binding
//! session we created.

use serde::Deserialize;

use crate::domain::{CardToken, CheckoutId};

/// A webhook body, by purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// The result of a card binding on a hosted page.
    Token(TokenNotification),
    /// A purpose we do not act on (`charge`, `refund`, …): acknowledged so Oen stops retrying.
    Other { purpose: String },
}

/// `purpose: "token"`: a binding page's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenNotification {
    /// Oen's merchant id, as sent (matched against ours by the caller).
    pub merchant_id: Option<String>,
    /// The hosted page (checkout-token id). `transactionId` is ignored: it can differ.
    pub checkout: CheckoutId,
    /// Our `customId`, echoed back verbatim.
    pub custom_id: Option<String>,
    pub result: BindingResult,
}

/// What became of the binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingResult {
    /// `success: true` with a token; `last4` from `paymentInfo` when it has four digits.
    Bound {
        token: CardToken,
        last4: Option<String>,
    },
    /// `success: false`; `message` when Oen gave a non-empty one (e.g. `3DS_ABANDONED`).
    Failed { message: Option<String> },
}

/// Why a body is not a webhook we can read. The reason goes to our log, never to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook body refused: {0}")]
pub struct NotificationError(pub &'static str);

/// The body as Oen sends it. Unknown fields are ignored; `message` may be absent, `""` or null.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBody {
    purpose: String,
    #[serde(default)]
    merchant_id: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    payment_info: Option<String>,
    #[serde(default)]
    custom_id: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl Notification {
    /// The one parser of Oen's webhook bodies.
    pub fn parse(body: &[u8]) -> Result<Self, NotificationError> {
        let wire: WireBody = serde_json::from_slice(body)
            .map_err(|_| NotificationError("body is not a webhook JSON object"))?;
        if wire.purpose != "token" {
            return Ok(Notification::Other {
                purpose: wire.purpose,
            });
        }
        let checkout = wire
            .id
            .as_deref()
            .and_then(|id| CheckoutId::parse(id).ok())
            .ok_or(NotificationError("id is missing or malformed"))?;
        let result = match (wire.success, wire.token.as_deref()) {
            (None, _) => return Err(NotificationError("success is missing")),
            (Some(true), None) => return Err(NotificationError("success without a token")),
            (Some(true), Some(t)) => BindingResult::Bound {
                token: CardToken::parse(t).map_err(|_| NotificationError("token is malformed"))?,
                last4: wire.payment_info.as_deref().and_then(last4),
            },
            (Some(false), _) => BindingResult::Failed {
                message: wire.message.filter(|m| !m.is_empty()),
            },
        };
        Ok(Notification::Token(TokenNotification {
            merchant_id: wire.merchant_id,
            checkout,
            custom_id: wire.custom_id,
            result,
        }))
    }
}

/// The last four digits of `paymentInfo` (a masked card number such as `424242******4242`).
fn last4(payment_info: &str) -> Option<String> {
    let digits: String = payment_info.chars().filter(char::is_ascii_digit).collect();
    (digits.len() >= 4).then(|| digits[digits.len() - 4..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Notification, NotificationError> {
        Notification::parse(json.as_bytes())
    }

    #[test]
    fn a_successful_binding_carries_its_token_and_last4() {
        let n = parse(
            r#"{"purpose":"token","merchantId":"ming","id":"2HhngP9sVb3mK1xYdQe7Wc0RtUi",
                "transactionId":"other","success":true,"token":"2HhnhWm8Qe0sPz4LbXv9KdYt1Ra",
                "paymentInfo":"424242******4242","customId":"M001","message":"","extra":1}"#,
        )
        .unwrap();
        let Notification::Token(t) = n else {
            panic!("not a token notification")
        };
        assert_eq!(t.checkout.as_str(), "2HhngP9sVb3mK1xYdQe7Wc0RtUi");
        assert_eq!(t.merchant_id.as_deref(), Some("ming"));
        assert_eq!(t.custom_id.as_deref(), Some("M001"));
        let BindingResult::Bound { token, last4 } = t.result else {
            panic!("not bound")
        };
        assert_eq!(token.expose(), "2HhnhWm8Qe0sPz4LbXv9KdYt1Ra");
        assert_eq!(last4.as_deref(), Some("4242"));
    }

    #[test]
    fn a_failed_binding_keeps_a_non_empty_message_only() {
        for (message, want) in [
            (r#""3DS_ABANDONED""#, Some("3DS_ABANDONED")),
            (r#""""#, None),
            ("null", None),
        ] {
            let body = format!(
                r#"{{"purpose":"token","id":"2HhngP9sVb3mK1xYdQe7Wc0RtUi","success":false,"message":{message}}}"#
            );
            let Notification::Token(t) = parse(&body).unwrap() else {
                panic!("not a token notification")
            };
            assert_eq!(
                t.result,
                BindingResult::Failed {
                    message: want.map(str::to_owned)
                }
            );
        }
    }

    #[test]
    fn other_purposes_are_told_apart_without_checking_token_fields() {
        assert_eq!(
            parse(r#"{"purpose":"charge","id":"P1"}"#).unwrap(),
            Notification::Other {
                purpose: "charge".into()
            }
        );
    }

    #[test]
    fn malformed_bodies_say_why() {
        for (body, why) in [
            ("not json", "body is not a webhook JSON object"),
            (r#"{"id":"x"}"#, "body is not a webhook JSON object"),
            (
                r#"{"purpose":"token","success":true,"token":"t"}"#,
                "id is missing or malformed",
            ),
            (
                r#"{"purpose":"token","id":"2HhngP9sVb3mK1xYdQe7Wc0RtUi"}"#,
                "success is missing",
            ),
            (
                r#"{"purpose":"token","id":"2HhngP9sVb3mK1xYdQe7Wc0RtUi","success":true}"#,
                "success without a token",
            ),
            (
                r#"{"purpose":"token","id":"2HhngP9sVb3mK1xYdQe7Wc0RtUi","success":true,"token":"a b"}"#,
                "token is malformed",
            ),
        ] {
            assert_eq!(parse(body).unwrap_err(), NotificationError(why), "{body}");
        }
    }

    #[test]
    fn a_refused_token_is_never_echoed() {
        let err = parse(
            r#"{"purpose":"token","id":"2HhngP9sVb3mK1xYdQe7Wc0RtUi","success":true,"token":"secret-value!"}"#,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
