//! The steps the journeys share, as a person takes them on the dev stack's pages: subscribe
//! through the shop and Oen's card page, run the charger, and read the state page's tables.

use oen_dev::{DevStack, Options};

use crate::harness::Browser;

/// A dev stack on a free port, the simulator playing Oen.
pub async fn stack() -> DevStack {
    oen_dev::start(Options {
        port: 0,
        ..Options::default()
    })
    .await
    .expect("the dev stack starts on a free port")
}

/// From the shop's form, through the simulator's card page, to the return page once it says
/// the card is bound; returns what the return page says.
pub async fn subscribe(browser: &Browser, customer: &str, card: &str) -> String {
    browser.open("/").await;
    browser.fill("Customer id", customer).await;
    browser.choose("Plan", "premium").await;
    browser
        .fill("E-mail (optional, pre-fills Oen's page)", "mei@example.com")
        .await;
    browser.press("Subscribe — bind a card").await;

    browser.wait_for_heading("Save your card").await;
    assert_eq!(
        browser.value_of("E-mail").await,
        "mei@example.com",
        "the shop's e-mail pre-fills Oen's page"
    );
    browser.fill("Card number", card).await;
    browser.press("Save card").await;

    browser.wait_for_heading("Back at the shop").await;
    let last4 = &card[card.len() - 4..];
    browser
        .wait_for_status(&format!("Card bound: •••• {last4}"))
        .await
}

/// Presses "Run the charger now" on the state page; returns what the last run did.
pub async fn run_charger(browser: &Browser) -> String {
    browser.press("Run the charger now").await;
    browser.wait_for_heading("Inspect state").await;
    browser.region("Last run").await
}

/// The state page's row for the customer's subscription, by column.
pub async fn subscription(browser: &Browser, customer: &str) -> Subscription {
    let rows = browser.table("Subscriptions").await;
    let row = rows
        .into_iter()
        .find(|r| r.get(1).map(String::as_str) == Some(customer))
        .unwrap_or_else(|| panic!("no subscription of {customer} is shown"));
    Subscription {
        id: row[0].clone(),
        status: row[3].clone(),
        first_unpaid: row[5].clone(),
        dunning_attempts: row[7].clone(),
        operations: row[8].clone(),
    }
}

#[derive(Debug)]
pub struct Subscription {
    pub id: String,
    pub status: String,
    pub first_unpaid: String,
    pub dunning_attempts: String,
    /// The buttons offered, by name, one a line.
    pub operations: String,
}

/// The state page's charge periods (every journey has one subscription).
pub async fn periods(browser: &Browser) -> Vec<Period> {
    browser
        .table("Charge periods")
        .await
        .into_iter()
        .map(|r| Period {
            period: r[1].clone(),
            order: r[2].clone(),
            amount: r[3].clone(),
            state: r[4].clone(),
            attempts: r[5].clone(),
            last_error: r[6].clone(),
            refund: r[7].clone(),
        })
        .collect()
}

#[derive(Debug)]
pub struct Period {
    pub period: String,
    pub order: String,
    pub amount: String,
    pub state: String,
    pub attempts: String,
    pub last_error: String,
    /// What was refunded, or the refund form's text while it is offered.
    pub refund: String,
}

/// What the state page shows of the simulator's ledger, oldest first.
pub async fn oen_transactions(browser: &Browser) -> Vec<Transaction> {
    browser
        .table("Oen's transactions (the simulator's ledger)")
        .await
        .into_iter()
        .map(|r| Transaction {
            order: r[1].clone(),
            amount: r[2].clone(),
            status: r[3].clone(),
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
pub struct Transaction {
    pub order: String,
    pub amount: String,
    pub status: String,
}

/// At most one charged transaction per order id, whatever else the ledger holds.
pub fn assert_one_payment_per_order(ledger: &[Transaction]) {
    for t in ledger.iter().filter(|t| t.status == "charged") {
        let paid = ledger
            .iter()
            .filter(|u| u.order == t.order && u.status == "charged")
            .count();
        assert_eq!(
            paid, 1,
            "order {} was paid {paid} times: {ledger:?}",
            t.order
        );
    }
}
