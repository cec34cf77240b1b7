//! SigV4, as the AWS CLI signs: the merchant API's `AWS_IAM` routes are signed for the service
//! `execute-api` in the API's region, and `--stack`'s DescribeStacks for `cloudformation` in the
//! stack's region, both with the caller's AWS credentials.

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::CliError;

/// The signing name of API Gateway's invoke API (the merchant API).
pub const EXECUTE_API: &str = "execute-api";
/// The signing name of CloudFormation (`--stack`).
pub const CLOUDFORMATION: &str = "cloudformation";

/// What a signature is for: one service in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
}

/// Signs requests with the standard AWS credentials chain (environment, profile, SSO-less
/// process credentials, container and instance roles).
#[derive(Debug)]
pub struct Signer {
    credentials: SharedCredentialsProvider,
    region: String,
    service: &'static str,
}

impl Signer {
    /// The caller's credentials, for the merchant API in `region` (from the endpoint's host
    /// name, else `--region`, else the SDK's region settings).
    pub async fn from_environment(region: Option<String>) -> Result<Self, CliError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        Self::from_config(&loader.load().await, EXECUTE_API)
    }

    /// The credentials and region of a loaded SDK configuration, for `service`.
    pub fn from_config(config: &SdkConfig, service: &'static str) -> Result<Self, CliError> {
        let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
            CliError::Usage(
                "no AWS region: pass --region, or set AWS_REGION (the API's region)".into(),
            )
        })?;
        let credentials = config.credentials_provider().ok_or_else(|| {
            CliError::Credentials("the AWS SDK found no credentials provider".into())
        })?;
        Ok(Self {
            credentials,
            region,
            service,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The headers that sign this request now (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` for temporary credentials).
    pub async fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, CliError> {
        let credentials = self.credentials.provide_credentials().await.map_err(|e| {
            CliError::Credentials(format!(
                "no AWS credentials ({e}); configure them as for the AWS CLI (aws configure, \
                 AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            ))
        })?;
        let scope = Scope {
            region: &self.region,
            service: self.service,
        };
        signing_headers(
            &credentials,
            scope,
            method,
            url,
            headers,
            body,
            SystemTime::now(),
        )
    }
}

/// The SigV4 headers of one request at `time`.
pub fn signing_headers(
    credentials: &Credentials,
    scope: Scope<'_>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, CliError> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(scope.region)
        .name(scope.service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| CliError::Credentials(format!("cannot sign: {e}")))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| CliError::Usage(format!("cannot sign a request to {url}: {e}")))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| CliError::Credentials(format!("cannot sign: {e}")))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

/// The region in an API Gateway host name (`{api}.execute-api.{region}.amazonaws.com`).
pub fn region_of_host(host: &str) -> Option<&str> {
    let rest = host.split_once(".execute-api.")?.1;
    let (region, suffix) = rest.split_once('.')?;
    (suffix.starts_with("amazonaws.com") && !region.is_empty()).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_an_api_gateway_host() {
        assert_eq!(
            region_of_host("a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com"),
            Some("ap-northeast-1")
        );
        assert_eq!(
            region_of_host("a1b2.execute-api.cn-north-1.amazonaws.com.cn"),
            Some("cn-north-1")
        );
        assert_eq!(region_of_host("pay.shop.example"), None);
        assert_eq!(region_of_host("execute-api.example.com"), None);
    }
}
