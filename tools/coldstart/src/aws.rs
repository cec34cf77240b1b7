//! The emulated AWS the functions run against: moto (started here unless `AWS_ENDPOINT_URL`
//! names one), with the resources of `template.yaml` the functions read: the table (from the
//! template's own `Table` resource, as the integration tests create theirs), a KMS key, the secret,
//! the queues and the event bus.
//!
//! The resources are created with plain HTTP requests in the AWS JSON protocol (moto does not
//! check signatures), so this tool links no AWS SDK and adds no feature to the functions' build.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::template::Template;

pub const REGION: &str = "ap-northeast-1";

/// The secret, with the development values of `oen_pay::dev` (dummies; the sample webhook
/// event's path key).
pub const SECRET_JSON: &str = r#"{"apiToken":"coldstart-dummy-api-token","linkSigningKey":"dev-link-signing-key-0123456789abcdef","webhookPathKey":"dev-webhook-path-key-0123456789"}"#;

/// A moto server this process started. Moto dies with this process even on SIGKILL: it runs
/// behind a shell that kills it when its stdin (a pipe only this process holds) closes.
pub struct Moto {
    pub endpoint: SocketAddr,
    _lifeline: Option<Child>,
}

/// What the functions' environment names: the template's `!Ref`s and `!GetAtt`s.
#[derive(Debug, Clone)]
pub struct Resources {
    pub table_name: String,
    pub token_key_arn: String,
    pub secret_arn: String,
    /// The template's queues by logical id (`ChargeQueue`, its dead-letter queue, the
    /// schedules'), each a queue of its own.
    pub queues: std::collections::BTreeMap<String, String>,
    pub event_bus_name: String,
}

impl Moto {
    /// `AWS_ENDPOINT_URL` when set (an `http://host:port` moto), else a new moto server from
    /// the project's `.venv` or `PATH`.
    pub fn start_or_reuse(repo: &Path) -> Result<Self, String> {
        if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
            if !url.trim().is_empty() {
                return Ok(Self {
                    endpoint: resolve(&url)?,
                    _lifeline: None,
                });
            }
        }
        let moto = moto_executable(repo).ok_or_else(|| {
            "moto_server was found neither in .venv/bin nor on PATH: run scripts/test once \
             (it creates .venv), or python3 -m venv .venv && .venv/bin/pip install -r \
             requirements-test.txt"
                .to_owned()
        })?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        const LIFELINE: &str = r#"
            exec 3<&0
            "$1" -H 127.0.0.1 -p "$2" >/dev/null 2>&1 </dev/null 3<&- &
            moto=$!
            { while read -r _ <&3; do :; done; kill "$moto" 2>/dev/null; } &
            exec 3<&-
            wait "$moto"
        "#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(LIFELINE)
            .arg("moto-lifeline")
            .arg(&moto)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", moto.display()))?;
        let endpoint = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answers_http(endpoint) {
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server did not answer on {endpoint} within 30 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            endpoint,
            _lifeline: Some(child),
        })
    }

    /// Creates the functions' resources, uniquely named for this process.
    pub fn create_resources(&self, template: &Template) -> Result<Resources, String> {
        let suffix = format!("coldstart-{}", std::process::id());
        let table_name = format!("oen-pay-{suffix}");
        let (create_table, ttl) = template.create_table_request(&table_name)?;
        self.call(
            "dynamodb",
            "DynamoDB_20120810.CreateTable",
            "1.0",
            &create_table,
        )?;
        if let Some(ttl) = ttl {
            self.call(
                "dynamodb",
                "DynamoDB_20120810.UpdateTimeToLive",
                "1.0",
                &json!({"TableName": table_name, "TimeToLiveSpecification": ttl}),
            )?;
        }
        let key = self.call(
            "kms",
            "TrentService.CreateKey",
            "1.1",
            &json!({"Description": format!("{suffix}: card tokens")}),
        )?;
        let secret = self.call(
            "secretsmanager",
            "secretsmanager.CreateSecret",
            "1.1",
            &json!({"Name": format!("oen-pay-{suffix}"), "SecretString": SECRET_JSON}),
        )?;
        let mut queues = std::collections::BTreeMap::new();
        for logical in template.queues() {
            let queue = self.call(
                "sqs",
                "AmazonSQS.CreateQueue",
                "1.0",
                &json!({"QueueName": format!("oen-pay-{logical}-{suffix}")}),
            )?;
            let url = queue
                .pointer("/QueueUrl")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("moto's answer has no /QueueUrl: {queue}"))?;
            queues.insert(logical, url.to_owned());
        }
        let event_bus_name = format!("oen-pay-events-{suffix}");
        self.call(
            "events",
            "AWSEvents.CreateEventBus",
            "1.1",
            &json!({"Name": event_bus_name}),
        )?;
        let field = |v: &Value, pointer: &str| {
            v.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("moto's answer has no {pointer}: {v}"))
        };
        Ok(Resources {
            table_name,
            token_key_arn: field(&key, "/KeyMetadata/Arn")?,
            secret_arn: field(&secret, "/ARN")?,
            queues,
            event_bus_name,
        })
    }

    /// One AWS JSON-protocol call; moto routes it by the credential scope of `Authorization`.
    fn call(
        &self,
        service: &str,
        target: &str,
        version: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let body = body.to_string();
        let request = format!(
            "POST / HTTP/1.0\r\nHost: {host}\r\nX-Amz-Target: {target}\r\n\
             Content-Type: application/x-amz-json-{version}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, \
             SignedHeaders=host;x-amz-target, Signature=0\r\n\
             Content-Length: {length}\r\n\r\n{body}",
            host = self.endpoint,
            length = body.len(),
        );
        let fail = |e: std::io::Error| format!("{target} to {}: {e}", self.endpoint);
        let mut stream =
            TcpStream::connect_timeout(&self.endpoint, Duration::from_secs(5)).map_err(fail)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(fail)?;
        stream.write_all(request.as_bytes()).map_err(fail)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map_err(fail)?;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.split(' ').nth(1).unwrap_or_default();
        if status != "200" {
            return Err(format!("{target}: moto answered {status}: {body}"));
        }
        serde_json::from_str(body).map_err(|e| format!("{target}: moto's answer is not JSON: {e}"))
    }
}

fn resolve(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or_else(|| format!("AWS_ENDPOINT_URL {url:?} is not an http:// (moto) endpoint"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("AWS_ENDPOINT_URL {url:?}: cannot resolve {authority:?}"))
}

fn moto_executable(repo: &Path) -> Option<PathBuf> {
    let venv = repo.join(".venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
}

fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}
