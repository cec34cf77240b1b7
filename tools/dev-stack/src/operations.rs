//! The state page's operations: cancel, resume, refunds and a one-off charge, run by the merchant
//! API's own code (`oen_pay::ops`, `oen_pay::oneoff`) and answered on the state page, so a
//! newcomer can try them without AWS. `oenpay --endpoint <this stack>` reaches the same code
//! through the merchant API's routes under `/v1`.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use oen_pay::charging::{ChargePolicy, WorkContext};
use oen_pay::config;
use oen_pay::oneoff::{self, OneOffDeps, OneOffRequest};
use oen_pay::ops::{CancelAt, CancelRequest, Operations, OpsError, RefundRequest, RefundView};
use oen_pay::serde_json::{json, Value};
use serde::Deserialize;

use crate::demo::Demo;
use crate::page::escape;

/// Who the audit trail names for these actions.
const ACTOR: &str = "oen-dev state page";

fn operations(demo: &Demo) -> Operations {
    Operations {
        deps: demo.adapters.charge_deps(),
        secrets: demo.adapters.secrets.clone(),
        link_max_ttl: config::DEFAULT_LINK_MAX_TTL,
    }
}

/// Back to the state page, where the outcome is shown.
fn done(demo: &Demo, line: String) -> Response {
    demo.last_operation.set(vec![line]);
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_static("/demo/state#operations"),
    );
    r
}

#[derive(Deserialize)]
pub(crate) struct CancelForm {
    at: String,
}

/// `POST /demo/ops/subscriptions/{id}/cancel`, `at` = `now` or `period_end`.
pub(crate) async fn cancel(
    State(demo): State<Arc<Demo>>,
    Path(id): Path<String>,
    form: Result<Form<CancelForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let at = match form.as_ref().map(|f| f.at.as_str()) {
        Ok("now") => CancelAt::Now,
        Ok("period_end") => CancelAt::PeriodEnd,
        _ => {
            return done(
                &demo,
                "Cancel refused: at must be now or period_end.".into(),
            )
        }
    };
    let line = match operations(&demo)
        .cancel(ACTOR, &id, CancelRequest { at })
        .await
    {
        Ok(s) if s.cancel_at_period_end => {
            format!("Subscription {id} cancels at the end of its paid period.")
        }
        Ok(s) => format!("Subscription {id} is {}.", status_word(&s.status)),
        Err(e) => format!("Cancel of {id} refused: {e} ({}).", e.code()),
    };
    done(&demo, line)
}

/// `POST /demo/ops/subscriptions/{id}/resume`.
pub(crate) async fn resume(State(demo): State<Arc<Demo>>, Path(id): Path<String>) -> Response {
    let line = match operations(&demo).resume(ACTOR, &id).await {
        Ok(_) => format!("Subscription {id} resumed: it renews as before."),
        Err(e) => format!("Resume of {id} refused: {e} ({}).", e.code()),
    };
    done(&demo, line)
}

#[derive(Deserialize)]
pub(crate) struct RefundForm {
    /// NT$; empty refunds the whole charge.
    #[serde(default)]
    amount: String,
}

/// `POST /demo/ops/periods/{order}/refund`.
pub(crate) async fn refund(
    State(demo): State<Arc<Demo>>,
    Path(order): Path<String>,
    form: Result<Form<RefundForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let request = match refund_request(form) {
        Ok(r) => r,
        Err(line) => return done(&demo, line),
    };
    let result = operations(&demo).refund(ACTOR, &order, request).await;
    done(&demo, refund_line(&order, result))
}

/// `POST /demo/ops/charges/{id}/refund`: a paid one-off charge refunded.
pub(crate) async fn refund_charge(
    State(demo): State<Arc<Demo>>,
    Path(id): Path<String>,
    form: Result<Form<RefundForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let request = match refund_request(form) {
        Ok(r) => r,
        Err(line) => return done(&demo, line),
    };
    let result = operations(&demo).refund_charge(ACTOR, &id, request).await;
    done(&demo, refund_line(&id, result))
}

/// The refund a form asks for, or the line that says why it is refused.
fn refund_request(
    form: Result<Form<RefundForm>, axum::extract::rejection::FormRejection>,
) -> Result<RefundRequest, String> {
    let amount = match form.as_ref().map(|f| f.amount.trim()) {
        Ok("") => None,
        Ok(raw) => match raw.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(format!(
                    "Refund refused: {raw:?} is not a whole number of NT$."
                ))
            }
        },
        Err(_) => return Err("Refund refused: the form was malformed.".into()),
    };
    Ok(RefundRequest {
        amount,
        reason: Some("refunded from the oen-dev state page".into()),
    })
}

fn refund_line(what: &str, result: Result<RefundView, OpsError>) -> String {
    match result {
        Ok(r) if r.replayed => format!(
            "Order {}: NT${} was refunded before; nothing was sent to Oen again.",
            r.order_id, r.refunded
        ),
        Ok(r) => format!(
            "Order {}: refunded NT${} of NT${} (Oen transaction {}).",
            r.order_id, r.refunded, r.charged, r.transaction
        ),
        Err(e) => format!("Refund of {what} refused: {e} ({}).", e.code()),
    }
}

#[derive(Deserialize)]
pub(crate) struct ChargeForm {
    customer: String,
    amount: String,
    description: String,
    /// Made when the page was shown: sending the same form twice charges once.
    key: String,
}

/// `POST /demo/ops/charges`: a one-off charge of the customer's saved card.
pub(crate) async fn charge(
    State(demo): State<Arc<Demo>>,
    form: Result<Form<ChargeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return done(&demo, "Charge refused: the form was malformed.".into());
    };
    let Ok(amount) = form.amount.trim().parse::<i64>() else {
        return done(
            &demo,
            format!(
                "Charge refused: {:?} is not a whole number of NT$.",
                form.amount
            ),
        );
    };
    let body = json!({
        "customer": form.customer.trim(),
        "amount": amount,
        "description": form.description.trim(),
    });
    let request = match OneOffRequest::from_json(body.to_string().as_bytes()) {
        Ok(r) => r,
        Err(e) => return done(&demo, format!("Charge refused: {e} ({}).", e.code())),
    };
    let binding = demo.adapters.binding_deps();
    let policy = ChargePolicy::default();
    let deps = OneOffDeps::new(&binding, &policy, "dev-stack");
    let ctx = WorkContext {
        owner: format!("oen-dev {}", form.key),
        deadline: None,
    };
    let line = match oneoff::create(&deps, Some(&form.key), &request, &ctx).await {
        Ok(reply) => describe_reply(reply.status, &reply.body, reply.replayed),
        Err(e) => format!("Charge refused: {e} ({}).", e.code()),
    };
    done(&demo, line)
}

fn describe_reply(status: u16, body: &Value, replayed: bool) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let again = if replayed {
        " (this form was sent before: its first answer, nothing charged again)"
    } else {
        ""
    };
    match status {
        201 => format!(
            "Charge {} of NT${}: succeeded, Oen transaction {}{again}.",
            text(&body["id"]),
            body["amount"],
            text(&body["transaction"])
        ),
        202 => format!(
            "Charge {}: pending — Oen's answer was lost; the charger reconciles it and never \
             charges it twice{again}.",
            text(&body["id"])
        ),
        _ => format!(
            "Charge declined: {}{again}.",
            body["error"]["message"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_owned)
        ),
    }
}

fn status_word(status: &oen_pay::store::SubscriptionStatus) -> String {
    oen_pay::serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The buttons of one subscription's row.
pub(crate) fn subscription_buttons(s: &oen_pay::store::Subscription) -> String {
    use oen_pay::store::SubscriptionStatus;
    if s.status == SubscriptionStatus::Canceled {
        return "<span class=\"muted\">—</span>".to_owned();
    }
    let id = escape(s.id.as_str());
    let form = |action: &str, fields: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"/demo/ops/subscriptions/{id}/{action}\">{fields}\
             <button>{label}</button></form>"
        )
    };
    let mut out = String::new();
    if s.cancel_at_period_end {
        out.push_str(&form("resume", "", "Resume"));
    } else {
        out.push_str(&form(
            "cancel",
            "<input type=\"hidden\" name=\"at\" value=\"period_end\">",
            "Cancel at period end",
        ));
    }
    out.push_str(&form(
        "cancel",
        "<input type=\"hidden\" name=\"at\" value=\"now\">",
        "Cancel now",
    ));
    out
}

/// The refund form of a paid period not yet refunded.
pub(crate) fn refund_form(p: &oen_pay::store::ChargePeriod) -> String {
    if !matches!(p.state, oen_pay::store::PeriodState::Paid { .. }) || p.refunded.is_some() {
        return String::new();
    }
    let order = escape(p.order_id.as_str());
    format!(
        "<form method=\"post\" action=\"/demo/ops/periods/{order}/refund\">\
         <label for=\"refund-{order}\">NT$ to refund (empty: all)</label>\
         <input id=\"refund-{order}\" name=\"amount\" inputmode=\"numeric\" size=\"6\">\
         <button>Refund</button></form>"
    )
}

/// The refund form of a paid one-off charge not yet refunded.
pub(crate) fn charge_refund_form(c: &oen_pay::domain::OneOffCharge) -> String {
    if !matches!(c.state, oen_pay::domain::ChargeState::Paid { .. }) || c.refunded.is_some() {
        return String::new();
    }
    let id = escape(c.id.as_str());
    format!(
        "<form method=\"post\" action=\"/demo/ops/charges/{id}/refund\">\
         <label for=\"refund-{id}\">NT$ to refund (empty: all)</label>\
         <input id=\"refund-{id}\" name=\"amount\" inputmode=\"numeric\" size=\"6\">\
         <button>Refund</button></form>"
    )
}

/// The operations part of the state page: the last outcome, and a one-off charge form.
pub(crate) fn section(demo: &Demo) -> String {
    let last: String = demo
        .last_operation
        .lines()
        .iter()
        .map(|l| format!("<p role=\"status\">{}</p>", escape(l)))
        .collect();
    let mut key = [0u8; 12];
    let key = match getrandom::fill(&mut key) {
        Ok(()) => format!("oen-dev-{}", hex::encode(key)),
        Err(_) => return String::new(),
    };
    format!(
        "<section aria-labelledby=\"operations\"><h2 id=\"operations\">Operations</h2>\
         <p>Cancel, resume and refund from the tables above, or charge a saved card once. These \
         run the merchant API's own code; <code>oenpay --endpoint {url}</code> reaches it too.</p>\
         {last}\
         <form method=\"post\" action=\"/demo/ops/charges\">\
         <input type=\"hidden\" id=\"charge-key\" name=\"key\" value=\"{key}\">\
         <label for=\"charge-customer\">Customer</label>\
         <input id=\"charge-customer\" name=\"customer\" value=\"cust-1001\">\
         <label for=\"charge-amount\">Amount (NT$)</label>\
         <input id=\"charge-amount\" name=\"amount\" inputmode=\"numeric\" value=\"120\">\
         <label for=\"charge-description\">Description</label>\
         <input id=\"charge-description\" name=\"description\" value=\"Late fee\">\
         <button>Charge the saved card once</button></form></section>",
        url = escape(&demo.url),
    )
}
