//! The newcomer's path, in a real browser: headless Chromium, driven over WebDriver, clicks
//! through the dev stack (started in-process, the simulator playing Oen) the way a person
//! does — the shop, the simulator's card page, the return page, and the state page's charger
//! buttons — and checks what the pages say. The state page's operation buttons have their own
//! journey (`operations.rs`); the steps the journeys share are in `steps.rs`. Each journey ends
//! with a screenshot in `target/browser/<journey>.png`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/test` installs them):
//!
//! ```sh
//! scripts/test -p oen-dev --test browser
//! ```

mod harness;
mod operations;
mod steps;

use harness::{Browser, Window};
use oen_sim::cards;
use steps::{
    assert_one_payment_per_order, oen_transactions, periods, run_charger, stack, subscribe,
    subscription, Transaction,
};

#[tokio::test]
async fn a_newcomer_subscribes_pays_and_renews() {
    let stack = stack().await;
    let browser = Browser::start(stack.url(), Window::DESKTOP).await;

    browser.open("/").await;
    assert_eq!(browser.heading().await, "Demo shop");
    let cards_listed = browser.region("Test cards").await;
    assert!(cards_listed.contains(cards::SUCCESS), "{cards_listed}");
    browser.screenshot("subscribe_and_renew-1-shop").await;

    browser.fill("Customer id", "mei").await;
    browser.choose("Plan", "premium").await;
    browser.press("Subscribe — bind a card").await;

    browser.wait_for_heading("Save your card").await;
    let on_the_card_page = browser.table("Test cards").await;
    for (card, does) in [
        (cards::SUCCESS, "charged"),
        (
            cards::DECLINE_T0004_INSUFFICIENT_FUNDS,
            "declined T0004 insufficient funds (soft)",
        ),
        (
            cards::DECLINE_T0005_ISSUER_REFUSED,
            "declined T0005 issuer refused (hard)",
        ),
        (
            cards::UNKNOWN_C026_THEN_CHARGED,
            "409 C026 result unknown, later charged",
        ),
    ] {
        assert!(
            on_the_card_page.contains(&vec![card.to_owned(), "binds".into(), does.into()]),
            "the card page lists {card} as {does:?}: {on_the_card_page:?}"
        );
    }
    browser.fill("E-mail", "mei@example.com").await;
    browser.fill("Card number", cards::SUCCESS).await;
    browser.screenshot("subscribe_and_renew-2-card-page").await;
    browser.press("Save card").await;

    browser.wait_for_heading("Back at the shop").await;
    browser.wait_for_status("Card bound: •••• 4242").await;
    browser.screenshot("subscribe_and_renew-3-bound").await;

    browser.follow("Inspect state").await;
    assert!(browser
        .region("Last run")
        .await
        .contains("The charger has not run yet."));
    let run = run_charger(&browser).await;
    assert!(run.contains("mei / premium → paid ("), "{run}");
    let first = periods(&browser).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].period, "0");
    assert_eq!(first[0].amount, "NT$500");
    assert!(first[0].state.starts_with("paid, "), "{first:?}");
    assert_eq!(subscription(&browser, "mei").await.status, "active");

    browser.press("Skip ahead a month").await;
    assert!(browser
        .region("Charger")
        .await
        .contains("The stack's clock is 31 days ahead"));
    let run = run_charger(&browser).await;
    assert!(run.contains("mei / premium → paid ("), "{run}");
    let renewed = periods(&browser).await;
    assert_eq!(renewed.len(), 2, "{renewed:?}");
    let next = renewed
        .iter()
        .find(|p| p.period == "1")
        .expect("the next period is shown");
    assert!(next.state.starts_with("paid, "), "{renewed:?}");
    assert_ne!(next.order, first[0].order, "each period has its own order");
    let sub = subscription(&browser, "mei").await;
    assert_eq!(
        (sub.status.as_str(), sub.first_unpaid.as_str()),
        ("active", "2")
    );

    let ledger = oen_transactions(&browser).await;
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    assert!(ledger
        .iter()
        .all(|t| t.status == "charged" && t.amount == "NT$500"));
    assert_one_payment_per_order(&ledger);
    browser.scroll_to("Subscriptions").await;
    browser.screenshot("subscribe_and_renew").await;
    browser.close().await;
}

#[tokio::test]
async fn a_soft_decline_is_retried_a_day_later_then_paid_with_a_new_card() {
    let stack = stack().await;
    let browser = Browser::start(stack.url(), Window::DESKTOP).await;

    subscribe(&browser, "lin", cards::DECLINE_T0004_INSUFFICIENT_FUNDS).await;
    browser.follow("Inspect state").await;
    let run = run_charger(&browser).await;
    assert!(
        run.contains("lin / premium → soft decline: past due, retry at"),
        "{run}"
    );
    let sub = subscription(&browser, "lin").await;
    assert_eq!(sub.status, "past_due: a payment failed, retrying");
    assert_eq!(sub.dunning_attempts, "1");
    let declined = periods(&browser).await;
    assert_eq!(
        (declined[0].state.as_str(), declined[0].last_error.as_str()),
        ("open", "soft decline T0004"),
        "the period stays open for the retry"
    );

    // The retry comes a day later, with the same card: declined again.
    browser.press("Skip ahead a day").await;
    let run = run_charger(&browser).await;
    assert!(run.contains("soft decline: past due, retry at"), "{run}");
    assert_eq!(subscription(&browser, "lin").await.dunning_attempts, "2");
    let retried = periods(&browser).await;
    assert_eq!(
        (retried[0].attempts.as_str(), retried[0].last_error.as_str()),
        ("2", "soft decline T0004")
    );

    // A new card for the same customer and plan pays what is owed.
    subscribe(&browser, "lin", cards::SUCCESS).await;
    browser.follow("Inspect state").await;
    assert_eq!(subscription(&browser, "lin").await.status, "active");
    let run = run_charger(&browser).await;
    assert!(run.contains("lin / premium → paid ("), "{run}");
    let paid = periods(&browser).await;
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert!(paid[0].state.starts_with("paid, "), "{paid:?}");

    let ledger = oen_transactions(&browser).await;
    let statuses: Vec<&str> = ledger.iter().map(|t| t.status.as_str()).collect();
    assert_eq!(statuses, ["failed", "failed", "charged"]);
    assert!(
        ledger.iter().all(|t| t.order == paid[0].order),
        "every attempt of the period uses its one order id: {ledger:?}"
    );
    assert_one_payment_per_order(&ledger);
    browser.scroll_to("Subscriptions").await;
    browser.screenshot("soft_decline").await;
    browser.close().await;
}

#[tokio::test]
async fn a_hard_decline_asks_for_a_new_card_and_resumes_with_it() {
    let stack = stack().await;
    let browser = Browser::start(stack.url(), Window::DESKTOP).await;

    subscribe(&browser, "chen", cards::DECLINE_T0005_ISSUER_REFUSED).await;
    browser.follow("Inspect state").await;
    let run = run_charger(&browser).await;
    assert!(
        run.contains("chen / premium → hard decline: waiting for a new card"),
        "{run}"
    );
    assert_eq!(
        subscription(&browser, "chen").await.status,
        "requires_payment_method: requires a new card"
    );
    assert_eq!(periods(&browser).await[0].state, "declined T0005");
    // Nothing is retried with the refused card.
    browser.press("Skip ahead a day").await;
    let run = run_charger(&browser).await;
    assert!(run.contains("Nothing was due."), "{run}");

    subscribe(&browser, "chen", cards::SUCCESS).await;
    browser.follow("Inspect state").await;
    assert_eq!(subscription(&browser, "chen").await.status, "active");
    let run = run_charger(&browser).await;
    assert!(run.contains("chen / premium → paid ("), "{run}");
    let paid = periods(&browser).await;
    assert!(paid[0].state.starts_with("paid, "), "{paid:?}");

    let ledger = oen_transactions(&browser).await;
    let statuses: Vec<&str> = ledger.iter().map(|t| t.status.as_str()).collect();
    assert_eq!(statuses, ["failed", "charged"]);
    assert_one_payment_per_order(&ledger);
    browser.scroll_to("Subscriptions").await;
    browser.screenshot("hard_decline").await;
    browser.close().await;
}

#[tokio::test]
async fn an_unknown_result_is_reconciled_to_paid_without_a_second_charge() {
    let stack = stack().await;
    let browser = Browser::start(stack.url(), Window::DESKTOP).await;

    subscribe(&browser, "hua", cards::UNKNOWN_C026_THEN_CHARGED).await;
    browser.follow("Inspect state").await;
    let run = run_charger(&browser).await;
    assert!(
        run.contains("hua / premium → result unknown: reconcile at"),
        "{run}"
    );
    let unknown = periods(&browser).await;
    assert_eq!(unknown[0].state, "unknown, 0 reconciliation checks");
    let ledger = oen_transactions(&browser).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].status, "charging", "Oen is still working on it");
    assert_eq!(ledger[0].order, unknown[0].order);

    // A day later Oen has settled the charge; the charger asks Oen instead of charging again.
    browser.press("Skip ahead a day").await;
    assert_eq!(oen_transactions(&browser).await[0].status, "charged");
    assert_eq!(
        periods(&browser).await[0].state,
        "unknown, 0 reconciliation checks",
        "nothing changes on our side until the charger looks"
    );
    let run = run_charger(&browser).await;
    assert!(
        run.contains("hua / premium → reconciled as paid, not charged again"),
        "{run}"
    );
    let paid = periods(&browser).await;
    assert!(paid[0].state.starts_with("paid, "), "{paid:?}");
    assert_eq!(subscription(&browser, "hua").await.status, "active");

    let ledger = oen_transactions(&browser).await;
    assert_eq!(
        ledger,
        [Transaction {
            order: paid[0].order.clone(),
            amount: "NT$500".into(),
            status: "charged".into(),
        }],
        "one charge, never two"
    );
    browser.scroll_to("Subscriptions").await;
    browser.screenshot("unknown_result").await;
    browser.close().await;
}

#[tokio::test]
async fn the_path_fits_a_phone_screen() {
    let stack = stack().await;
    let browser = Browser::start(stack.url(), Window::PHONE).await;

    browser.open("/").await;
    browser.assert_no_sideways_scroll().await;
    browser.screenshot("on_a_phone-1-shop").await;
    browser.fill("Customer id", "ana").await;
    browser.choose("Plan", "premium").await;
    browser.press("Subscribe — bind a card").await;

    browser.wait_for_heading("Save your card").await;
    browser.assert_no_sideways_scroll().await;
    browser.fill("E-mail", "ana@example.com").await;
    browser.fill("Card number", cards::SUCCESS).await;
    browser.press("Save card").await;

    browser.wait_for_status("Card bound: •••• 4242").await;
    browser.assert_no_sideways_scroll().await;

    browser.follow("Inspect state").await;
    let run = run_charger(&browser).await;
    assert!(run.contains("ana / premium → paid ("), "{run}");
    browser.assert_no_sideways_scroll().await;
    assert_eq!(browser.window(), Window::PHONE);
    browser.scroll_to("Charger").await;
    browser.screenshot("on_a_phone").await;
    browser.close().await;
}
