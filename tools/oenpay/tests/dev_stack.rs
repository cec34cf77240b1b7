//! Every `oenpay` subcommand run as a process against the local dev stack (the merchant API's
//! routes and code, unauthenticated on loopback), with the simulator as Oen: a customer is sent
//! a link the CLI minted, binds a card on the simulator's page, is charged by the dev stack's
//! charger, and the operator looks, refunds, cancels and resumes — checked against the
//! simulator's ledger, not only against what the CLI prints.

use std::process::{Command, Output};

use oen_dev::{DevStack, Options};
use oen_pay::domain::OrderId;
use oen_sim::cards;
use reqwest::{Client, StatusCode};
use serde_json::Value;

async fn stack() -> DevStack {
    oen_dev::start(Options {
        port: 0,
        ..Options::default()
    })
    .await
    .expect("the dev stack starts on a free port")
}

/// `oenpay --endpoint <stack> args…`, run off the async runtime.
async fn oenpay(stack: &DevStack, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oenpay"));
    command
        .arg("--endpoint")
        .arg(stack.url())
        .args(args)
        .env_remove("OENPAY_ENDPOINT")
        .env_remove("OENPAY_STACK");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed; its stdout.
async fn ok(stack: &DevStack, args: &[&str]) -> String {
    let o = oenpay(stack, args).await;
    assert!(
        o.status.success(),
        "oenpay {args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

async fn json(stack: &DevStack, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(stack, &all).await).unwrap()
}

fn browser() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The customer opens the link and submits `card` on the simulator's page.
async fn bind(link: &str, card: &str) {
    let browser = browser();
    let opened = browser.get(link).send().await.unwrap();
    assert_eq!(opened.status(), StatusCode::FOUND, "{link}");
    let hosted = opened.headers()["location"].to_str().unwrap().to_owned();
    let submitted = browser
        .post(&hosted)
        .form(&[("email", "mei@example.com"), ("cardNumber", card)])
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), StatusCode::SEE_OTHER);
}

async fn run_charger(stack: &DevStack) {
    let r = browser()
        .post(format!("{}/demo/charge", stack.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// `customers show`, in JSON, once the webhook has made the subscription.
async fn customer_with_subscription(stack: &DevStack, customer: &str) -> Value {
    for _ in 0..300 {
        let c = json(stack, &["customers", "show", customer]).await;
        if c["subscriptions"].as_array().is_some_and(|s| !s.is_empty()) {
            return c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{customer} never got a subscription");
}

#[tokio::test]
async fn an_operator_runs_every_subcommand_against_the_dev_stack() {
    let stack = stack().await;
    let sim = stack.sim().expect("the simulator plays Oen by default");

    // A link for a new customer, opened in a browser.
    let out = ok(
        &stack,
        &[
            "link",
            "--customer",
            "mei",
            "--plan",
            "premium",
            "--ttl",
            "600",
            "--email",
            "mei@example.com",
        ],
    )
    .await;
    let link = out.lines().next().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("{}/checkout/start?", stack.url())) && link.contains("&sig="),
        "{out}"
    );
    assert!(out.contains("for mei on premium"), "{out}");
    bind(&link, cards::SUCCESS).await;
    let c = customer_with_subscription(&stack, "mei").await;
    let sub = c["subscriptions"][0]["id"].as_str().unwrap().to_owned();

    // Charged by the charger; the human view shows the card and the paid period.
    run_charger(&stack).await;
    assert_eq!(sim.ledger().len(), 1);
    let shown = ok(&stack, &["customers", "show", "mei"]).await;
    let order = format!("{sub}P000000");
    for want in [
        "•••• 4242",
        "premium",
        "active",
        order.as_str(),
        "paid",
        "NT$500",
    ] {
        assert!(shown.contains(want), "{want} missing from:\n{shown}");
    }
    assert!(
        !shown.contains("null") && !shown.to_lowercase().contains("token"),
        "{shown}"
    );
    let one = ok(&stack, &["subscriptions", "show", &sub]).await;
    assert!(
        one.contains(&sub) && one.contains("active") && one.contains(&order),
        "{one}"
    );

    // A partial refund, then its repeat (a lost answer): Oen is asked once.
    let refunded = ok(
        &stack,
        &["refund", &order, "--amount", "100", "--reason", "goodwill"],
    )
    .await;
    assert!(refunded.contains("Refunded NT$100 of NT$500"), "{refunded}");
    let again = ok(&stack, &["refund", &order, "--amount", "100"]).await;
    assert!(again.contains("nothing was sent to Oen again"), "{again}");
    let refunds: Vec<i64> = sim
        .ledger_for_order(&order)
        .iter()
        .map(|e| e.refund_amount)
        .collect();
    assert_eq!(refunds, vec![100], "one refund of NT$100 at Oen");
    // Another refund of the same transaction is refused, with what to do next.
    let refused = oenpay(&stack, &["refund", &order]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("HTTP 409"),
        "{}",
        stderr(&refused)
    );

    // A one-off charge with a key: repeated, it answers the first charge; the key with other
    // parameters is refused; without a key, one is made and printed first.
    let args = [
        "charge",
        "--customer",
        "mei",
        "--amount",
        "120",
        "--description",
        "Late fee",
        "--idempotency-key",
        "oenpay-test-key-0001",
    ];
    let first = json(&stack, &args).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let again = json(&stack, &args).await;
    assert_eq!(
        again["id"], first["id"],
        "the same key answers the same charge"
    );
    let one_offs = |sim: &oen_sim::Simulator| {
        sim.ledger()
            .into_iter()
            .filter(|e| OrderId::parse(&e.order_id).is_ok_and(|o| o.is_one_off()))
            .count()
    };
    assert_eq!(one_offs(sim), 1);
    let mut other = args;
    other[4] = "130";
    let reused = oenpay(&stack, &other).await;
    assert_eq!(reused.status.code(), Some(1), "{}", stderr(&reused));
    assert!(
        stderr(&reused).contains("idempotency_key_reused")
            && stderr(&reused).contains("new --idempotency-key"),
        "{}",
        stderr(&reused)
    );
    assert_eq!(one_offs(sim), 1);
    let id = first["id"].as_str().unwrap();
    let shown = ok(&stack, &["charges", "show", id]).await;
    assert!(
        shown.contains("succeeded") && shown.contains("The card was charged."),
        "{shown}"
    );
    // The one-off charge refunded in part by its id, then again by its order id: one refund.
    let refunded = ok(&stack, &["refund", id, "--amount", "20"]).await;
    assert!(refunded.contains("Refunded NT$20 of NT$120"), "{refunded}");
    let order = first["orderId"].as_str().unwrap();
    let again = ok(&stack, &["refund", order, "--amount", "20"]).await;
    assert!(again.contains("nothing was sent to Oen again"), "{again}");
    let refunds: Vec<i64> = sim
        .ledger_for_order(order)
        .iter()
        .map(|e| e.refund_amount)
        .collect();
    assert_eq!(refunds, vec![20], "one refund of NT$20 at Oen");
    let shown = ok(&stack, &["charges", "show", id]).await;
    assert!(shown.contains("refunded:     NT$20"), "{shown}");
    let keyless = oenpay(
        &stack,
        &[
            "charge",
            "--customer",
            "mei",
            "--amount",
            "50",
            "--description",
            "Add-on",
        ],
    )
    .await;
    assert!(keyless.status.success(), "{}", stderr(&keyless));
    assert!(
        stderr(&keyless).contains("Idempotency-Key oenpay-"),
        "{}",
        stderr(&keyless)
    );
    assert_eq!(one_offs(sim), 2);

    // The dry run: nothing is due right after the charge; a month later, the renewal is.
    let charged = sim.ledger().len();
    let nothing = ok(&stack, &["charge-due", "--dry-run"]).await;
    assert!(nothing.contains("Nothing is due"), "{nothing}");
    let skipped = browser()
        .post(format!("{}/demo/skip", stack.url()))
        .form(&[("days", "31")])
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.status(), StatusCode::SEE_OTHER);
    let due = json(&stack, &["charge-due", "--dry-run"]).await;
    assert_eq!(due["counts"], serde_json::json!({"charge": 1}), "{due}");
    assert_eq!(due["amount"], 500);
    assert_eq!(due["entries"][0]["subscription"], sub.as_str());
    assert_eq!(due["entries"][0]["period"], 1);
    let table = ok(&stack, &["charge-due", "--dry-run"]).await;
    assert!(
        table.contains("1 charge; NT$500 would be asked of Oen. Nothing was charged."),
        "{table}"
    );
    assert_eq!(sim.ledger().len(), charged, "a dry run charges nothing");
    let refused = oenpay(&stack, &["charge-due"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("--dry-run"),
        "{}",
        stderr(&refused)
    );

    // Cancel at period end, resume, cancel now: each answered with the subscription.
    let at_end = json(
        &stack,
        &["subscriptions", "cancel", &sub, "--at", "period-end"],
    )
    .await;
    assert_eq!(at_end["cancelAtPeriodEnd"], true);
    assert_eq!(at_end["status"], "active");
    let resumed = json(&stack, &["subscriptions", "resume", &sub]).await;
    assert_eq!(resumed["cancelAtPeriodEnd"], false);
    let canceled = ok(&stack, &["subscriptions", "cancel", &sub, "--at", "now"]).await;
    assert!(canceled.contains("canceled"), "{canceled}");
    // Nothing is charged again.
    run_charger(&stack).await;
    assert_eq!(sim.ledger().len(), charged);

    // Errors: what went wrong, what to do, and an exit code by whose fault.
    let missing = oenpay(&stack, &["customers", "show", "nobody"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("not_found")
            && stderr(&missing).contains("oenpay customers show"),
        "{}",
        stderr(&missing)
    );
    let none = oenpay(&stack, &["reconcile", "--date", "2026-11-29"]).await;
    assert_eq!(none.status.code(), Some(1), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("no reconciliation report for 2026-11-29"),
        "{}",
        stderr(&none)
    );
    let bad = oenpay(&stack, &["subscriptions", "show", "not/an id"]).await;
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("HTTP 4"), "{}", stderr(&bad));
}

#[tokio::test]
async fn without_an_endpoint_or_with_plain_http_elsewhere_nothing_is_sent() {
    let bin = env!("CARGO_BIN_EXE_oenpay");
    let none = Command::new(bin)
        .args(["customers", "show", "mei"])
        .env_remove("OENPAY_ENDPOINT")
        .env_remove("OENPAY_STACK")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("--stack NAME") && stderr(&none).contains("--endpoint URL"),
        "{}",
        stderr(&none)
    );
    let remote = Command::new(bin)
        .args([
            "--endpoint",
            "http://pay.shop.example",
            "customers",
            "show",
            "mei",
        ])
        .env_remove("OENPAY_STACK")
        .output()
        .unwrap();
    assert_eq!(remote.status.code(), Some(2));
    assert!(stderr(&remote).contains("https"), "{}", stderr(&remote));
}

#[tokio::test]
async fn an_operator_lists_and_redrives_the_dead_letter_queues() {
    use oen_pay::deadletter::DeadLetterQueue;
    let stack = stack().await;
    let sim = stack.sim().expect("the simulator plays Oen by default");
    let out = ok(
        &stack,
        &[
            "link",
            "--customer",
            "lin",
            "--plan",
            "premium",
            "--ttl",
            "600",
        ],
    )
    .await;
    bind(out.lines().next().unwrap(), cards::SUCCESS).await;
    customer_with_subscription(&stack, "lin").await;

    // What the charge queue's redrive policy and Scheduler would have left there.
    let letters = &stack.adapters().dead_letters;
    let now = stack.adapters().now();
    letters.push(
        DeadLetterQueue::Charge,
        r#"{"kind":"charge","customer":"lin","plan":"premium"}"#,
        now,
        Default::default(),
    );
    letters.push(DeadLetterQueue::Charge, "garbage", now, Default::default());
    letters.push(
        DeadLetterQueue::Schedule,
        format!(r#"{{"scheduledTime":"{}"}}"#, now.to_rfc3339()),
        now,
        [(
            "ERROR_CODE".to_owned(),
            "AWS.Lambda.TooManyRequestsException".to_owned(),
        )]
        .into(),
    );

    let shown = ok(&stack, &["dlq", "list"]).await;
    for says in [
        "charge the due period of lin / premium",
        "kept: not a charge queue message",
        "plan every shard as of",
        "AWS.Lambda.TooManyRequestsException",
        "oenpay dlq redrive",
    ] {
        assert!(shown.contains(says), "{says:?} missing from:\n{shown}");
    }
    let listed = json(
        &stack,
        &["dlq", "list", "--queue", "charge", "--limit", "1"],
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["queue"], "charge");
    assert_eq!(listed[0]["approximateMessages"], 2);
    assert_eq!(listed[0]["messages"].as_array().unwrap().len(), 1);
    let refused = oenpay(&stack, &["dlq", "list", "--limit", "11"]).await;
    assert!(!refused.status.success());
    assert_eq!(sim.ledger().len(), 0, "looking charges nothing");

    let done = json(&stack, &["dlq", "redrive"]).await;
    assert_eq!(done[0]["queue"], "charge");
    assert_eq!(done[0]["moved"], 1, "{done}");
    assert_eq!(
        done[0]["kept"][0]["reason"]
            .as_str()
            .map(|r| r.starts_with("not a charge queue message")),
        Some(true),
        "{done}"
    );
    assert_eq!(done[0]["remaining"], 1, "{done}");
    assert_eq!(done[1]["queue"], "schedule");
    assert_eq!(done[1]["moved"], 1, "{done}");
    assert_eq!(done[1]["remaining"], 0, "{done}");
    assert_eq!(sim.ledger().len(), 0, "a redrive only queues the work");

    // The charger works the redriven charge and the missed run's planning: one charge.
    run_charger(&stack).await;
    assert_eq!(sim.ledger().len(), 1);
    run_charger(&stack).await;
    assert_eq!(sim.ledger().len(), 1);

    // Nothing left to move; the human view says what stayed and why.
    let again = ok(&stack, &["dlq", "redrive", "--queue", "schedule"]).await;
    assert!(again.contains("schedule"), "{again}");
    assert!(!again.contains("KEPT MESSAGE"), "{again}");
}
