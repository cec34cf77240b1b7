//! `/demo/state`: everything the stack holds, for a person to look at. Cards show their last
//! four digits and the size of their ciphertext — never the ciphertext, the token, or the
//! token's fingerprint — and the simulator's webhook log is shown without its payloads, which
//! carry the token.

use std::cmp::Reverse;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use oen_pay::chrono::{DateTime, Utc};
use oen_pay::events::DomainEvent;
use oen_pay::oneoff::ChargeStatus;
use oen_pay::serde_json::Value;
use oen_pay::store::{
    AuditEntry, BindingSession, Card, ChargePeriod, OneOffCharge, OutboxEntry, PeriodState, Record,
    SessionState, Subscription, SubscriptionStatus,
};
use oen_sim::{AttemptOutcome, DeliveryAttempt, DeliveryRecord, DeliveryState, LedgerEntry};

use crate::charger;
use crate::demo::Demo;
use crate::operations;
use crate::page::{escape, mono, page, section, table, time};

pub(crate) async fn state_page(State(demo): State<Arc<Demo>>) -> Response {
    page("Inspect state", &body(&demo))
}

/// The sections from what the store holds, with Oen's view of the charges beside our periods,
/// through the charger, to what happened.
fn body(demo: &Demo) -> String {
    let records = Records::sorted(demo.adapters.store.snapshot().into_iter().map(|r| r.value));
    let now = demo.adapters.now();
    [
        "<p>Everything below lives in this process's memory. <a href=\"/demo/state\">Reload</a> \
         to see changes.</p>"
            .to_owned(),
        sessions_section(&records.sessions, now),
        subscriptions_section(&records.subscriptions),
        cards_section(&records.cards),
        periods_section(&records.periods),
        charges_section(&records.charges),
        operations::section(demo),
        match &demo.sim {
            Some(sim) => oen_section(&sim.base_url(), &sim.ledger()),
            None => testing_oen_section(demo.adapters.merchant.as_str()),
        },
        charger::section(demo),
        reconciliations_section(&records.reconciliations),
        audits_section(&records.audits),
        events_section(&demo.adapters.events.all()),
        outbox_section(&records.outbox),
        demo.sim
            .as_ref()
            .map(|sim| deliveries_section(&sim.webhook_deliveries()))
            .unwrap_or_default(),
    ]
    .concat()
}

/// The store's records by kind; all but the periods newest first.
#[derive(Default)]
struct Records {
    sessions: Vec<BindingSession>,
    subscriptions: Vec<Subscription>,
    cards: Vec<Card>,
    periods: Vec<ChargePeriod>,
    charges: Vec<OneOffCharge>,
    audits: Vec<AuditEntry>,
    outbox: Vec<OutboxEntry>,
    // Daily reconciliation (`oen_pay::reconcile`).
    reconciliations: Vec<oen_pay::reconcile::ReportView>,
}

impl Records {
    fn sorted(records: impl IntoIterator<Item = Record>) -> Self {
        let mut by_kind = Self::default();
        for r in records {
            match r {
                Record::Session(s) => by_kind.sessions.push(s),
                Record::Subscription(s) => by_kind.subscriptions.push(s),
                Record::Card(c) => by_kind.cards.push(c),
                Record::Period(p) => by_kind.periods.push(p),
                Record::Audit(a) => by_kind.audits.push(a),
                Record::Outbox(o) => by_kind.outbox.push(o),
                // A link claim only points at the session listed above.
                Record::Link(_) => {}
                Record::Charge(c) => by_kind.charges.push(c),
                // A key only points at the charge listed above (its reply is the charge's).
                Record::Idempotency(_) => {}
                // Daily reconciliation (`oen_pay::reconcile`).
                Record::Reconciliation(r) => by_kind
                    .reconciliations
                    .push(oen_pay::reconcile::ReportView::of(&r)),
            }
        }
        by_kind.reconciliations.sort_by_key(|x| Reverse(x.date));
        by_kind.sessions.sort_by_key(|x| Reverse(x.created_at));
        by_kind.subscriptions.sort_by_key(|x| Reverse(x.created_at));
        by_kind.cards.sort_by_key(|x| Reverse(x.created_at));
        by_kind.charges.sort_by_key(|x| Reverse(x.created_at));
        by_kind.audits.sort_by_key(|x| Reverse(x.at));
        by_kind.outbox.sort_by_key(|x| Reverse(x.created_at));
        by_kind
    }
}

/// The daily reconciliation reports, newest day first: their counts, never a finding's detail
/// beyond its kind and transaction.
fn reconciliations_section(reports: &[oen_pay::reconcile::ReportView]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let listed: Vec<String> = r
                .findings
                .iter()
                .map(|f| format!("{:?} {}", f.kind, f.transaction))
                .collect();
            vec![
                escape(&r.date.to_string()),
                r.run.to_string(),
                if r.complete { "complete" } else { "reading" }.to_owned(),
                r.counts.transactions.to_string(),
                r.counts.matched.to_string(),
                r.finding_count.to_string(),
                escape(&listed.join(", ")),
            ]
        })
        .collect();
    let headers = [
        "Taipei day",
        "run",
        "state",
        "transactions",
        "matched",
        "findings",
        "what",
    ];
    section(
        "reconciliation",
        "Daily reconciliation",
        &table(&headers, &rows),
    )
}

fn sessions_section(sessions: &[BindingSession], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                format!(
                    "<a href=\"/demo/return?ref={r}\">{m}</a>",
                    r = escape(s.reference.as_str()),
                    m = mono(s.reference.as_str())
                ),
                escape(s.customer.as_str()),
                escape(s.plan.as_str()),
                escape(&session_state(s, now)),
                time(s.created_at),
                time(s.expires_at),
                s.checkout_id
                    .as_ref()
                    .map(|c| mono(c.as_str()))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let headers = [
        "reference",
        "customer",
        "plan",
        "state",
        "created",
        "expires",
        "Oen page id",
    ];
    section("sessions", "Binding sessions", &table(&headers, &rows))
}

/// A pending session past its expiry is shown as expired, though the store still says pending;
/// a bound one with its last four digits, a failed one with Oen's reason.
fn session_state(s: &BindingSession, now: DateTime<Utc>) -> String {
    let state = s.binding_state(now);
    match &s.state {
        SessionState::Bound { last4, .. } => {
            format!("{state} •••• {}", last4.as_deref().unwrap_or("????"))
        }
        SessionState::Failed { reason, .. } => format!("{state}: {reason}"),
        SessionState::Pending => state.to_string(),
    }
}

fn subscriptions_section(subscriptions: &[Subscription]) -> String {
    let rows: Vec<Vec<String>> = subscriptions
        .iter()
        .map(|s| {
            vec![
                mono(s.id.as_str()),
                escape(s.customer.as_str()),
                escape(s.plan.as_str()),
                escape(&status_text(s.status)),
                mono(s.card.as_str()),
                escape(&s.period.to_string()),
                s.next_action_at.map(time).unwrap_or_else(|| "—".into()),
                escape(&s.dunning_attempts.to_string()),
                operations::subscription_buttons(s),
            ]
        })
        .collect();
    let headers = [
        "id",
        "customer",
        "plan",
        "status",
        "card (binding)",
        "first unpaid period",
        "next action",
        "dunning attempts",
        "operations",
    ];
    section("subscriptions", "Subscriptions", &table(&headers, &rows))
}

/// The status as the store spells it, and what it means for the customer.
fn status_text(status: SubscriptionStatus) -> String {
    let meaning = match status {
        SubscriptionStatus::Active => None,
        SubscriptionStatus::PastDue => Some("a payment failed, retrying"),
        SubscriptionStatus::RequiresPaymentMethod => Some("requires a new card"),
        SubscriptionStatus::Canceled => None,
    };
    match meaning {
        Some(m) => format!("{}: {m}", stored_status(status)),
        None => stored_status(status),
    }
}

/// The status as the store spells it (`past_due`), not its Rust name.
fn stored_status(status: SubscriptionStatus) -> String {
    oen_pay::serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn cards_section(cards: &[Card]) -> String {
    let rows: Vec<Vec<String>> = cards
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
    section(
        "cards",
        "Cards",
        &format!(
            "<p class=\"muted\">The token is stored only as ciphertext under the context \
             (merchant, customer, binding); this page never shows it.</p>{}",
            table(&["customer", "binding", "card", "token", "created"], &rows)
        ),
    )
}

fn periods_section(periods: &[ChargePeriod]) -> String {
    let rows: Vec<Vec<String>> = periods
        .iter()
        .map(|p| {
            vec![
                mono(p.subscription.as_str()),
                escape(&p.period.to_string()),
                mono(p.order_id.as_str()),
                escape(&p.amount.to_string()),
                escape(&period_state(&p.state)),
                escape(&p.attempts.to_string()),
                escape(p.last_error.as_deref().unwrap_or("")),
                match p.refunded {
                    Some(r) => escape(&format!("refunded {r}")),
                    None => operations::refund_form(p),
                },
            ]
        })
        .collect();
    let headers = [
        "subscription",
        "period",
        "order id",
        "amount",
        "state",
        "attempts",
        "last error",
        "refund",
    ];
    section("periods", "Charge periods", &table(&headers, &rows))
}

/// One-off charges (`POST /v1/charges`, or the form below), newest first: what the merchant
/// API's status route says of each, with a refund form on a paid one.
fn charges_section(charges: &[OneOffCharge]) -> String {
    let rows: Vec<Vec<String>> = charges
        .iter()
        .map(|c| {
            let view = oen_pay::oneoff::ChargeView::of(c);
            let word = match view.status {
                ChargeStatus::Succeeded => "succeeded",
                ChargeStatus::Pending => "pending",
                ChargeStatus::Failed => "failed",
            };
            let status = match (&view.transaction, &view.failure) {
                (Some(t), _) => format!("{word}, Oen transaction {t}"),
                (None, Some(f)) => format!("{word}: {}", f.message),
                (None, None) => word.to_owned(),
            };
            vec![
                mono(c.id.as_str()),
                escape(c.customer.as_str()),
                mono(c.order_id.as_str()),
                escape(&c.amount.to_string()),
                escape(&c.description),
                escape(&status),
                escape(&c.attempts.to_string()),
                time(c.created_at),
                match c.refunded {
                    Some(r) => escape(&format!("refunded {r}")),
                    None => operations::charge_refund_form(c),
                },
            ]
        })
        .collect();
    let headers = [
        "charge",
        "customer",
        "order id",
        "amount",
        "description",
        "status",
        "attempts",
        "created",
        "refund",
    ];
    section("charges", "One-off charges", &table(&headers, &rows))
}

fn period_state(state: &PeriodState) -> String {
    match state {
        PeriodState::Open => "open".to_owned(),
        PeriodState::Charging { .. } => "charging (leased)".to_owned(),
        PeriodState::Unknown { checks, .. } => {
            format!("unknown, {checks} reconciliation checks")
        }
        PeriodState::Paid { transaction, .. } => format!("paid, {transaction}"),
        PeriodState::Declined { code, .. } => format!("declined {code}"),
    }
}

fn audits_section(audits: &[AuditEntry]) -> String {
    let rows: Vec<Vec<String>> = audits
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
    let headers = ["at", "customer", "actor", "action", "binding", "detail"];
    section("audit", "Audit log", &table(&headers, &rows))
}

/// Newest first: the log is kept oldest first.
fn events_section(events: &[DomainEvent]) -> String {
    let rows: Vec<Vec<String>> = events
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
    let headers = ["at", "type", "id", "customer", "data"];
    section("events", "Domain events", &table(&headers, &rows))
}

/// Every event as recorded with its state change, and whether it has reached the bus yet.
fn outbox_section(entries: &[OutboxEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|o| {
            vec![
                time(o.created_at),
                mono(&o.event.id),
                o.delivered_at
                    .map(|at| format!("delivered {}", time(at)))
                    .unwrap_or_else(|| "pending".to_owned()),
            ]
        })
        .collect();
    let headers = ["recorded", "event id", "delivery"];
    section("outbox", "Event outbox", &table(&headers, &rows))
}

/// Newest first: the simulator keeps its log oldest first.
fn deliveries_section(deliveries: &[DeliveryRecord]) -> String {
    let rows: Vec<Vec<String>> = deliveries
        .iter()
        .rev()
        .map(|d| {
            let attempts: Vec<String> = d.attempts.iter().map(attempt_text).collect();
            vec![
                escape(&d.delivery_id.to_string()),
                mono(&d.checkout_id),
                escape(&delivery_result(&d.payload)),
                escape(delivery_state(d.state)),
                escape(&attempts.join(", ")),
            ]
        })
        .collect();
    section(
        "deliveries",
        "Webhook deliveries (the simulator's log)",
        &table(&["#", "Oen page id", "result", "state", "attempts"], &rows),
    )
}

/// The payload carries the token: only `success` and `message` are read from it.
fn delivery_result(payload: &Value) -> String {
    match payload.get("success").and_then(|v| v.as_bool()) {
        Some(true) => "success".to_owned(),
        Some(false) => format!(
            "failure: {}",
            payload
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
        ),
        None => "?".to_owned(),
    }
}

fn delivery_state(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => "pending",
        DeliveryState::Held => "held",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Failed => "failed (gave up)",
        DeliveryState::Dropped => "dropped",
        DeliveryState::NoUrl => "no URL",
    }
}

fn attempt_text(a: &DeliveryAttempt) -> String {
    match &a.outcome {
        AttemptOutcome::Status { code } => format!("#{}: HTTP {code}", a.number),
        AttemptOutcome::Error { message } => format!("#{}: {message}", a.number),
    }
}

/// The simulator's ledger as Oen sees it, oldest first, without the tokens it charged.
/// Oen's testing environment keeps its transactions and webhook log to itself: they are in its
/// back office.
fn testing_oen_section(merchant: &str) -> String {
    section(
        "oen",
        "Oen's transactions",
        &format!(
            "<p>Oen's testing environment plays Oen: its transactions and webhook deliveries for \
             merchant <code>{}</code> are in Oen's back office (testing).</p>",
            escape(merchant)
        ),
    )
}

fn oen_section(sim_base_url: &str, ledger: &[LedgerEntry]) -> String {
    let rows: Vec<Vec<String>> = ledger
        .iter()
        .map(|t| {
            vec![
                mono(&t.id),
                mono(&t.order_id),
                escape(&format!("NT${}", t.amount)),
                escape(t.status.as_str()),
                escape(t.reason.as_deref().unwrap_or("")),
                time(t.created_at),
            ]
        })
        .collect();
    let headers = [
        "transaction",
        "order id",
        "amount",
        "status",
        "reason",
        "created",
    ];
    let link = escape(&format!("{sim_base_url}/_sim/ledger"));
    section(
        "oen",
        "Oen's transactions (the simulator's ledger)",
        &format!(
            "<p>Every charge as Oen sees it, in its current state; as JSON at \
             <a href=\"{link}\"><code>{link}</code></a>.</p>{}",
            table(&headers, &rows)
        ),
    )
}
