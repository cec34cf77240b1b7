//! The integration-test harness: AWS is moto, on loopback, with dummy credentials.
//!
//! `scripts/test` starts one moto server for the whole run and exports `AWS_ENDPOINT_URL`; a
//! plain `cargo test -p oen-pay-integration` starts its own moto per test binary instead (from
//! the project's `.venv`, else from `PATH`) and stops it when the test process exits. Every
//! test then works on its own uniquely named table, key or secret, so tests run in parallel on
//! one server without seeing each other.
//!
//! Tables are created from the `Table` resource of `template.yaml` itself ([`create_table`]), so
//! the schema the tests prove is the schema that is deployed.

pub mod bus;
pub mod logs;
pub mod recorder;
pub mod soak;
pub mod stack;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ProvisionedThroughput, ScalarAttributeType, TimeToLiveSpecification,
};
use serde::Deserialize;

/// The region every test client uses.
pub const REGION: &str = "ap-northeast-1";

/// How long a freshly started moto server may take to answer.
const MOTO_START_DEADLINE: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str = "run scripts/test, or python3 -m venv .venv && \
     .venv/bin/pip install -r requirements-test.txt";

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// A name no other test (in this or a concurrent run) uses: `{prefix}-{pid}-{time}-{n}`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// moto

/// The lifeline of the moto server this process started, if any: never dropped, so its stdin
/// pipe closes only when this process exits (see [`start_moto`]).
static MOTO: Mutex<Option<Child>> = Mutex::new(None);

/// The endpoint of the AWS emulator: `AWS_ENDPOINT_URL` if the test script set it, else a moto
/// server this process starts on a free loopback port (once; every test shares it).
///
/// # Panics
/// If moto is not installed or does not come up, with a message saying how to fix it.
pub fn aws_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim_end_matches('/').to_owned(),
        _ => start_moto(),
    })
}

fn moto_executable() -> Option<PathBuf> {
    let venv = repo_root().join(".venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
}

/// Starts `moto_server` behind a lifeline: a tiny shell that kills moto as soon as its stdin
/// reaches end-of-file. Its stdin is a pipe only this process holds, so moto stops when this
/// process exits for any reason, even SIGKILL; the kernel closes the pipe, no exit hook needed.
/// Once moto answers, this process writes `up` down the pipe: the shell then removes moto's log
/// when it stops moto (a moto that never came up keeps its log, and the panic names it).
fn start_moto() -> String {
    let moto = moto_executable().unwrap_or_else(|| {
        panic!("moto_server was found neither in .venv/bin nor on PATH: {INSTALL_HINT}")
    });
    let port = free_loopback_port();
    let log = std::env::temp_dir().join(format!("oen-pay-moto-{port}.log"));
    // fd 3 keeps the pipe for the watcher: an asynchronous list's stdin is /dev/null. The
    // watcher reads until end-of-file, remembering the last line; unlinking the log while moto
    // still writes it is harmless.
    const LIFELINE: &str = r#"
        exec 3<&0
        "$1" -H 127.0.0.1 -p "$2" >"$3" 2>&1 </dev/null 3<&- &
        moto=$!
        {
            state=
            while read -r line <&3; do state=$line; done
            kill "$moto" 2>/dev/null
            if [ "$state" = up ]; then rm -f "$3"; fi
        } &
        exec 3<&-
        wait "$moto"
    "#;
    let child = Command::new("sh")
        .arg("-c")
        .arg(LIFELINE)
        .arg("moto-lifeline")
        .arg(&moto)
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", moto.display()));
    {
        let mut slot = MOTO.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(child);
    }

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + MOTO_START_DEADLINE;
    loop {
        if answers_http(addr) {
            // Only a moto that never came up keeps its log; should this write fail, the log
            // merely stays behind in the temporary directory.
            if let Some(stdin) = MOTO
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                .and_then(|c| c.stdin.as_mut())
            {
                let _ = stdin.write_all(b"up\n");
            }
            return format!("http://{addr}");
        }
        let exited = MOTO
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!(
                "moto_server ({}) exited with {status} before answering; its log is {}. {INSTALL_HINT}",
                moto.display(),
                log.display()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "moto_server ({}) did not answer on {addr} within {MOTO_START_DEADLINE:?}; its log is {}",
                moto.display(),
                log.display()
            );
        }
        // Polling a process we do not control; the deadline above bounds it.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_loopback_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Whether an HTTP server answers on `addr`.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

// ---------------------------------------------------------------------------------------------
// Clients

/// An SDK configuration pointed at [`aws_endpoint`], in [`REGION`], with dummy credentials.
pub async fn aws_config() -> SdkConfig {
    aws_config_at(aws_endpoint()).await
}

/// The same configuration as [`aws_config`], pointed at `endpoint` instead (a
/// [`recorder::Recorder`] in front of moto).
pub async fn aws_config_at(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "oen-pay-integration-tests",
        ))
        .load()
        .await
}

pub async fn dynamo_client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&aws_config().await)
}

pub async fn kms_client() -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&aws_config().await)
}

pub async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&aws_config().await)
}

// ---------------------------------------------------------------------------------------------
// The table, from template.yaml

/// The properties of an `AWS::DynamoDB::Table` the tests reproduce. Others (SSE, point-in-time
/// recovery, tags) do not change behaviour and are left to CloudFormation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableDefinition {
    pub attribute_definitions: Vec<AttributeDef>,
    pub key_schema: Vec<KeyElement>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDef>,
    #[serde(default)]
    pub billing_mode: Option<String>,
    #[serde(default)]
    pub provisioned_throughput: Option<Throughput>,
    #[serde(default)]
    pub time_to_live_specification: Option<TtlDef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDef {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDef {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection: ProjectionDef,
    #[serde(default)]
    pub provisioned_throughput: Option<Throughput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionDef {
    pub projection_type: Option<String>,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Throughput {
    pub read_capacity_units: i64,
    pub write_capacity_units: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlDef {
    pub attribute_name: String,
    pub enabled: bool,
}

/// Reads the `Table` resource of `template.yaml`.
///
/// # Panics
/// If the template is missing or the resource is not a table definition the tests understand.
pub fn table_definition() -> TableDefinition {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let template: yaml_serde::Value = yaml_serde::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    let table = template
        .get("Resources")
        .and_then(|r| r.get("Table"))
        .unwrap_or_else(|| panic!("{} has no Resources.Table", path.display()));
    let kind = table.get("Type").and_then(|t| t.as_str());
    assert_eq!(
        kind,
        Some("AWS::DynamoDB::Table"),
        "Resources.Table of {} is not a DynamoDB table",
        path.display()
    );
    let properties = table
        .get("Properties")
        .cloned()
        .map(untag)
        .unwrap_or_else(|| panic!("Resources.Table of {} has no Properties", path.display()));
    yaml_serde::from_value(properties).unwrap_or_else(|e| {
        panic!(
            "Resources.Table.Properties of {} is not understood: {e}",
            path.display()
        )
    })
}

/// Drops CloudFormation's short-form tags (`!Ref`, `!Sub`, `!GetAtt`…), keeping their values.
fn untag(value: yaml_serde::Value) -> yaml_serde::Value {
    use yaml_serde::Value;
    match value {
        Value::Tagged(tagged) => untag(tagged.value),
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(untag).collect()),
        Value::Mapping(map) => {
            Value::Mapping(map.into_iter().map(|(k, v)| (k, untag(v))).collect())
        }
        other => other,
    }
}

fn key_schema(elements: &[KeyElement]) -> Vec<KeySchemaElement> {
    elements
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .unwrap_or_else(|e| panic!("key schema element {k:?}: {e}"))
        })
        .collect()
}

fn throughput(t: Option<Throughput>) -> Option<ProvisionedThroughput> {
    t.map(|t| {
        ProvisionedThroughput::builder()
            .read_capacity_units(t.read_capacity_units)
            .write_capacity_units(t.write_capacity_units)
            .build()
            .unwrap_or_else(|e| panic!("provisioned throughput {t:?}: {e}"))
    })
}

/// Creates a uniquely named table in moto from exactly the `Table` resource of `template.yaml`
/// (attributes, keys, indexes and their projections, billing mode, then its time to live) and
/// returns its name.
pub async fn create_table(client: &aws_sdk_dynamodb::Client) -> String {
    let def = table_definition();
    let name = unique_name("oen-pay");
    let mut request = client
        .create_table()
        .table_name(&name)
        .set_key_schema(Some(key_schema(&def.key_schema)))
        .set_provisioned_throughput(throughput(def.provisioned_throughput));
    for a in &def.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .unwrap_or_else(|e| panic!("attribute definition {a:?}: {e}")),
        );
    }
    if let Some(mode) = &def.billing_mode {
        request = request.billing_mode(BillingMode::from(mode.as_str()));
    }
    for index in &def.global_secondary_indexes {
        let projection = Projection::builder()
            .set_projection_type(
                index
                    .projection
                    .projection_type
                    .as_deref()
                    .map(ProjectionType::from),
            )
            .set_non_key_attributes(
                (!index.projection.non_key_attributes.is_empty())
                    .then(|| index.projection.non_key_attributes.clone()),
            )
            .build();
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema)))
                .projection(projection)
                .set_provisioned_throughput(throughput(index.provisioned_throughput))
                .build()
                .unwrap_or_else(|e| panic!("index {}: {e}", index.index_name)),
        );
    }
    request.send().await.unwrap_or_else(|e| {
        panic!(
            "CreateTable {name}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&e)
        )
    });
    if let Some(ttl) = &def.time_to_live_specification {
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(&ttl.attribute_name)
                    .enabled(ttl.enabled)
                    .build()
                    .unwrap_or_else(|e| panic!("time to live {ttl:?}: {e}")),
            )
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "UpdateTimeToLive {name}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                )
            });
    }
    name
}

/// Every item of `table` (a test-only full scan, following pagination).
pub async fn scan_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Scan {table}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                )
            });
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// KMS and Secrets Manager

/// A fresh symmetric encryption key in moto; returns its key id.
pub async fn create_kms_key(client: &aws_sdk_kms::Client) -> String {
    let out = client
        .create_key()
        .description(unique_name("oen-pay-card-tokens"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateKey: {}", aws_sdk_kms::error::DisplayErrorContext(&e)));
    out.key_metadata
        .map(|m| m.key_id)
        .unwrap_or_else(|| panic!("CreateKey returned no key metadata"))
}

/// A fresh secret in moto holding `json`; returns its name (which is also its secret id).
pub async fn create_secret(client: &aws_sdk_secretsmanager::Client, json: &str) -> String {
    let name = unique_name("oen-pay-secret");
    client
        .create_secret()
        .name(&name)
        .secret_string(json)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateSecret {name}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            )
        });
    name
}

/// Every message on an SQS queue, received and deleted, as Lambda's poller does (with the event
/// source mapping's permissions, not the function's).
pub async fn take_all(client: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut taken = Vec::new();
    loop {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return taken;
        }
        for m in messages {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            taken.push(m);
        }
    }
}

/// The SQS event Lambda hands the charger for `messages`.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:ap-northeast-1:123456789012:charges",
                "awsRegion": "ap-northeast-1"
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}
