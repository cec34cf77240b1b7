//! Each function's role, held against evidence. The function's own code, wired as its `main.rs`
//! wires it (its `Configuration` read from the environment `template.yaml` gives it, then
//! `oen_pay::aws::wiring`), is driven through its real entry points over every flow it has, with
//! its AWS clients pointed at a recording proxy in front of moto. What its recorder saw, mapped
//! to IAM actions as AWS documents them (`recorder::iam_permissions`), must be exactly what its
//! inline policies grant, on the same resources: an action missing from the role is an
//! `AccessDenied` in production, an action granted but never called is not least privilege.
//! Every DynamoDB statement confines the partition keys it serves (`dynamodb:LeadingKeys`); each
//! key the function touched must match one of its patterns, and each pattern must be needed.
//!
//! One journey drives the four functions in turn, as a customer's life does: checkout-start
//! opens binding sessions, Oen (the simulator) delivers their webhooks to the webhook function,
//! the charger charges what they bound, then reconciles the day against Oen's transaction list
//! (`{"job":"reconcile"}`), and the merchant operates through the merchant API (links, lookups,
//! refunds, cancels, the dry run). Each test then judges one function on what its own recorder
//! saw.
//!
//! Two things stand in for the deployment: the charger's (and the merchant API's) clock, which
//! the journey moves so that dunning's days pass, and Lambda's SQS poller, whose receive and
//! delete run on the event source mapping's permissions (SAM's managed policy), not on the
//! code's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration as StdDuration;

use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use http_body_util::BodyExt;
use lambda_runtime::{Context, LambdaEvent};
use oen_pay::aws::{wiring, DynamoStore};
use oen_pay::charging::ChargeDeps;
use oen_pay::clock::{Clock, TestClock};
use oen_pay::config::Vars;
use oen_pay::domain::{
    BindingRef, CardToken, CustomerId, DomainEvent, OrderId, OutboxEntry, PlanId,
};
use oen_pay::oen::{ChargeRequest, OenGateway};
use oen_pay::ops::Operations;
use oen_pay::store::{
    ChargePeriod, Expect, PeriodState, Put, SessionState, Store, StoreExt, Subscription,
    SubscriptionStatus,
};
use oen_pay::{dev, links};
use oen_pay_integration as harness;
use oen_pay_integration::recorder::{iam_permissions, Call, Recorder, Resource};
use oen_sim::{cards, SimConfig, Simulator};
use serde_json::{json, Value};
use tower::ServiceExt;
use yaml_serde::Value as Yaml;

const PLAN: &str = "premium";

// ---------------------------------------------------------------------------------------------
// The template, read as data

fn template() -> Yaml {
    let path = harness::repo_root().join("template.yaml");
    yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The arguments of an intrinsic function written with its short tag (`!Ref X`).
fn intrinsic<'v>(v: &'v Yaml, tag: &str) -> Option<&'v Yaml> {
    match v {
        Yaml::Tagged(t) if t.tag.to_string().trim_start_matches('!') == tag => Some(&t.value),
        _ => None,
    }
}

fn plain(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        other => yaml_serde::to_string(other).unwrap().trim().to_owned(),
    }
}

fn list(v: &Yaml) -> Vec<&Yaml> {
    match v {
        Yaml::Sequence(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// The resource a policy's `Resource` or an environment variable names, by logical id:
/// `!Ref X` and `!GetAtt X.Arn` name `X`, `!Sub "${X.Arn}/index/i"` names `X/index/i`.
fn named_resource(v: &Yaml) -> Option<String> {
    if let Some(name) = intrinsic(v, "Ref") {
        return Some(plain(name));
    }
    if let Some(target) = intrinsic(v, "GetAtt") {
        let target = plain(target);
        return Some(target.strip_suffix(".Arn").unwrap_or(&target).to_owned());
    }
    let sub = plain(intrinsic(v, "Sub")?);
    let (target, rest) = sub.strip_prefix("${")?.split_once('}')?;
    Some(format!(
        "{}{rest}",
        target.strip_suffix(".Arn").unwrap_or(target)
    ))
}

/// One statement of a function's inline policies.
#[derive(Debug)]
struct Statement {
    sid: String,
    actions: Vec<String>,
    /// Logical ids, `Table/index/due-index` for an index.
    resources: Vec<String>,
    /// The `dynamodb:LeadingKeys` patterns of its `ForAllValues:StringLike` condition, if any.
    leading_keys: Option<Vec<String>>,
    /// The encryption context keys a KMS statement requires, all present and no others
    /// (`ForAllValues:StringEquals` on `kms:EncryptionContextKeys` with a `Null` "false" on
    /// each `kms:EncryptionContext:<key>`), if it has that condition.
    context_keys: Option<BTreeSet<String>>,
}

/// The encryption context keys a KMS statement's condition requires exactly, or why the
/// condition is not one this test can judge.
fn kms_context_condition(condition: &Yaml) -> Option<BTreeSet<String>> {
    let m = condition.as_mapping().filter(|m| m.len() == 2)?;
    let all = m.get("ForAllValues:StringEquals")?;
    let allowed: BTreeSet<String> = list(
        all.as_mapping()
            .filter(|a| a.len() == 1)?
            .get("kms:EncryptionContextKeys")?,
    )
    .into_iter()
    .map(plain)
    .collect();
    let null = m.get("Null")?.as_mapping()?;
    let required: BTreeSet<String> = null
        .iter()
        .map(|(k, v)| {
            let key = k.as_str()?.strip_prefix("kms:EncryptionContext:")?;
            (v.as_str() == Some("false")).then(|| key.to_owned())
        })
        .collect::<Option<_>>()?;
    (allowed == required).then_some(allowed)
}

/// The statements of `function`'s inline policies. Only the shapes this test can judge are
/// accepted: plain allows on named resources, with at most a `LeadingKeys` condition.
fn statements(t: &Yaml, function: &str) -> Vec<Statement> {
    let policies = &t["Resources"][function]["Properties"]["Policies"];
    let mut out = Vec::new();
    for policy in policies.as_sequence().expect("inline policies") {
        for s in policy["Statement"].as_sequence().expect("statements") {
            let sid = plain(&s["Sid"]);
            assert_eq!(s["Effect"].as_str(), Some("Allow"), "{function} {sid}");
            let resources = list(&s["Resource"])
                .into_iter()
                .map(|r| {
                    named_resource(r).unwrap_or_else(|| {
                        panic!("{function} {sid}: a resource this test cannot name: {r:?}")
                    })
                })
                .collect();
            let kms = list(&s["Action"])
                .iter()
                .all(|a| plain(a).starts_with("kms:"));
            let context_keys = s.get("Condition").filter(|_| kms).map(|condition| {
                kms_context_condition(condition).unwrap_or_else(|| {
                    panic!("{function} {sid}: a KMS condition other than exactly the encryption context keys")
                })
            });
            let leading_keys = s.get("Condition").filter(|_| !kms).map(|condition| {
                let keys = condition
                    .as_mapping()
                    .filter(|m| m.len() == 1)
                    .and_then(|_| condition.get("ForAllValues:StringLike"))
                    .and_then(|c| c.as_mapping().filter(|m| m.len() == 1).map(|_| c))
                    .and_then(|c| c.get("dynamodb:LeadingKeys"))
                    .unwrap_or_else(|| {
                        panic!("{function} {sid}: a condition other than ForAllValues:StringLike on dynamodb:LeadingKeys alone")
                    });
                list(keys).into_iter().map(plain).collect()
            });
            out.push(Statement {
                actions: list(&s["Action"]).into_iter().map(plain).collect(),
                resources,
                leading_keys,
                context_keys,
                sid,
            });
        }
    }
    out
}

/// The value an `!If` takes with the parameters' defaults, under which every condition of the
/// template is false (no custom domain, no fixed egress, no VPC); any other value as it is.
fn deployed(v: &Yaml) -> &Yaml {
    match intrinsic(v, "If").and_then(Yaml::as_sequence) {
        Some(args) if args.len() == 3 => deployed(&args[2]),
        _ => v,
    }
}

/// Values for the parameters a deployer must give; the others take their defaults.
fn parameter(t: &Yaml, name: &str) -> String {
    match name {
        "MerchantId" => dev::DEV_MERCHANT_ID.into(),
        "Plans" => dev::DEV_PLANS.into(),
        "SuccessUrl" => "https://shop.example/card/bound".into(),
        "FailureUrl" => "https://shop.example/card/failed".into(),
        other => plain(
            t["Parameters"][other]
                .get("Default")
                .unwrap_or_else(|| panic!("parameter {other} has no default and no test value")),
        ),
    }
}

/// `function`'s environment as the template gives it (the global variables, then its own),
/// with this journey's moto resources (`names`: logical id → name, ARN or URL) in place of the
/// stack's, and Oen's addresses pointed at the simulator.
fn environment(
    t: &Yaml,
    function: &str,
    names: &BTreeMap<String, String>,
    sim: &Simulator,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for vars in [
        &t["Globals"]["Function"]["Environment"]["Variables"],
        &t["Resources"][function]["Properties"]["Environment"]["Variables"],
    ] {
        for (k, v) in vars.as_mapping().into_iter().flatten() {
            let v = deployed(v);
            let value = match named_resource(v) {
                Some(name) if t["Parameters"].get(&name).is_some() => parameter(t, &name),
                Some(name) => names
                    .get(&name)
                    .unwrap_or_else(|| {
                        panic!("{function} is given {name}, which the journey lacks")
                    })
                    .clone(),
                None => plain(v),
            };
            env.insert(plain(k), value);
        }
    }
    env.insert("OEN_API_BASE_URL".into(), sim.base_url());
    env.insert("OEN_HOSTED_BASE_URL".into(), sim.hosted_base_url_template());
    env
}

// ---------------------------------------------------------------------------------------------
// The journey

/// What each function's recorder saw, and which moto resource stands for which logical id.
struct Journey {
    names: BTreeMap<String, String>,
    calls: BTreeMap<&'static str, Vec<Call>>,
}

/// The journey, driven once per test process on a runtime of its own: every server it starts
/// (the recorders, the webhook's listener, the simulator) stops with that runtime.
fn journey() -> &'static Journey {
    static JOURNEY: OnceLock<Result<Journey, String>> = OnceLock::new();
    let result = JOURNEY.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime for the journey")
                .block_on(drive())
        })
        .join()
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".into())
        })
    });
    match result {
        Ok(journey) => journey,
        Err(e) => panic!("the journey through the functions failed: {e}"),
    }
}

fn event(name: &str) -> Value {
    let path = harness::repo_root().join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Sends an API Gateway v2 event through lambda_http's parser into a router.
async fn invoke(router: &Router, event: &Value) -> (StatusCode, HeaderMap, String) {
    let request =
        lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The sample start event, carrying a link for `customer` minted now that expires at `expires`.
fn start_event(customer: &str, expires: DateTime<Utc>) -> Value {
    let link = links::mint(
        "https://pay.example.com/checkout/start",
        dev::DEV_LINK_SIGNING_KEY.as_bytes(),
        &CustomerId::parse(customer).unwrap(),
        &PlanId::parse(PLAN).unwrap(),
        expires,
        Some("mei@example.com"),
    );
    let mut e = event("checkout-start-valid.json");
    e["rawQueryString"] = link.split_once('?').unwrap().1.into();
    e
}

fn status_event(reference: &str) -> Value {
    let mut e = event("checkout-status.json");
    e["rawQueryString"] = format!("ref={reference}").into();
    e["queryStringParameters"] = json!({ "ref": reference });
    e
}

/// The `ref` a return URL carries.
fn ref_from(url: &str) -> String {
    let r = url.split("ref=").nth(1).unwrap();
    r.split('&').next().unwrap().to_owned()
}

/// The signed sample event of the merchant API, turned into `method path` with `body`.
fn merchant_event(method: &str, path: &str, body: Option<Value>) -> Value {
    let mut e = event("merchant-api-refund.json");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    e["rawPath"] = json!(path);
    e["rawQueryString"] = json!(query);
    e["routeKey"] = json!(format!("{method} {path}"));
    e["requestContext"]["routeKey"] = e["routeKey"].clone();
    e["requestContext"]["http"]["method"] = json!(method);
    e["requestContext"]["http"]["path"] = json!(path);
    let fields = e.as_object_mut().unwrap();
    fields.remove("pathParameters");
    match body {
        Some(b) => {
            fields.insert("body".into(), json!(b.to_string()));
        }
        None => {
            fields.remove("body");
        }
    }
    e["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    e
}

/// The parts of the stack the journey's steps share.
struct World {
    sim: Simulator,
    /// checkout-start's router.
    checkout: Router,
    /// merchant-api's router.
    merchant: Router,
    /// The test's own view of the table (not recorded).
    store: DynamoStore,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    charger: Arc<ChargeDeps>,
    settings: charger::Settings,
    clock: TestClock,
    requests: std::sync::atomic::AtomicUsize,
}

impl World {
    /// A customer binds `card` as a browser does: a start link through checkout-start (302 to
    /// Oen's page), the page filled in and submitted, and Oen's `webhooks` deliveries made to
    /// the webhook function. Returns the binding reference and the start event.
    async fn bind(&self, customer: &str, card: &str, webhooks: usize) -> (String, Value) {
        let before = self.sim.webhook_deliveries().len();
        let (reference, start) = self.submit(customer, card).await;
        self.sim
            .wait_for_webhooks(before + webhooks, StdDuration::from_secs(20))
            .await
            .unwrap();
        (reference, start)
    }

    /// The browser's part of [`World::bind`]: the binding reference and the start event.
    async fn submit(&self, customer: &str, card: &str) -> (String, Value) {
        let start = start_event(customer, Utc::now() + Duration::minutes(10));
        let (status, headers, _) = invoke(&self.checkout, &start).await;
        assert_eq!(status, StatusCode::FOUND, "start for {customer}");
        let page = headers["location"].to_str().unwrap().to_owned();
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        assert_eq!(browser.get(&page).send().await.unwrap().status(), 200);
        let submitted = browser
            .post(&page)
            .form(&[("email", "mei@example.com"), ("cardNumber", card)])
            .send()
            .await
            .unwrap();
        assert!(submitted.status().is_redirection(), "{customer}'s page");
        let back = submitted.headers()["location"].to_str().unwrap().to_owned();
        (ref_from(&back), start)
    }

    /// Asserts the state of a binding session; when it is not `want`, says how Oen's
    /// deliveries went (their states and attempts' statuses, never their payloads).
    async fn expect_session(&self, reference: &str, want: &str) {
        let r = BindingRef::parse(reference).unwrap();
        let state = match self.store.session(&r).await.unwrap().unwrap().value.state {
            SessionState::Pending => "pending",
            SessionState::Bound { .. } => "bound",
            SessionState::Failed { .. } => "failed",
        };
        let deliveries: Vec<String> = self
            .sim
            .webhook_deliveries()
            .iter()
            .map(|d| {
                let statuses: Vec<_> = d.attempts.iter().map(|a| a.status()).collect();
                format!("{:?} {statuses:?}", d.state)
            })
            .collect();
        assert_eq!(state, want, "webhook deliveries: {deliveries:?}");
    }

    /// A signed request to the merchant API; its status and JSON answer.
    async fn merchant(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, text) = invoke(&self.merchant, &merchant_event(method, path, body)).await;
        (status, serde_json::from_str(&text).unwrap())
    }

    /// A signed `POST /v1/charges` with `key` as its Idempotency-Key.
    async fn charge(&self, key: &str, body: Value) -> (StatusCode, Value) {
        let mut e = merchant_event("POST", "/v1/charges", Some(body));
        e["headers"]["idempotency-key"] = json!(key);
        let (status, _, text) = invoke(&self.merchant, &e).await;
        (status, serde_json::from_str(&text).unwrap())
    }

    async fn sub(&self, customer: &str) -> Subscription {
        self.store
            .subscription(
                &CustomerId::parse(customer).unwrap(),
                &PlanId::parse(PLAN).unwrap(),
            )
            .await
            .unwrap()
            .unwrap()
            .value
    }

    async fn period(&self, customer: &str, n: u32) -> PeriodState {
        let sub = self.sub(customer).await;
        self.store
            .period(&sub.id, n)
            .await
            .unwrap()
            .unwrap()
            .value
            .state
    }

    /// Invokes the charger as Lambda does, with a minute left by the charger's clock.
    async fn invoke_charger(&self, payload: Value) -> Value {
        let mut context = Context::default();
        let n = self
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        context.request_id = format!("req-{n}");
        context.deadline = (self.clock.now().timestamp_millis() + 60_000) as u64;
        charger::handle(
            self.charger.clone(),
            self.settings,
            LambdaEvent::new(payload, context),
        )
        .await
        .unwrap_or_else(|e| panic!("the charger failed: {e}"))
    }

    /// Everything on the work queue, as the SQS event Lambda would deliver (and deleted, as
    /// Lambda's poller does: with the event source mapping's permissions, not the code's).
    async fn take_batch(&self) -> Value {
        harness::sqs_event(&harness::take_all(&self.sqs, &self.queue_url).await)
    }

    /// One scheduled run at the charger's clock: the schedule's event, then the work it queued
    /// (planning, then charges) until the queue is empty. The scheduled run's answer.
    async fn scheduled_run(&self) -> Value {
        let mut schedule = event("charger-schedule.json");
        schedule["scheduledTime"] = self.clock.now().to_rfc3339().into();
        let answer = self.invoke_charger(schedule).await;
        loop {
            let batch = self.take_batch().await;
            if batch["Records"].as_array().is_none_or(Vec::is_empty) {
                return answer;
            }
            self.deliver(batch).await;
        }
    }

    /// Invokes the charger with an SQS batch, and again with the messages it hands back, as
    /// SQS redelivers them (moto's DynamoDB sometimes fails a write under concurrent
    /// transactions; the charger hands such work back).
    async fn deliver(&self, mut batch: Value) {
        for _ in 0..5 {
            let response = self.invoke_charger(batch.clone()).await;
            let failed: BTreeSet<&str> = response["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str())
                .collect();
            if failed.is_empty() {
                return;
            }
            let records = batch["Records"].as_array().cloned().unwrap_or_default();
            batch["Records"] = records
                .into_iter()
                .filter(|r| {
                    r["messageId"]
                        .as_str()
                        .is_some_and(|id| failed.contains(id))
                })
                .collect();
        }
        panic!("the charger kept handing back {batch}");
    }
}

async fn drive() -> Journey {
    let t = template();
    // The test's own clients: they create the stack and look at it, unrecorded.
    let aws = harness::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let table = harness::create_table(&dynamo).await;
    let key = aws_sdk_kms::Client::new(&aws)
        .create_key()
        .description(harness::unique_name("oen-pay-card-tokens"))
        .send()
        .await
        .unwrap()
        .key_metadata
        .and_then(|m| m.arn)
        .unwrap();
    let secret = aws_sdk_secretsmanager::Client::new(&aws)
        .create_secret()
        .name(harness::unique_name("oen-pay-secret"))
        .secret_string(dev::dev_secret_json(dev::DEV_API_TOKEN))
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let bus = harness::unique_name("oen-pay-events");
    aws_sdk_eventbridge::Client::new(&aws)
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue_url = sqs
        .create_queue()
        .queue_name(harness::unique_name("charges"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mut dead_letter_urls = Vec::new();
    for name in ["charges-dlq", "schedule-dlq"] {
        dead_letter_urls.push(
            sqs.create_queue()
                .queue_name(harness::unique_name(name))
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap(),
        );
    }
    let names: BTreeMap<String, String> = [
        ("Table", table.clone()),
        ("TokenKey", key),
        ("OenSecret", secret),
        ("EventBus", bus),
        ("ChargeQueue", queue_url.clone()),
        ("ChargeDeadLetterQueue", dead_letter_urls[0].clone()),
        ("ScheduleDeadLetterQueue", dead_letter_urls[1].clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let sim = Simulator::start(SimConfig {
        api_token: dev::DEV_API_TOKEN.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Oen's retries, sooner than its own but never overlapping an attempt in flight: moto's
    // DynamoDB rolls a failed transaction back by restoring a snapshot of every table, which
    // would also undo the writes of a transaction running beside it. Concurrent deliveries are
    // proven elsewhere (binding_flow.rs); here the race's outcome is set up instead.
    sim.set_webhook_retry_delays(&[StdDuration::from_secs(2), StdDuration::from_secs(4)]);

    // checkout-start, as its main.rs builds it.
    let checkout_recorder = Recorder::start().await;
    let env = environment(&t, "CheckoutStartFunction", &names, &sim);
    let lookup = |name: &str| env.get(name).cloned();
    let c = checkout_start::Configuration::read(&Vars::new(&lookup)).unwrap();
    let aws_checkout = wiring::AwsConfig::loaded(checkout_recorder.sdk_config().await);
    let secrets = wiring::secrets(&aws_checkout, &c.config);
    let checkout = checkout_start::router(Arc::new(checkout_start::App {
        deps: wiring::checkout_start_deps(&c.config, &c.oen, &aws_checkout, secrets.clone())
            .unwrap(),
        secrets,
        success_url: c.checkout.success_url,
        failure_url: c.checkout.failure_url,
        hosted_base_url: c.checkout.hosted_base_url,
        link_max_ttl: c.checkout.link_max_ttl,
        status_allowed_origins: c.checkout.status_allowed_origins,
        einvoice: c.checkout.einvoice,
    }));

    // The webhook, as its main.rs builds it, served on loopback where the simulator posts.
    let webhook_recorder = Recorder::start().await;
    let env = environment(&t, "WebhookFunction", &names, &sim);
    let lookup = |name: &str| env.get(name).cloned();
    let w = webhook::Configuration::read(&Vars::new(&lookup)).unwrap();
    let aws_webhook = wiring::AwsConfig::loaded(webhook_recorder.sdk_config().await);
    let webhook = webhook::router(Arc::new(webhook::App {
        deps: wiring::webhook_deps(&w.config, &w.webhook, &aws_webhook),
        secrets: wiring::secrets(&aws_webhook, &w.config),
        allowed_ips: w.allowed_ips,
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = webhook
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let webhook_server = tokio::spawn(async move {
        let _ = axum::serve(listener, served).await;
    });
    sim.set_webhook_url(Some(format!(
        "http://{addr}/oen/webhook/{}",
        dev::DEV_WEBHOOK_PATH_KEY
    )));

    // The charger, as its main.rs builds it, on a clock the journey moves: dunning takes days.
    let charger_recorder = Recorder::start().await;
    let env = environment(&t, "ChargerFunction", &names, &sim);
    let lookup = |name: &str| env.get(name).cloned();
    let ch = charger::Configuration::read(&Vars::new(&lookup)).unwrap();
    let aws_charger = wiring::AwsConfig::loaded(charger_recorder.sdk_config().await);
    let clock = TestClock::at(Utc::now());
    let mut deps = wiring::charge_deps(
        &ch.config,
        &ch.oen,
        &ch.charger,
        &aws_charger,
        wiring::secrets(&aws_charger, &ch.config),
    )
    .unwrap();
    deps.clock = Arc::new(clock.clone());

    // The merchant API, as its main.rs builds it, on the same clock.
    let merchant_recorder = Recorder::start().await;
    let env = environment(&t, "MerchantApiFunction", &names, &sim);
    let lookup = |name: &str| env.get(name).cloned();
    let m = merchant_api::Configuration::read(&Vars::new(&lookup)).unwrap();
    let aws_merchant = wiring::AwsConfig::loaded(merchant_recorder.sdk_config().await);
    let secrets = wiring::secrets(&aws_merchant, &m.config);
    let mut merchant_deps =
        wiring::merchant_api_deps(&m.config, &m.oen, &m.api, &aws_merchant, secrets.clone())
            .unwrap();
    merchant_deps.clock = Arc::new(clock.clone());
    // Its cancels and refunds count events they could not publish under its own name, the
    // one its alarms watch (`merchant-api-events-not-published`), not the charger's.
    assert_eq!(merchant_deps.function, merchant_api::charges::FUNCTION);
    let merchant = merchant_api::router(
        Arc::new(merchant_api::App {
            ops: Operations {
                deps: merchant_deps,
                secrets,
                link_max_ttl: m.api.link_max_ttl,
            },
            start_link_url: m.api.start_link_url.clone(),
            dead_letters: wiring::dead_letters(&aws_merchant, &m.api),
        }),
        merchant_api::Access::RequireIam,
    );

    let world = World {
        checkout,
        merchant,
        store: DynamoStore::new(dynamo, table),
        sqs,
        queue_url,
        charger: Arc::new(deps),
        settings: charger::Settings::from_config(&ch.charger),
        clock,
        requests: Default::default(),
        sim,
    };
    binding_flows(&world, &webhook, &webhook_recorder).await;
    charging_flows(&world).await;
    // The canceled customer binds a new card: the webhook looks at the old subscription's
    // period, and the charger charges the new subscription.
    let (again, _) = world.bind("cust-decline", cards::SUCCESS, 1).await;
    world.expect_session(&again, "bound").await;
    world.scheduled_run().await;
    assert_eq!(
        world.sub("cust-decline").await.status,
        SubscriptionStatus::Active
    );
    assert!(matches!(
        world.period("cust-decline", 0).await,
        PeriodState::Paid { .. }
    ));
    reconciliation_flow(&world).await;
    dead_letter_flow(&world, &dead_letter_urls).await;

    webhook_server.abort();
    Journey {
        names,
        calls: BTreeMap::from([
            ("CheckoutStartFunction", checkout_recorder.calls()),
            ("WebhookFunction", webhook_recorder.calls()),
            ("ChargerFunction", charger_recorder.calls()),
            ("MerchantApiFunction", merchant_recorder.calls()),
        ]),
    }
}

/// checkout-start and the webhook: a binding accepted (and its webhook sent again), a link
/// used again, the status page, a binding Oen declined, a forged webhook, the bindings the
/// charger will charge, a delivery that lost a race, and one whose publish the bus refused.
async fn binding_flows(w: &World, webhook: &Router, webhook_recorder: &Recorder) {
    let first = w.sim.webhook_deliveries().len();
    let (paid_ref, paid_start) = w.bind("cust-paid", cards::SUCCESS, 1).await;
    // Oen sends the same webhook again: a harmless 2xx.
    let delivery = w.sim.webhook_deliveries()[first].delivery_id;
    w.sim.redeliver_webhook(delivery).unwrap();
    w.sim
        .wait_for_webhooks(first + 2, StdDuration::from_secs(20))
        .await
        .unwrap();
    w.expect_session(&paid_ref, "bound").await;
    // The link again: the bound session's page cannot be shown again.
    assert_eq!(
        invoke(&w.checkout, &paid_start).await.0,
        StatusCode::CONFLICT
    );
    let (status, _, body) = invoke(&w.checkout, &status_event(&paid_ref)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"bound\""), "{body}");
    // A link used again while its page is open shows the same page.
    let pending = start_event("cust-pending", Utc::now() + Duration::minutes(10));
    let (first, first_headers, _) = invoke(&w.checkout, &pending).await;
    let (again, again_headers, _) = invoke(&w.checkout, &pending).await;
    assert_eq!((first, again), (StatusCode::FOUND, StatusCode::FOUND));
    assert_eq!(first_headers["location"], again_headers["location"]);
    let (status, _, _) = invoke(&w.checkout, &status_event("Ref0000000000000000009")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (failed_ref, _) = w.bind("cust-failed", cards::BIND_DECLINE_T0001, 1).await;
    w.expect_session(&failed_ref, "failed").await;
    // A webhook for a session we never opened is refused.
    let (status, _, _) = invoke(webhook, &event("webhook-token-success.json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    for (customer, card) in [
        ("cust-decline", cards::DECLINE_T0004_INSUFFICIENT_FUNDS),
        ("cust-hard", cards::DECLINE_T0003_EXPIRED),
        ("cust-unknown", cards::UNKNOWN_C026_THEN_CHARGED),
        ("cust-dup", cards::SUCCESS),
    ] {
        let (r, _) = w.bind(customer, card, 1).await;
        w.expect_session(&r, "bound").await;
    }
    // Two deliveries of one webhook raced to the commit and the other won its event into the
    // outbox first (the state left behind is set up here, so that the path is taken every
    // run): this one reads the entry, records the event once, and its state change lands.
    w.sim.hold_next_webhooks(1);
    let before = w.sim.webhook_deliveries().len();
    let (raced_ref, _) = w.submit("cust-raced", cards::SUCCESS).await;
    let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
    let held = loop {
        if let Some(d) = w.sim.webhook_deliveries().get(before) {
            break d.payload.clone();
        }
        assert!(std::time::Instant::now() < deadline, "Oen sent no webhook");
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    };
    let r = BindingRef::parse(&raced_ref).unwrap();
    let mut bound = w.store.session(&r).await.unwrap().unwrap().value;
    let token = CardToken::parse(held["token"].as_str().unwrap()).unwrap();
    bound.state = SessionState::Bound {
        token_fingerprint: token.fingerprint(),
        last4: Some("4242".into()),
        bound_at: Utc::now(),
    };
    let recorded = OutboxEntry::pending(DomainEvent::card_bound(&bound).unwrap(), Utc::now());
    w.store
        .commit(vec![Put::new(recorded, Expect::Absent)])
        .await
        .unwrap();
    w.sim.release_held_webhooks();
    w.sim
        .wait_for_webhooks(before + 1, StdDuration::from_secs(20))
        .await
        .unwrap();
    w.expect_session(&raced_ref, "bound").await;

    // The bus refuses the webhook's publish: its event waits in the outbox for the relay.
    webhook_recorder.fail_next("AWSEvents.PutEvents", 1);
    let (late_ref, _) = w.bind("cust-late", cards::SUCCESS, 1).await;
    w.expect_session(&late_ref, "bound").await;
}

/// The charger: paid, soft and hard declines, an unknown outcome reconciled, a duplicate
/// payment refunded, the outbox relay, dunning running out, then the merchant API's
/// operations, and a cancel at period end carried out.
async fn charging_flows(w: &World) {
    // A worker claimed cust-dup's first period, Oen charged its order twice, and the
    // worker vanished before writing anything down.
    let dup = w.sub("cust-dup").await;
    let order = OrderId::for_period(&dup.id, 0);
    let plan = dev::dev_plans().lookup(PLAN).unwrap().clone();
    let claim = ChargePeriod {
        subscription: dup.id.clone(),
        period: 0,
        order_id: order.clone(),
        amount: plan.amount,
        state: PeriodState::Charging {
            lease_owner: "vanished-worker".into(),
            lease_until: w.clock.now() + Duration::seconds(60),
        },
        attempts: 0,
        last_error: None,
        updated_at: w.clock.now(),
        refunded: None,
        product_details: Vec::new(),
        anomalies: Vec::new(),
        customer: Some(dup.customer.clone()),
    };
    w.store
        .commit(vec![Put::new(claim, Expect::Absent)])
        .await
        .unwrap();
    let oen = dev::local_oen(&w.sim.base_url(), dev::dev_secrets(dev::DEV_API_TOKEN)).unwrap();
    for _ in 0..2 {
        let token = w.sim.create_token(cards::SUCCESS);
        oen.charge(&ChargeRequest {
            token: CardToken::parse(&token).unwrap(),
            order_id: order.clone(),
            amount: plan.amount,
            product_details: plan.product_details(),
            user_id: None,
            payer: Default::default(),
            note: None,
            send_within: None,
        })
        .await
        .unwrap();
    }

    // A one-off charge through the merchant API whose outcome is unknown: Oen answers C026.
    // Its repeat replays the 202; the charger's janitor reconciles it.
    let one_off = json!({"customer": "cust-unknown", "amount": 120, "description": "Late fee"});
    let (status, accepted) = w.charge("iam-journey-one-off-1", one_off.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (status, again) = w.charge("iam-journey-one-off-1", one_off).await;
    assert_eq!((status, &again), (StatusCode::ACCEPTED, &accepted));
    let one_off_status = accepted["statusUrl"].as_str().unwrap().to_owned();

    // --- The charger: a scheduled run past the vanished lease and the relay's grace.
    w.clock.advance(Duration::minutes(3));
    let answer = w.scheduled_run().await;
    assert_eq!(answer["plannedShards"], 16, "{answer}");
    assert!(
        answer["eventsRelayed"].as_u64() >= Some(1),
        "the relay shipped the event the bus refused: {answer}"
    );
    assert!(matches!(
        w.period("cust-paid", 0).await,
        PeriodState::Paid { .. }
    ));
    assert_eq!(
        w.sub("cust-decline").await.status,
        SubscriptionStatus::PastDue
    );
    assert_eq!(
        w.sub("cust-hard").await.status,
        SubscriptionStatus::RequiresPaymentMethod
    );
    assert!(matches!(
        w.period("cust-unknown", 0).await,
        PeriodState::Unknown { .. }
    ));
    assert!(matches!(
        w.period("cust-dup", 0).await,
        PeriodState::Paid { .. }
    ));
    let refunded = w
        .sim
        .ledger_for_order(order.as_str())
        .iter()
        .filter(|e| e.refund_amount > 0)
        .count();
    assert_eq!(refunded, 1, "the duplicate payment was refunded");

    // The unknown charge settles at Oen; the next run reconciles it without charging again.
    w.sim.settle_pending();
    w.clock.advance(Duration::minutes(5));
    w.scheduled_run().await;
    assert!(matches!(
        w.period("cust-unknown", 0).await,
        PeriodState::Paid { .. }
    ));
    let (status, settled) = w.merchant("GET", &one_off_status, None).await;
    assert_eq!(
        (status, &settled["status"]),
        (StatusCode::OK, &json!("succeeded"))
    );

    // Dunning runs out: the declined subscription is canceled.
    for days in [1, 3, 5, 7] {
        w.clock.advance(Duration::days(days));
        w.scheduled_run().await;
    }
    assert_eq!(
        w.sub("cust-decline").await.status,
        SubscriptionStatus::Canceled
    );

    merchant_flows(w).await;

    // Canceled at period end through the merchant API: at the period's end the charger ends it.
    let renewal = w.sub("cust-paid").await.next_action_at.unwrap();
    w.clock.set(renewal);
    w.scheduled_run().await;
    assert_eq!(
        w.sub("cust-paid").await.status,
        SubscriptionStatus::Canceled
    );
}

/// The merchant API: a start link, the lookups, a partial refund, a refund whose event a
/// racing commit had recorded, a cancel now, and a cancel at period end resumed and set again.
async fn merchant_flows(w: &World) {
    let link = json!({"customer": "cust-new", "plan": PLAN, "ttlSeconds": 600});
    let (status, body) = w.merchant("POST", "/v1/links", Some(link)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = w.merchant("GET", "/v1/customers/cust-paid", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let paid = w.sub("cust-paid").await;
    let (status, body) = w
        .merchant("GET", &format!("/v1/subscriptions/{}", paid.id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The dry run reads every shard of the due index; a period just paid is not due.
    for shard in 0..16 {
        let (status, body) = w
            .merchant("GET", &format!("/v1/due?shard={shard}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for entry in body["entries"].as_array().unwrap() {
            assert_ne!(entry["subscription"], json!(paid.id.to_string()), "{entry}");
            assert!(
                ["charge", "retry", "reconcile", "end"]
                    .contains(&entry["action"].as_str().unwrap()),
                "{entry}"
            );
        }
    }

    let order = OrderId::for_period(&paid.id, 0);
    let (status, body) = w
        .merchant(
            "POST",
            &format!("/v1/periods/{order}/refund"),
            Some(json!({"amount": 100})),
        )
        .await;
    assert_eq!((status, &body["refunded"]), (StatusCode::OK, &json!(100)));

    // Another refund's event is in the outbox already (a racing commit recorded it): the
    // refund reads the entry and records its state change without the event.
    let unknown = w.sub("cust-unknown").await;
    let period = w.store.period(&unknown.id, 0).await.unwrap().unwrap().value;
    let PeriodState::Paid { transaction, .. } = &period.state else {
        panic!("cust-unknown's period 0 is not paid: {:?}", period.state);
    };
    let raced = DomainEvent::payment_refunded(
        &unknown.customer,
        &period,
        transaction,
        period.amount,
        w.clock.now(),
    );
    w.store
        .commit(vec![Put::new(
            OutboxEntry::pending(raced, w.clock.now()),
            Expect::Absent,
        )])
        .await
        .unwrap();
    let (status, body) = w
        .merchant(
            "POST",
            &format!("/v1/periods/{}/refund", period.order_id),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let hard = w.sub("cust-hard").await;
    let (status, body) = w
        .merchant(
            "POST",
            &format!("/v1/subscriptions/{}/cancel", hard.id),
            Some(json!({"at": "now"})),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("canceled"))
    );

    let cancel = format!("/v1/subscriptions/{}/cancel", paid.id);
    let at_end = json!({"at": "period_end"});
    let (status, _) = w.merchant("POST", &cancel, Some(at_end.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let resume = format!("/v1/subscriptions/{}/resume", paid.id);
    let (status, body) = w.merchant("POST", &resume, None).await;
    assert_eq!(
        (status, &body["cancelAtPeriodEnd"]),
        (StatusCode::OK, &json!(false))
    );
    let (status, _) = w.merchant("POST", &cancel, Some(at_end)).await;
    assert_eq!(status, StatusCode::OK);
}

/// The daily reconciliation of the day Oen charged cust-dup twice (Taipei, by the simulator's
/// wall clock, which may have passed midnight since; the charger's clock is weeks past it): the
/// duplicate payment is found, the report is stored and announced.
async fn reconciliation_flow(w: &World) {
    let dup = w.sub("cust-dup").await;
    let charged = w
        .sim
        .ledger_for_order(OrderId::for_period(&dup.id, 0).as_str());
    let day = oen_pay::reconcile::taipei_day(charged[0].created_at);
    let answer = w
        .invoke_charger(json!({"job": "reconcile", "date": day.format("%Y-%m-%d").to_string()}))
        .await;
    assert_eq!(answer["reconciliation"], "completed", "{answer}");
    assert!(
        answer["report"]["counts"]["doubleCharges"].as_u64() >= Some(1),
        "{answer}"
    );
    let stored = oen_pay::reconcile::report(&w.store, day).await.unwrap();
    assert!(stored.is_some_and(|r| r.complete));
    // The merchant reads it through the merchant API.
    let (status, body) = w
        .merchant("GET", &format!("/v1/reconciliation/{day}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["counts"], answer["report"]["counts"], "{body}");
}

/// The operator looks at both dead-letter queues and redrives them (`oenpay dlq`): a charge
/// message that failed five times goes back as it was, a scheduled run Scheduler could not
/// deliver becomes its planning; the charger then works both.
async fn dead_letter_flow(w: &World, dead_letter_urls: &[String]) {
    let charge = json!({"kind": "charge", "customer": "cust-decline", "plan": PLAN});
    w.sqs
        .send_message()
        .queue_url(&dead_letter_urls[0])
        .message_body(charge.to_string())
        .send()
        .await
        .unwrap();
    w.sqs
        .send_message()
        .queue_url(&dead_letter_urls[1])
        .message_body(json!({"scheduledTime": w.clock.now().to_rfc3339()}).to_string())
        .send()
        .await
        .unwrap();
    for queue in ["charge", "schedule"] {
        let (status, body) = w
            .merchant("GET", &format!("/v1/dead-letters/{queue}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["approximateMessages"], 1, "{body}");
        let (status, body) = w
            .merchant("POST", &format!("/v1/dead-letters/{queue}/redrive"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (&body["moved"], &body["remaining"]),
            (&json!(1), &json!(0)),
            "{body}"
        );
    }
    // The charge message, and one planning message per shard.
    let batch = w.take_batch().await;
    assert_eq!(
        batch["Records"].as_array().map(Vec::len),
        Some(1 + usize::from(oen_pay::store::DUE_SHARDS)),
        "{batch}"
    );
    w.deliver(batch).await;
    loop {
        let batch = w.take_batch().await;
        if batch["Records"].as_array().is_none_or(Vec::is_empty) {
            break;
        }
        w.deliver(batch).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The judgement

/// The logical id of the template resource a recorded resource is (`Table/index/due-index`).
fn logical(names: &BTreeMap<String, String>, resource: &Resource) -> String {
    let of = |concrete: &str| {
        names
            .iter()
            .find(|(_, v)| *v == concrete)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("a call on {concrete}, which the template does not give"))
    };
    match resource {
        Resource::Table(t) => of(t),
        Resource::Index { table, index } => format!("{}/index/{index}", of(table)),
        Resource::KmsKey(r) | Resource::Secret(r) | Resource::EventBus(r) | Resource::Queue(r) => {
            of(r)
        }
    }
}

/// Whether an IAM `StringLike` pattern (`*` and `?` wildcards, case-sensitive) matches `value`.
fn string_like(pattern: &str, value: &str) -> bool {
    fn glob(p: &[u8], v: &[u8]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], v) || (!v.is_empty() && glob(p, &v[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &v[1..]),
            (Some(x), Some(y)) => x == y && glob(&p[1..], &v[1..]),
            _ => false,
        }
    }
    glob(pattern.as_bytes(), value.as_bytes())
}

/// The key-layout prefix of a partition key: `CUST#` of `CUST#cust-1001`.
fn prefix(key: &str) -> String {
    key.split_once('#')
        .map_or_else(|| key.to_owned(), |(p, _)| format!("{p}#"))
}

/// What `function`'s recorder saw, as IAM permissions: (action, logical resource) → the
/// partition keys they carried.
fn recorded(function: &str) -> BTreeMap<(String, String), BTreeSet<String>> {
    let journey = journey();
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for call in &journey.calls[function] {
        for p in iam_permissions(call) {
            out.entry((p.action, logical(&journey.names, &p.resource)))
                .or_default()
                .extend(p.leading_keys);
        }
    }
    out
}

/// The encryption context key sets of `function`'s recorded KMS calls, by (action, logical
/// resource).
fn recorded_contexts(function: &str) -> BTreeMap<(String, String), BTreeSet<BTreeSet<String>>> {
    let journey = journey();
    let mut out: BTreeMap<(String, String), BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    for call in journey.calls[function]
        .iter()
        .filter(|c| c.service() == "TrentService")
    {
        for p in iam_permissions(call) {
            out.entry((p.action, logical(&journey.names, &p.resource)))
                .or_default()
                .insert(call.encryption_context_keys.iter().cloned().collect());
        }
    }
    out
}

/// Judges `function`: its role grants exactly what it called, on the resources it called them
/// on, its DynamoDB statements confine exactly the partitions it touched, and its KMS
/// statements' encryption-context conditions admit exactly the contexts it sent.
fn judge(function: &str) {
    let t = template();
    let called = recorded(function);
    let contexts = recorded_contexts(function);
    let statements = statements(&t, function);
    for s in &statements {
        let Some(required) = &s.context_keys else {
            continue;
        };
        for action in &s.actions {
            for resource in &s.resources {
                let sent = contexts
                    .get(&(action.clone(), resource.clone()))
                    .cloned()
                    .unwrap_or_default();
                assert!(!sent.is_empty(), "{function} {}: never called", s.sid);
                assert_eq!(
                    sent,
                    BTreeSet::from([required.clone()]),
                    "{function} {}: the encryption contexts sent vs the condition's keys",
                    s.sid
                );
            }
        }
    }
    let mut granted = BTreeSet::new();
    for s in &statements {
        for a in &s.actions {
            for r in &s.resources {
                // One statement per grant, so that its condition alone decides.
                assert!(
                    granted.insert((a.clone(), r.clone())),
                    "{function}: {a} on {r} is granted by more than one statement"
                );
            }
        }
    }
    let called_set: BTreeSet<(String, String)> = called.keys().cloned().collect();
    let missing: Vec<_> = called_set.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&called_set).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "{function}: called but not granted (AccessDenied in production): {missing:?}; \
         granted but never called (not least privilege): {unused:?}"
    );
    for s in &statements {
        let dynamo = s.actions.iter().any(|a| a.starts_with("dynamodb:"));
        let Some(patterns) = &s.leading_keys else {
            assert!(
                !dynamo,
                "{function} {}: a DynamoDB statement without a dynamodb:LeadingKeys condition",
                s.sid
            );
            continue;
        };
        assert!(
            dynamo,
            "{function} {}: LeadingKeys on {:?}",
            s.sid, s.actions
        );
        let keys: BTreeSet<&String> = called
            .iter()
            .filter(|((action, resource), _)| {
                s.actions.contains(action) && s.resources.contains(resource)
            })
            .flat_map(|(_, keys)| keys)
            .collect();
        let seen: BTreeSet<String> = keys.iter().map(|k| prefix(k)).collect();
        for key in &keys {
            assert!(
                patterns.iter().any(|p| string_like(p, key)),
                "{function} {}: the partition key {key} matches none of {patterns:?} \
                 (the partitions it touched: {seen:?})",
                s.sid
            );
        }
        for p in patterns {
            assert!(
                keys.iter().any(|k| string_like(p, k)),
                "{function} {}: the pattern {p} admits no key the function touched \
                 (the partitions it touched: {seen:?})",
                s.sid
            );
        }
    }
}

#[test]
fn checkout_start_is_granted_exactly_what_it_calls() {
    judge("CheckoutStartFunction");
}

#[test]
fn the_webhook_is_granted_exactly_what_it_calls() {
    judge("WebhookFunction");
}

#[test]
fn the_charger_is_granted_exactly_what_it_calls() {
    judge("ChargerFunction");
}

#[test]
fn the_merchant_api_is_granted_exactly_what_it_calls() {
    judge("MerchantApiFunction");
}
