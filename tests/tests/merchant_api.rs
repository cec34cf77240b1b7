//! The merchant API end to end: API Gateway v2 events (built from `events/merchant-api-*.json`)
//! through lambda_http's parser into the real router, on moto's DynamoDB and KMS with the Oen
//! simulator. Every charging scenario ends on Oen's ledger.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use chrono::Duration;
use http_body_util::BodyExt;
use merchant_api::{router, Access, App};
use oen_pay::aws::{SqsDeadLetters, SqsQueue};
use oen_pay::charging::WorkOutcome;
use oen_pay::clock::Clock;
use oen_pay::deadletter::DeadLetterOps;
use oen_pay::dev;
use oen_pay::domain::{OrderId, TransactionId};
use oen_pay::links;
use oen_pay::oen::RefundRequest;
use oen_pay::ops::Operations;
use oen_pay::queue::WorkMessage;
use oen_pay::store::{StoreExt, SubscriptionStatus};
use oen_pay::vault::VaultContext;
use oen_pay_integration as harness;
use oen_pay_integration::stack::{stack, Stack};
use oen_sim::{cards, ForceTarget, ForcedOutcome, Status};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The domain API Gateway names in the sample events.
const DOMAIN: &str = "a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com";
const CALLER: &str =
    "arn:aws:sts::123456789012:assumed-role/oen-pay-MerchantApiCallerRole-EXAMPLE/merchant-backend";

fn sample(name: &str) -> Value {
    let path = harness::repo_root().join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The signed sample event, turned into `method path` with `body`.
fn signed(method: &str, path: &str, body: Option<Value>) -> Value {
    let mut e = sample("merchant-api-refund.json");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    e["rawPath"] = json!(path);
    e["rawQueryString"] = json!(query);
    e["routeKey"] = json!(format!("{method} {path}"));
    e["requestContext"]["routeKey"] = e["routeKey"].clone();
    e["requestContext"]["http"]["method"] = json!(method);
    e["requestContext"]["http"]["path"] = json!(path);
    e.as_object_mut().unwrap().remove("pathParameters");
    e["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    match body {
        Some(b) => e["body"] = json!(b.to_string()),
        None => {
            e.as_object_mut().unwrap().remove("body");
        }
    }
    e
}

/// The same request as API Gateway would pass it with no IAM identity in the context.
fn unsigned(method: &str, path: &str, body: Option<Value>) -> Value {
    let mut e = signed(method, path, body);
    e["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    e
}

struct Api {
    s: Stack,
    router: Router,
    /// moto's SQS behind the dead-letter routes (in memory for `memory_api`).
    sqs: Option<aws_sdk_sqs::Client>,
    queues: Queues,
    /// `memory_api`'s store (the others use moto's table, `s.table`).
    memory: Option<Arc<oen_pay::store::MemoryStore>>,
}

/// The charge queue, its dead-letter queue, the schedules' dead-letter queue.
#[derive(Default)]
struct Queues {
    charge: String,
    charge_dead: String,
    schedule_dead: String,
}

async fn api() -> Api {
    let s = stack().await;
    let sqs = aws_sdk_sqs::Client::new(&harness::aws_config().await);
    let mut urls = Vec::new();
    for name in ["charges", "charges-dlq", "schedule-dlq"] {
        urls.push(
            sqs.create_queue()
                .queue_name(harness::unique_name(name))
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap(),
        );
    }
    let queues = Queues {
        charge: urls[0].clone(),
        charge_dead: urls[1].clone(),
        schedule_dead: urls[2].clone(),
    };
    let app = App {
        ops: Operations {
            deps: s.deps.clone(),
            secrets: dev::dev_secrets(dev::DEV_API_TOKEN),
            link_max_ttl: Duration::hours(24),
        },
        start_link_url: None,
        dead_letters: DeadLetterOps {
            letters: Arc::new(SqsDeadLetters::new(
                sqs.clone(),
                queues.charge_dead.clone(),
                queues.schedule_dead.clone(),
            )),
            queue: Arc::new(SqsQueue::new(sqs.clone(), queues.charge.clone())),
        },
    };
    let router = router(Arc::new(app), Access::RequireIam);
    Api {
        s,
        router,
        sqs: Some(sqs),
        queues,
        memory: None,
    }
}

fn memory_dead_letters() -> DeadLetterOps {
    DeadLetterOps {
        letters: Arc::new(oen_pay::deadletter::MemoryDeadLetters::default()),
        queue: Arc::new(oen_pay::queue::MemoryQueue::default()),
    }
}

impl Api {
    async fn invoke(&self, event: &Value) -> (StatusCode, Value) {
        let request =
            lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
        (status, json)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.invoke(&signed(method, path, body)).await
    }

    /// A customer with a bound card whose period 0 is paid; the subscription id.
    async fn paid(&self, customer: &str) -> String {
        self.s.bind(customer, "premium", cards::SUCCESS).await;
        let outcomes = self.s.run().await;
        assert!(
            matches!(
                outcomes.as_slice(),
                [WorkOutcome::Paid { charged: true, .. }]
            ),
            "{outcomes:?}"
        );
        self.s.sub(customer, "premium").await.id.to_string()
    }

    fn order(&self, sub: &str, n: u32) -> String {
        OrderId::for_period(&oen_pay::domain::SubscriptionId::parse(sub).unwrap(), n).to_string()
    }
}

/// Standard base64 with padding, to look for a ciphertext spelt that way.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Asserts an error answer: status, stable code, and a message containing `says`.
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, says: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message:?} lacks {says:?}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn every_route_refuses_a_request_without_an_iam_identity_and_changes_nothing() {
    let a = api().await;
    let sub = a.paid("cust-guard").await;
    let order = a.order(&sub, 0);
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            "/v1/links".into(),
            Some(json!({"customer":"c","plan":"premium","ttlSeconds":60})),
        ),
        ("GET", "/v1/customers/cust-guard".into(), None),
        ("GET", format!("/v1/subscriptions/{sub}"), None),
        (
            "POST",
            format!("/v1/subscriptions/{sub}/cancel"),
            Some(json!({"at":"now"})),
        ),
        ("POST", format!("/v1/subscriptions/{sub}/resume"), None),
        (
            "POST",
            format!("/v1/periods/{order}/refund"),
            Some(json!({})),
        ),
        ("GET", "/v1/due?shard=0".into(), None),
        ("GET", "/v1/reconciliation/2026-11-29".into(), None),
        (
            "POST",
            "/v1/charges".into(),
            Some(charge_body("cust-guard", 300)),
        ),
        ("GET", "/v1/charges/AbCdEfGhIjKlMnOpQrSt".into(), None),
        (
            "POST",
            "/v1/charges/AbCdEfGhIjKlMnOpQrSt/refund".into(),
            Some(json!({})),
        ),
        ("GET", "/v1/dead-letters/charge".into(), None),
        ("POST", "/v1/dead-letters/charge/redrive".into(), None),
        ("GET", "/v1/no-such-route".into(), None),
    ];
    // Shapes a caller without SigV4 (or a misreading of the context) could produce.
    let identity = json!({
        "accessKey": "ASIAIOSFODNN7EXAMPLE",
        "accountId": "123456789012",
        "callerId": "AROAEXAMPLEROLEID1234:merchant-backend",
        "principalOrgId": null,
        "userArn": CALLER,
        "userId": "AROAEXAMPLEROLEID1234:merchant-backend"
    });
    // Each: what goes under which key of the request context (nothing for the first).
    let misplaced: Vec<(&str, Option<(&str, Value)>)> = vec![
        ("no authorizer", None),
        (
            "an empty iam object",
            Some(("authorizer", json!({"iam": {}}))),
        ),
        (
            "iam without a userArn",
            Some((
                "authorizer",
                json!({"iam": {"accountId": "123456789012", "userArn": ""}}),
            )),
        ),
        (
            "the REST API's requestContext.identity",
            Some(("identity", identity.clone())),
        ),
        (
            "a Lambda authorizer's context",
            Some(("authorizer", json!({"lambda": identity.clone()}))),
        ),
        (
            "a JWT authorizer",
            Some((
                "authorizer",
                json!({"jwt": {"claims": {"sub": "merchant"}, "scopes": null}}),
            )),
        ),
    ];
    for (method, path, body) in &routes {
        for (shape, patch) in &misplaced {
            let mut e = unsigned(method, path, body.clone());
            e["headers"]["idempotency-key"] = json!(KEY);
            if let Some((key, value)) = patch {
                e["requestContext"][*key] = value.clone();
            }
            let answer = a.invoke(&e).await;
            assert_eq!(
                answer.0,
                StatusCode::FORBIDDEN,
                "{method} {path} with {shape}"
            );
            assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "SigV4");
        }
    }
    // The sample unsigned event too.
    let answer = a.invoke(&sample("merchant-api-refund-unsigned.json")).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "SigV4");
    // Nothing was canceled or refunded.
    let stored = a.s.sub("cust-guard", "premium").await;
    assert_eq!(stored.status, SubscriptionStatus::Active);
    assert!(!stored.cancel_at_period_end);
    assert_eq!(a.s.sim.ledger()[0].status, Status::Charged);
    assert_eq!(a.s.sim.ledger().len(), 1, "no one-off charge was made");
    // The exact shape AWS documents is accepted.
    let (status, body) = a
        .call("GET", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_minted_link_points_at_this_apis_checkout_start_and_verifies() {
    let a = api().await;
    let (status, body) = a
        .call(
            "POST",
            "/v1/links",
            Some(
                json!({"customer":"cust-link","plan":"premium","ttlSeconds":900,
                "email":"mei@example.com","name":"Mei Lin"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = body["url"].as_str().unwrap();
    let (base, query) = url.split_once('?').unwrap();
    assert_eq!(base, format!("https://{DOMAIN}/checkout/start"));
    let link = links::verify(
        query,
        dev::DEV_LINK_SIGNING_KEY.as_bytes(),
        &dev::dev_plans(),
        a.s.clock.now(),
        Duration::hours(24),
    )
    .unwrap();
    assert_eq!(link.customer.as_str(), "cust-link");
    assert_eq!(
        link.payer.email.as_ref().map(|e| e.as_str()),
        Some("mei@example.com")
    );
    assert_eq!(
        body["expiresAt"],
        json!((a.s.clock.now() + Duration::seconds(900))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );

    let bad = [
        (
            json!({"customer":"c","plan":"premium","ttlSeconds":60,"emial":"x@y"}),
            "unknown field `emial`",
        ),
        (
            json!({"customer":"c","plan":"gold","ttlSeconds":60}),
            "plan",
        ),
        (
            json!({"customer":"c","plan":"premium","ttlSeconds":86401}),
            "ttlSeconds",
        ),
        (
            json!({"customer":"c","plan":"premium","ttlSeconds":60,"email":"nope"}),
            "email",
        ),
        (
            json!({"customer":"c","plan":"premium"}),
            "missing field `ttlSeconds`",
        ),
    ];
    for (request, says) in bad {
        let answer = a.call("POST", "/v1/links", Some(request)).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_request", says);
    }
    let mut e = signed("POST", "/v1/links", None);
    e["body"] = json!("{\"customer\":");
    assert_error(
        &a.invoke(&e).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "not valid JSON",
    );
    e["body"] = json!(format!(
        "{{\"customer\":\"{}\"}}",
        "x".repeat(merchant_api::MAX_BODY)
    ));
    assert_error(
        &a.invoke(&e).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "larger than",
    );
}

#[tokio::test]
async fn the_customer_view_shows_subscriptions_periods_and_last4_and_no_token_material() {
    let a = api().await;
    let sub = a.paid("cust-view").await;
    let (status, body) = a.call("GET", "/v1/customers/cust-view", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["customer"], "cust-view");
    let s = &body["subscriptions"][0];
    assert_eq!(s["id"], sub);
    assert_eq!(s["status"], "active");
    assert_eq!(s["cardLast4"], "4242");
    assert_eq!(s["currentPeriod"], 1);
    let p0 = &s["recentPeriods"][0];
    assert_eq!(p0["orderId"], a.order(&sub, 0));
    assert_eq!(p0["status"], "paid");
    assert_eq!(p0["amount"], 500);
    let number = a.s.sim.ledger()[0].id.clone();
    assert_eq!(p0["transaction"], number);
    assert_eq!(body["cards"][0]["last4"], "4242");
    assert_eq!(body["cards"][0]["chargedFor"], json!(["premium"]));

    // Neither the token Oen charged nor the ciphertext we keep appears, in any spelling.
    let text = body.to_string();
    let token = a.s.sim.ledger()[0].token.clone();
    let stored = a.s.sub("cust-view", "premium").await;
    let card =
        a.s.deps
            .store
            .card(&stored.customer, &stored.card)
            .await
            .unwrap()
            .unwrap()
            .value;
    let ctx = VaultContext {
        merchant: dev::dev_merchant(),
        customer: stored.customer.clone(),
        binding: stored.card.clone(),
    };
    let decrypted =
        a.s.binding
            .vault
            .decrypt(&card.ciphertext, &ctx)
            .await
            .unwrap();
    assert_eq!(
        decrypted.expose(),
        token,
        "the stored card is the charged one"
    );
    // (The messages never print the body: it might hold what it must not.)
    assert!(!text.contains(&token), "the token is in the customer view");
    let raw = &card.ciphertext.0;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let numbers = serde_json::to_string(raw).unwrap();
    for spelling in [
        hex.clone(),
        hex.to_uppercase(),
        base64(raw),
        numbers[1..numbers.len() - 1].to_owned(),
    ] {
        assert!(
            !text.contains(&spelling),
            "the ciphertext is in the customer view"
        );
    }
    for word in ["token", "cipher", "fingerprint", "binding"] {
        assert!(
            !text.to_lowercase().contains(word),
            "{word} is in the customer view"
        );
    }
}

#[tokio::test]
async fn cancel_now_stops_every_later_charge() {
    let a = api().await;
    let sub = a.paid("cust-now").await;
    let (status, body) = a
        .call(
            "POST",
            &format!("/v1/subscriptions/{sub}/cancel"),
            Some(json!({"at":"now"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "canceled");
    assert_eq!(body["nextActionAt"], Value::Null);
    for _ in 0..3 {
        a.s.advance(Duration::days(31));
        assert!(a.s.run().await.is_empty());
    }
    assert_eq!(a.s.sim.ledger().len(), 1, "only period 0 was ever charged");
    a.s.assert_ledger_agrees(&[("cust-now", "premium")]).await;
    // Canceling again answers the canceled subscription; resuming it is refused precisely.
    let (status, body) = a
        .call(
            "POST",
            &format!("/v1/subscriptions/{sub}/cancel"),
            Some(json!({"at":"period_end"})),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("canceled"))
    );
    let answer = a
        .call("POST", &format!("/v1/subscriptions/{sub}/resume"), None)
        .await;
    assert_error(
        &answer,
        StatusCode::CONFLICT,
        "conflict",
        "canceled already",
    );
    assert!(a
        .s
        .events
        .all()
        .iter()
        .any(|e| e.kind == "subscription.canceled"));
    // The audit trail names the IAM caller.
    let actions = audited(&a.s, CALLER).await;
    assert!(
        actions.contains(&"subscription.canceled".to_owned()),
        "{actions:?}"
    );
}

/// The actions the audit entries stored in the stack's table attribute to `actor`.
async fn audited(s: &Stack, actor: &str) -> Vec<String> {
    let text =
        |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
         name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
    harness::scan_all(&harness::dynamo_client().await, &s.table)
        .await
        .into_iter()
        .filter(|i| text(i, "kind") == "audit" && text(i, "actor") == actor)
        .map(|i| text(&i, "action"))
        .collect()
}

#[tokio::test]
async fn cancel_at_period_end_ends_the_subscription_then_and_resume_undoes_it() {
    let a = api().await;
    let ending = a.paid("cust-end").await;
    let resumed = a.paid("cust-resume").await;
    for sub in [&ending, &resumed] {
        let (status, body) = a
            .call(
                "POST",
                &format!("/v1/subscriptions/{sub}/cancel"),
                Some(json!({"at":"period_end"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (&body["status"], &body["cancelAtPeriodEnd"]),
            (&json!("active"), &json!(true))
        );
    }
    let (status, body) = a
        .call(
            "POST",
            &format!("/v1/subscriptions/{resumed}/resume"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cancelAtPeriodEnd"], false);
    let answer = a
        .call(
            "POST",
            &format!("/v1/subscriptions/{resumed}/resume"),
            Some(json!({"at":"now"})),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "unknown field `at`",
    );

    // The period ends: one subscription ends uncharged, the resumed one renews.
    a.s.clock
        .set(a.s.sub("cust-end", "premium").await.next_action_at.unwrap());
    let mut outcomes = a.s.run().await;
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert!(
        matches!(
            outcomes.as_slice(),
            [
                WorkOutcome::Canceled,
                WorkOutcome::Paid { charged: true, .. }
            ]
        ),
        "{outcomes:?}"
    );
    let (_, body) = a
        .call("GET", &format!("/v1/subscriptions/{ending}"), None)
        .await;
    assert_eq!(body["status"], "canceled");
    let (_, body) = a
        .call("GET", &format!("/v1/subscriptions/{resumed}"), None)
        .await;
    assert_eq!(
        (&body["status"], &body["currentPeriod"]),
        (&json!("active"), &json!(2))
    );
    a.s.advance(Duration::days(40));
    a.s.run().await;
    assert_eq!(
        a.s.ledger_for(&OrderId::for_period(
            &a.s.sub("cust-end", "premium").await.id,
            1
        ))
        .len(),
        0
    );
    a.s.assert_ledger_agrees(&[("cust-end", "premium"), ("cust-resume", "premium")])
        .await;
}

#[tokio::test]
async fn a_full_refund_is_made_once_and_repeating_it_answers_the_recorded_refund() {
    let a = api().await;
    let sub = a.paid("cust-full").await;
    let path = format!("/v1/periods/{}/refund", a.order(&sub, 0));
    let (status, first) = a
        .call("POST", &path, Some(json!({"reason":"customer asked"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        (&first["refunded"], &first["charged"], &first["replayed"]),
        (&json!(500), &json!(500), &json!(false))
    );
    let entry = a.s.sim.ledger()[0].clone();
    assert_eq!((entry.status, entry.refund_amount), (Status::Refunded, 500));
    assert_eq!(first["transaction"], entry.id);

    // The caller lost our answer and repeats: the recorded refund, nothing sent to Oen.
    let (status, again) = a.call("POST", &path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["replayed"], true);
    assert_eq!(again["refunded"], 500);
    // Another refund of the same transaction is refused precisely.
    let answer = a.call("POST", &path, Some(json!({"amount": 100}))).await;
    assert_error(
        &answer,
        StatusCode::CONFLICT,
        "conflict",
        "refunded NT$500 already",
    );
    assert_eq!(a.s.sim.ledger()[0].refund_amount, 500);
    assert!(a
        .s
        .events
        .all()
        .iter()
        .any(|e| e.kind == "payment.refunded"));
    assert_eq!(audited(&a.s, CALLER).await, ["refund"]);
}

#[tokio::test]
async fn a_partial_refund_leaves_no_room_for_a_second_one() {
    let a = api().await;
    let sub = a.paid("cust-part").await;
    let path = format!("/v1/periods/{}/refund", a.order(&sub, 0));
    let answer = a.call("POST", &path, Some(json!({"amount": 501}))).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "more than",
    );
    let answer = a.call("POST", &path, Some(json!({"amount": 0}))).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "amount",
    );
    let (status, body) = a
        .call(
            "POST",
            &path,
            Some(json!({"amount": 120, "reason": "late"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refunded"], 120);
    let answer = a.call("POST", &path, Some(json!({}))).await;
    assert_error(
        &answer,
        StatusCode::CONFLICT,
        "conflict",
        "refunded NT$120 already",
    );
    let entry = &a.s.sim.ledger()[0];
    assert_eq!(entry.refund_amount, 120);
    // The customer view shows it.
    let (_, view) = a
        .call("GET", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(view["recentPeriods"][0]["refunded"], 120);
}

#[tokio::test]
async fn refunds_whose_answers_are_lost_are_never_made_twice() {
    let a = api().await;
    let timed_out = a.paid("cust-504").await;
    let dropped = a.paid("cust-drop").await;
    let never_recorded = a.paid("cust-unrecorded").await;
    let not_made = a.paid("cust-not-made").await;
    let number = |sub: &str| {
        let order = a.order(sub, 0);
        a.s.sim
            .ledger()
            .into_iter()
            .find(|e| e.order_id == order)
            .unwrap()
            .id
    };

    // Oen refunds, then answers 504 (or drops the connection): the transaction is read back.
    a.s.sim.force_next(
        ForceTarget::Refund(number(&timed_out)),
        ForcedOutcome::GatewayTimeoutAfterCommit,
    );
    a.s.sim.force_next(
        ForceTarget::Refund(number(&dropped)),
        ForcedOutcome::DropConnectionAfterCommit,
    );
    for sub in [&timed_out, &dropped] {
        let path = format!("/v1/periods/{}/refund", a.order(sub, 0));
        let (status, body) = a.call("POST", &path, Some(json!({"amount": 200}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (&body["refunded"], &body["replayed"]),
            (&json!(200), &json!(false))
        );
        let (status, body) = a.call("POST", &path, Some(json!({"amount": 200}))).await;
        assert_eq!((status, &body["replayed"]), (StatusCode::OK, &json!(true)));
    }

    // An earlier attempt refunded at Oen and its answer was lost before we recorded anything:
    // the repeat meets Oen's "one refund" refusal, reads the transaction and records it.
    let n = TransactionId::parse(&number(&never_recorded)).unwrap();
    a.s.deps
        .oen
        .refund(&RefundRequest {
            transaction_number: n,
            amount: None,
            reason: None,
            product_details: Vec::new(),
        })
        .await
        .unwrap();
    let path = format!("/v1/periods/{}/refund", a.order(&never_recorded, 0));
    let (status, body) = a.call("POST", &path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refunded"], 500);

    // Oen answers 504 before refunding anything: a 502 that says to repeat, nothing recorded;
    // the repeat refunds.
    a.s.sim.force_next(
        ForceTarget::Refund(number(&not_made)),
        ForcedOutcome::GatewayTimeoutBeforeCommit,
    );
    let path = format!("/v1/periods/{}/refund", a.order(&not_made, 0));
    let answer = a.call("POST", &path, Some(json!({}))).await;
    assert_error(
        &answer,
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        "repeat the request",
    );
    let (_, view) = a
        .call("GET", &format!("/v1/subscriptions/{not_made}"), None)
        .await;
    assert!(view["recentPeriods"][0].get("refunded").is_none(), "{view}");
    let (status, body) = a.call("POST", &path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Oen's ledger: each transaction refunded once, for what we recorded.
    let mut refunds: Vec<(String, &str, i64)> =
        a.s.sim
            .ledger()
            .into_iter()
            .map(|e| (e.order_id, e.status.as_str(), e.refund_amount))
            .collect();
    refunds.sort();
    let mut want = vec![
        (a.order(&timed_out, 0), "refunded", 200),
        (a.order(&dropped, 0), "refunded", 200),
        (a.order(&never_recorded, 0), "refunded", 500),
        (a.order(&not_made, 0), "refunded", 500),
    ];
    want.sort();
    assert_eq!(refunds, want);
}

#[tokio::test]
async fn unknown_and_malformed_ids_get_stable_codes() {
    let a = api().await;
    let sub = a.paid("cust-ids").await;
    let unknown = "ZZZZZZZZZZZZZZZZ";
    let cases = [
        (
            "GET",
            "/v1/reconciliation/2026-11-29".to_owned(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "no reconciliation report for 2026-11-29",
        ),
        (
            "GET",
            "/v1/reconciliation/2026-13-01".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "yyyy-MM-dd",
        ),
        (
            "GET",
            "/v1/due".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the shard parameter is required",
        ),
        (
            "GET",
            "/v1/due?shard=16".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "from 0 to 15",
        ),
        (
            "GET",
            "/v1/due?shard=3&after=".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "not a page cursor",
        ),
        (
            "GET",
            format!("/v1/subscriptions/{unknown}"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "no subscription",
        ),
        (
            "POST",
            format!("/v1/subscriptions/{unknown}/cancel"),
            Some(json!({"at":"now"})),
            StatusCode::NOT_FOUND,
            "not_found",
            "no subscription",
        ),
        (
            "POST",
            format!("/v1/subscriptions/{unknown}/resume"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "no subscription",
        ),
        (
            "POST",
            format!("/v1/periods/{unknown}P000000/refund"),
            Some(json!({})),
            StatusCode::NOT_FOUND,
            "not_found",
            "no period",
        ),
        (
            "POST",
            format!("/v1/periods/{sub}P000007/refund"),
            Some(json!({})),
            StatusCode::NOT_FOUND,
            "not_found",
            "no period",
        ),
        (
            "GET",
            "/v1/customers/nobody".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "no customer",
        ),
        (
            "GET",
            "/v1/subscriptions/short".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subscription id",
        ),
        (
            "GET",
            "/v1/customers/a%20b".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "customer",
        ),
        (
            "POST",
            format!("/v1/periods/{sub}/refund"),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "order id",
        ),
        (
            "POST",
            format!("/v1/subscriptions/{sub}/cancel"),
            Some(json!({"at":"tomorrow"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown variant",
        ),
        (
            "POST",
            format!("/v1/subscriptions/{sub}/cancel"),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing field `at`",
        ),
        (
            "POST",
            format!("/v1/periods/{}/refund", a.order(&sub, 1)),
            Some(json!({})),
            StatusCode::NOT_FOUND,
            "not_found",
            "no period",
        ),
        (
            "GET",
            "/v1/charges/anything".into(),
            None,
            StatusCode::NOT_FOUND,
            "charge_not_found",
            "no such charge",
        ),
        (
            "GET",
            "/v1/charges/AbCdEfGhIjKlMnOpQrSt/refund".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET",
        ),
        (
            "POST",
            "/v1/charges/AbCdEfGhIjKlMnOpQrSt/refund".into(),
            Some(json!({})),
            StatusCode::NOT_FOUND,
            "not_found",
            "no charge",
        ),
        (
            "POST",
            "/v1/charges/not-a-charge/refund".into(),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "charge id",
        ),
        (
            "GET",
            "/v1/charges/AbCdEfGhIjKlMnOpQrSt/refunds".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "no route",
        ),
        (
            "GET",
            "/v1/links".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET",
        ),
    ];
    for (method, path, body, status, code, says) in cases {
        let answer = a.call(method, &path, body).await;
        assert_error(&answer, status, code, says);
    }
    // The sample event names an order of no subscription.
    let answer = a.invoke(&sample("merchant-api-refund.json")).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "no period");
    // Nothing moved.
    assert_eq!(a.s.sim.ledger().len(), 1);
    assert_eq!(
        a.s.sub("cust-ids", "premium").await.status,
        SubscriptionStatus::Active
    );
}

/// Operations on in-memory adapters (enough for links and lookups; Oen and the key withheld).
fn memory_app() -> Arc<App> {
    use oen_pay::charging::{ChargeDeps, ChargePolicy};
    use oen_pay::withheld::Withheld;
    let withheld = Arc::new(Withheld::new("merchant-api-test", dev::dev_merchant()));
    let binding = dev::binding_deps(
        Arc::new(oen_pay::store::MemoryStore::new()),
        withheld.clone(),
        withheld.clone(),
        Arc::new(oen_pay::events::MemoryEvents::default()),
        Arc::new(oen_pay::clock::SystemClock),
    );
    Arc::new(App {
        ops: Operations {
            deps: ChargeDeps::new(binding, withheld, ChargePolicy::default()),
            secrets: dev::dev_secrets(dev::DEV_API_TOKEN),
            link_max_ttl: Duration::hours(24),
        },
        start_link_url: None,
        dead_letters: memory_dead_letters(),
    })
}

/// A request as `axum::serve` hands it over: no API Gateway context at all.
fn plain_request() -> axum::extract::Request {
    axum::http::Request::builder()
        .method("POST")
        .uri("/v1/links")
        .header("host", "127.0.0.1:8080")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({"customer":"cust-local","plan":"premium","ttlSeconds":60}).to_string(),
        ))
        .unwrap()
}

#[tokio::test]
async fn only_the_local_mode_asked_for_by_name_serves_requests_without_a_context() {
    let local = router(memory_app(), Access::LocalUnauthenticated);
    let response = local.oneshot(plain_request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let link: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:8080/checkout/start?"),
        "{link}"
    );

    let deployed = router(memory_app(), Access::RequireIam);
    let response = deployed.oneshot(plain_request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let refused: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(refused["error"]["code"], "forbidden");
}

/// The charging stack on the in-memory store and vault (moto's DynamoDB restores a snapshot of
/// every table when a transaction fails, undoing a concurrent one's writes: racing commits are
/// judged on the store whose semantics the contract suite pins down).
async fn memory_api() -> Api {
    use oen_pay::charging::{ChargeDeps, ChargePolicy};
    use oen_pay::clock::TestClock;
    use oen_pay::domain::taipei_time;
    use oen_pay::events::MemoryEvents;
    use oen_pay::queue::MemoryQueue;
    use oen_pay::vault::LocalVault;
    let sim = oen_sim::Simulator::start(oen_sim::SimConfig {
        api_token: dev::DEV_API_TOKEN.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let secrets = dev::dev_secrets(dev::DEV_API_TOKEN);
    let clock = TestClock::at(taipei_time(2027, 1, 31, 10, 0));
    let events = Arc::new(MemoryEvents::default());
    let queue = Arc::new(MemoryQueue::default());
    let memory = Arc::new(oen_pay::store::MemoryStore::new());
    let binding = dev::binding_deps(
        memory.clone(),
        Arc::new(LocalVault::random()),
        Arc::new(dev::local_oen(&sim.base_url(), secrets.clone()).unwrap()),
        events.clone(),
        Arc::new(clock.clone()),
    );
    let deps = ChargeDeps::new(binding.clone(), queue.clone(), ChargePolicy::default());
    let app = App {
        ops: Operations {
            deps: deps.clone(),
            secrets,
            link_max_ttl: Duration::hours(24),
        },
        start_link_url: None,
        dead_letters: memory_dead_letters(),
    };
    let s = Stack {
        sim,
        deps,
        binding,
        queue,
        clock,
        events,
        table: String::new(),
        key: String::new(),
    };
    Api {
        s,
        router: router(Arc::new(app), Access::RequireIam),
        sqs: None,
        queues: Queues::default(),
        memory: Some(memory),
    }
}

#[tokio::test]
async fn concurrent_repeats_of_a_refund_make_one_and_all_answer_it() {
    let a = memory_api().await;
    let sub = a.paid("cust-race").await;
    let path = format!("/v1/periods/{}/refund", a.order(&sub, 0));
    let event = signed("POST", &path, Some(json!({"reason": "double click"})));
    let answers = futures_join_all((0..4).map(|_| a.invoke(&event))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["refunded"], 500, "{body}");
    }
    let made = answers
        .iter()
        .filter(|(_, b)| b["replayed"] == json!(false))
        .count();
    assert_eq!(made, 1, "{answers:?}");
    let entry = &a.s.sim.ledger()[0];
    assert_eq!((entry.status, entry.refund_amount), (Status::Refunded, 500));
    let refunded =
        a.s.events
            .all()
            .into_iter()
            .filter(|e| e.kind == "payment.refunded")
            .count();
    assert_eq!(refunded, 1);

    // A different refund racing in after Oen refunded: refused, though Oen's refund is kept.
    let other = a.paid("cust-race-2").await;
    let number = a.s.sim.ledger()[1].id.clone();
    a.s.deps
        .oen
        .refund(&RefundRequest {
            transaction_number: TransactionId::parse(&number).unwrap(),
            amount: Some(oen_pay::domain::Amount::new(300).unwrap()),
            reason: None,
            product_details: Vec::new(),
        })
        .await
        .unwrap();
    let path = format!("/v1/periods/{}/refund", a.order(&other, 0));
    let answer = a.call("POST", &path, Some(json!({"amount": 100}))).await;
    assert_error(
        &answer,
        StatusCode::CONFLICT,
        "conflict",
        "refunded NT$300 already",
    );
    let (_, view) = a
        .call("GET", &format!("/v1/subscriptions/{other}"), None)
        .await;
    assert_eq!(view["recentPeriods"][0]["refunded"], 300);
}

/// Runs the futures at once on this task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

// ---- One-off charges: POST /v1/charges (Idempotency-Key) and GET /v1/charges/{id}.

const KEY: &str = "4f0c6a1e-8d2b-4c1a-9e57-0b1d2c3e4f5a";

/// A one-off charge's body: two lines adding up to `amount`.
fn charge_body(customer: &str, amount: u32) -> Value {
    json!({
        "customer": customer,
        "amount": amount,
        "description": "Extra seats",
        "reference": "inv-2027-0042",
        "productDetails": [{
            "productionCode": "SEAT",
            "description": "Extra seat",
            "quantity": 2,
            "unit": "seat",
            "unitPrice": amount / 2,
        }],
    })
}

/// `POST /v1/charges` signed, with `key` as its Idempotency-Key (none when `None`).
fn charge_event(key: Option<&str>, body: Value) -> Value {
    let mut e = signed("POST", "/v1/charges", Some(body));
    if let Some(key) = key {
        e["headers"]["idempotency-key"] = json!(key);
    }
    e
}

/// An answer with the headers that matter here.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    replayed: bool,
    request_id: String,
    body: Value,
}

impl Api {
    /// Runs `event` through the router as lambda_http hands it over, with the Lambda
    /// invocation's context when given.
    async fn answer(&self, event: &Value, lambda: Option<lambda_http::Context>) -> Answer {
        use lambda_http::RequestExt;
        let mut request =
            lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
        if let Some(context) = lambda {
            request = request.with_lambda_context(context);
        }
        let response = self.router.clone().oneshot(request).await.unwrap();
        let headers = response.headers().clone();
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
        let replayed = match headers.get("idempotent-replayed") {
            None => false,
            Some(v) => {
                assert_eq!(v, "true");
                true
            }
        };
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            replayed,
            request_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: serde_json::from_slice(&body).unwrap(),
        }
    }

    async fn charge(&self, key: &str, body: Value) -> Answer {
        self.answer(&charge_event(Some(key), body), None).await
    }

    /// The statuses Oen's ledger holds for `order`.
    fn ledger_of(&self, order: &Value) -> Vec<Status> {
        let order = order.as_str().expect("an order id");
        self.s
            .sim
            .ledger_for_order(order)
            .into_iter()
            .map(|e| e.status)
            .collect()
    }
}

/// A customer with a saved card, bound on a plan with a trial so that no subscription charge
/// is due while a test runs the charger.
async fn with_card(a: &Api, customer: &str, card: &str) {
    a.s.bind(customer, "trial", card).await;
}

/// No card token in anything the merchant API answered or the table holds.
async fn no_token_anywhere(a: &Api, answers: &[&Value]) {
    let stored = match &a.memory {
        Some(memory) => format!("{:?}", memory.snapshot()),
        None => format!(
            "{:?}",
            harness::scan_all(&harness::dynamo_client().await, &a.s.table).await
        ),
    };
    let dump = format!("{stored} {answers:?}");
    for entry in a.s.sim.ledger() {
        assert!(!dump.contains(entry.token.as_str()), "a card token leaked");
    }
}

#[tokio::test]
async fn a_paid_one_off_charge_is_201_and_its_status_route_shows_it() {
    let a = api().await;
    with_card(&a, "cust-oneoff", cards::SUCCESS).await;
    // `cargo lambda watch` hands over a deadline in 1970: not believed, the charge is made.
    let mut watch = lambda_http::Context::default();
    watch.deadline = 600_000;
    let paid = a
        .answer(
            &charge_event(Some(KEY), charge_body("cust-oneoff", 300)),
            Some(watch),
        )
        .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    assert!(!paid.replayed);
    assert_eq!(paid.request_id, "MrChAnTApIReQ1d=");
    assert_eq!(paid.body["status"], "succeeded");
    assert_eq!(paid.body["amount"], 300);
    assert_eq!(paid.body["customer"], "cust-oneoff");
    assert_eq!(paid.body["cardLast4"], "4242");
    assert_eq!(a.ledger_of(&paid.body["orderId"]), [Status::Charged]);
    let transaction =
        a.s.sim
            .ledger_for_order(paid.body["orderId"].as_str().unwrap())[0]
            .id
            .clone();
    assert_eq!(paid.body["transaction"], transaction.as_str());

    let id = paid.body["id"].as_str().unwrap();
    assert_eq!(paid.body["statusUrl"], format!("/v1/charges/{id}"));
    let (status, view) = a.call("GET", &format!("/v1/charges/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view, paid.body);
    no_token_anywhere(&a, &[&paid.body, &view]).await;
    let kinds: Vec<String> =
        a.s.events
            .all()
            .iter()
            .map(|e| e.kind.to_string())
            .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "charge.succeeded").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_charges_through_the_router_make_one_oen_transaction() {
    // On the in-memory store: racing transactions on moto's DynamoDB can lose the winner's
    // writes (see `memory_api`), which no real table does.
    let a = Arc::new(memory_api().await);
    with_card(&a, "cust-race", cards::SUCCESS).await;
    // A slow Oen keeps the first request in flight while the others arrive.
    a.s.sim.set_latency(std::time::Duration::from_millis(300));
    let event = charge_event(Some(KEY), charge_body("cust-race", 300));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (a, event) = (a.clone(), event.clone());
            tokio::spawn(async move { a.answer(&event, None).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    a.s.sim.set_latency(std::time::Duration::ZERO);
    let made: Vec<&Answer> = answers
        .iter()
        .filter(|x| x.status == StatusCode::CREATED && !x.replayed)
        .collect();
    let [first] = made.as_slice() else {
        panic!("one request charges: {answers:?}")
    };
    for x in &answers {
        match x.status {
            StatusCode::CREATED => assert_eq!(x.body, first.body),
            StatusCode::CONFLICT => {
                assert_eq!(x.body["error"]["code"], "idempotency_key_in_use", "{x:?}");
                assert!(!x.replayed);
            }
            other => panic!("{other}: {x:?}"),
        }
    }
    // A late repeat replays it, marked as such.
    let late = a.charge(KEY, charge_body("cust-race", 300)).await;
    assert_eq!(
        (late.status, late.replayed, &late.body),
        (StatusCode::CREATED, true, &first.body)
    );
    assert_eq!(a.ledger_of(&first.body["orderId"]), [Status::Charged]);
    assert_eq!(a.s.sim.ledger().len(), 1);
    no_token_anywhere(&a, &[&first.body]).await;
}

#[tokio::test]
async fn a_mismatched_replay_is_422_and_makes_no_oen_transaction() {
    let a = api().await;
    with_card(&a, "cust-mismatch", cards::SUCCESS).await;
    let first = a.charge(KEY, charge_body("cust-mismatch", 300)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let other = a.charge(KEY, charge_body("cust-mismatch", 302)).await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.body
    );
    assert_eq!(other.body["error"]["code"], "idempotency_key_reused");
    assert!(!other.replayed);
    assert_eq!(other.body.as_object().unwrap().len(), 1, "{}", other.body);
    assert_eq!(a.ledger_of(&first.body["orderId"]), [Status::Charged]);
    assert_eq!(a.s.sim.ledger().len(), 1);
    // The key still stands for its first request.
    let again = a.charge(KEY, charge_body("cust-mismatch", 300)).await;
    assert_eq!((again.replayed, &again.body), (true, &first.body));
}

#[tokio::test]
async fn a_c026_on_the_first_try_is_202_replayed_then_reconciled_paid() {
    let a = api().await;
    with_card(&a, "cust-c026", cards::UNKNOWN_C026_THEN_CHARGED).await;
    let first = a.charge(KEY, charge_body("cust-c026", 300)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert!(!first.replayed);
    assert_eq!(first.body["status"], "pending");
    let id = first.body["id"].as_str().unwrap().to_owned();
    let status_url = format!("/v1/charges/{id}");
    assert_eq!(first.body["statusUrl"], status_url.as_str());
    // The repeat is the same 202 and sends nothing to Oen.
    let again = a.charge(KEY, charge_body("cust-c026", 300)).await;
    assert_eq!(
        (again.status, again.replayed, &again.body),
        (StatusCode::ACCEPTED, true, &first.body)
    );
    assert_eq!(a.s.sim.ledger().len(), 1, "no second Oen transaction");
    let (status, pending) = a.call("GET", &status_url, None).await;
    assert_eq!(
        (status, &pending["status"]),
        (StatusCode::OK, &json!("pending"))
    );

    // Oen settles its transaction; the charger's janitor reconciles the charge when due.
    a.s.sim.settle_pending();
    a.s.advance(Duration::minutes(5));
    let outcomes = a.s.run().await;
    assert!(
        matches!(
            outcomes.as_slice(),
            [WorkOutcome::Paid { charged: false, .. }]
        ),
        "{outcomes:?}"
    );
    let (status, view) = a.call("GET", &status_url, None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "succeeded");
    let paid = a.s.sim.ledger_for_order(view["orderId"].as_str().unwrap());
    assert_eq!(paid.len(), 1, "reconciled without a second charge");
    assert_eq!(paid[0].status, Status::Charged);
    assert_eq!(view["transaction"], paid[0].id.as_str());
    // The key keeps its first reply.
    let later = a.charge(KEY, charge_body("cust-c026", 300)).await;
    assert_eq!(
        (later.status, later.replayed, &later.body),
        (StatusCode::ACCEPTED, true, &first.body)
    );
    assert_eq!(a.s.sim.ledger().len(), 1);
}

#[tokio::test]
async fn a_charge_without_an_idempotency_key_is_400_and_charges_nothing() {
    let a = api().await;
    with_card(&a, "cust-nokey", cards::SUCCESS).await;
    let missing = a
        .answer(&charge_event(None, charge_body("cust-nokey", 300)), None)
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
    assert_eq!(missing.body["error"]["code"], "invalid_request");
    let message = missing.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Idempotency-Key header is required"),
        "{message}"
    );
    for key in ["short", "has spaces in it"] {
        let bad = a.charge(key, charge_body("cust-nokey", 300)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{key}: {}", bad.body);
        assert_eq!(bad.body["error"]["code"], "invalid_request");
        let message = bad.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("idempotency key"), "{message}");
        assert!(!message.contains(key), "the key is not echoed: {message}");
    }
    // A bad body with a good key: 400 too, and the key is not used up.
    let mut body = charge_body("cust-nokey", 300);
    body["amount"] = json!(301);
    let bad = a.charge(KEY, body).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert_eq!(bad.body["error"]["code"], "invalid_request");
    let mut huge = charge_body("cust-nokey", 300);
    huge["description"] = json!("x".repeat(merchant_api::MAX_BODY));
    let too_large = a.charge(KEY, huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.body["error"]["code"], "too_large");
    assert!(a.s.sim.ledger().is_empty());
    let good = a.charge(KEY, charge_body("cust-nokey", 300)).await;
    assert_eq!((good.status, good.replayed), (StatusCode::CREATED, false));
    assert_eq!(a.s.sim.ledger().len(), 1);
}

#[tokio::test]
async fn an_unknown_charge_is_404_and_a_customer_without_a_card_too() {
    let a = api().await;
    let (status, body) = a
        .call("GET", "/v1/charges/AbCdEfGhIjKlMnOpQrSt", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "charge_not_found");
    let none = a.charge(KEY, charge_body("cust-cardless", 300)).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{}", none.body);
    assert_eq!(none.body["error"]["code"], "no_saved_card");
    assert!(a.s.sim.ledger().is_empty());
}

#[tokio::test]
async fn a_one_off_charge_is_refunded_once_even_when_oens_answer_is_lost() {
    let a = api().await;
    with_card(&a, "cust-fee", cards::SUCCESS).await;
    with_card(&a, "cust-fee2", cards::SUCCESS).await;
    let fee = a.charge(KEY, charge_body("cust-fee", 300)).await;
    let other = a
        .charge("second-key-0002", charge_body("cust-fee2", 200))
        .await;
    assert_eq!(
        (fee.status, other.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    let id = fee.body["id"].as_str().unwrap();
    let order = fee.body["orderId"].as_str().unwrap();
    let path = format!("/v1/charges/{id}/refund");
    // More than was charged: refused before Oen.
    let answer = a.call("POST", &path, Some(json!({"amount": 301}))).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "more than",
    );
    // Oen refunds, then its answer times out: the transaction is read back, not sent again.
    let transaction = a.s.sim.ledger_for_order(order)[0].id.clone();
    a.s.sim.force_next(
        ForceTarget::Refund(transaction.clone()),
        ForcedOutcome::GatewayTimeoutAfterCommit,
    );
    let (status, body) = a
        .call(
            "POST",
            &path,
            Some(json!({"amount": 120, "reason": "waived"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            &body["orderId"],
            &body["transaction"],
            &body["refunded"],
            &body["charged"],
            &body["replayed"]
        ),
        (
            &json!(order),
            &json!(transaction),
            &json!(120),
            &json!(300),
            &json!(false)
        )
    );
    // Repeated, by the order id this time: the recorded refund, nothing sent.
    let (status, again) = a
        .call(
            "POST",
            &format!("/v1/charges/{order}/refund"),
            Some(json!({"amount": 120})),
        )
        .await;
    assert_eq!(
        (status, &again["replayed"]),
        (StatusCode::OK, &json!(true)),
        "{again}"
    );
    let answer = a.call("POST", &path, Some(json!({}))).await;
    assert_error(
        &answer,
        StatusCode::CONFLICT,
        "conflict",
        "refunded NT$120 already",
    );
    // The charge shows it; Oen holds one refund of NT$120; the other charge is untouched.
    let (_, view) = a.call("GET", &format!("/v1/charges/{id}"), None).await;
    assert_eq!(
        (&view["status"], &view["refunded"]),
        (&json!("succeeded"), &json!(120))
    );
    let refunds: Vec<(String, i64)> =
        a.s.sim
            .ledger()
            .into_iter()
            .map(|e| (e.order_id, e.refund_amount))
            .collect();
    let other_order = other.body["orderId"].as_str().unwrap().to_owned();
    let mut want = vec![(order.to_owned(), 120), (other_order, 0)];
    want.sort();
    let mut refunds = refunds;
    refunds.sort();
    assert_eq!(refunds, want);
    // Announced once, naming the charge; audited under the caller.
    let refunded: Vec<_> =
        a.s.events
            .all()
            .into_iter()
            .filter(|e| e.kind == "payment.refunded")
            .collect();
    assert_eq!(refunded.len(), 1, "{refunded:?}");
    assert_eq!(
        (
            &refunded[0].data["charge"],
            &refunded[0].data["orderId"],
            &refunded[0].data["amount"]
        ),
        (&json!(id), &json!(order), &json!(120))
    );
    assert_eq!(audited(&a.s, CALLER).await, ["refund"]);
    // A charge that is not paid cannot be refunded.
    with_card(&a, "cust-declined", cards::DECLINE_T0004_INSUFFICIENT_FUNDS).await;
    let declined = a
        .charge("third-key-0003", charge_body("cust-declined", 100))
        .await;
    assert_eq!(
        declined.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        declined.body
    );
    let declined_id = declined.body["error"]["charge"]["id"].as_str().unwrap();
    let answer = a
        .call(
            "POST",
            &format!("/v1/charges/{declined_id}/refund"),
            Some(json!({})),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "is not paid");
}

impl Api {
    fn sqs(&self) -> &aws_sdk_sqs::Client {
        self.sqs.as_ref().expect("an Api on moto's SQS")
    }

    async fn send(&self, queue: &str, body: &str, attributes: &[(&str, &str, &str)]) {
        let mut request = self
            .sqs()
            .send_message()
            .queue_url(queue)
            .message_body(body);
        for (name, kind, value) in attributes {
            request = request.message_attributes(
                *name,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type(*kind)
                    .string_value(*value)
                    .build()
                    .unwrap(),
            );
        }
        request.send().await.unwrap();
    }

    /// Everything on the charge queue (received and deleted, as Lambda's poller does).
    async fn take_charge_queue(&self) -> Vec<WorkMessage> {
        harness::take_all(self.sqs(), &self.queues.charge)
            .await
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn a_dead_charge_message_is_listed_redriven_and_charges_once_though_it_was_there_twice() {
    let a = api().await;
    a.s.bind("cust-dlq", "premium", cards::SUCCESS).await;
    let message = json!({"kind": "charge", "customer": "cust-dlq", "plan": "premium"}).to_string();
    // The same message twice: a redrive whose delete was lost sends it again.
    a.send(&a.queues.charge_dead, &message, &[]).await;
    a.send(&a.queues.charge_dead, &message, &[]).await;
    a.send(&a.queues.charge_dead, "not json", &[]).await;

    let (status, listed) = a.call("GET", "/v1/dead-letters/charge", None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["queue"], "charge");
    assert_eq!(listed["approximateMessages"], 3, "{listed}");
    let mut plans: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["redrive"].as_str().unwrap())
        .collect();
    plans.sort();
    assert_eq!(
        plans,
        [
            "charge the due period of cust-dlq / premium",
            "charge the due period of cust-dlq / premium",
            "kept: not a charge queue message (expected ident at line 1 column 2)",
        ]
    );
    // Looking moved nothing and hid nothing.
    let (_, again) = a
        .call("GET", "/v1/dead-letters/charge?limit=10", None)
        .await;
    assert_eq!(again["messages"].as_array().unwrap().len(), 3, "{again}");
    assert!(a.take_charge_queue().await.is_empty());

    // What a caller can get wrong.
    assert_error(
        &a.call("GET", "/v1/dead-letters/charges", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "\"charge\" and \"schedule\"",
    );
    assert_error(
        &a.call("GET", "/v1/dead-letters/charge?limit=11", None)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "limit must be a whole number from 0 to 10",
    );
    assert_error(
        &a.call(
            "POST",
            "/v1/dead-letters/charge/redrive",
            Some(json!({"max": 0})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "max 0 is out of range",
    );
    assert_error(
        &a.call(
            "POST",
            "/v1/dead-letters/charge/redrive",
            Some(json!({"limit": 5})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "unknown field `limit`",
    );
    assert!(
        a.take_charge_queue().await.is_empty(),
        "a refused redrive moved nothing"
    );

    let (status, done) = a
        .call("POST", "/v1/dead-letters/charge/redrive", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["moved"], 2, "{done}");
    assert_eq!(done["kept"].as_array().unwrap().len(), 1, "{done}");
    assert!(done["kept"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not a charge queue message"));
    assert_eq!(
        done["remaining"], 1,
        "the kept message is still there: {done}"
    );

    // The charger works both copies: one charge at Oen.
    let work = a.take_charge_queue().await;
    assert_eq!(work.len(), 2);
    let mut outcomes = Vec::new();
    for m in &work {
        outcomes.push(
            oen_pay::charging::handle(&a.s.deps, m, &oen_pay_integration::stack::worker("w"))
                .await
                .unwrap(),
        );
    }
    assert!(
        matches!(
            outcomes.as_slice(),
            [
                WorkOutcome::Paid { charged: true, .. },
                WorkOutcome::Skipped(_)
            ]
        ),
        "{outcomes:?}"
    );
    assert_eq!(a.s.sim.ledger().len(), 1);
    a.s.assert_ledger_agrees(&[("cust-dlq", "premium")]).await;
}

#[tokio::test]
async fn a_missed_scheduled_run_and_reconciliation_are_redriven_as_the_work_they_would_have_done() {
    let a = api().await;
    a.s.bind("cust-missed", "premium", cards::SUCCESS).await;
    let now = a.s.clock.now();
    // As Scheduler leaves them: the schedule's input, its error in the message attributes.
    let failed = [
        (
            "ERROR_CODE",
            "String",
            "AWS.Lambda.TooManyRequestsException",
        ),
        ("ERROR_MESSAGE", "String", "Rate Exceeded."),
        ("RETRY_ATTEMPTS", "Number", "5"),
    ];
    a.send(
        &a.queues.schedule_dead,
        &json!({"scheduledTime": now.to_rfc3339()}).to_string(),
        &failed,
    )
    .await;
    a.send(
        &a.queues.schedule_dead,
        &json!({"job": "reconcile", "scheduledTime": now.to_rfc3339()}).to_string(),
        &failed,
    )
    .await;

    let (status, listed) = a.call("GET", "/v1/dead-letters/schedule", None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["approximateMessages"], 2, "{listed}");
    let day = oen_pay::reconcile::previous_taipei_day(now);
    for m in listed["messages"].as_array().unwrap() {
        assert_eq!(
            m["attributes"]["ERROR_CODE"], "AWS.Lambda.TooManyRequestsException",
            "{m}"
        );
        assert_eq!(m["attributes"]["RETRY_ATTEMPTS"], "5", "{m}");
        let redrive = m["redrive"].as_str().unwrap();
        assert!(
            redrive == format!("reconcile the Taipei day {day}")
                || redrive.starts_with("plan every shard as of "),
            "{redrive}"
        );
    }

    let (status, done) = a
        .call(
            "POST",
            "/v1/dead-letters/schedule/redrive",
            Some(json!({"max": 100})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        (&done["moved"], &done["remaining"]),
        (&json!(2), &json!(0)),
        "{done}"
    );

    let work = a.take_charge_queue().await;
    let plans = work
        .iter()
        .filter(|m| matches!(m, WorkMessage::Plan { now: at, cursor: None, .. } if *at == now))
        .count();
    assert_eq!(plans, usize::from(oen_pay::store::DUE_SHARDS), "{work:?}");
    assert!(work.contains(&WorkMessage::Reconcile {
        date: day,
        rerun: false
    }));
    assert_eq!(work.len(), plans + 1);
    // The charger works them: the planning finds the customer due, and the day is reconciled.
    let ctx = oen_pay_integration::stack::worker("w");
    for m in &work {
        let outcome = oen_pay::charging::handle(&a.s.deps, m, &ctx).await.unwrap();
        if let WorkMessage::Reconcile { .. } = m {
            assert_eq!(outcome, WorkOutcome::Reconciled { date: day });
        }
    }
    let charged = a.s.drain().await;
    assert!(
        matches!(
            charged.as_slice(),
            [WorkOutcome::Paid { charged: true, .. }]
        ),
        "{charged:?}"
    );
    a.s.assert_ledger_agrees(&[("cust-missed", "premium")])
        .await;
    let (status, report) = a
        .call("GET", &format!("/v1/reconciliation/{day}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["complete"], true, "{report}");
}

#[tokio::test]
async fn a_paid_period_of_a_subscription_replaced_after_a_cancel_is_still_refunded() {
    let a = api().await;
    let old = a.paid("cust-back").await;
    let order = a.order(&old, 0);
    // Canceled, then the customer binds a card again: a new subscription under a new id
    // takes the old one's place, and the old id leads nowhere.
    let (status, canceled) = a
        .call(
            "POST",
            &format!("/v1/subscriptions/{old}/cancel"),
            Some(json!({"at": "now"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    a.s.bind("cust-back", "premium", cards::SUCCESS).await;
    let new = a.s.sub("cust-back", "premium").await.id.to_string();
    assert_ne!(new, old);
    assert_error(
        &a.call("GET", &format!("/v1/subscriptions/{old}"), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        &old,
    );

    // Its paid period is still refunded, at Oen and in our records, and reported with the
    // customer it charged.
    let path = format!("/v1/periods/{order}/refund");
    let (status, refunded) = a
        .call(
            "POST",
            &path,
            Some(json!({"amount": 200, "reason": "came back"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refunded}");
    assert_eq!(
        (
            &refunded["refunded"],
            &refunded["charged"],
            &refunded["replayed"]
        ),
        (&json!(200), &json!(500), &json!(false))
    );
    let at_oen = a.s.sim.ledger_for_order(&order);
    assert_eq!(at_oen.len(), 1);
    assert_eq!(
        (at_oen[0].status, at_oen[0].refund_amount),
        (Status::Refunded, 200)
    );
    let events: Vec<_> =
        a.s.events
            .all()
            .into_iter()
            .filter(|e| e.kind == "payment.refunded")
            .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].customer.as_str(), "cust-back");
    let (status, again) = a
        .call(
            "POST",
            &path,
            Some(json!({"amount": 200, "reason": "came back"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (&again["refunded"], &again["replayed"]),
        (&json!(200), &json!(true))
    );
    assert_eq!(a.s.sim.ledger_for_order(&order)[0].refund_amount, 200);
    // An order id of neither subscription is still no period at all.
    let stranger = format!("{}P000001", &new);
    assert_error(
        &a.call(
            "POST",
            &format!("/v1/periods/{stranger}/refund"),
            Some(json!({})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        "no period with order id",
    );
}
