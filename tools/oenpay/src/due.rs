//! `oenpay charge-due --dry-run`: every shard of the due-date index read through
//! `GET /v1/due`, page by page, with a progress line on a terminal.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use serde_json::{json, Value};

use crate::render::{table, text};
use crate::{Api, CliError};

/// Everything due, in shard order.
#[derive(Debug, Default)]
pub struct Due {
    pub entries: Vec<Value>,
    pub shards: u64,
}

/// Progress over the shards, drawn on stderr only when it is a terminal.
pub struct Progress {
    draw: bool,
}

impl Progress {
    pub fn on_stderr() -> Self {
        Self {
            draw: std::io::stderr().is_terminal(),
        }
    }

    pub fn hidden() -> Self {
        Self { draw: false }
    }

    fn shard(&mut self, done: u64, of: u64, found: usize) {
        if !self.draw {
            return;
        }
        let width = 16;
        let filled = (done * width / of.max(1)) as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width as usize - filled);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r[{bar}] shard {done}/{of}, {found} due");
        if done == of {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// Reads every page of every shard.
pub async fn all(api: &Api, progress: &mut Progress) -> Result<Due, CliError> {
    let mut due = Due {
        shards: 1,
        ..Due::default()
    };
    let mut shard = 0;
    while shard < due.shards {
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("v1/due?shard={shard}");
            if let Some(a) = &after {
                path.push_str("&after=");
                path.extend(percent_encoding::utf8_percent_encode(
                    a,
                    percent_encoding::NON_ALPHANUMERIC,
                ));
            }
            let page = api.get_raw(&path).await?;
            due.shards = page.body["shards"].as_u64().unwrap_or(due.shards);
            if let Some(entries) = page.body["entries"].as_array() {
                due.entries.extend(entries.iter().cloned());
            }
            match page.body["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        shard += 1;
        progress.shard(shard, due.shards, due.entries.len());
    }
    Ok(due)
}

impl Due {
    /// How many entries of each action, and the NT$ the charges and retries would ask for.
    pub fn totals(&self) -> (BTreeMap<String, u64>, u64) {
        let mut counts = BTreeMap::new();
        let mut amount = 0;
        for e in &self.entries {
            *counts.entry(text(&e["action"])).or_insert(0) += 1;
            amount += e["amount"].as_u64().unwrap_or(0);
        }
        (counts, amount)
    }

    pub fn to_json(&self) -> Value {
        let (counts, amount) = self.totals();
        json!({"entries": self.entries, "counts": counts, "amount": amount})
    }

    pub fn render(&self) -> String {
        if self.entries.is_empty() {
            return "Nothing is due: the next run would charge nothing.\n".to_owned();
        }
        let rows: Vec<Vec<String>> = self
            .entries
            .iter()
            .map(|e| {
                vec![
                    text(&e["customer"]),
                    text(&e["plan"]),
                    text(&e["subscription"]),
                    text(&e["period"]),
                    text(&e["action"]),
                    e["amount"]
                        .as_u64()
                        .map_or("-".to_owned(), |a| format!("NT${a}")),
                    text(&e["dueAt"]),
                ]
            })
            .collect();
        let mut out = table(
            &[
                "CUSTOMER",
                "PLAN",
                "SUBSCRIPTION",
                "PERIOD",
                "ACTION",
                "AMOUNT",
                "DUE SINCE",
            ],
            &rows,
        );
        let (counts, amount) = self.totals();
        let counts: Vec<String> = counts.iter().map(|(a, n)| format!("{n} {a}")).collect();
        out.push_str(&format!(
            "\n{}; NT${amount} would be asked of Oen. Nothing was charged.\n",
            counts.join(", ")
        ));
        out
    }
}
