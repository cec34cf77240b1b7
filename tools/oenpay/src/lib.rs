//! `oenpay`: the merchant's command line. Every operation is one call to the merchant API
//! (`functions/merchant-api`), which runs the one implementation of it in the shared crate; the
//! CLI only sends the request and shows the answer.
//!
//! A deployed stack's API is `https://…` and every request is SigV4-signed with the caller's
//! AWS credentials (the routes use `AWS_IAM`). The local dev stack is `http://127.0.0.1:…` and
//! takes unsigned requests; plain `http` is refused for any other host. With `--stack NAME` the
//! endpoint is that stack's `MerchantApiUrl` output, read from CloudFormation ([`stack`]).

pub mod dlq;
pub mod due;
pub mod render;
pub mod sign;
pub mod stack;

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Url;
use serde_json::Value;
use thiserror::Error;

use sign::Signer;

/// What may stay unescaped in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How long one call may take before the CLI gives up waiting (the request may still complete:
/// see the hints of [`CliError::Transport`]).
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum CliError {
    /// The command line or the environment is wrong.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Credentials(String),
    /// The API answered with an error of its own.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// Something that is not the merchant API answered (a proxy, API Gateway itself).
    #[error("HTTP {status} from {url}: {snippet}")]
    Unexpected {
        status: u16,
        url: String,
        snippet: String,
    },
    /// No answer arrived.
    #[error("{0}")]
    Transport(String),
    /// `--stack` found no endpoint; nothing was sent to the merchant API.
    #[error(transparent)]
    Stack(#[from] stack::StackError),
}

impl CliError {
    /// The process's exit code: 2 for usage, 1 for a refusal the caller can fix, 3 for a
    /// failure on the stack's side or the network (retrying may help).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Credentials(_) => 2,
            CliError::Api { status, .. } | CliError::Unexpected { status, .. } if *status < 500 => {
                1
            }
            CliError::Stack(e) => e.exit_code(),
            _ => 3,
        }
    }

    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        let forbidden = "the merchant API takes SigV4-signed requests from principals allowed \
             by the stack's MerchantApiInvokePolicy (stack output): check which identity you \
             sign with (aws sts get-caller-identity) and that the policy is attached to it";
        match self {
            CliError::Api {
                code,
                request_id,
                status,
                ..
            } => {
                let hint = match code.as_str() {
                    "forbidden" => forbidden.to_owned(),
                    "not_found" | "charge_not_found" => "check the id: `oenpay customers show \
                         CUSTOMER` lists a customer's subscriptions and periods"
                        .to_owned(),
                    "no_saved_card" => "the customer has no card bound: send them a start link \
                         (`oenpay link`)"
                        .to_owned(),
                    "idempotency_key_reused" => "this key already made a different charge: \
                         a new charge needs a new --idempotency-key (or none, and one is made)"
                        .to_owned(),
                    "idempotency_key_in_use" => "the first request with this key is still \
                         running: repeat the same command in a few seconds"
                        .to_owned(),
                    "card_declined" => "the card was declined: the customer can bind another \
                         card through a new start link"
                        .to_owned(),
                    _ if *status >= 500 => match request_id {
                        Some(id) => format!(
                            "the stack failed; retrying is safe. Its log has request id {id}"
                        ),
                        None => "the stack failed; retrying is safe".to_owned(),
                    },
                    _ => return None,
                };
                Some(hint)
            }
            CliError::Unexpected { status: 403, .. } => Some(forbidden.to_owned()),
            CliError::Unexpected { .. } => Some(
                "is --endpoint the stack's MerchantApiUrl (stack output), or the dev stack's \
                 URL?"
                    .to_owned(),
            ),
            CliError::Transport(_) => Some(
                "no answer arrived; a charge or refund may still have been made: repeat the \
                 same command (a charge with the same --idempotency-key) to learn its outcome"
                    .to_owned(),
            ),
            CliError::Stack(e) => e.hint(),
            CliError::Usage(_) | CliError::Credentials(_) => None,
        }
    }
}

/// An answer of the API: its status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// The merchant API at one endpoint.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    signer: Option<Signer>,
}

impl Api {
    /// `endpoint` is the stack's `MerchantApiUrl` (https, signed) or the dev stack's URL
    /// (http on a loopback address, unsigned).
    pub async fn connect(endpoint: &str, region: Option<String>) -> Result<Self, CliError> {
        Self::connect_from("--endpoint", endpoint, region).await
    }

    /// As [`Api::connect`], for an endpoint that came from `origin` (named in errors: an
    /// option, or a stack's output).
    pub async fn connect_from(
        origin: &str,
        endpoint: &str,
        region: Option<String>,
    ) -> Result<Self, CliError> {
        let mut base = Url::parse(endpoint.trim_end_matches('/'))
            .map_err(|e| CliError::Usage(format!("{origin} {endpoint:?} is not a URL ({e})")))?;
        let host = base
            .host_str()
            .ok_or_else(|| CliError::Usage(format!("{origin} {endpoint:?} has no host")))?
            .to_owned();
        // The stack's MerchantApiUrl output is the API's root and `/v1`; the requests name
        // `v1` themselves, so either is taken (the dev stack's URL is its root).
        if let Some(root) = base.path().trim_end_matches('/').strip_suffix("/v1") {
            let root = root.to_owned();
            base.set_path(&root);
        }
        let signer = match base.scheme() {
            "https" => {
                let region = region.or_else(|| sign::region_of_host(&host).map(str::to_owned));
                Some(Signer::from_environment(region).await?)
            }
            "http" if is_loopback(&host) => None,
            "http" => {
                return Err(CliError::Usage(format!(
                    "{origin} {endpoint:?}: plain http is only for the local dev stack on \
                     127.0.0.1; a deployed stack's MerchantApiUrl is https"
                )))
            }
            other => {
                return Err(CliError::Usage(format!(
                    "{origin} {endpoint:?}: the scheme must be https (or http for the local \
                     dev stack), not {other}"
                )))
            }
        };
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::Transport(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self { http, base, signer })
    }

    /// Whether requests are signed (a deployed stack).
    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }

    /// `path` is a list of segments after the endpoint (each escaped here).
    pub fn url(&self, path: &[&str]) -> String {
        let mut url = self.base.as_str().trim_end_matches('/').to_owned();
        for segment in path {
            url.push('/');
            url.extend(utf8_percent_encode(segment, SEGMENT));
        }
        url
    }

    /// `GET {endpoint}/{path_and_query}`, the path already escaped.
    pub async fn get_raw(&self, path_and_query: &str) -> Result<Answer, CliError> {
        self.request(
            "GET",
            format!(
                "{}/{path_and_query}",
                self.base.as_str().trim_end_matches('/')
            ),
            None,
            &[],
        )
        .await
    }

    /// One call: an error answer becomes [`CliError::Api`]; 2xx answers are returned as they
    /// are (202 included: a pending charge).
    pub async fn send(
        &self,
        method: &str,
        path: &[&str],
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Result<Answer, CliError> {
        self.request(method, self.url(path), body, extra).await
    }

    async fn request(
        &self,
        method: &str,
        url: String,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Result<Answer, CliError> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut headers: Vec<(&str, &str)> = vec![("accept", "application/json")];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        headers.extend_from_slice(extra);
        let method_value = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| CliError::Usage(format!("not an HTTP method: {method}")))?;
        let mut request = self.http.request(method_value, &url);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        if let Some(signer) = &self.signer {
            for (name, value) in signer.headers(method, &url, &headers, &body).await? {
                request = request.header(name, value);
            }
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| CliError::Transport(format!("{method} {url}: {}", error_chain(&e))))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| CliError::Transport(format!("{method} {url}: {}", error_chain(&e))))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return match json {
                Some(body) => Ok(Answer { status, body }),
                None => Err(CliError::Unexpected {
                    status,
                    url,
                    snippet: snippet(&text),
                }),
            };
        }
        let error = json.as_ref().and_then(|j| j.get("error"));
        match error.and_then(|e| Some((e.get("code")?.as_str()?, e.get("message")?.as_str()?))) {
            Some((code, message)) => Err(CliError::Api {
                status,
                code: code.to_owned(),
                message: message.to_owned(),
                request_id: json
                    .as_ref()
                    .and_then(|j| j["error"]["requestId"].as_str().or(j["requestId"].as_str()))
                    .map(str::to_owned),
            }),
            None => Err(CliError::Unexpected {
                status,
                url,
                snippet: snippet(&text),
            }),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The start of a body that is not ours, on one line.
fn snippet(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None if line.is_empty() => "(empty body)".to_owned(),
        None => line,
    }
}

/// A fresh idempotency key for a charge: `oenpay-` and 32 random hex digits.
pub fn new_idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the system's random source");
    format!("oenpay-{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_http_is_only_for_loopback_and_segments_are_escaped() {
        let api = Api::connect("http://127.0.0.1:8080/", None).await.unwrap();
        assert!(!api.signs());
        assert_eq!(
            api.url(&["v1", "customers", "mei chen/1?"]),
            "http://127.0.0.1:8080/v1/customers/mei%20chen%2F1%3F"
        );
        assert!(Api::connect("http://[::1]:8080", None).await.is_ok());
        // A MerchantApiUrl output ends in /v1, as the routes begin.
        for endpoint in ["http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/"] {
            let api = Api::connect(endpoint, None).await.unwrap();
            assert_eq!(
                api.url(&["v1", "customers", "mei"]),
                "http://127.0.0.1:8080/v1/customers/mei",
                "{endpoint}"
            );
        }
        let behind = Api::connect("http://127.0.0.1:8080/pay/v1", None)
            .await
            .unwrap();
        assert_eq!(
            behind.url(&["v1", "due"]),
            "http://127.0.0.1:8080/pay/v1/due"
        );
        assert!(Api::connect("http://localhost:8080", None).await.is_ok());
        for bad in ["http://pay.shop.example", "ftp://127.0.0.1", "not a url"] {
            let e = Api::connect(bad, None).await.unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }

    #[test]
    fn keys_are_fresh_and_fit_the_apis_alphabet() {
        let (a, b) = (new_idempotency_key(), new_idempotency_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 39);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn errors_say_what_to_do_next() {
        let api = |status: u16, code: &str| CliError::Api {
            status,
            code: code.into(),
            message: "m".into(),
            request_id: Some("rid-1".into()),
        };
        assert_eq!(api(422, "idempotency_key_reused").exit_code(), 1);
        assert!(api(409, "idempotency_key_in_use")
            .hint()
            .unwrap()
            .contains("repeat the same command"));
        let server = api(503, "temporarily_unavailable");
        assert_eq!(server.exit_code(), 3);
        assert!(server.hint().unwrap().contains("rid-1"));
        assert!(CliError::Transport("x".into())
            .hint()
            .unwrap()
            .contains("--idempotency-key"));
    }
}
