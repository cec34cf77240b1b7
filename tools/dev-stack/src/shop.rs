//! The merchant's side of the demo: a shop page that mints a signed start link for a customer
//! (what a merchant's backend does for a logged-in customer), and the return page Oen sends the
//! browser back to, which polls `/checkout/status` until the webhook has landed.

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use oen_pay::binding::{self, BindingStatus};
use oen_pay::chrono::Duration;
use oen_pay::dev;
use oen_pay::domain::{BindingRef, BindingState, CustomerId, Interval, Plan};
use oen_pay::links;
use oen_pay::store::{Record, Store};
use oen_pay::web::html_error;
use oen_sim::cards;
use serde::Deserialize;

use crate::demo::Demo;
use crate::page::{escape, mono, page, section, table};

/// How long a minted start link stays valid: long enough to click, short enough to matter.
const LINK_LIFETIME: Duration = Duration::minutes(10);

fn interval_text(plan: &Plan) -> String {
    let every = match plan.interval {
        Interval::Months(1) => "monthly".to_owned(),
        Interval::Months(m) => format!("every {m} months"),
        Interval::Days(1) => "daily".to_owned(),
        Interval::Days(d) => format!("every {d} days"),
    };
    if plan.trial_days > 0 {
        format!("{every}, {}-day trial", plan.trial_days)
    } else {
        every
    }
}

/// The simulator's test cards: what binding with each does, and what charging its token does.
fn test_cards() -> String {
    let rows: Vec<Vec<String>> = cards::catalog()
        .iter()
        .map(|c| {
            vec![
                mono(&c.number),
                escape(c.binding),
                escape(c.charging.unwrap_or("—")),
            ]
        })
        .collect();
    section(
        "test-cards",
        "Test cards",
        &format!(
            "<p>Type one of these on the simulator's card page. Any other number of 12–19 digits \
             behaves like <code>{}</code>. Charging happens when you run the charger on the \
             <a href=\"/demo/state\">state page</a>.</p>{}",
            escape(cards::SUCCESS),
            table(&["card number", "binding", "charging the token"], &rows)
        ),
    )
}

pub(crate) async fn index(State(demo): State<Arc<Demo>>) -> Response {
    // A fresh customer id per visit keeps click-throughs apart; any id may be typed.
    let sessions = demo
        .adapters
        .store
        .snapshot()
        .iter()
        .filter(|r| matches!(r.value, Record::Session(_)))
        .count();
    let customer = format!("cust-{}", 1001 + sessions);
    let options: String = demo
        .plans
        .iter()
        .map(|p| {
            format!(
                "<option value=\"{id}\">{id} — {desc}, {amount} {interval}</option>",
                id = escape(p.id.as_str()),
                desc = escape(&p.description),
                amount = escape(&p.amount.to_string()),
                interval = escape(&interval_text(p)),
            )
        })
        .collect();
    let body = format!(
        "<p>This page plays the merchant's website. Submitting the form does what the merchant's \
         backend does for a logged-in customer: it mints a signed start link (merchant \
         <code>{merchant}</code>, the development signing key) and sends the browser to it. \
         <code>checkout-start</code> then opens a card page at Oen — here {oen} — and \
         Oen's token webhook reaches <code>webhook</code> on this same server.</p>\
         <form method=\"post\" action=\"/demo/start\">\
         <label for=\"customer\">Customer id</label>\
         <input id=\"customer\" name=\"customer\" value=\"{customer}\" required maxlength=\"64\">\
         <label for=\"plan\">Plan</label><select id=\"plan\" name=\"plan\">{options}</select>\
         <label for=\"email\">E-mail (optional, pre-fills Oen's page)</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" \
         placeholder=\"mei@example.com\"><br>\
         <button type=\"submit\">Subscribe — bind a card</button></form>\
         {cards}\
         <section aria-labelledby=\"behind\"><h2 id=\"behind\">Behind the scenes</h2><ul>\
         <li><a href=\"/demo/state\">Inspect state</a>: sessions, subscriptions, cards (last 4 \
         digits only), charge periods and Oen's transactions, audit entries, domain events, \
         webhook deliveries, and the charger's buttons.</li>{ledger}</ul></section>",
        merchant = escape(demo.adapters.merchant.as_str()),
        customer = escape(&customer),
        oen = if demo.sim.is_some() {
            "the simulator"
        } else {
            "Oen's testing environment"
        },
        cards = match &demo.sim {
            Some(_) => test_cards(),
            None => testing_cards(),
        },
        ledger = match &demo.sim {
            Some(sim) => format!(
                "<li><a href=\"{}\">The simulator's ledger</a> (Oen's view of transactions, as \
                 JSON).</li>",
                escape(&format!("{}/_sim/ledger", sim.base_url()))
            ),
            None => String::new(),
        },
    );
    page("Demo shop", &body)
}

/// Oen publishes no test cards for its testing environment: its contact gives them out.
fn testing_cards() -> String {
    section(
        "test-cards",
        "Test cards",
        "<p>Oen's testing environment plays Oen: bind a test card that Oen gave you (Oen \
         publishes no list). Charging happens when you run the charger on the \
         <a href=\"/demo/state\">state page</a>, against Oen's testing API.</p>",
    )
}

#[derive(Deserialize)]
pub(crate) struct StartForm {
    customer: String,
    plan: String,
    #[serde(default)]
    email: String,
}

fn bad_form(message: &str) -> Response {
    html_error(
        StatusCode::BAD_REQUEST,
        "Please check the form",
        message,
        None,
    )
}

/// Mints the signed start link server side (the signing key never reaches the browser) and
/// sends the browser to it.
pub(crate) async fn start(
    State(demo): State<Arc<Demo>>,
    form: Result<Form<StartForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bad_form("The form needs a customer id and a plan.");
    };
    let customer = match CustomerId::parse(form.customer.trim()) {
        Ok(c) => c,
        Err(e) => return bad_form(&e.to_string()),
    };
    let plan = match demo.plans.lookup(form.plan.trim()) {
        Ok(p) => p.id.clone(),
        Err(e) => return bad_form(&e.to_string()),
    };
    let email = Some(form.email.trim()).filter(|e| !e.is_empty());
    let link = links::mint(
        &format!("{}/checkout/start", demo.url),
        dev::DEV_LINK_SIGNING_KEY.as_bytes(),
        &customer,
        &plan,
        demo.adapters.now() + LINK_LIFETIME,
        email,
    );
    let Ok(location) = HeaderValue::from_str(&link) else {
        // mint percent-encodes every value, so this is a bug, not bad input.
        tracing::error!("a minted start link is not a valid header value");
        return html_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not start",
            "The start link could not be built.",
            None,
        );
    };
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(header::LOCATION, location);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
pub(crate) struct ReturnQuery {
    #[serde(rename = "ref")]
    reference: Option<String>,
    payment_error: Option<String>,
}

/// The sentence a state is shown as (the page's script writes the same ones).
fn status_text(s: &BindingStatus) -> String {
    match s.state {
        BindingState::Bound => format!("Card bound: •••• {}", s.last4.as_deref().unwrap_or("????")),
        BindingState::Failed => format!(
            "Binding failed: {}",
            s.reason.as_deref().unwrap_or("unknown reason")
        ),
        BindingState::Expired => "The card page expired before a card was bound.".to_owned(),
        BindingState::Pending => "Waiting for Oen's webhook…".to_owned(),
    }
}

/// Polls `/checkout/status` until the binding settles; writes only with `textContent`.
const POLL_SCRIPT: &str = r#"<script>
(function () {
  var box = document.getElementById('result');
  var ref = box.getAttribute('data-ref');
  var tries = 0;
  function show(text, cls) { box.textContent = text; box.className = cls || ''; }
  function again(ms) {
    if (++tries < 120) { setTimeout(poll, ms); }
    else { show('Still waiting after a minute. Reload the page to check again.', 'bad'); }
  }
  function poll() {
    fetch('/checkout/status?ref=' + encodeURIComponent(ref), { cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.state === 'bound') { show('Card bound: \u2022\u2022\u2022\u2022 ' + (s.last4 || '????'), 'ok'); }
        else if (s.state === 'failed') { show('Binding failed: ' + (s.reason || 'unknown reason'), 'bad'); }
        else if (s.state === 'expired') { show('The card page expired before a card was bound.', 'bad'); }
        else if (s.state === 'pending') { again(500); }
        else { show('Cannot read the binding: ' + (s.error || 'unexpected answer'), 'bad'); }
      })
      .catch(function () { again(1000); });
  }
  poll();
})();
</script>"#;

/// Oen's success and failure URLs both land here, with `ref` (and on failure `payment_error`).
pub(crate) async fn return_page(
    State(demo): State<Arc<Demo>>,
    query: Result<Query<ReturnQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return html_error(
            StatusCode::BAD_REQUEST,
            "Unknown binding",
            "The address is malformed.",
            None,
        );
    };
    let Some(reference) = query
        .reference
        .as_deref()
        .and_then(|r| BindingRef::parse(r).ok())
    else {
        return html_error(
            StatusCode::BAD_REQUEST,
            "Unknown binding",
            "The address has no valid binding reference (ref).",
            None,
        );
    };
    let store: &dyn Store = demo.adapters.store.as_ref();
    let status = match binding::status(store, &reference, demo.adapters.now()).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return html_error(
                StatusCode::NOT_FOUND,
                "Unknown binding",
                "No binding with this reference exists (the dev stack forgets everything when it stops).",
                None,
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "binding status unavailable");
            return html_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Please reload in a moment.",
                None,
            );
        }
    };
    let redirect_note = match &query.payment_error {
        Some(code) => format!(
            "<p>Oen sent the browser to the failure URL with <code>payment_error={}</code>.</p>",
            escape(code)
        ),
        None => "<p>Oen sent the browser to the success URL. That redirect carries nothing: \
                 only the webhook says whether a card was bound, so this page asks \
                 <code>/checkout/status</code> until it knows.</p>"
            .to_owned(),
    };
    let class = match status.state {
        BindingState::Bound => "ok",
        BindingState::Pending => "",
        BindingState::Failed | BindingState::Expired => "bad",
    };
    let script = if status.state == BindingState::Pending {
        POLL_SCRIPT
    } else {
        ""
    };
    let body = format!(
        "{redirect_note}<p>Binding reference: {reference}</p>\
         <div id=\"result\" role=\"status\" aria-live=\"polite\" class=\"{class}\" data-ref=\"{r}\" \
         data-state=\"{state}\">{text}</div>\
         <noscript><p><a href=\"/checkout/status?ref={r}\">Check the status</a></p></noscript>\
         <p><a href=\"/\">Bind another card</a> · <a href=\"/demo/state\">Inspect state</a></p>\
         {script}",
        reference = mono(reference.as_str()),
        r = escape(reference.as_str()),
        state = escape(status.state.as_str()),
        text = escape(&status_text(&status)),
    );
    page("Back at the shop", &body)
}
