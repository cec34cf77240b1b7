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

fn result_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p id=\"result\">{x}</p></body></html>",
        t = escape(title),
        x = escape(text)
    );
    (status, Html(body)).into_response()
}

fn form_page(status: StatusCode, email: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p id=\"error\" style=\"color:#b00\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Save your card (Oen simulator)</title></head>
<body>
<h1>Save your card</h1>
<p>Oen simulator binding page. Test cards: {success} succeeds; see the simulator README for declines.</p>
{error}
<form method="post" action="">
  <label>E-mail <input type="email" name="email" value="{email}" required></label><br>
  <label>Card number <input name="cardNumber" inputmode="numeric" autocomplete="cc-number" required></label><br>
  <label>Expiry <input name="expiry" placeholder="MM/YY"></label>
  <label>CVC <input name="cvc" inputmode="numeric"></label><br>
  <button type="submit">Save card</button>
</form>
</body></html>
"#,
        success = cards::SUCCESS,
        email = escape(email),
    );
    (status, Html(body)).into_response()
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
