//! The state page's operation buttons, clicked the way a merchant's operator would: refund part
//! of a paid period (and fail to refund more), charge the saved card once (and send the same
//! form again) and refund that charge, cancel at period end and resume, cancel now. Every step is checked on the page
//! and on Oen's side, the simulator's own ledger, so that a button that ran the wrong operation,
//! or ran it twice, fails the journey.

use oen_sim::{cards, LedgerEntry};

use crate::harness::{Browser, Window};
use crate::steps::{oen_transactions, periods, run_charger, stack, subscribe, subscription};

const SIMULATOR: &str = "the simulator plays Oen by default";

/// The label of a paid period's refund field.
const TO_REFUND: &str = "NT$ to refund (empty: all)";

/// What a table cell shows, line by line (a cell of buttons: their names).
fn lines(cell: &str) -> Vec<&str> {
    cell.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The one transaction of `order` in the simulator's ledger: its amount, status and refund.
fn at_oen(ledger: &[LedgerEntry], order: &str) -> (i64, &'static str, i64) {
    let of_order: Vec<&LedgerEntry> = ledger.iter().filter(|t| t.order_id == order).collect();
    assert_eq!(of_order.len(), 1, "one transaction of {order}: {ledger:?}");
    let t = of_order[0];
    (t.amount, t.status.as_str(), t.refund_amount)
}

/// Refunds `amount` NT$ of the paid period `order` with its row's form.
async fn refund(browser: &Browser, order: &str, amount: &str) {
    browser
        .fill_in_row("Charge periods", order, TO_REFUND, amount)
        .await;
    browser
        .press_in_row("Charge periods", order, "Refund")
        .await;
}

/// The operations section's one-off charge form, filled in.
async fn fill_the_charge_form(browser: &Browser, customer: &str, amount: &str, what: &str) {
    browser.fill("Customer", customer).await;
    browser.fill("Amount (NT$)", amount).await;
    browser.fill("Description", what).await;
}

#[tokio::test]
async fn an_operator_refunds_charges_once_cancels_and_resumes_from_the_state_page() {
    let stack = stack().await;
    let sim = stack.sim().expect(SIMULATOR);
    let browser = Browser::start(stack.url(), Window::DESKTOP).await;

    subscribe(&browser, "yu", cards::SUCCESS).await;
    browser.follow("Inspect state").await;
    let run = run_charger(&browser).await;
    assert!(run.contains("yu / premium → paid ("), "{run}");
    let paid = periods(&browser).await;
    assert_eq!(paid.len(), 1, "{paid:?}");
    let order = paid[0].order.clone();
    assert_eq!(paid[0].amount, "NT$500");
    assert_eq!(at_oen(&sim.ledger(), &order), (500, "charged", 0));
    let transaction = sim.ledger()[0].id.clone();

    // More than was charged: refused before anything reaches Oen.
    refund(&browser, &order, "501").await;
    assert_eq!(
        browser.status_in("Operations").await,
        format!(
            "Refund of {order} refused: amount: NT$501 is more than the NT$500 charged \
             (invalid_request)."
        )
    );
    assert_eq!(at_oen(&sim.ledger(), &order), (500, "charged", 0));
    assert_eq!(
        lines(&periods(&browser).await[0].refund),
        [TO_REFUND, "Refund"],
        "the period can still be refunded"
    );

    // A second tab, left open on the page as it is now, still offers the refund form after the
    // first tab has refunded.
    let first = browser.tab().await;
    let stale = browser.open_in_new_tab("/demo/state").await;
    browser.switch_to(&first).await;

    refund(&browser, &order, "100").await;
    assert_eq!(
        browser.status_in("Operations").await,
        format!("Order {order}: refunded NT$100 of NT$500 (Oen transaction {transaction}).")
    );
    let refunded = periods(&browser).await;
    assert_eq!(refunded[0].refund, "refunded NT$100", "{refunded:?}");
    assert!(refunded[0].state.starts_with("paid, "), "{refunded:?}");
    let shown = oen_transactions(&browser).await;
    assert_eq!(
        (shown[0].amount.as_str(), shown[0].status.as_str()),
        ("NT$500", "refunded")
    );
    assert_eq!(at_oen(&sim.ledger(), &order), (500, "refunded", 100));

    // NT$400 is left; the stale tab asks for NT$450. Oen allows one refund per transaction,
    // and says so; nothing changes.
    browser.switch_to(&stale).await;
    refund(&browser, &order, "450").await;
    assert_eq!(
        browser.status_in("Operations").await,
        format!(
            "Refund of {order} refused: order {order} was refunded NT$100 already; Oen allows \
             one refund per transaction (conflict)."
        )
    );
    assert_eq!(periods(&browser).await[0].refund, "refunded NT$100");
    assert_eq!(at_oen(&sim.ledger(), &order), (500, "refunded", 100));
    browser.scroll_to("Operations").await;
    browser.screenshot("operations-1-refund-refused").await;

    // A one-off charge of the saved card.
    fill_the_charge_form(&browser, "yu", "120", "Late fee").await;
    let key = browser.value_of_id("charge-key").await;
    browser.press("Charge the saved card once").await;
    let answer = browser.status_in("Operations").await;
    let (charge, charged_by) = answer
        .strip_prefix("Charge ")
        .and_then(|a| a.split_once(" of NT$120: succeeded, Oen transaction "))
        .and_then(|(id, rest)| Some((id.to_owned(), rest.strip_suffix('.')?.to_owned())))
        .unwrap_or_else(|| panic!("not a paid charge of NT$120: {answer:?}"));
    let one_offs = |ledger: Vec<LedgerEntry>| -> Vec<(String, i64, &'static str)> {
        ledger
            .into_iter()
            .filter(|t| t.order_id != order)
            .map(|t| (t.id, t.amount, t.status.as_str()))
            .collect()
    };
    let once = vec![(charged_by.clone(), 120, "charged")];
    assert_eq!(one_offs(sim.ledger()), once);
    let shown = oen_transactions(&browser).await;
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert_eq!(
        (shown[1].amount.as_str(), shown[1].status.as_str()),
        ("NT$120", "charged")
    );
    assert_ne!(
        browser.value_of_id("charge-key").await,
        key,
        "the page offers a fresh form for the next charge"
    );

    // The same form sent again (a double click, a retry after a lost answer): its key makes
    // it the first charge's replay.
    fill_the_charge_form(&browser, "yu", "120", "Late fee").await;
    browser.set_value_of_id("charge-key", &key).await;
    browser.press("Charge the saved card once").await;
    assert_eq!(
        browser.status_in("Operations").await,
        format!(
            "Charge {charge} of NT$120: succeeded, Oen transaction {charged_by} (this form was \
             sent before: its first answer, nothing charged again)."
        )
    );
    assert_eq!(one_offs(sim.ledger()), once, "charged once at Oen");
    assert_eq!(oen_transactions(&browser).await.len(), 2);
    browser.scroll_to("Operations").await;
    browser.screenshot("operations-2-charged-once").await;

    // The charge is listed with its own refund field: all of it, refunded once.
    browser
        .fill_in_row("One-off charges", &charge, TO_REFUND, "")
        .await;
    browser
        .press_in_row("One-off charges", &charge, "Refund")
        .await;
    let answer = browser.status_in("Operations").await;
    assert!(
        answer.ends_with(&format!(
            "refunded NT$120 of NT$120 (Oen transaction {charged_by})."
        )),
        "{answer}"
    );
    let refunded: Vec<(String, i64)> = sim
        .ledger()
        .into_iter()
        .filter(|t| t.id == charged_by)
        .map(|t| (t.status.as_str().to_owned(), t.refund_amount))
        .collect();
    assert_eq!(refunded, [("refunded".to_owned(), 120)]);
    let once = vec![(charged_by.clone(), 120, "refunded")];

    // Cancel at the end of the paid period, then change one's mind.
    let sub = subscription(&browser, "yu").await;
    assert_eq!(sub.status, "active");
    assert_eq!(
        lines(&sub.operations),
        ["Cancel at period end", "Cancel now"]
    );
    browser
        .press_in_row("Subscriptions", "yu", "Cancel at period end")
        .await;
    assert_eq!(
        browser.status_in("Operations").await,
        format!(
            "Subscription {} cancels at the end of its paid period.",
            sub.id
        )
    );
    let ending = subscription(&browser, "yu").await;
    assert_eq!(ending.status, "active", "paid until the period ends");
    assert_eq!(lines(&ending.operations), ["Resume", "Cancel now"]);

    browser.press_in_row("Subscriptions", "yu", "Resume").await;
    assert_eq!(
        browser.status_in("Operations").await,
        format!("Subscription {} resumed: it renews as before.", sub.id)
    );
    let resumed = subscription(&browser, "yu").await;
    assert_eq!(resumed.status, "active");
    assert_eq!(
        lines(&resumed.operations),
        ["Cancel at period end", "Cancel now"]
    );

    // Cancel now: nothing is charged again, even when the next period comes due.
    browser
        .press_in_row("Subscriptions", "yu", "Cancel now")
        .await;
    assert_eq!(
        browser.status_in("Operations").await,
        format!("Subscription {} is canceled.", sub.id)
    );
    let canceled = subscription(&browser, "yu").await;
    assert_eq!(canceled.status, "canceled");
    assert_eq!(lines(&canceled.operations), ["—"], "nothing left to do");

    browser.press("Skip ahead a month").await;
    let run = run_charger(&browser).await;
    assert!(run.contains("Nothing was due."), "{run}");
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    assert_eq!(at_oen(&ledger, &order), (500, "refunded", 100));
    assert_eq!(one_offs(ledger), once);
    assert_eq!(periods(&browser).await.len(), 1);
    assert_eq!(oen_transactions(&browser).await.len(), 2);
    browser.scroll_to("Subscriptions").await;
    browser.screenshot("operations").await;
    browser.close().await;
}
