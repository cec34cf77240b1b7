//! The `charger` function as Lambda runs it: a scheduled event, then SQS batches from a real
//! (moto) queue, with partial batch failures.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use charger::{handle, ChargerError, Settings};
use chrono::{Duration, Utc};
use lambda_runtime::{Context, LambdaEvent};
use oen_pay::aws::SqsQueue;
use oen_pay::charging::ChargeDeps;
use oen_pay::clock::Clock;
use oen_pay::domain::CardToken;
use oen_pay::queue::WorkQueue;
use oen_pay::store::StoreExt;
use oen_pay::vault::{Ciphertext, TokenVault, VaultContext, VaultError};
use oen_pay_integration::stack::{stack, Stack};
use oen_pay_integration::{aws_config, repo_root};
use oen_sim::cards;
use serde_json::{json, Value};

struct Sqs {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Sqs {
    async fn new() -> Self {
        let client = aws_sdk_sqs::Client::new(&aws_config().await);
        let name = oen_pay_integration::unique_name("charges");
        let url = client
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        Self { client, url }
    }

    /// Everything on the queue, as the SQS event Lambda would get (and deleted, as Lambda does
    /// for messages not reported as failures).
    async fn take_batch(&self) -> Value {
        oen_pay_integration::sqs_event(
            &oen_pay_integration::take_all(&self.client, &self.url).await,
        )
    }
}

fn sqs_deps(s: &Stack, sqs: &Sqs) -> Arc<ChargeDeps> {
    let mut deps = s.deps.clone();
    deps.queue = Arc::new(SqsQueue::new(sqs.client.clone(), sqs.url.clone()));
    Arc::new(deps)
}

/// An invocation with a minute left, by the stack's clock.
fn lambda_event(s: &Stack, payload: Value) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = "req-1".into();
    context.deadline = (s.clock.now().timestamp_millis() + 60_000) as u64;
    LambdaEvent::new(payload, context)
}

/// Invokes the charger as Lambda would, with `concurrency` messages at once and a minute left.
async fn invoke(
    s: &Stack,
    deps: Arc<ChargeDeps>,
    concurrency: usize,
    payload: Value,
) -> Result<Value, ChargerError> {
    handle(
        deps,
        Settings::with_concurrency(concurrency),
        lambda_event(s, payload),
    )
    .await
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

/// Invokes the charger with a batch, four messages at once, and again with the messages it
/// hands back, as SQS redelivers them: two copies of one charge in one batch race, and on moto
/// the loser's failed transaction can also disturb a neighbour's write (moto restores a
/// snapshot of every table), which the charger hands back for a retry like any conflict.
async fn deliver(s: &Stack, deps: &Arc<ChargeDeps>, mut batch: Value) {
    for _ in 0..5 {
        let r = invoke(s, deps.clone(), 4, batch.clone()).await.unwrap();
        let failed = failures(&r);
        if failed.is_empty() {
            return;
        }
        let records = batch["Records"].as_array().cloned().unwrap_or_default();
        batch["Records"] = records
            .into_iter()
            .filter(|m| failed.iter().any(|f| m["messageId"] == f.as_str()))
            .collect();
    }
    panic!("the charger kept handing back {batch}");
}

#[tokio::test]
async fn a_scheduled_run_fans_out_through_sqs_and_charges_each_due_subscription_once() {
    let s = stack().await;
    let sqs = Sqs::new().await;
    let deps = sqs_deps(&s, &sqs);
    for i in 0..12 {
        s.bind(&format!("cust-{i:02}"), "premium", cards::SUCCESS)
            .await;
    }
    let mut schedule: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("events/charger-schedule.json")).unwrap(),
    )
    .unwrap();
    schedule["scheduledTime"] = s.clock.now().to_rfc3339().into();
    let out = invoke(&s, deps.clone(), 4, schedule.clone()).await.unwrap();
    assert_eq!(out["plannedShards"], 16);
    // Planning batch, then charge batch, each delivered twice (SQS is at-least-once).
    let plans = sqs.take_batch().await;
    assert_eq!(plans["Records"].as_array().unwrap().len(), 16);
    for _ in 0..2 {
        deliver(&s, &deps, plans.clone()).await;
    }
    let charges = sqs.take_batch().await;
    assert_eq!(charges["Records"].as_array().unwrap().len(), 24);
    for _ in 0..2 {
        deliver(&s, &deps, charges.clone()).await;
    }
    // A charge whose settle failed after Oen's answer (moto's rollbacks on a loaded machine)
    // keeps its lease and is handed back; its copies meet the lease and skip. The next
    // scheduled run after the lease reads Oen's order and settles it, never charging again.
    s.advance(chrono::Duration::minutes(10));
    schedule["scheduledTime"] = s.clock.now().to_rfc3339().into();
    invoke(&s, deps.clone(), 4, schedule).await.unwrap();
    loop {
        let batch = sqs.take_batch().await;
        if batch["Records"].as_array().is_none_or(Vec::is_empty) {
            break;
        }
        deliver(&s, &deps, batch).await;
    }
    assert_eq!(s.sim.ledger().len(), 12);
    let subs: Vec<String> = (0..12).map(|i| format!("cust-{i:02}")).collect();
    let subs: Vec<(&str, &str)> = subs.iter().map(|c| (c.as_str(), "premium")).collect();
    s.assert_ledger_agrees(&subs).await;
}

#[tokio::test]
async fn a_scheduled_run_publishes_the_events_the_bus_did_not_take() {
    // GIVEN a card bound and charged while the bus was down
    let s = stack().await;
    s.events.set_failing(true);
    let binding = s.bind("cust-late", "premium", cards::SUCCESS).await;
    s.run().await;
    assert!(s.events.all().is_empty());
    // WHEN the bus is back and the next scheduled invocation comes
    s.events.set_failing(false);
    s.advance(Duration::minutes(15));
    let sqs = Sqs::new().await;
    let deps = sqs_deps(&s, &sqs);
    let schedule = json!({"scheduledTime": s.clock.now().to_rfc3339()});
    let out = invoke(&s, deps.clone(), 4, schedule.clone()).await.unwrap();
    // THEN it plans as always and publishes both events under their recorded ids
    assert_eq!(out["plannedShards"], 16);
    assert_eq!(out["eventsRelayed"], 2);
    let sub = s.sub("cust-late", "premium").await;
    let ids: Vec<String> = s.events.all().into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [
            format!("card.bound:{binding}"),
            format!(
                "payment.succeeded:{}",
                oen_pay::domain::OrderId::for_period(&sub.id, 0)
            ),
        ]
    );
    let out = invoke(&s, deps, 4, schedule).await.unwrap();
    assert_eq!(out["eventsRelayed"], 0);
    assert_eq!(s.events.all().len(), 2);
}

#[tokio::test]
async fn messages_to_retry_are_reported_and_unreadable_ones_dropped() {
    let s = stack().await;
    s.bind("cust-1001", "premium", cards::SUCCESS).await;
    // Oen unreachable: the request is never sent, so the message must come back.
    let mut deps = s.deps.clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    deps.oen = Arc::new(
        oen_pay::dev::local_oen(&url, oen_pay::dev::dev_secrets(oen_pay::dev::DEV_API_TOKEN))
            .unwrap(),
    );
    let mut batch: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("events/charger-sqs.json")).unwrap(),
    )
    .unwrap();
    batch["Records"][1]["body"] = "not json".into();
    let parsed: SqsEvent = serde_json::from_value(batch.clone()).unwrap();
    assert_eq!(parsed.records.len(), 2);
    let r = invoke(&s, Arc::new(deps), 2, batch.clone()).await.unwrap();
    assert_eq!(failures(&r), ["059f36b4-87a3-44ab-83d2-661975830a7d"]);
    assert!(s.sim.ledger().is_empty());
    // With Oen back, the redelivered message charges.
    let r = invoke(&s, Arc::new(s.deps.clone()), 2, batch)
        .await
        .unwrap();
    assert!(failures(&r).is_empty());
    assert_eq!(s.sim.ledger().len(), 1);
    s.assert_ledger_agrees(&[("cust-1001", "premium")]).await;
}

#[tokio::test]
async fn an_unrecognised_event_is_an_error() {
    let s = stack().await;
    let err = invoke(&s, Arc::new(s.deps.clone()), 1, json!({"hello": "world"}))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("unrecognised event"), "{message}");
    assert!(
        message.contains(charger::trigger::ACCEPTED_SHAPES),
        "{message}"
    );
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "ChargerError::Unrecognised"
    );
}

#[tokio::test]
async fn a_manual_run_plans_what_is_due_now() {
    // GIVEN a subscription due now
    let s = stack().await;
    s.bind("cust-1001", "premium", cards::SUCCESS).await;
    let sqs = Sqs::new().await;
    let deps = sqs_deps(&s, &sqs);
    // WHEN a person invokes the charger with {}
    let out = invoke(&s, deps.clone(), 4, json!({})).await.unwrap();
    // THEN it plans by the clock, and the plan charges the subscription
    assert_eq!(out["plannedShards"], 16);
    let plans = sqs.take_batch().await;
    for record in plans["Records"].as_array().unwrap() {
        let body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
        let planned_for: chrono::DateTime<Utc> =
            serde_json::from_value(body["now"].clone()).unwrap();
        assert_eq!(planned_for, s.clock.now());
    }
    invoke(&s, deps.clone(), 4, plans).await.unwrap();
    let charges = sqs.take_batch().await;
    invoke(&s, deps, 4, charges).await.unwrap();
    s.assert_ledger_agrees(&[("cust-1001", "premium")]).await;
}

#[tokio::test]
async fn the_sqs_queue_adapter_sends_batches_larger_than_ten() {
    let sqs = Sqs::new().await;
    let q = SqsQueue::new(sqs.client.clone(), sqs.url.clone());
    let messages: Vec<_> = (0..23)
        .map(|s| oen_pay::queue::WorkMessage::plan(s, Utc::now(), None))
        .collect();
    q.enqueue(&messages).await.unwrap();
    assert_eq!(
        sqs.take_batch().await["Records"].as_array().unwrap().len(),
        23
    );
}

#[tokio::test]
async fn with_too_little_time_left_a_charge_is_handed_back_unclaimed() {
    let s = stack().await;
    s.bind("cust-1001", "premium", cards::SUCCESS).await;
    let batch: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("events/charger-sqs.json")).unwrap(),
    )
    .unwrap();
    let mut event = lambda_event(&s, batch);
    event.context.deadline = (s.clock.now().timestamp_millis() + 5_000) as u64;
    let r = handle(
        Arc::new(s.deps.clone()),
        Settings::with_concurrency(2),
        event,
    )
    .await
    .unwrap();
    assert_eq!(failures(&r), ["059f36b4-87a3-44ab-83d2-661975830a7d"]);
    assert!(s.sim.ledger().is_empty());
    let sub = s.sub("cust-1001", "premium").await;
    assert!(
        s.deps.store.period(&sub.id, 0).await.unwrap().is_none(),
        "nothing was claimed"
    );
}

/// A vault with a bug on one customer's path: decrypting that customer's card token panics.
struct PanicsDecrypting {
    inner: Arc<dyn TokenVault>,
    customer: &'static str,
}

#[async_trait]
impl TokenVault for PanicsDecrypting {
    async fn decrypt(
        &self,
        ciphertext: &Ciphertext,
        ctx: &VaultContext,
    ) -> Result<CardToken, VaultError> {
        if ctx.customer.as_str() == self.customer {
            panic!("a bug while decrypting the card of {}", self.customer);
        }
        self.inner.decrypt(ciphertext, ctx).await
    }
    // The bug is on the charge path only; binding encrypts as before.
    async fn encrypt(
        &self,
        token: &CardToken,
        ctx: &VaultContext,
    ) -> Result<Ciphertext, VaultError> {
        self.inner.encrypt(token, ctx).await
    }
}

/// An SQS batch of one charge message per customer, each with the message id `msg-{customer}`.
/// A charge message as `cargo lambda watch` delivers it: with a deadline in 1970.
fn emulated_invocation(s: &Stack) -> LambdaEvent<Value> {
    let mut event = lambda_event(s, charge_batch(&["cust-1001"]));
    event.context.deadline = 600_000;
    event
}

#[tokio::test]
async fn a_deadline_already_past_on_arrival_is_unknown_and_the_charge_goes_ahead() {
    let s = stack().await;
    s.bind("cust-1001", "premium", cards::SUCCESS).await;
    let r = handle(
        Arc::new(s.deps.clone()),
        Settings::with_concurrency(1),
        emulated_invocation(&s),
    )
    .await
    .unwrap();
    assert!(failures(&r).is_empty(), "{r}");
    s.assert_ledger_agrees(&[("cust-1001", "premium")]).await;
}

#[tokio::test]
async fn a_deadline_already_past_on_arrival_is_the_function_timeout_from_now() {
    let s = stack().await;
    s.bind("cust-1001", "premium", cards::SUCCESS).await;
    let deps = Arc::new(s.deps.clone());
    // A timeout too short for an Oen call: the charge is handed back unclaimed ...
    let short = Settings {
        concurrency: 1,
        function_timeout: Some(Duration::seconds(5)),
    };
    let r = handle(deps.clone(), short, emulated_invocation(&s))
        .await
        .unwrap();
    assert_eq!(failures(&r), ["msg-cust-1001"]);
    assert!(s.sim.ledger().is_empty());
    // ... the charger's own timeout leaves room, and it charges.
    let deployed = Settings {
        concurrency: 1,
        function_timeout: Some(Duration::seconds(60)),
    };
    let r = handle(deps, deployed, emulated_invocation(&s))
        .await
        .unwrap();
    assert!(failures(&r).is_empty(), "{r}");
    s.assert_ledger_agrees(&[("cust-1001", "premium")]).await;
}

fn charge_batch(customers: &[&str]) -> Value {
    let records: Vec<Value> = customers
        .iter()
        .map(|c| {
            json!({
                "messageId": format!("msg-{c}"),
                "receiptHandle": format!("handle-{c}"),
                "body": json!({"kind": "charge", "customer": c, "plan": "premium"}).to_string(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:ap-northeast-1:123456789012:charges",
                "awsRegion": "ap-northeast-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn a_panicking_message_is_handed_back_while_the_rest_of_its_batch_charges() {
    let logs = oen_pay_integration::logs::capture();
    let s = stack().await;
    let customers = ["cust-2001", "cust-2002", "cust-2003"];
    for c in customers {
        s.bind(c, "premium", cards::SUCCESS).await;
    }
    let mut deps = s.deps.clone();
    deps.vault = Arc::new(PanicsDecrypting {
        inner: s.deps.vault.clone(),
        customer: "cust-2002",
    });
    let r = invoke(&s, Arc::new(deps), 3, charge_batch(&customers))
        .await
        .unwrap();
    assert_eq!(failures(&r), ["msg-cust-2002"]);
    assert!(
        logs.text().lines().any(|l| l.contains("worker task failed")
            && l.contains("msg-cust-2002")
            && l.contains("a bug while decrypting the card of cust-2002")),
        "the panic is logged with its message id"
    );
    assert_eq!(s.sim.ledger().len(), 2);
    s.assert_ledger_agrees(&[("cust-2001", "premium"), ("cust-2003", "premium")])
        .await;
    // SQS redelivers the one message; once the panicked worker's lease on the period has run
    // out and Oen's listing is old enough to trust, the next worker asks Oen, finds nothing
    // sent, and charges once.
    s.advance(Duration::minutes(10));
    let r = invoke(
        &s,
        Arc::new(s.deps.clone()),
        3,
        charge_batch(&["cust-2002"]),
    )
    .await
    .unwrap();
    assert!(failures(&r).is_empty(), "{r}");
    assert_eq!(s.sim.ledger().len(), 3);
    let all: Vec<(&str, &str)> = customers.iter().map(|c| (*c, "premium")).collect();
    s.assert_ledger_agrees(&all).await;
}
