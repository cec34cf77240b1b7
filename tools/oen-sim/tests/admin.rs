//! The admin HTTP API under /_sim and the command-line binary.

mod common;

use common::*;
use oen_sim::cards;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// `POST /_sim/force` with this body.
async fn force(sim: &oen_sim::Simulator, body: Value) -> Reply {
    admin(sim, "POST", "/force", Some(body)).await
}

async fn admin(sim: &oen_sim::Simulator, method: &str, path: &str, body: Option<Value>) -> Reply {
    let url = format!("{}/_sim{path}", sim.base_url());
    let req = match method {
        "GET" => client().get(url),
        "PUT" => client().put(url),
        "DELETE" => client().delete(url),
        _ => client().post(url),
    };
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&b).unwrap()),
        None => req,
    };
    reply(req.send().await.unwrap()).await
}

#[tokio::test]
async fn admin_creates_tokens_for_a_card_and_lists_the_ledger() {
    let sim = start_sim(None).await;

    let t = admin(
        &sim,
        "POST",
        "/tokens",
        Some(json!({"cardNumber": cards::DECLINE_T0004_INSUFFICIENT_FUNDS})),
    )
    .await;
    let token = t.json["token"].as_str().unwrap().to_string();
    let bad = admin(&sim, "POST", "/tokens", Some(json!({"cardNumber": "12"}))).await;
    charge(&sim, &token, "o1", 300).await;
    let ledger = admin(&sim, "GET", "/ledger", None).await;

    assert_eq!(t.json["paymentInfo"], "0004");
    assert_eq!(bad.status, 400);
    let entry = &ledger.json["transactions"][0];
    assert_eq!(entry["orderId"], "o1");
    assert_eq!(entry["amount"], 300);
    assert_eq!(entry["status"], "failed");
    assert_eq!(entry["token"], token.as_str());
    assert_eq!(entry["refundAmount"], 0);
}

#[tokio::test]
async fn admin_moves_the_clock() {
    let sim = start_sim(None).await;

    admin(
        &sim,
        "POST",
        "/clock",
        Some(json!({"frozen": true, "set": "2026-09-28T02:40:25.502Z"})),
    )
    .await;
    let advanced = admin(&sim, "POST", "/clock", Some(json!({"advanceMs": 600000}))).await;
    let read = admin(&sim, "GET", "/clock", None).await;

    assert_eq!(advanced.json["now"], "2026-09-28T02:50:25.502Z");
    assert_eq!(
        read.json,
        json!({"now": "2026-09-28T02:50:25.502Z", "frozen": true})
    );
    let token = sim.create_token(cards::SUCCESS);
    let id = charge(&sim, &token, "o", 100).await.data()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("P20260928"), "{id}");
    let tx = get(&sim, &format!("/transactions/{id}")).await;
    assert_eq!(tx.data()["createdAt"], "2026-09-28T02:50:25.502Z");
}

#[tokio::test]
async fn admin_knobs_merge_partial_objects_and_reject_unknown_ones() {
    let sim = start_sim(None).await;

    let merged = admin(
        &sim,
        "POST",
        "/knobs",
        Some(json!({"latencyMs": 5, "webhookNullMessage": true})),
    )
    .await;
    let unknown = admin(&sim, "POST", "/knobs", Some(json!({"noSuchKnob": 1}))).await;
    let read = admin(&sim, "GET", "/knobs", None).await;

    assert_eq!(merged.json["latencyMs"], 5);
    assert_eq!(read.json["webhookNullMessage"], true);
    assert_eq!(
        read.json["webhookTimeoutMs"],
        json!(2000),
        "other knobs untouched"
    );
    assert_eq!(unknown.status, 400);
    assert_eq!(sim.knobs().latency_ms, 5);
    let reset = admin(&sim, "POST", "/knobs/reset", None).await;
    assert_eq!(reset.json["latencyMs"], 0);
}

#[tokio::test]
async fn admin_listing_delay_knob_hides_young_transactions() {
    let sim = start_frozen_sim().await;
    let token = sim.create_token(cards::SUCCESS);

    let set = admin(
        &sim,
        "POST",
        "/knobs",
        Some(json!({"listingDelayMs": 30000})),
    )
    .await;
    charge(&sim, &token, "o", 100).await;
    let hidden = get(&sim, "/order/o/transactions").await;
    admin(&sim, "POST", "/clock", Some(json!({"advanceMs": 30000}))).await;
    let shown = get(&sim, "/order/o/transactions").await;

    assert_eq!(set.json["listingDelayMs"], 30000);
    assert_eq!(hidden.data()["transactions"], json!([]));
    assert_eq!(shown.data()["transactions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn admin_sets_the_auth_code_knob() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);

    let absent = admin(&sim, "POST", "/knobs", Some(json!({"authCode": "absent"}))).await;
    let bare = charge(&sim, &token, "o", 100).await;
    let random = admin(
        &sim,
        "POST",
        "/knobs",
        Some(json!({"authCode": {"random": {"seed": 7}}})),
    )
    .await;
    let nonsense = admin(
        &sim,
        "POST",
        "/knobs",
        Some(json!({"authCode": "sometimes"})),
    )
    .await;

    assert_eq!(absent.json["authCode"], "absent");
    assert!(bare.data().get("authCode").is_none(), "{}", bare.text);
    assert_eq!(random.json["authCode"], json!({"random": {"seed": 7}}));
    assert_eq!(nonsense.status, 400);
    assert_eq!(
        sim.knobs().auth_code,
        oen_sim::AuthCodeMode::Random { seed: 7 }
    );
}

#[tokio::test]
async fn admin_forces_responses() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);

    let f = force(
        &sim,
        json!({"target": {"token": token}, "outcome": {"kind": "respond", "code": "A0001", "httpStatus": 401}}),
    )
    .await;
    let forced = charge(&sim, &token, "o", 100).await;
    force(
        &sim,
        json!({"target": {"orderId": "moved"}, "outcome": {"kind": "systemErrorAfterCommit"}}),
    )
    .await;
    let moved = charge(&sim, &token, "moved", 100).await;
    force(&sim, json!({"target": "anyCharge", "outcome": {"kind": "unknown", "settles": "charged"}, "times": 3})).await;
    admin(&sim, "DELETE", "/force", None).await;
    let normal = charge(&sim, &token, "o", 100).await;

    assert_eq!(f.status, 200);
    assert_eq!((forced.status, forced.code()), (401, "A0001"));
    assert_eq!((moved.status, moved.code()), (500, "F0001"));
    assert_eq!(
        sim.ledger_for_order("moved")[0].status,
        oen_sim::Status::Charged
    );
    assert_eq!(normal.code(), "S0000", "cleared forces no longer apply");
}

#[tokio::test]
async fn admin_forces_refund_outcomes_by_transaction_or_for_any_refund() {
    let (sim, numbers) = start_sim_with_paid(&[100, 100]).await;
    let (first, second) = (&numbers[0], &numbers[1]);

    let by_number = force(
        &sim,
        json!({"target": {"refund": first}, "outcome": {"kind": "respond", "code": "R0001", "httpStatus": 400}}),
    )
    .await;
    let any = force(
        &sim,
        json!({"target": "anyRefund", "outcome": {"kind": "gatewayTimeoutAfterCommit"}}),
    )
    .await;
    let refused = refund(&sim, first, None).await;
    let timed_out = refund(&sim, second, None).await;

    assert_eq!((by_number.status, any.status), (200, 200));
    assert_eq!((refused.status, refused.code()), (400, "R0001"));
    assert_eq!(timed_out.status, 504);
    let ledger = admin(&sim, "GET", "/ledger", None).await;
    assert_eq!(ledger.json["transactions"][0]["status"], "charged");
    assert_eq!(ledger.json["transactions"][1]["status"], "refunded");
}

#[tokio::test]
async fn admin_lists_redelivers_and_releases_webhooks_and_sets_the_url() {
    let receiver = Receiver::start().await;
    let sim = start_sim(None).await;

    admin(
        &sim,
        "PUT",
        "/webhook-url",
        Some(json!({"url": receiver.url})),
    )
    .await;
    admin(&sim, "POST", "/knobs", Some(json!({"webhookHoldNext": 1}))).await;
    let id = checkout_token(&sim, Some("https://shop.example/ok"), None, "c").await;
    submit_card(&sim.hosted_page_url(&id), "a@b.example", cards::SUCCESS).await;
    let released = admin(&sim, "POST", "/webhooks/release", None).await;
    receiver.wait_for(1).await;
    sim.wait_for_webhooks(1, DEADLINE).await.unwrap();
    let again = admin(&sim, "POST", "/webhooks/1/redeliver", None).await;
    let missing = admin(&sim, "POST", "/webhooks/42/redeliver", None).await;
    receiver.wait_for(2).await;
    sim.wait_for_webhooks(2, DEADLINE).await.unwrap();
    let list = admin(&sim, "GET", "/webhooks", None).await;

    assert_eq!(released.json["released"], 1);
    assert_eq!(again.json["deliveryId"], 2);
    assert_eq!(missing.status, 404);
    let deliveries = list.json["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["state"], "delivered");
    assert_eq!(
        deliveries[0]["attempts"][0]["outcome"],
        json!({"kind": "status", "code": 200})
    );
    assert_eq!(deliveries[1]["redeliveryOf"], 1);
    assert_eq!(deliveries[0]["payload"]["id"], id.as_str());
}

#[tokio::test]
async fn admin_reset_forgets_everything() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    charge(&sim, &token, "o", 100).await;
    sim.set_latency(std::time::Duration::from_millis(1));

    let r = admin(&sim, "POST", "/reset", None).await;

    assert_eq!(r.status, 200);
    assert!(sim.ledger().is_empty());
    assert_eq!(sim.knobs().latency_ms, 0);
    let after = charge(&sim, &token, "o", 100).await;
    assert_eq!(after.code(), "V0001", "tokens are forgotten too");
}

#[tokio::test]
async fn admin_api_needs_no_bearer_token_but_the_oen_api_does() {
    let sim = start_sim(None).await;
    let health = reply(
        client()
            .get(format!("{}/_sim/health", sim.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let config = admin(&sim, "GET", "/config", None).await;
    assert_eq!(health.json, json!({"ok": true}));
    assert_eq!(config.json["merchantId"], "ming");
    assert_eq!(config.json["productionMode"], false);
}

/// Kills the child on drop so a failing assertion leaves no process behind.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_its_address_serves_the_api_and_logs_json_without_secrets() {
    let child = Command::new(env!("CARGO_BIN_EXE_oen-sim"))
        .args([
            "--port",
            "0",
            "--merchant-id",
            "shop",
            "--api-token",
            "secret-api-token",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("oen-sim listening on ")
        .unwrap()
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let token = reply(
        client()
            .post(format!("{base}/_sim/tokens"))
            .header("content-type", "application/json")
            .body(r#"{"cardNumber":"4242424242424242"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await
    .json["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = charge_body(&token, "cli-order", 100);
    body["merchantId"] = json!("shop");
    let charged = reply(
        client()
            .post(format!("{base}/token/transactions"))
            .bearer_auth("secret-api-token")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(charged.code(), "S0000");

    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut logs = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let request_line: Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["path"] == "/token/transactions")
        .unwrap_or_else(|| panic!("no JSON request log line in:\n{logs}"));
    assert_eq!(request_line["fields"]["method"], "POST");
    assert_eq!(request_line["fields"]["status"], 200);
    assert!(request_line["fields"]["latency_ms"].is_u64());
    assert!(
        !logs.contains("secret-api-token"),
        "the API token leaked into the logs"
    );
    assert!(!logs.contains(&token), "a card token leaked into the logs");
}

#[test]
fn binary_help_documents_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_oen-sim"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--port",
        "--host",
        "--merchant-id",
        "--api-token",
        "--webhook-url",
        "--production",
        "--allow-ip",
        "--latency-ms",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}
