//! A person clicking through the dev stack: the demo shop, checkout-start, the simulator's card
//! page, the webhook, the return page and the inspection page — all in-process, over loopback,
//! with a browser that follows no redirect by itself so every hop is checked.

use std::time::{Duration, Instant};

use oen_dev::{DevStack, OenSettings, OenTarget, Options};
use oen_pay::domain::OrderId;
use oen_pay::store::{Record, SessionState, SubscriptionStatus};
use oen_sim::cards;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

/// The dev stack's default: the simulator plays Oen.
const SIMULATOR: &str = "the simulator plays Oen by default";

async fn stack() -> DevStack {
    oen_dev::start(Options {
        port: 0,
        ..Options::default()
    })
    .await
    .expect("the dev stack starts on a free port")
}

fn browser() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("{} has no Location", r.url()))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn get_text(browser: &Client, url: &str) -> (StatusCode, String) {
    let r = browser.get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Shop form → signed link → checkout-start → simulator's card page → submit. Returns the
/// binding reference and where the simulator sent the browser back to.
async fn bind_through_the_demo(
    stack: &DevStack,
    browser: &Client,
    customer: &str,
    card: &str,
) -> (String, String) {
    let base = stack.url();
    let (status, home) = get_text(browser, &format!("{base}/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("action=\"/demo/start\""), "{home}");

    let started = browser
        .post(format!("{base}/demo/start"))
        .form(&[
            ("customer", customer),
            ("plan", "premium"),
            ("email", "mei@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let link = location(&started);
    assert!(
        link.starts_with(&format!("{base}/checkout/start?")) && link.contains("&sig="),
        "{link}"
    );

    let opened = browser.get(&link).send().await.unwrap();
    assert_eq!(
        opened.status(),
        StatusCode::FOUND,
        "checkout-start refused {link}"
    );
    let hosted = location(&opened);
    assert!(
        hosted.starts_with(&stack.sim().expect(SIMULATOR).hosted_base_url()),
        "{hosted}"
    );

    let (status, card_page) = get_text(browser, &hosted).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        card_page.contains("mei@example.com"),
        "the e-mail pre-fills Oen's page"
    );

    let submitted = browser
        .post(&hosted)
        .form(&[("email", "mei@example.com"), ("cardNumber", card)])
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), StatusCode::SEE_OTHER);
    let back = location(&submitted);
    assert!(
        back.starts_with(&format!("{base}/demo/return?ref=")),
        "{back}"
    );
    let reference = back
        .split("ref=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .unwrap()
        .to_owned();

    let (status, return_page) = get_text(browser, &back).await;
    assert_eq!(status, StatusCode::OK);
    assert!(return_page.contains(&reference), "{return_page}");
    (reference, back)
}

/// Polls the status route as the return page's script does, until the state is `want`.
async fn wait_for_status(stack: &DevStack, browser: &Client, reference: &str, want: &str) -> Value {
    let url = format!("{}/checkout/status?ref={reference}", stack.url());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get_text(browser, &url).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let s: Value = serde_json::from_str(&body).unwrap();
        if s["state"] == want {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "binding stayed {s}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_card_bound_through_the_demo_shows_on_the_state_page_without_its_token() {
    let stack = stack().await;
    let browser = browser();
    let (status, home) = get_text(&browser, &format!("{}/", stack.url())).await;
    assert_eq!(status, StatusCode::OK);
    for plan in ["premium", "yearly", "trial"] {
        assert!(
            home.contains(&format!("<option value=\"{plan}\"")),
            "{plan}"
        );
    }
    assert!(
        home.contains(cards::SUCCESS) && home.contains(cards::ABANDONED_3DS),
        "the page lists the simulator's test cards"
    );
    assert!(home.contains(&format!(
        "{}/_sim/ledger",
        stack.sim().expect(SIMULATOR).base_url()
    )));

    let (reference, _) =
        bind_through_the_demo(&stack, &browser, "cust-demo-1", cards::SUCCESS).await;
    let bound = wait_for_status(&stack, &browser, &reference, "bound").await;
    assert_eq!(bound["last4"], "4242");

    let deliveries = stack
        .sim()
        .expect(SIMULATOR)
        .wait_for_webhooks(1, Duration::from_secs(10))
        .await
        .unwrap();
    let token = deliveries[0].payload["token"]
        .as_str()
        .expect("the simulator delivered a token")
        .to_owned();
    assert_eq!(deliveries[0].attempts.last().unwrap().status(), Some(200));

    let (status, return_page) = get_text(
        &browser,
        &format!("{}/demo/return?ref={reference}", stack.url()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        return_page.contains("Card bound: •••• 4242"),
        "{return_page}"
    );

    let (status, state) = get_text(&browser, &format!("{}/demo/state", stack.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(state.contains(&reference), "the session is listed");
    assert!(
        state.contains("cust-demo-1") && state.contains("active"),
        "{state}"
    );
    assert!(
        state.contains("•••• 4242"),
        "the card shows its last 4 digits"
    );
    assert!(
        state.contains("card.bound"),
        "the audit entry and the event are listed"
    );
    assert!(state.contains("HTTP 200"), "the webhook delivery is listed");
    assert!(!state.contains(&token), "the state page shows the token");
    assert!(!return_page.contains(&token) && !bound.to_string().contains(&token));

    // What the pages show is what the store holds: one card, one active subscription.
    let records: Vec<Record> = stack
        .store()
        .snapshot()
        .into_iter()
        .map(|v| v.value)
        .collect();
    let cards: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Card(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0].last4.as_deref(), Some("4242"));
    assert!(records.iter().any(|r| matches!(r,
        Record::Subscription(s) if s.customer.as_str() == "cust-demo-1" && s.status == SubscriptionStatus::Active)));
    assert!(!format!("{records:?}").contains(&token));
    let events = stack.events().all();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, format!("card.bound:{reference}"));
}

#[tokio::test]
async fn an_abandoned_3ds_binding_ends_failed_with_oens_reason() {
    let stack = stack().await;
    let browser = browser();
    let (reference, back) =
        bind_through_the_demo(&stack, &browser, "cust-demo-2", cards::ABANDONED_3DS).await;
    assert!(back.contains("payment_error=T0001"), "{back}");
    let failed = wait_for_status(&stack, &browser, &reference, "failed").await;
    assert_eq!(failed["reason"], "3DS_ABANDONED");

    let (_, return_page) = get_text(&browser, &back).await;
    assert!(return_page.contains("payment_error=T0001"), "{return_page}");
    assert!(
        return_page.contains("Binding failed: 3DS_ABANDONED"),
        "{return_page}"
    );
    let (_, state) = get_text(&browser, &format!("{}/demo/state", stack.url())).await;
    assert!(state.contains("failed: 3DS_ABANDONED"), "{state}");

    let records: Vec<Record> = stack
        .store()
        .snapshot()
        .into_iter()
        .map(|v| v.value)
        .collect();
    assert!(records
        .iter()
        .all(|r| !matches!(r, Record::Card(_) | Record::Subscription(_))));
    assert!(records.iter().any(|r| matches!(r,
        Record::Session(s) if matches!(s.state, SessionState::Failed { .. }))));
    assert!(stack.events().all().is_empty());
}

#[tokio::test]
async fn bad_demo_input_is_refused_escaped_and_stores_nothing() {
    let stack = stack().await;
    let browser = browser();
    let base = stack.url();
    let post = |customer: &'static str, plan: &'static str| {
        browser
            .post(format!("{base}/demo/start"))
            .form(&[("customer", customer), ("plan", plan)])
            .send()
    };
    let r = post("<script>alert(1)</script>", "premium").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(body.contains("customer id"), "{body}");
    assert!(!body.contains("<script>"), "unescaped input: {body}");

    let r = post("cust-1", "gold").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("gold"));

    let r = browser
        .post(format!("{base}/demo/start"))
        .form(&[("plan", "premium")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let (status, _) = get_text(&browser, &format!("{base}/demo/return")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = get_text(
        &browser,
        &format!("{base}/demo/return?ref=%3Cb%3Ex%3C%2Fb%3E"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.contains("<b>x"), "{body}");
    let (status, _) = get_text(
        &browser,
        &format!("{base}/demo/return?ref=Ref0000000000000000001"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get_text(&browser, &format!("{base}/no/such/page")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("The demo starts at /"), "{body}");

    // An e-mail the start link cannot carry is refused by checkout-start itself.
    let r = browser
        .post(format!("{base}/demo/start"))
        .form(&[
            ("customer", "cust-1"),
            ("plan", "premium"),
            ("email", "not an address"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (status, body) = get_text(&browser, &location(&r)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("e-mail"), "{body}");

    assert!(stack.store().snapshot().is_empty());
    assert!(stack
        .sim()
        .expect(SIMULATOR)
        .webhook_deliveries()
        .is_empty());
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let stack = stack().await;
    let browser = browser();
    let url = format!("{}/", stack.url());
    assert_eq!(get_text(&browser, &url).await.0, StatusCode::OK);
    stack.shutdown().await;
    let fresh = Client::builder().build().unwrap();
    assert!(
        fresh.get(&url).send().await.is_err(),
        "still serving after shutdown"
    );
}

#[tokio::test]
async fn the_charger_button_charges_due_periods_once_and_skipping_ahead_makes_the_next_due() {
    let stack = stack().await;
    let browser = browser();
    let (reference, _) =
        bind_through_the_demo(&stack, &browser, "cust-charge", oen_sim::cards::SUCCESS).await;
    wait_for_status(&stack, &browser, &reference, "bound").await;
    let base = stack.url();
    let run = |browser: Client, base: String| async move {
        let r = browser
            .post(format!("{base}/demo/charge"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/demo/state");
    };
    run(browser.clone(), base.to_owned()).await;
    let (_, state) = get_text(&browser, &format!("{base}/demo/state")).await;
    assert!(state.contains("cust-charge / premium → paid (P"), "{state}");
    assert_eq!(stack.sim().expect(SIMULATOR).ledger().len(), 1);
    // Running again changes nothing: the next period is a month away.
    run(browser.clone(), base.to_owned()).await;
    assert_eq!(stack.sim().expect(SIMULATOR).ledger().len(), 1);
    let (_, state) = get_text(&browser, &format!("{base}/demo/state")).await;
    assert!(state.contains("Nothing was due."), "{state}");
    let skipped = browser
        .post(format!("{base}/demo/skip"))
        .form(&[("days", "31")])
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.status(), StatusCode::SEE_OTHER);
    run(browser.clone(), base.to_owned()).await;
    let ledger = stack.sim().expect(SIMULATOR).ledger();
    assert_eq!(ledger.len(), 2);
    assert_ne!(
        ledger[0].order_id, ledger[1].order_id,
        "a new period has a new order id"
    );
    assert!(ledger.iter().all(|e| e.status.as_str() == "charged"));
    let bad = browser
        .post(format!("{base}/demo/skip"))
        .form(&[("days", "-3")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn with_oens_testing_environment_no_simulator_runs_and_the_webhook_answers_at_the_printed_url(
) {
    let opts = Options {
        port: 0,
        oen: OenTarget::Testing,
        merchant_id: Some("ming-dev".into()),
        public_url: Some("https://ming-dev.tunnel.example".into()),
        ..Options::default()
    };
    let env = |name: &str| (name == "OEN_API_TOKEN").then(|| "testing-token-xyz".to_owned());
    let settings = OenSettings::resolve(&opts, &env, || "key-for-this-test-0123".to_owned())
        .expect("complete testing options");
    let OenSettings::Testing(testing) = &settings else {
        panic!("expected Oen's testing environment, got {settings:?}");
    };
    assert_eq!(
        testing.webhook_url,
        "https://ming-dev.tunnel.example/oen/webhook/key-for-this-test-0123"
    );
    let stack = oen_dev::start_with(opts, settings)
        .await
        .expect("the dev stack starts on a free port");
    assert!(stack.sim().is_none());
    let browser = browser();
    let base = stack.url();

    let (status, home) = get_text(&browser, &format!("{base}/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("<code>ming-dev</code>"), "{home}");
    assert!(home.contains("Oen's testing environment"), "{home}");
    assert!(!home.contains("_sim/ledger"), "{home}");
    assert!(!home.contains("testing-token-xyz"));
    let (status, state) = get_text(&browser, &format!("{base}/demo/state")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(state.contains("Oen's back office"), "{state}");

    // What the tunnel forwards: the route under the printed path key is the webhook (which
    // refuses a page it never opened), any other key is not.
    let webhook = |key: &str| {
        browser
            .post(format!("{base}/oen/webhook/{key}"))
            .header("content-type", "application/json")
            .body(
                r#"{"purpose":"token","merchantId":"ming-dev","id":"2HhngP9sVb3mK1xYdQe7Wc0RtUi","success":false,"message":""}"#,
            )
            .send()
    };
    let refused = webhook("key-for-this-test-0123").await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let unknown = webhook(oen_pay::dev::DEV_WEBHOOK_PATH_KEY).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    stack.shutdown().await;
}

/// The `role="status"` line of the state page's operations section.
fn operation_outcome(state: &str) -> String {
    let start = state
        .find("<p role=\"status\">")
        .unwrap_or_else(|| panic!("no operation outcome on the state page:\n{state}"));
    let rest = &state[start + "<p role=\"status\">".len()..];
    rest[..rest.find("</p>").unwrap()].to_owned()
}

/// A form's hidden `name` value on the state page.
fn hidden_value(state: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = state.find(&marker).unwrap() + marker.len();
    state[start..start + state[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn the_state_page_refunds_cancels_resumes_and_charges_once_with_the_merchant_apis_code() {
    let stack = stack().await;
    let browser = browser();
    let sim = stack.sim().expect(SIMULATOR);
    let (reference, _) =
        bind_through_the_demo(&stack, &browser, "cust-ops", oen_sim::cards::SUCCESS).await;
    wait_for_status(&stack, &browser, &reference, "bound").await;
    let base = stack.url();
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let browser = browser.clone();
        let url = format!("{base}{path}");
        async move {
            let r = browser.post(&url).form(&form).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{url}");
            let (_, state) = get_text(&browser, &format!("{base}/demo/state")).await;
            state
        }
    };
    let state = post("/demo/charge".into(), vec![]).await;
    let sub = match stack
        .store()
        .snapshot()
        .into_iter()
        .find_map(|r| match r.value {
            Record::Subscription(s) => Some(s),
            _ => None,
        }) {
        Some(s) => s,
        None => panic!("no subscription"),
    };
    let order = format!("{}P000000", sub.id);
    assert!(
        state.contains(&format!("action=\"/demo/ops/periods/{order}/refund\"")),
        "a paid period offers a refund:\n{state}"
    );

    // A partial refund, and the same form sent again: one refund at Oen.
    let refund = format!("/demo/ops/periods/{order}/refund");
    let state = post(refund.clone(), vec![("amount", "100".into())]).await;
    assert!(
        operation_outcome(&state).contains("refunded NT$100 of NT$500"),
        "{}",
        operation_outcome(&state)
    );
    assert!(!state.contains(&format!("action=\"{refund}\"")));
    let state = post(refund, vec![("amount", "100".into())]).await;
    assert!(
        operation_outcome(&state).contains("nothing was sent to Oen again"),
        "{}",
        operation_outcome(&state)
    );
    let refunds: Vec<i64> = sim
        .ledger_for_order(&order)
        .iter()
        .map(|e| e.refund_amount)
        .collect();
    assert_eq!(refunds, vec![100]);

    // A one-off charge; the same form (same key) sent twice charges once.
    let key = hidden_value(&state, "key");
    let charge = vec![
        ("key", key),
        ("customer", "cust-ops".to_owned()),
        ("amount", "120".to_owned()),
        ("description", "Late fee".to_owned()),
    ];
    let state = post("/demo/ops/charges".into(), charge.clone()).await;
    assert!(
        operation_outcome(&state).contains("of NT$120: succeeded"),
        "{}",
        operation_outcome(&state)
    );
    let state = post("/demo/ops/charges".into(), charge).await;
    assert!(
        operation_outcome(&state).contains("nothing charged again"),
        "{}",
        operation_outcome(&state)
    );
    let one_offs = sim
        .ledger()
        .into_iter()
        .filter(|e| OrderId::parse(&e.order_id).is_ok_and(|o| o.is_one_off()))
        .count();
    assert_eq!(one_offs, 1, "one one-off charge at Oen");

    // The charge is listed with a refund form; refunded in part, then the form sent again.
    let charge = match stack
        .store()
        .snapshot()
        .into_iter()
        .find_map(|r| match r.value {
            Record::Charge(c) => Some(c),
            _ => None,
        }) {
        Some(c) => c,
        None => panic!("no one-off charge"),
    };
    let refund = format!("/demo/ops/charges/{}/refund", charge.id);
    assert!(state.contains(&format!("action=\"{refund}\"")), "{state}");
    let state = post(refund.clone(), vec![("amount", "20".into())]).await;
    assert!(
        operation_outcome(&state).contains("refunded NT$20 of NT$120"),
        "{}",
        operation_outcome(&state)
    );
    assert!(!state.contains(&format!("action=\"{refund}\"")));
    assert!(state.contains("refunded NT$20"), "{state}");
    let state = post(refund, vec![("amount", "20".into())]).await;
    assert!(
        operation_outcome(&state).contains("nothing was sent to Oen again"),
        "{}",
        operation_outcome(&state)
    );
    let refunds: Vec<i64> = sim
        .ledger_for_order(charge.order_id.as_str())
        .iter()
        .map(|e| e.refund_amount)
        .collect();
    assert_eq!(refunds, vec![20]);

    // Cancel at period end, resume, cancel now; then nothing is charged again.
    let ops = format!("/demo/ops/subscriptions/{}", sub.id);
    let state = post(format!("{ops}/cancel"), vec![("at", "period_end".into())]).await;
    assert!(operation_outcome(&state).contains("cancels at the end"));
    assert!(
        state.contains(&format!("action=\"{ops}/resume\"")),
        "{state}"
    );
    let state = post(format!("{ops}/resume"), vec![]).await;
    assert!(operation_outcome(&state).contains("resumed"));
    let state = post(format!("{ops}/cancel"), vec![("at", "now".into())]).await;
    assert!(
        operation_outcome(&state).contains("is canceled"),
        "{}",
        operation_outcome(&state)
    );
    let state = post(format!("{ops}/resume"), vec![]).await;
    assert!(
        operation_outcome(&state).contains("refused"),
        "{}",
        operation_outcome(&state)
    );
    let charged = sim.ledger().len();
    let skipped = browser
        .post(format!("{base}/demo/skip"))
        .form(&[("days", "31")])
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.status(), StatusCode::SEE_OTHER);
    post("/demo/charge".into(), vec![]).await;
    assert_eq!(
        sim.ledger().len(),
        charged,
        "a canceled subscription is never charged"
    );
}
