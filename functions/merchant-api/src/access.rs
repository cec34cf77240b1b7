//! Who may call: only requests whose API Gateway v2 context names an IAM caller, unless the
//! router was built for the local dev stack by name. Behind the routes' `AWS_IAM`
//! authorization this is defence in depth: a route added without it, or an integration
//! reached some other way, still serves no anonymous caller.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::request::RequestContext;
use oen_pay::web::request_id;

use crate::error;

/// Who may call. There is no default: the Lambda host asks for [`Access::RequireIam`], the
/// local dev stack (no API Gateway in front) for [`Access::LocalUnauthenticated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only requests whose API Gateway v2 context names an IAM caller.
    RequireIam,
    /// Anyone who can reach the socket: the local dev stack on loopback only.
    LocalUnauthenticated,
}

/// The caller as API Gateway's IAM authorizer identified it (or the local dev stack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_arn: String,
    pub account_id: String,
}

/// The IAM caller of a request, if API Gateway's v2 context names one.
pub fn iam_caller(context: Option<&RequestContext>) -> Option<Caller> {
    let Some(RequestContext::ApiGatewayV2(ctx)) = context else {
        return None;
    };
    let iam = ctx.authorizer.as_ref()?.iam.as_ref()?;
    let present = |v: &Option<String>| {
        v.as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    Some(Caller {
        user_arn: present(&iam.user_arn)?,
        account_id: present(&iam.account_id)?,
    })
}

pub(crate) async fn guard(
    State(access): State<Access>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match access {
        Access::LocalUnauthenticated => Caller {
            user_arn: "local".into(),
            account_id: "local".into(),
        },
        Access::RequireIam => match iam_caller(request.extensions().get::<RequestContext>()) {
            Some(caller) => caller,
            None => {
                let (parts, _) = request.into_parts();
                let rid = request_id(&parts);
                tracing::warn!(request_id = %rid, path = %parts.uri.path(), "refused: no IAM identity in the request context");
                return error(
                        &rid,
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "this API takes only requests signed with AWS SigV4 by an IAM principal allowed to invoke it",
                    );
            }
        },
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_of(event: &str) -> Option<RequestContext> {
        let request = lambda_http::request::from_str(event).expect("an API Gateway v2 event");
        request.extensions().get::<RequestContext>().cloned()
    }

    #[test]
    fn the_iam_caller_is_read_where_http_apis_put_it() {
        let signed = context_of(include_str!("../../../events/merchant-api-refund.json"));
        assert_eq!(
            iam_caller(signed.as_ref()),
            Some(Caller {
                user_arn: "arn:aws:sts::123456789012:assumed-role/oen-pay-MerchantApiCallerRole-EXAMPLE/merchant-backend".into(),
                account_id: "123456789012".into(),
            })
        );
        let unsigned = context_of(include_str!(
            "../../../events/merchant-api-refund-unsigned.json"
        ));
        assert!(matches!(unsigned, Some(RequestContext::ApiGatewayV2(_))));
        assert_eq!(iam_caller(unsigned.as_ref()), None);
        assert_eq!(iam_caller(None), None);
    }
}
