//! `--stack NAME`: the merchant API's endpoint is the deployed stack's `MerchantApiUrl` output,
//! read with CloudFormation's DescribeStacks. The call is the AWS query protocol (a form POST,
//! an XML answer), signed for `cloudformation` with the caller's AWS credentials in the stack's
//! region, at the endpoint the AWS SDKs would use: `AWS_ENDPOINT_URL_CLOUDFORMATION`, else
//! `AWS_ENDPOINT_URL` (or the profile's `endpoint_url`), else CloudFormation's regional one.

pub mod describe;

use std::time::Duration;

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::region::ProfileFileRegionProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_types::service_config::ServiceConfigKey;
use reqwest::Url;
use thiserror::Error;

use crate::sign::{self, Signer};
use crate::{error_chain, snippet, CliError};

/// The output that names the merchant API (`template.yaml`).
pub const OUTPUT: &str = "MerchantApiUrl";

/// CloudFormation's service id, as the SDKs name it in `AWS_ENDPOINT_URL_CLOUDFORMATION` and in
/// a profile's `services` section.
const SERVICE_ID: &str = "CloudFormation";

/// The version of CloudFormation's query API.
const API_VERSION: &str = "2010-05-15";

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// DescribeStacks answers in well under a second; past this something is wrong on the way.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where `--stack` found the merchant API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The `MerchantApiUrl` output.
    pub endpoint: String,
    /// The stack's region, where CloudFormation was asked (and so the API's).
    pub region: String,
}

/// Why the stack did not give an endpoint; each says what to do next ([`StackError::hint`]).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StackError {
    #[error("no stack named {stack:?} in {region} (CloudFormation: {message})")]
    NotFound {
        stack: String,
        region: String,
        message: String,
    },
    #[error(
        "stack {stack:?} ({}) has no {OUTPUT} output{}",
        with_reason(status, reason.as_deref()),
        listed(outputs)
    )]
    NoOutput {
        stack: String,
        status: String,
        reason: Option<String>,
        outputs: Vec<String>,
    },
    /// CloudFormation refused the call: credentials, permissions, throttling, a bad name.
    #[error(
        "CloudFormation refused DescribeStacks for {stack:?}: {code}: {message} (HTTP {status})"
    )]
    Refused {
        stack: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach CloudFormation at {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    /// Something that is not CloudFormation answered (a proxy, a wrong endpoint URL).
    #[error("HTTP {status} from {endpoint}, not a CloudFormation answer: {snippet}")]
    Unexpected {
        status: u16,
        endpoint: String,
        snippet: String,
    },
}

impl StackError {
    /// 1 for what the caller can fix, 3 for what retrying may fix.
    pub fn exit_code(&self) -> u8 {
        match self {
            StackError::NotFound { .. } | StackError::NoOutput { .. } => 1,
            StackError::Refused { status, code, .. } if *status < 500 && !is_throttling(code) => 1,
            StackError::Unexpected { status, .. } if *status < 500 => 1,
            _ => 3,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            StackError::NotFound { stack, region, .. } => format!(
                "check the name and the region: `aws cloudformation list-stacks --region {region} \
                 --stack-status-filter CREATE_COMPLETE UPDATE_COMPLETE` lists the stacks there; \
                 pass --region for a stack in another region (or --endpoint with its \
                 {OUTPUT} output instead of --stack {stack})"
            ),
            StackError::NoOutput { stack, status, .. } => no_output_hint(stack, status),
            StackError::Refused { code, status, .. } => match code.as_str() {
                "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
                    "the identity you sign with (`aws sts get-caller-identity`) needs \
                     cloudformation:DescribeStacks on this stack; or pass --endpoint with the \
                     stack's MerchantApiUrl instead of --stack"
                        .to_owned()
                }
                "ExpiredToken"
                | "ExpiredTokenException"
                | "RequestExpired"
                | "TokenRefreshRequired" => {
                    "your AWS credentials have expired: refresh them (`aws sso login`, or a new \
                     session) and run the command again"
                        .to_owned()
                }
                "InvalidClientTokenId"
                | "UnrecognizedClientException"
                | "SignatureDoesNotMatch"
                | "IncompleteSignature"
                | "MissingAuthenticationToken" => {
                    "AWS does not accept these credentials: check which ones you use \
                     (AWS_PROFILE, AWS_ACCESS_KEY_ID; `aws sts get-caller-identity`)"
                        .to_owned()
                }
                code if is_throttling(code) => {
                    "CloudFormation is throttling this account: run the command again in a \
                     moment"
                        .to_owned()
                }
                "ValidationError" => "check the stack's name (letters, digits and hyphens) or \
                     pass its stack id"
                    .to_owned(),
                _ if *status >= 500 => "CloudFormation failed: running the command again is \
                     safe (it only reads the stack)"
                    .to_owned(),
                _ => return None,
            },
            StackError::Unreachable { .. } => "check the network and --region; if \
                 AWS_ENDPOINT_URL_CLOUDFORMATION or AWS_ENDPOINT_URL is set, it must be \
                 CloudFormation's endpoint. Nothing was sent to the merchant API"
                .to_owned(),
            StackError::Unexpected { .. } => "is AWS_ENDPOINT_URL_CLOUDFORMATION (or \
                 AWS_ENDPOINT_URL) CloudFormation's endpoint? Unset it to use AWS's"
                .to_owned(),
        })
    }
}

/// `CREATE_IN_PROGRESS: User Initiated`.
fn with_reason(status: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("{status}: {reason}"),
        None => status.to_owned(),
    }
}

/// `; its outputs are ApiUrl, TableName`, or nothing for a stack without outputs.
fn listed(outputs: &[String]) -> String {
    if outputs.is_empty() {
        String::new()
    } else {
        format!("; its outputs are {}", outputs.join(", "))
    }
}

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException"
    )
}

fn no_output_hint(stack: &str, status: &str) -> String {
    let watch = format!(
        "`aws cloudformation describe-stack-events --stack-name {stack}` shows what happened"
    );
    if status.ends_with("_IN_PROGRESS") {
        format!(
            "the stack is still being deployed: wait until it is done \
             (`aws cloudformation describe-stacks --stack-name {stack} --query \
             Stacks[0].StackStatus`) and run the command again"
        )
    } else if status.starts_with("DELETE_") {
        format!("the stack is deleted or being deleted; {watch}")
    } else if status.contains("FAILED") || status.contains("ROLLBACK") {
        format!("the stack's deployment failed; {watch}, then deploy again (`sam deploy`)")
    } else {
        format!(
            "is it an oen-pay stack? One deployed from an older template.yaml lacks the \
             {OUTPUT} output: deploy this version (`sam deploy`), or pass --endpoint"
        )
    }
}

/// The `MerchantApiUrl` of `stack`, asked of CloudFormation in `region` (else the region of the
/// environment or the AWS profile).
pub async fn find(stack: &str, region: Option<String>) -> Result<Found, CliError> {
    let region = resolve_region(region).await?;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.clone()))
        .load()
        .await;
    let endpoint = endpoint(&config, &region)?;
    let signer = Signer::from_config(&config, sign::CLOUDFORMATION)?;
    let shown = redacted(&endpoint);

    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "DescribeStacks")
        .append_pair("StackName", stack)
        .append_pair("Version", API_VERSION)
        .finish();
    let headers = [("content-type", FORM)];
    let mut request = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| CliError::Transport(format!("cannot make an HTTP client: {e}")))?
        .post(endpoint.clone())
        .header("content-type", FORM);
    for (name, value) in signer
        .headers("POST", endpoint.as_str(), &headers, body.as_bytes())
        .await?
    {
        request = request.header(name, value);
    }
    let unreachable = |e: reqwest::Error| StackError::Unreachable {
        endpoint: shown.clone(),
        // The URL is shown once, without any user:password it may hold.
        detail: error_chain(&e.without_url()),
    };
    let response = request.body(body).send().await.map_err(&unreachable)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(&unreachable)?;
    Ok(Found {
        endpoint: interpret(stack, &region, &shown, status, &text)?,
        region,
    })
}

/// What an answer of DescribeStacks means for `--stack`: the endpoint, or why there is none.
pub fn interpret(
    stack: &str,
    region: &str,
    endpoint: &str,
    status: u16,
    body: &str,
) -> Result<String, StackError> {
    let unexpected = || StackError::Unexpected {
        status,
        endpoint: endpoint.to_owned(),
        snippet: snippet(body),
    };
    if !(200..300).contains(&status) {
        let error = describe::error(body).ok_or_else(unexpected)?;
        let message = first_paragraph(&error.message);
        if error.code == "ValidationError" && message.ends_with("does not exist") {
            return Err(StackError::NotFound {
                stack: stack.to_owned(),
                region: region.to_owned(),
                message,
            });
        }
        return Err(StackError::Refused {
            stack: stack.to_owned(),
            status,
            code: error.code,
            message,
        });
    }
    let stacks = describe::stacks(body).map_err(|_| unexpected())?;
    // Asked by name (or id), CloudFormation answers that one stack.
    let found = stacks
        .iter()
        .find(|s| s.name == stack || s.id == stack)
        .or(match stacks.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .ok_or_else(unexpected)?;
    match found.output(OUTPUT).map(str::trim) {
        Some(url) if !url.is_empty() => Ok(url.to_owned()),
        _ => Err(StackError::NoOutput {
            stack: found.name.clone(),
            status: found.status.clone(),
            reason: found.status_reason.clone(),
            outputs: found.outputs.iter().map(|o| o.key.clone()).collect(),
        }),
    }
}

/// The first paragraph of an AWS error message, on one line. A `SignatureDoesNotMatch` goes on
/// with the canonical request it expected, which holds a session token: never shown.
fn first_paragraph(message: &str) -> String {
    let first = message.split("\n\n").next().unwrap_or_default();
    let line: String = first.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// `--region`, else `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's region. Not the instance
/// metadata service: a laptop would wait for it to time out.
async fn resolve_region(region: Option<String>) -> Result<String, CliError> {
    let region = match region.filter(|r| !r.trim().is_empty()) {
        Some(region) => region.trim().to_owned(),
        None => RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
            .or_else(ProfileFileRegionProvider::new())
            .region()
            .await
            .map(|r| r.to_string())
            .ok_or_else(|| {
                CliError::Usage(
                    "no AWS region to find the stack in: pass --region with the stack's region \
                     (or set AWS_REGION)"
                        .into(),
                )
            })?,
    };
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(CliError::Usage(format!(
            "{region:?} is not an AWS region name (like ap-northeast-1): pass --region"
        )));
    }
    Ok(region)
}

/// CloudFormation's endpoint as the SDKs choose it: `AWS_ENDPOINT_URL_CLOUDFORMATION`, else
/// `AWS_ENDPOINT_URL`, else the profile's, else the region's.
fn endpoint(config: &SdkConfig, region: &str) -> Result<Url, CliError> {
    let configured = config
        .service_config()
        .and_then(|c| {
            c.load_config(
                ServiceConfigKey::builder()
                    .service_id(SERVICE_ID)
                    .env("AWS_ENDPOINT_URL")
                    .profile("endpoint_url")
                    .build()
                    .ok()?,
            )
        })
        .or_else(|| config.endpoint_url().map(str::to_owned));
    match configured {
        Some(url) => Url::parse(url.trim()).map_err(|e| {
            CliError::Usage(format!(
                "the configured CloudFormation endpoint (AWS_ENDPOINT_URL_CLOUDFORMATION, \
                 AWS_ENDPOINT_URL or the profile's endpoint_url) is not a URL: {e}"
            ))
        }),
        None => Url::parse(&regional_endpoint(region))
            .map_err(|e| CliError::Usage(format!("{region:?} is not an AWS region name: {e}"))),
    }
}

/// `https://cloudformation.{region}.amazonaws.com/` (`.com.cn` in China).
pub fn regional_endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://cloudformation.{region}.{suffix}/")
}

/// The URL without any `user:password@`.
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::describe::tests::{CREATING, DEPLOYED, NO_SUCH_STACK};
    use super::*;

    const REGION: &str = "ap-northeast-1";
    const AT: &str = "https://cloudformation.ap-northeast-1.amazonaws.com/";

    #[test]
    fn the_merchant_api_url_output_is_the_endpoint() {
        assert_eq!(
            interpret("oen-pay", REGION, AT, 200, DEPLOYED),
            Ok("https://a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com/v1".to_owned())
        );
        let by_id = "arn:aws:cloudformation:ap-northeast-1:123456789012:stack/oen-pay/\
                     aaf549a0-a413-11df-adb3-5081b3858e83";
        assert!(interpret(by_id, REGION, AT, 200, DEPLOYED).is_ok());
    }

    #[test]
    fn an_unknown_stack_says_where_it_was_looked_for() {
        let e = interpret("oen-pay-typo", REGION, AT, 400, NO_SUCH_STACK).unwrap_err();
        assert!(matches!(e, StackError::NotFound { .. }), "{e:?}");
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "no stack named \"oen-pay-typo\" in ap-northeast-1 (CloudFormation: Stack with id \
             oen-pay-typo does not exist)"
        );
        assert!(e.hint().unwrap().contains("--region"));
    }

    #[test]
    fn a_stack_without_the_output_names_its_status_and_outputs() {
        let e = interpret("oen-pay", REGION, AT, 200, CREATING).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stack \"oen-pay\" (CREATE_IN_PROGRESS: User Initiated) has no MerchantApiUrl output"
        );
        assert_eq!(e.exit_code(), 1);
        assert!(e.hint().unwrap().contains("still being deployed"), "{e:?}");

        let older = DEPLOYED.replace(">MerchantApiUrl<", ">SomethingElse<");
        let e = interpret("oen-pay", REGION, AT, 200, &older).unwrap_err();
        assert!(
            e.to_string().contains(
                "(UPDATE_COMPLETE) has no MerchantApiUrl output; its outputs are ApiUrl, \
                 MerchantApiUrlLegacy, SomethingElse, WebhookUrlToRegisterWithOen"
            ),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("older template.yaml"), "{e:?}");

        let failed = CREATING.replace("CREATE_IN_PROGRESS", "ROLLBACK_COMPLETE");
        let e = interpret("oen-pay", REGION, AT, 200, &failed).unwrap_err();
        assert!(e.hint().unwrap().contains("describe-stack-events"), "{e:?}");
    }

    fn refused(status: u16, code: &str, message: &str) -> StackError {
        let body = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
             <Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        );
        interpret("oen-pay", REGION, AT, status, &body).unwrap_err()
    }

    #[test]
    fn refusals_show_cloudformations_code_and_message_and_what_to_do() {
        let denied = refused(
            403,
            "AccessDenied",
            "User: arn:aws:iam::123456789012:user/mei is not authorized to perform: \
             cloudformation:DescribeStacks",
        );
        assert_eq!(denied.exit_code(), 1);
        let shown = denied.to_string();
        assert!(
            shown.contains("AccessDenied: User: arn:aws:iam::123456789012:user/mei is not")
                && shown.contains("HTTP 403"),
            "{shown}"
        );
        assert!(denied
            .hint()
            .unwrap()
            .contains("cloudformation:DescribeStacks"));

        let expired = refused(
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
        );
        assert!(expired
            .to_string()
            .contains("ExpiredToken: The security token"));
        assert!(expired.hint().unwrap().contains("expired"));

        let throttled = refused(400, "Throttling", "Rate exceeded");
        assert_eq!(throttled.exit_code(), 3);
        let failed = refused(500, "InternalFailure", "We encountered an internal error");
        assert_eq!(failed.exit_code(), 3);
        assert!(failed.hint().unwrap().contains("again is safe"));

        let bad_name = refused(
            400,
            "ValidationError",
            "1 validation error detected: Value 'a b' at 'stackName' failed to satisfy \
             constraint",
        );
        assert!(
            matches!(bad_name, StackError::Refused { .. }),
            "{bad_name:?}"
        );
    }

    #[test]
    fn a_signature_mismatch_never_shows_the_canonical_request() {
        let token = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN";
        let e = refused(
            403,
            "SignatureDoesNotMatch",
            &format!(
                "The request signature we calculated does not match the signature you \
                 provided.\n\nThe Canonical String for this request should have been\n\
                 'POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n\
                 x-amz-security-token:{token}\n'\n\nThe String-to-Sign should have been\n\
                 'AWS4-HMAC-SHA256\n20261130T080000Z'"
            ),
        );
        let shown = format!("{e} {}", e.hint().unwrap_or_default());
        assert!(shown.contains("SignatureDoesNotMatch"), "{shown}");
        assert!(
            !shown.contains(token) && !shown.contains("Canonical"),
            "{shown}"
        );
    }

    #[test]
    fn answers_that_are_not_cloudformations_are_shown_as_such() {
        for (status, body) in [
            (502, "<html><body>Bad Gateway</body></html>"),
            (200, "{\"ok\":true}"),
            (404, ""),
        ] {
            let e = interpret("oen-pay", REGION, "http://127.0.0.1:9/", status, body).unwrap_err();
            assert!(matches!(e, StackError::Unexpected { .. }), "{e:?}");
            assert!(e.to_string().contains("http://127.0.0.1:9/"), "{e}");
        }
        let other = DEPLOYED.replace("<StackName>oen-pay</StackName>", "<StackName>x</StackName>");
        let two = other.replace("</Stacks>", &format!("{}</Stacks>", stack_member(&other)));
        assert!(matches!(
            interpret("oen-pay", REGION, AT, 200, &two),
            Err(StackError::Unexpected { .. })
        ));
    }

    /// The first `<member>` of `<Stacks>`.
    fn stack_member(xml: &str) -> String {
        let start = xml.find("<Stacks>").unwrap() + "<Stacks>".len();
        let end = xml.find("</Stacks>").unwrap();
        xml[start..end].to_owned()
    }

    #[test]
    fn the_regional_endpoint_follows_the_partition() {
        assert_eq!(
            regional_endpoint("ap-northeast-1"),
            "https://cloudformation.ap-northeast-1.amazonaws.com/"
        );
        assert_eq!(
            regional_endpoint("cn-north-1"),
            "https://cloudformation.cn-north-1.amazonaws.com.cn/"
        );
    }

    #[test]
    fn endpoints_are_shown_without_userinfo() {
        let url = Url::parse("http://user:secret@127.0.0.1:4566/").unwrap();
        assert_eq!(redacted(&url), "http://127.0.0.1:4566/");
    }

    #[tokio::test]
    async fn a_region_must_look_like_one() {
        for bad in ["ap-northeast-1.example.com/", "AP NORTHEAST"] {
            let e = resolve_region(Some(bad.into())).await.unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        assert_eq!(
            resolve_region(Some(" eu-west-1 ".into())).await.unwrap(),
            "eu-west-1"
        );
    }
}
