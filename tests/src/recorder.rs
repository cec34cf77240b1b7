//! A recording proxy for AWS: a loopback HTTP/1.1 server between one function's SDK clients and
//! moto. It forwards every request unchanged and writes down what each one asked AWS to do: the
//! operation (the `X-Amz-Target` header of the JSON protocols every SDK the project links
//! speaks), and what it touched — tables, indexes and partition keys for DynamoDB, the key, the
//! secret, the event buses or the queue for the others. Bodies are read for names only: no
//! item, plaintext, ciphertext or secret value is kept.
//!
//! [`iam_permissions`] turns a recorded call into the IAM actions AWS authorises it with, so a
//! test can hold what a function's code calls against what its role grants.
//!
//! A [`Recorder`] can also answer an operation with an error instead of forwarding it
//! ([`Recorder::fail_next`]), to drive the paths a function takes when AWS refuses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

/// The largest request or response the proxy passes on (DynamoDB items are at most 400 KB; a
/// transaction at most 4 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Headers of one HTTP connection, not of the message: never forwarded.
const HOP_BY_HOP: [&str; 6] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "expect",
];

/// One request a function sent to AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The `X-Amz-Target` header: `{service}.{operation}`, e.g. `DynamoDB_20120810.GetItem`.
    pub target: String,
    /// The HTTP status AWS (or a fault the test injected) answered with.
    pub status: u16,
    /// For DynamoDB: what the request reads or writes, one entry per table, index or
    /// transaction item.
    pub items: Vec<ItemAccess>,
    /// For the other services: what the request names — the key id (KMS), the secret id
    /// (Secrets Manager), each entry's event bus (EventBridge), the queue URL (SQS).
    pub resources: Vec<String>,
    /// For KMS: the keys of the request's `EncryptionContext` (what `kms:EncryptionContextKeys`
    /// and `kms:EncryptionContext:<key>` conditions see), sorted; empty otherwise.
    pub encryption_context_keys: Vec<String>,
}

impl Call {
    /// The operation without its service prefix: `GetItem`.
    pub fn operation(&self) -> &str {
        self.target
            .rsplit_once('.')
            .map_or(self.target.as_str(), |(_, op)| op)
    }

    /// The service prefix: `DynamoDB_20120810`.
    pub fn service(&self) -> &str {
        self.target
            .split_once('.')
            .map_or(self.target.as_str(), |(service, _)| service)
    }
}

/// How a DynamoDB request, or one item of a transaction, uses the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKind {
    Get,
    Put,
    Update,
    Delete,
    /// A transaction's `ConditionCheck`.
    ConditionCheck,
    Query,
    Scan,
}

/// One table access of a DynamoDB request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemAccess {
    pub kind: ItemKind,
    pub table: String,
    /// The index a `Query` or `Scan` reads (`IndexName`).
    pub index: Option<String>,
    /// The partition key values the access is confined to, as IAM's `dynamodb:LeadingKeys`
    /// sees them: the hash key of the `Key` or `Item`, or the hash key value a `Query`'s key
    /// condition names (the index's own hash key for an index). Empty for a `Scan`.
    pub partition_keys: Vec<String>,
    /// `ReturnValues` of the request, when set.
    pub return_values: Option<String>,
    /// `ReturnValuesOnConditionCheckFailure` of the request or the transaction item, when set.
    pub return_values_on_condition_check_failure: Option<String>,
}

/// What one IAM permission is asked on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Table(String),
    Index { table: String, index: String },
    KmsKey(String),
    Secret(String),
    EventBus(String),
    Queue(String),
}

/// One IAM authorisation a call needs: the action, the resource, and the partition keys the
/// request context carries as `dynamodb:LeadingKeys` (DynamoDB only).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub action: String,
    pub resource: Resource,
    pub leading_keys: Vec<String>,
}

/// The IAM permissions that authorise `call`, one per action and resource it needs, following
/// the AWS documentation:
///
/// - DynamoDB, by "DynamoDB API permissions: Actions, resources, and conditions reference" and
///   the Service Authorization Reference page "Actions, resources, and condition keys for Amazon
///   DynamoDB": an item operation needs the action of its own name on the table; `Query` and
///   `Scan` need `dynamodb:Query`/`dynamodb:Scan` on the index ARN when they name an index,
///   else on the table. By "Using IAM with DynamoDB transactions": `TransactWriteItems` has no
///   action of its own — each `Put`, `Update`, `Delete` item is authorised as `PutItem`,
///   `UpdateItem`, `DeleteItem` and each `ConditionCheck` as `ConditionCheckItem` (and
///   `TransactGetItems` as `GetItem`), all on the item's table. `ReturnValues` and
///   `ReturnValuesOnConditionCheckFailure` ask for no further action: they are governed by the
///   item's own action (and can be narrowed with the `dynamodb:ReturnValues` condition key).
///   `dynamodb:LeadingKeys` ("Using IAM policy conditions for fine-grained access control") is
///   the partition key of each item, or of the key condition of a `Query`.
/// - KMS (AWS KMS Developer Guide, "AWS KMS permissions"): `Encrypt` and `Decrypt` need
///   `kms:Encrypt`/`kms:Decrypt` on the key.
/// - Secrets Manager (Service Authorization Reference, "Actions, resources, and condition keys
///   for AWS Secrets Manager"): `GetSecretValue` needs `secretsmanager:GetSecretValue` on the
///   secret.
/// - EventBridge (Amazon EventBridge User Guide, "Amazon EventBridge permissions reference"):
///   `PutEvents` needs `events:PutEvents` on the event bus of each entry (the account's
///   `default` bus for an entry that names none).
/// - SQS (Amazon SQS Developer Guide, "Amazon SQS batch actions"): batch actions have no
///   permission of their own; `SendMessageBatch` is authorised as `sqs:SendMessage` and
///   `DeleteMessageBatch` as `sqs:DeleteMessage` on the queue. `ReceiveMessage` and
///   `GetQueueAttributes` need the action of their own name ("Amazon SQS API permissions:
///   Actions and resource reference").
///
/// # Panics
/// On an operation this mapping does not know: a function calling something new must be looked
/// up in the documentation and added here, not guessed.
pub fn iam_permissions(call: &Call) -> Vec<Permission> {
    let op = call.operation();
    let other = |action: &str, resource: fn(String) -> Resource| -> Vec<Permission> {
        call.resources
            .iter()
            .map(|r| Permission {
                action: action.to_owned(),
                resource: resource(r.clone()),
                leading_keys: Vec::new(),
            })
            .collect()
    };
    match call.service() {
        "DynamoDB_20120810" => {
            let known = [
                "GetItem",
                "PutItem",
                "UpdateItem",
                "DeleteItem",
                "Query",
                "Scan",
                "TransactWriteItems",
                "TransactGetItems",
            ];
            assert!(
                known.contains(&op),
                "no documented IAM mapping here for DynamoDB {op}: look it up and add it"
            );
            call.items
                .iter()
                .map(|item| {
                    let action = match item.kind {
                        ItemKind::Get => "dynamodb:GetItem",
                        ItemKind::Put => "dynamodb:PutItem",
                        ItemKind::Update => "dynamodb:UpdateItem",
                        ItemKind::Delete => "dynamodb:DeleteItem",
                        ItemKind::ConditionCheck => "dynamodb:ConditionCheckItem",
                        ItemKind::Query => "dynamodb:Query",
                        ItemKind::Scan => "dynamodb:Scan",
                    };
                    let resource = match &item.index {
                        Some(index) => Resource::Index {
                            table: item.table.clone(),
                            index: index.clone(),
                        },
                        None => Resource::Table(item.table.clone()),
                    };
                    Permission {
                        action: action.to_owned(),
                        resource,
                        leading_keys: item.partition_keys.clone(),
                    }
                })
                .collect()
        }
        "TrentService" => match op {
            "Encrypt" => other("kms:Encrypt", Resource::KmsKey),
            "Decrypt" => other("kms:Decrypt", Resource::KmsKey),
            _ => panic!("no documented IAM mapping here for KMS {op}: look it up and add it"),
        },
        "secretsmanager" => match op {
            "GetSecretValue" => other("secretsmanager:GetSecretValue", Resource::Secret),
            _ => panic!(
                "no documented IAM mapping here for Secrets Manager {op}: look it up and add it"
            ),
        },
        "AWSEvents" => match op {
            "PutEvents" => other("events:PutEvents", Resource::EventBus),
            _ => {
                panic!("no documented IAM mapping here for EventBridge {op}: look it up and add it")
            }
        },
        "AmazonSQS" => match op {
            "SendMessage" | "SendMessageBatch" => other("sqs:SendMessage", Resource::Queue),
            "DeleteMessage" | "DeleteMessageBatch" => other("sqs:DeleteMessage", Resource::Queue),
            "ReceiveMessage" => other("sqs:ReceiveMessage", Resource::Queue),
            "GetQueueAttributes" => other("sqs:GetQueueAttributes", Resource::Queue),
            _ => panic!("no documented IAM mapping here for SQS {op}: look it up and add it"),
        },
        service => panic!("no documented IAM mapping here for {service}.{op}"),
    }
}

/// The hash key attribute of the table and of each of its indexes, from `template.yaml`.
#[derive(Debug, Clone)]
struct KeySchema {
    table: String,
    indexes: HashMap<String, String>,
}

impl KeySchema {
    fn from_template() -> Self {
        let def = crate::table_definition();
        let hash = |keys: &[crate::KeyElement]| {
            keys.iter()
                .find(|k| k.key_type == "HASH")
                .map(|k| k.attribute_name.clone())
                .unwrap_or_else(|| panic!("a key schema without a HASH key: {keys:?}"))
        };
        Self {
            table: hash(&def.key_schema),
            indexes: def
                .global_secondary_indexes
                .iter()
                .map(|i| (i.index_name.clone(), hash(&i.key_schema)))
                .collect(),
        }
    }

    fn hash_key_of(&self, index: Option<&str>) -> &str {
        match index {
            None => &self.table,
            Some(i) => self
                .indexes
                .get(i)
                .unwrap_or_else(|| panic!("a query on index {i}, which template.yaml lacks")),
        }
    }
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    calls: Mutex<Vec<Call>>,
    /// Operations (`X-Amz-Target`) to answer with an error, and how many more times.
    faults: Mutex<HashMap<String, u32>>,
    keys: KeySchema,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A recording proxy in front of the harness's AWS endpoint (moto). It stops when dropped.
pub struct Recorder {
    endpoint: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Starts a proxy on a free loopback port in front of [`crate::aws_endpoint`].
    ///
    /// # Panics
    /// If no loopback port can be bound (a test environment problem).
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            upstream: crate::aws_endpoint().to_owned(),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_else(|e| panic!("an HTTP client for the recorder: {e}")),
            calls: Mutex::new(Vec::new()),
            faults: Mutex::new(HashMap::new()),
            keys: KeySchema::from_template(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the recorder cannot bind a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the recorder's address: {e}"));
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
            shared,
            server,
        }
    }

    /// The proxy's URL, for an SDK's `endpoint_url`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An SDK configuration like [`crate::aws_config`]'s, pointed at this proxy.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::aws_config_at(&self.endpoint).await
    }

    /// Every call recorded so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// Answers the next `times` requests for `target` (`AWSEvents.PutEvents`) with HTTP 400
    /// `ValidationException` instead of forwarding them (an error the SDKs do not retry). They
    /// are recorded all the same: IAM authorises a request before the service works on it.
    pub fn fail_next(&self, target: &str, times: u32) {
        lock(&self.shared.faults).insert(target.to_owned(), times);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return bad_gateway(&format!("request body unreadable: {e}")),
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (items, resources) = describe(&shared.keys, &target, &json);
    let fault = {
        let mut faults = lock(&shared.faults);
        match faults.get_mut(&target) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    let response = if fault {
        injected_fault()
    } else {
        let url = format!(
            "{}{}",
            shared.upstream,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        match shared
            .client
            .request(parts.method.clone(), url)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(upstream) => relay(upstream).await,
            Err(e) => bad_gateway(&format!("moto did not answer: {e}")),
        }
    };
    if !target.is_empty() {
        let encryption_context_keys = encryption_context_keys(&target, &json);
        lock(&shared.calls).push(Call {
            target,
            status: response.status().as_u16(),
            items,
            resources,
            encryption_context_keys,
        });
    }
    response
}

async fn relay(upstream: reqwest::Response) -> Response {
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    match upstream.bytes().await {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(e) => bad_gateway(&format!("moto's answer unreadable: {e}")),
    }
}

fn bad_gateway(why: &str) -> Response {
    (StatusCode::BAD_GATEWAY, format!("recorder: {why}")).into_response()
}

fn injected_fault() -> Response {
    let mut response = Response::new(Body::from(
        r#"{"__type":"ValidationException","message":"refused by the test's recorder"}"#,
    ));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("content-type"),
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    headers.insert(
        HeaderName::from_static("x-amzn-errortype"),
        HeaderValue::from_static("ValidationException"),
    );
    response
}

/// The keys of a KMS request's `EncryptionContext`, sorted (none for other services).
fn encryption_context_keys(target: &str, body: &Value) -> Vec<String> {
    if !target.starts_with("TrentService.") {
        return Vec::new();
    }
    let mut keys: Vec<String> = body
        .get("EncryptionContext")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|c| c.keys().cloned())
        .collect();
    keys.sort();
    keys
}

/// What a request touches: DynamoDB accesses, or the names other services act on.
fn describe(keys: &KeySchema, target: &str, body: &Value) -> (Vec<ItemAccess>, Vec<String>) {
    let (service, op) = target.split_once('.').unwrap_or((target, ""));
    let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).map(str::to_owned);
    match service {
        "DynamoDB_20120810" => (dynamo_accesses(keys, op, body), Vec::new()),
        "TrentService" | "secretsmanager" | "AmazonSQS" => {
            let field = match service {
                "TrentService" => "KeyId",
                "secretsmanager" => "SecretId",
                _ => "QueueUrl",
            };
            (Vec::new(), text(body, field).into_iter().collect())
        }
        "AWSEvents" => {
            let buses = body
                .get("Entries")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| text(e, "EventBusName").unwrap_or_else(|| "default".to_owned()))
                .collect::<std::collections::BTreeSet<_>>();
            (Vec::new(), buses.into_iter().collect())
        }
        _ => (Vec::new(), Vec::new()),
    }
}

fn dynamo_accesses(keys: &KeySchema, op: &str, body: &Value) -> Vec<ItemAccess> {
    let single = |kind: ItemKind, request: &Value| -> ItemAccess {
        let table = request
            .get("TableName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let index = request
            .get("IndexName")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let partition_keys = match kind {
            ItemKind::Query => vec![queried_partition(keys, index.as_deref(), request)],
            ItemKind::Scan => Vec::new(),
            ItemKind::Put => vec![hash_value(keys, request.get("Item"))],
            _ => vec![hash_value(keys, request.get("Key"))],
        };
        let text = |field: &str| {
            request
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        ItemAccess {
            kind,
            table,
            index,
            partition_keys,
            return_values: text("ReturnValues"),
            return_values_on_condition_check_failure: text("ReturnValuesOnConditionCheckFailure"),
        }
    };
    match op {
        "GetItem" => vec![single(ItemKind::Get, body)],
        "PutItem" => vec![single(ItemKind::Put, body)],
        "UpdateItem" => vec![single(ItemKind::Update, body)],
        "DeleteItem" => vec![single(ItemKind::Delete, body)],
        "Query" => vec![single(ItemKind::Query, body)],
        "Scan" => vec![single(ItemKind::Scan, body)],
        "TransactWriteItems" | "TransactGetItems" => body
            .get("TransactItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|item| {
                item.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(kind, request)| {
                        let kind = match kind.as_str() {
                            "Put" => ItemKind::Put,
                            "Update" => ItemKind::Update,
                            "Delete" => ItemKind::Delete,
                            "ConditionCheck" => ItemKind::ConditionCheck,
                            "Get" => ItemKind::Get,
                            other => panic!("a transaction item of kind {other}"),
                        };
                        single(kind, request)
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
        // Not one this recorder reads: `iam_permissions` refuses to map it.
        _ => Vec::new(),
    }
}

/// The string value of the table's hash key in a `Key` or `Item`.
fn hash_value(keys: &KeySchema, item: Option<&Value>) -> String {
    item.and_then(|i| i.get(&keys.table))
        .and_then(|v| v.get("S"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("a DynamoDB key or item without a string {}", keys.table))
}

/// The hash key value a `Query`'s key condition fixes: the clause `name = :value` whose name
/// (after `ExpressionAttributeNames`) is the hash key of the table or of the queried index.
fn queried_partition(keys: &KeySchema, index: Option<&str>, request: &Value) -> String {
    let hash = keys.hash_key_of(index);
    let condition = request
        .get("KeyConditionExpression")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("a Query without a KeyConditionExpression"));
    let resolve_name = |n: &str| -> String {
        request
            .get("ExpressionAttributeNames")
            .and_then(|names| names.get(n))
            .and_then(Value::as_str)
            .map_or_else(|| n.to_owned(), str::to_owned)
    };
    condition
        .split(" AND ")
        .flat_map(|c| c.split(" and "))
        .filter_map(|clause| {
            let (left, right) = clause.split_once('=')?;
            let left = left.trim();
            if left.ends_with(['<', '>']) {
                return None;
            }
            (resolve_name(left) == hash).then(|| right.trim().to_owned())
        })
        .find_map(|placeholder| {
            request
                .get("ExpressionAttributeValues")
                .and_then(|values| values.get(&placeholder))
                .and_then(|v| v.get("S"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("cannot read the {hash} of the key condition {condition:?}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keys() -> KeySchema {
        KeySchema {
            table: "pk".into(),
            indexes: HashMap::from([("due-index".into(), "due_shard".into())]),
        }
    }

    #[test]
    fn a_transaction_is_authorised_item_by_item() {
        let body = json!({"TransactItems": [
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "CUST#c"}, "sk": {"S": "SUB#p"}},
                     "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "BIND#r"}, "sk": {"S": "SESSION"}}}},
        ]});
        let call = Call {
            target: "DynamoDB_20120810.TransactWriteItems".into(),
            status: 200,
            items: dynamo_accesses(&keys(), "TransactWriteItems", &body),
            resources: vec![],
            encryption_context_keys: vec![],
        };
        assert_eq!(
            call.items[0]
                .return_values_on_condition_check_failure
                .as_deref(),
            Some("ALL_OLD")
        );
        let permissions = iam_permissions(&call);
        let actions: Vec<(&str, &[String])> = permissions
            .iter()
            .map(|p| (p.action.as_str(), p.leading_keys.as_slice()))
            .collect();
        assert_eq!(
            actions,
            [
                ("dynamodb:PutItem", &["CUST#c".to_owned()][..]),
                ("dynamodb:ConditionCheckItem", &["BIND#r".to_owned()][..]),
            ]
        );
    }

    #[test]
    fn an_index_query_is_authorised_on_the_index_with_the_index_partition() {
        let body = json!({
            "TableName": "t", "IndexName": "due-index",
            "KeyConditionExpression": "#shard = :shard AND #at <= :now",
            "ExpressionAttributeNames": {"#shard": "due_shard", "#at": "due_at"},
            "ExpressionAttributeValues": {":shard": {"S": "DUE#07"}, ":now": {"N": "1"}},
        });
        let call = Call {
            target: "DynamoDB_20120810.Query".into(),
            status: 200,
            items: dynamo_accesses(&keys(), "Query", &body),
            resources: vec![],
            encryption_context_keys: vec![],
        };
        assert_eq!(
            iam_permissions(&call),
            [Permission {
                action: "dynamodb:Query".into(),
                resource: Resource::Index {
                    table: "t".into(),
                    index: "due-index".into()
                },
                leading_keys: vec!["DUE#07".into()],
            }]
        );
    }

    #[test]
    fn a_kms_calls_encryption_context_keys_are_recorded_sorted() {
        let body = json!({"KeyId": "k", "CiphertextBlob": "AA==",
            "EncryptionContext": {"merchant": "m", "customer": "c", "binding": "b"}});
        assert_eq!(
            encryption_context_keys("TrentService.Decrypt", &body),
            ["binding", "customer", "merchant"]
        );
        assert!(encryption_context_keys("TrentService.Decrypt", &json!({"KeyId": "k"})).is_empty());
        assert!(encryption_context_keys("DynamoDB_20120810.GetItem", &body).is_empty());
    }

    #[test]
    fn a_batch_send_is_authorised_as_send_message() {
        let (_, resources) = describe(
            &keys(),
            "AmazonSQS.SendMessageBatch",
            &json!({"QueueUrl": "http://q/1/charges", "Entries": []}),
        );
        let call = Call {
            target: "AmazonSQS.SendMessageBatch".into(),
            status: 200,
            items: vec![],
            resources,
            encryption_context_keys: vec![],
        };
        assert_eq!(
            iam_permissions(&call),
            [Permission {
                action: "sqs:SendMessage".into(),
                resource: Resource::Queue("http://q/1/charges".into()),
                leading_keys: vec![],
            }]
        );
    }
}
