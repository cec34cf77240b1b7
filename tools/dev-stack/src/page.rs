//! The page frame shared by the demo pages. Every piece of text that reaches HTML goes through
//! [`escape`] (re-exported from `oen_pay::web`).

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
pub(crate) use oen_pay::web::escape;

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}p,li{overflow-wrap:anywhere}\
.scroll{overflow-x:auto}\
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}\
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}\
th{background:#f3f3f3}code,.mono{font-family:ui-monospace,monospace}\
form label{display:block;margin:.6rem 0 .2rem}\
input,select{font-size:1rem;padding:.2rem;max-width:100%;box-sizing:border-box}\
button{font-size:1rem;padding:.3rem 1rem;margin-top:.5rem}\
nav a{margin-right:1rem}.ok{color:#075}.bad{color:#a00}.muted{color:#777}\
#result{font-size:1.2rem;padding:1rem;border:1px solid #ccc;border-radius:.3rem;overflow-wrap:anywhere}";

/// A whole page: title, navigation, then `body` (already HTML, its text already escaped).
/// Never cached: every page shows live state.
pub(crate) fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t} · oen-dev</title><style>{STYLE}</style></head><body>\
         <nav aria-label=\"Pages\"><a href=\"/\">Demo shop</a><a href=\"/demo/state\">Inspect state</a></nav>\
         <h1>{t}</h1>{body}</body></html>",
        t = escape(title),
    );
    let mut r = Html(html).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A part of a page under its own heading: a region named by that heading. `id` names the
/// heading; `inner` is already HTML.
pub(crate) fn section(id: &str, heading: &str, inner: &str) -> String {
    format!(
        "<section aria-labelledby=\"{id}\"><h2 id=\"{id}\">{h}</h2>{inner}</section>",
        id = escape(id),
        h = escape(heading),
    )
}

/// A table with a header row; each cell of `rows` is already HTML. An empty table says so. A
/// table wider than the screen scrolls inside its own box, not the whole page.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">None yet.</p>".to_owned();
    }
    let mut out = String::from("<div class=\"scroll\"><table><thead><tr>");
    for h in headers {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{cell}</td>"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// Escaped text in a monospace cell.
pub(crate) fn mono(text: &str) -> String {
    format!("<span class=\"mono\">{}</span>", escape(text))
}

/// A UTC instant as people read it.
pub(crate) fn time(t: oen_pay::chrono::DateTime<oen_pay::chrono::Utc>) -> String {
    escape(&t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}
