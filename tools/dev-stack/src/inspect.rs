//! `/demo/state`: everything the stack holds, for a person to look at. Cards show their last
//! four digits and the size of their ciphertext — never the ciphertext, the token, or the
//! token's fingerprint — and the simulator's webhook log is shown without its payloads, which
//! carry the token.

use std::cmp::Reverse;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use oen_pay::store::{PeriodState, Record, SessionState};
use oen_sim::{AttemptOutcome, DeliveryState};

use crate::demo::Demo;
use crate::page::{escape, mono, page, table, time};

pub(crate) async fn state_page(State(demo): State<Arc<Demo>>) -> Response {
    let records = demo.adapters.store.snapshot();
    let mut sessions = Vec::new();
    let mut subscriptions = Vec::new();
    let mut cards = Vec::new();
    let mut periods = Vec::new();
    let mut audits = Vec::new();
    for r in records {
        match r.value {
            Record::Session(s) => sessions.push(s),
            Record::Subscription(s) => subscriptions.push(s),
            Record::Card(c) => cards.push(c),
            Record::Period(p) => periods.push(p),
            Record::Audit(a) => audits.push(a),
        }
    }
    // Newest first.
    sessions.sort_by_key(|x| Reverse(x.created_at));
    subscriptions.sort_by_key(|x| Reverse(x.created_at));
    cards.sort_by_key(|x| Reverse(x.created_at));
    audits.sort_by_key(|x| Reverse(x.at));

    let now = demo.adapters.now();
    let session_rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let state = match &s.state {
                SessionState::Pending if now > s.expires_at => "expired".to_owned(),
                SessionState::Pending => "pending".to_owned(),
                SessionState::Bound { last4, .. } => {
                    format!("bound •••• {}", last4.as_deref().unwrap_or("????"))
                }
                SessionState::Failed { reason, .. } => format!("failed: {reason}"),
            };
            vec![
                format!(
                    "<a href=\"/demo/return?ref={r}\">{m}</a>",
                    r = escape(s.reference.as_str()),
                    m = mono(s.reference.as_str())
                ),
                escape(s.customer.as_str()),
                escape(s.plan.as_str()),
                escape(&state),
                time(s.created_at),
                time(s.expires_at),
                s.checkout_id
                    .as_ref()
                    .map(|c| mono(c.as_str()))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let subscription_rows: Vec<Vec<String>> = subscriptions
        .iter()
        .map(|s| {
            vec![
                mono(s.id.as_str()),
                escape(s.customer.as_str()),
                escape(s.plan.as_str()),
                escape(
                    &oen_pay::serde_json::to_value(s.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                ),
                mono(s.card.as_str()),
                escape(&s.period.to_string()),
                s.next_action_at.map(time).unwrap_or_else(|| "—".into()),
                escape(&s.dunning_attempts.to_string()),
            ]
        })
        .collect();
    let card_rows: Vec<Vec<String>> = cards
        .iter()
        .map(|c| {
            vec![
                escape(c.customer.as_str()),
                mono(c.binding.as_str()),
                escape(&format!("•••• {}", c.last4.as_deref().unwrap_or("????"))),
                escape(&format!("encrypted, {} bytes", c.ciphertext.0.len())),
                time(c.created_at),
            ]
        })
        .collect();
    let period_rows: Vec<Vec<String>> = periods
        .iter()
        .map(|p| {
            let state = match &p.state {
                PeriodState::Open => "open".to_owned(),
                PeriodState::Charging { .. } => "charging (leased)".to_owned(),
                PeriodState::Unknown { checks, .. } => {
                    format!("unknown, {checks} reconciliation checks")
                }
                PeriodState::Paid { transaction, .. } => format!("paid, {transaction}"),
                PeriodState::Declined { code, .. } => format!("declined {code}"),
            };
            vec![
                mono(p.subscription.as_str()),
                escape(&p.period.to_string()),
                mono(p.order_id.as_str()),
                escape(&p.amount.to_string()),
                escape(&state),
                escape(&p.attempts.to_string()),
            ]
        })
        .collect();
    let audit_rows: Vec<Vec<String>> = audits
        .iter()
        .map(|a| {
            vec![
                time(a.at),
                escape(a.customer.as_str()),
                escape(&a.actor),
                escape(&a.action),
                a.binding
                    .as_ref()
                    .map(|b| mono(b.as_str()))
                    .unwrap_or_default(),
                escape(&a.detail),
            ]
        })
        .collect();
    let event_rows: Vec<Vec<String>> = demo
        .adapters
        .events
        .all()
        .iter()
        .rev()
        .map(|e| {
            vec![
                time(e.at),
                escape(e.kind.as_str()),
                mono(&e.id),
                escape(e.customer.as_str()),
                mono(&e.data.to_string()),
            ]
        })
        .collect();
    // The payload carries the token: only `success` and `message` are read from it.
    let delivery_rows: Vec<Vec<String>> = demo
        .sim
        .webhook_deliveries()
        .iter()
        .rev()
        .map(|d| {
            let success = match d.payload.get("success").and_then(|v| v.as_bool()) {
                Some(true) => "success".to_owned(),
                Some(false) => format!(
                    "failure: {}",
                    d.payload
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("")
                ),
                None => "?".to_owned(),
            };
            let state = match d.state {
                DeliveryState::Pending => "pending",
                DeliveryState::Held => "held",
                DeliveryState::Delivered => "delivered",
                DeliveryState::Failed => "failed (gave up)",
                DeliveryState::Dropped => "dropped",
                DeliveryState::NoUrl => "no URL",
            };
            let attempts: Vec<String> = d
                .attempts
                .iter()
                .map(|a| match &a.outcome {
                    AttemptOutcome::Status { code } => format!("#{}: HTTP {code}", a.number),
                    AttemptOutcome::Error { message } => format!("#{}: {message}", a.number),
                })
                .collect();
            vec![
                escape(&d.delivery_id.to_string()),
                mono(&d.checkout_id),
                escape(&success),
                escape(state),
                escape(&attempts.join(", ")),
            ]
        })
        .collect();

    let ledger = format!("{}/_sim/ledger", demo.sim.base_url());
    let body = format!(
        "<p>Everything below lives in this process's memory. <a href=\"/demo/state\">Reload</a> \
         to see changes.</p>\
         <h2>Binding sessions</h2>{sessions}\
         <h2>Subscriptions</h2>{subscriptions}\
         <h2>Cards</h2><p class=\"muted\">The token is stored only as ciphertext under the \
         context (merchant, customer, binding); this page never shows it.</p>{cards}\
         <h2>Charge periods</h2>{periods}\
         {charger}\
         <h2>Audit log</h2>{audits}\
         <h2>Domain events</h2>{events}\
         <h2>Webhook deliveries (the simulator's log)</h2>{deliveries}\
         <h2>Oen's side</h2><p><a href=\"{ledger}\">The simulator's ledger</a> \
         (<code>{ledger_text}</code>): every transaction as Oen sees it.</p>",
        sessions = table(
            &[
                "reference",
                "customer",
                "plan",
                "state",
                "created",
                "expires",
                "Oen page id"
            ],
            &session_rows
        ),
        subscriptions = table(
            &[
                "id",
                "customer",
                "plan",
                "status",
                "card (binding)",
                "period",
                "next action",
                "dunning attempts"
            ],
            &subscription_rows
        ),
        cards = table(
            &["customer", "binding", "card", "token", "created"],
            &card_rows
        ),
        periods = table(
            &[
                "subscription",
                "period",
                "order id",
                "amount",
                "state",
                "attempts"
            ],
            &period_rows
        ),
        charger = crate::charger::section(&demo),
        audits = table(
            &["at", "customer", "actor", "action", "binding", "detail"],
            &audit_rows
        ),
        events = table(&["at", "type", "id", "customer", "data"], &event_rows),
        deliveries = table(
            &["#", "Oen page id", "result", "state", "attempts"],
            &delivery_rows
        ),
        ledger = escape(&ledger),
        ledger_text = escape(&ledger),
    );
    page("Inspect state", &body)
}
