//! `oenpay dlq list|redrive`: the two dead-letter queues through
//! `GET /v1/dead-letters/{queue}` and `POST /v1/dead-letters/{queue}/redrive`. A redrive asks
//! again (each request moves at most a hundred messages) until nothing is left or a request
//! moves nothing (every message left is one the API keeps, with its reason).

use serde_json::{json, Value};

use crate::render::{table, text};
use crate::{Api, CliError};

/// The queues, in the order they are shown.
pub const QUEUES: [&str; 2] = ["charge", "schedule"];

/// The queues a command covers: the one named, or both.
pub fn queues(named: Option<&str>) -> Vec<&str> {
    match named {
        Some(q) => vec![q],
        None => QUEUES.to_vec(),
    }
}

/// Each queue's listing, as the API answered it.
pub async fn list(api: &Api, named: Option<&str>, limit: u8) -> Result<Vec<Value>, CliError> {
    let mut out = Vec::new();
    for queue in queues(named) {
        let answer = api
            .get_raw(&format!("v1/dead-letters/{queue}?limit={limit}"))
            .await?;
        out.push(answer.body);
    }
    Ok(out)
}

/// Each queue's redrive, summed over the requests it took.
pub async fn redrive(api: &Api, named: Option<&str>) -> Result<Vec<Value>, CliError> {
    let mut out = Vec::new();
    for queue in queues(named) {
        let mut moved = 0;
        let mut kept: Vec<Value> = Vec::new();
        let mut requests = 0;
        let remaining = loop {
            let answer = api
                .send(
                    "POST",
                    &["v1", "dead-letters", queue, "redrive"],
                    Some(&json!({})),
                    &[],
                )
                .await?;
            requests += 1;
            let step = answer.body["moved"].as_u64().unwrap_or(0);
            moved += step;
            for k in answer.body["kept"].as_array().into_iter().flatten() {
                if !kept.iter().any(|seen| seen["id"] == k["id"]) {
                    kept.push(k.clone());
                }
            }
            let remaining = answer.body["remaining"].as_u64().unwrap_or(0);
            // Nothing moved: what is left is kept (hidden for a minute) or arriving now.
            if remaining == 0 || step == 0 || requests >= 1000 {
                break remaining;
            }
        };
        out.push(json!({
            "queue": queue,
            "moved": moved,
            "kept": kept,
            "remaining": remaining,
            "requests": requests,
        }));
    }
    Ok(out)
}

/// The listings as tables: one line per queue, then one per message.
pub fn render_list(listings: &[Value]) -> String {
    let rows: Vec<Vec<String>> = listings
        .iter()
        .map(|l| {
            vec![
                text(&l["queue"]),
                text(&l["approximateMessages"]),
                l["messages"].as_array().map_or(0, Vec::len).to_string(),
            ]
        })
        .collect();
    let mut out = table(&["QUEUE", "MESSAGES", "SHOWN"], &rows);
    let messages: Vec<Vec<String>> = listings
        .iter()
        .flat_map(|l| {
            l["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |m| {
                    let error = m["attributes"]
                        .get("ERROR_CODE")
                        .map(text)
                        .unwrap_or_else(|| "-".to_owned());
                    vec![
                        text(&l["queue"]),
                        text(&m["id"]),
                        to_seconds(&text(&m["sentAt"])),
                        text(&m["receiveCount"]),
                        error,
                        text(&m["redrive"]),
                    ]
                })
        })
        .collect();
    if !messages.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &[
                "QUEUE",
                "MESSAGE",
                "SENT",
                "RECEIVED",
                "ERROR",
                "A REDRIVE WOULD",
            ],
            &messages,
        ));
    }
    let waiting: u64 = listings
        .iter()
        .filter_map(|l| l["approximateMessages"].as_u64())
        .sum();
    if waiting > 0 {
        out.push_str(
            "\nRead why in the charger's logs and fix the cause, then: oenpay dlq redrive\n",
        );
    }
    out
}

/// An RFC 3339 time without its fraction of a second.
fn to_seconds(t: &str) -> String {
    match t.split_once('.') {
        Some((whole, rest)) if rest.ends_with('Z') => format!("{whole}Z"),
        _ => t.to_owned(),
    }
}

/// The redrives as a table, then what was kept and why.
pub fn render_redrive(redrives: &[Value]) -> String {
    let rows: Vec<Vec<String>> = redrives
        .iter()
        .map(|r| {
            vec![
                text(&r["queue"]),
                text(&r["moved"]),
                r["kept"].as_array().map_or(0, Vec::len).to_string(),
                text(&r["remaining"]),
            ]
        })
        .collect();
    let mut out = table(&["QUEUE", "MOVED", "KEPT", "REMAINING"], &rows);
    let kept: Vec<Vec<String>> = redrives
        .iter()
        .flat_map(|r| {
            r["kept"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |k| vec![text(&r["queue"]), text(&k["id"]), text(&k["reason"])])
        })
        .collect();
    if !kept.is_empty() {
        out.push('\n');
        out.push_str(&table(&["QUEUE", "KEPT MESSAGE", "WHY"], &kept));
        out.push_str(
            "\nKept messages are not work oen-pay recognises; read them with `oenpay dlq list` \
             and delete them in the SQS console once understood.\n",
        );
    }
    if redrives.iter().any(|r| r["moved"].as_u64() > Some(0)) {
        out.push_str("\nThe charger works what was moved from the charge queue within minutes.\n");
    }
    out
}
