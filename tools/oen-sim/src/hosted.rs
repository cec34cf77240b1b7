//! The hosted card-binding page, as Oen serves it at
//! `https://{merchantId}.oen.tw/checkout/subscription/create/{id}`. The simulator serves it at
//! `/checkout/subscription/create/{id}` and, so that a hosted base URL with the merchant in it
//! works on localhost, at `/hosted/{merchantId}/checkout/subscription/create/{id}`.

use crate::cards;
use crate::model::{Checkout, CheckoutState};
use crate::state::{BindOutcome, SharedRef};
use crate::webhook;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

pub(crate) fn routes() -> Router<SharedRef> {
    Router::new()
        .route("/checkout/subscription/create/{id}", get(show).post(submit))
        .route(
            "/hosted/{merchant_id}/checkout/subscription/create/{id}",
            get(show_prefixed).post(submit_prefixed),
        )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct BindForm {
    email: String,
    card_number: String,
}

async fn show(State(shared): State<SharedRef>, Path(id): Path<String>) -> Response {
    page(&shared, &id, None).await
}

async fn show_prefixed(
    State(shared): State<SharedRef>,
    Path((merchant_id, id)): Path<(String, String)>,
) -> Response {
    if merchant_id != shared.merchant_id {
        return missing_page();
    }
    page(&shared, &id, None).await
}

async fn submit(
    State(shared): State<SharedRef>,
    Path(id): Path<String>,
    Form(form): Form<BindForm>,
) -> Response {
    page(&shared, &id, Some(form)).await
}

async fn submit_prefixed(
    State(shared): State<SharedRef>,
    Path((merchant_id, id)): Path<(String, String)>,
    Form(form): Form<BindForm>,
) -> Response {
    if merchant_id != shared.merchant_id {
        return missing_page();
    }
    page(&shared, &id, Some(form)).await
}

/// GET (no form) shows the page; POST (a form) binds the card.
async fn page(shared: &SharedRef, id: &str, form: Option<BindForm>) -> Response {
    let checkout = {
        let mut st = shared.lock();
        st.expire_if_due(id, shared.page_validity);
        st.checkouts.get(id).cloned()
    };
    let Some(checkout) = checkout else {
        return missing_page();
    };
    // A GET is answered 302, the answer to a form POST is 303 (the browser then GETs).
    let redirect_status = if form.is_some() {
        StatusCode::SEE_OTHER
    } else {
        StatusCode::FOUND
    };
    match checkout.state {
        CheckoutState::Expired => return failure(&checkout, "Y003", redirect_status),
        CheckoutState::Bound | CheckoutState::Failed => {
            return failure(&checkout, "V0002", redirect_status)
        }
        CheckoutState::Open => {}
    }
    let Some(form) = form else {
        let email = checkout.payer_email.clone().unwrap_or_default();
        return form_page(StatusCode::OK, &email, None);
    };
    if !form.email.contains('@') || form.email.trim().len() < 3 {
        return form_page(
            StatusCode::BAD_REQUEST,
            &form.email,
            Some("Please enter a valid e-mail address."),
        );
    }
    if !cards::is_plausible(&form.card_number) {
        return form_page(
            StatusCode::BAD_REQUEST,
            &form.email,
            Some("Please enter a card number of 12 to 19 digits."),
        );
    }
    let outcome = shared.lock().bind(id, &form.card_number);
    let last4 = cards::last4(&form.card_number);
    match outcome {
        Some(BindOutcome::Bound { token }) => {
            let payload = webhook::token_payload(shared, &checkout, Some(&token), &last4, "");
            webhook::enqueue(shared, &checkout.id, payload);
            match &checkout.success_url {
                Some(url) => redirect(url, redirect_status),
                None => result_page(StatusCode::OK, "Card bound", "Your card has been saved."),
            }
        }
        Some(BindOutcome::Failed { code, message }) => {
            let payload = webhook::token_payload(shared, &checkout, None, &last4, message);
            webhook::enqueue(shared, &checkout.id, payload);
            failure(&checkout, code, redirect_status)
        }
        None => missing_page(),
    }
}

fn failure(checkout: &Checkout, code: &str, status: StatusCode) -> Response {
    match &checkout.failure_url {
        Some(url) => redirect(&with_payment_error(url, code), status),
        None => result_page(
            StatusCode::OK,
            "Card binding failed",
            &format!("The card could not be saved (payment_error={code})."),
        ),
    }
}

/// Appends `payment_error=<code>` with `?` or `&`, before any fragment.
pub(crate) fn with_payment_error(url: &str, code: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{separator}payment_error={code}");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

fn redirect(location: &str, status: StatusCode) -> Response {
    (status, [(header::LOCATION, location.to_string())]).into_response()
}

fn missing_page() -> Response {
    result_page(
        StatusCode::NOT_FOUND,
        "Not Found",
        "This card-binding page does not exist.",
    )
}

/// Enough style for the page to read well on a phone and on a desktop.
const STYLE: &str = "\
body{font-family:system-ui,sans-serif;max-width:40rem;margin:1.5rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}p{overflow-wrap:anywhere}\
label{display:block;margin:.6rem 0 .2rem}\
input{font-size:1rem;padding:.3rem;width:100%;max-width:22rem;box-sizing:border-box}\
button{display:block;font-size:1rem;padding:.4rem 1.2rem;margin-top:1rem}\
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.9rem}\
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}\
th{background:#f3f3f3}code{font-family:ui-monospace,monospace}";

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        t = escape(title),
    )
}

fn result_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<h1>{t}</h1><p id=\"result\" role=\"status\">{x}</p>",
        t = escape(title),
        x = escape(text)
    );
    (status, Html(html_page(title, &body))).into_response()
}

/// The test cards and what each does, so that a person at the page knows what to type.
fn test_cards() -> String {
    let rows: String = cards::catalog()
        .iter()
        .map(|c| {
            format!(
                "<tr><td><code>{n}</code></td><td>{b}</td><td>{c}</td></tr>",
                n = escape(&c.number),
                b = escape(c.binding),
                c = escape(c.charging.unwrap_or("—")),
            )
        })
        .collect();
    format!(
        "<section aria-labelledby=\"test-cards\"><h2 id=\"test-cards\">Test cards</h2>\
         <p>This is the simulator: no card is real. The number you type decides what happens; \
         any other number of 12–19 digits behaves like <code>{success}</code>.</p>\
         <div class=\"scroll\"><table><thead><tr><th>card number</th><th>binding</th>\
         <th>charging the token</th></tr></thead><tbody>{rows}</tbody></table></div></section>",
        success = cards::SUCCESS,
    )
}

fn form_page(status: StatusCode, email: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| {
            format!(
                "<p id=\"error\" role=\"alert\" style=\"color:#b00\">{}</p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Save your card</h1>
<p>Oen simulator binding page.</p>
{error}
<form method="post" action="">
  <label for="email">E-mail</label>
  <input id="email" type="email" name="email" value="{email}" autocomplete="email" required>
  <label for="card-number">Card number</label>
  <input id="card-number" name="cardNumber" inputmode="numeric" autocomplete="cc-number" required>
  <label for="expiry">Expiry</label>
  <input id="expiry" name="expiry" placeholder="MM/YY" autocomplete="cc-exp">
  <label for="cvc">CVC</label>
  <input id="cvc" name="cvc" inputmode="numeric" autocomplete="cc-csc">
  <button type="submit">Save card</button>
</form>
{cards}"#,
        email = escape(email),
        cards = test_cards(),
    );
    (
        status,
        Html(html_page("Save your card (Oen simulator)", &body)),
    )
        .into_response()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_error_is_appended_with_the_right_separator() {
        assert_eq!(
            with_payment_error("https://shop.example/fail", "T0004"),
            "https://shop.example/fail?payment_error=T0004"
        );
        assert_eq!(
            with_payment_error("https://shop.example/fail?ref=1#top", "Y003"),
            "https://shop.example/fail?ref=1&payment_error=Y003#top"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
