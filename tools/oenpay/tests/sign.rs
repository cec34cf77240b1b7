//! The CLI's SigV4 against AWS's own implementation: botocore (in the project's `.venv`, made
//! by `scripts/test`) signs the same requests at the same instant with the same credentials, and
//! every signing header must be equal. A wrong service name, region, path encoding, payload
//! hash or header set would differ. The requests are the merchant API's (`execute-api`) and
//! `--stack`'s DescribeStacks (`cloudformation`, a form POST).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use oenpay::sign::{signing_headers, Scope, CLOUDFORMATION, EXECUTE_API};

const BOTOCORE: &str = r#"
import json, sys, datetime
from unittest import mock
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

case = json.load(sys.stdin)
creds = Credentials(case["key"], case["secret"], case.get("token"))
when = datetime.datetime.fromtimestamp(case["time"], datetime.timezone.utc).replace(tzinfo=None)
request = AWSRequest(method=case["method"], url=case["url"], data=case["body"].encode(),
                     headers=case["headers"])
with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
    SigV4Auth(creds, case["service"], case["region"]).add_auth(request)
print(json.dumps({k.lower(): v for k, v in request.headers.items()}))
"#;

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test (it makes the project's .venv)",
        p.display()
    );
    p
}

fn botocore_headers(case: &serde_json::Value) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new(python())
        .args(["-c", BOTOCORE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "botocore failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn signatures_equal_botocores() {
    let time = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
    let cases = [
        (
            EXECUTE_API,
            "POST",
            "https://a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com/v1/charges",
            r#"{"customer":"mei","amount":120,"description":"late fee"}"#,
            vec![
                ("accept", "application/json"),
                ("content-type", "application/json"),
                ("idempotency-key", "oenpay-0123456789abcdef"),
            ],
            None,
        ),
        (
            EXECUTE_API,
            "GET",
            "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1/customers/mei%20chen%2F1",
            "",
            vec![("accept", "application/json")],
            Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN"),
        ),
        (
            CLOUDFORMATION,
            "POST",
            "https://cloudformation.ap-northeast-1.amazonaws.com/",
            "Action=DescribeStacks&StackName=oen-pay&Version=2010-05-15",
            vec![(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN"),
        ),
    ];
    for (service, method, url, body, headers, token) in cases {
        let host = url.split('/').nth(2).unwrap();
        let region = oenpay::sign::region_of_host(host)
            .or_else(|| host.strip_prefix("cloudformation.")?.split('.').next())
            .unwrap();
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        );
        let ours = signing_headers(
            &credentials,
            Scope { region, service },
            method,
            url,
            &headers,
            body.as_bytes(),
            time,
        )
        .unwrap();
        let secs = time.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let theirs = botocore_headers(&serde_json::json!({
            "key": "AKIDEXAMPLE",
            "secret": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "token": token,
            "time": secs,
            "method": method,
            "url": url,
            "body": body,
            "region": region,
            "service": service,
            "headers": headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        }));
        let ours: std::collections::BTreeMap<String, String> = ours.into_iter().collect();
        assert!(
            ours["authorization"].contains(&format!("/{region}/{service}/aws4_request")),
            "{}",
            ours["authorization"]
        );
        for (name, value) in &ours {
            assert_eq!(
                theirs[name.as_str()].as_str(),
                Some(value.as_str()),
                "{method} {url}: header {name}"
            );
        }
        assert_eq!(
            ours.contains_key("x-amz-security-token"),
            token.is_some(),
            "{method} {url}"
        );
    }
}
