//! Human output: the API's JSON as short tables. `--json` prints the JSON itself instead.

use serde_json::Value;

/// A table with a header row, columns padded to their widest cell (by characters).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A field as text: strings bare, absent or null as `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ntd(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => format!("NT${n}"),
        None => text(v),
    }
}

fn fields(v: &Value, names: &[&str]) -> String {
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|n| vec![format!("{n}:"), text(&v[*n])])
        .collect();
    let mut out = String::new();
    let width = names.iter().map(|n| n.len() + 1).max().unwrap_or(0);
    for row in rows {
        out.push_str(&format!("{:width$}  {}\n", row[0], row[1]));
    }
    out
}

fn periods(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            vec![
                text(&p["period"]),
                text(&p["orderId"]),
                ntd(&p["amount"]),
                text(&p["status"]),
                text(&p["transaction"]),
                p["refunded"]
                    .as_u64()
                    .map_or("-".to_owned(), |r| format!("NT${r}")),
                text(&p["declineCode"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "  (no periods yet)\n".to_owned();
    }
    table(
        &[
            "PERIOD", "ORDER", "AMOUNT", "STATUS", "OEN TXN", "REFUNDED", "DECLINE",
        ],
        &rows,
    )
}

/// `GET /v1/subscriptions/{id}`.
pub fn subscription(s: &Value) -> String {
    let mut out = fields(
        s,
        &[
            "id",
            "customer",
            "plan",
            "status",
            "cancelAtPeriodEnd",
            "currentPeriod",
            "nextActionAt",
            "cardLast4",
        ],
    );
    out.push_str("\nRecent periods:\n");
    out.push_str(&periods(&s["recentPeriods"]));
    out
}

/// `GET /v1/customers/{customer}`.
pub fn customer(c: &Value) -> String {
    let mut out = format!("Customer {}\n\nSubscriptions:\n", text(&c["customer"]));
    let subs = c["subscriptions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if subs.is_empty() {
        out.push_str("  (none)\n");
    } else {
        let rows: Vec<Vec<String>> = subs
            .iter()
            .map(|s| {
                vec![
                    text(&s["id"]),
                    text(&s["plan"]),
                    text(&s["status"]),
                    if s["cancelAtPeriodEnd"] == Value::Bool(true) {
                        "at period end".to_owned()
                    } else {
                        "-".to_owned()
                    },
                    text(&s["nextActionAt"]),
                    text(&s["cardLast4"]),
                ]
            })
            .collect();
        out.push_str(&table(
            &["ID", "PLAN", "STATUS", "CANCELS", "NEXT", "CARD"],
            &rows,
        ));
    }
    out.push_str("\nCards:\n");
    let cards = c["cards"].as_array().map(Vec::as_slice).unwrap_or_default();
    if cards.is_empty() {
        out.push_str("  (none)\n");
    } else {
        let rows: Vec<Vec<String>> = cards
            .iter()
            .map(|card| {
                vec![
                    format!("•••• {}", text(&card["last4"])),
                    text(&card["boundAt"]),
                    card["chargedFor"]
                        .as_array()
                        .map(|p| p.iter().map(text).collect::<Vec<_>>().join(", "))
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        out.push_str(&table(&["CARD", "BOUND", "CHARGED FOR"], &rows));
    }
    for s in subs {
        out.push_str(&format!(
            "\nRecent periods of {} ({}):\n",
            text(&s["id"]),
            text(&s["plan"])
        ));
        out.push_str(&periods(&s["recentPeriods"]));
    }
    out
}

/// `POST /v1/links`.
pub fn link(l: &Value) -> String {
    format!(
        "{}\n(for {} on {}, usable until {})\n",
        text(&l["url"]),
        text(&l["customer"]),
        text(&l["plan"]),
        text(&l["expiresAt"])
    )
}

/// `POST /v1/periods/{orderId}/refund` and `POST /v1/charges/{id}/refund`.
pub fn refund(r: &Value) -> String {
    let mut out = format!(
        "Refunded {} of {} for order {} (Oen transaction {}).\n",
        ntd(&r["refunded"]),
        ntd(&r["charged"]),
        text(&r["orderId"]),
        text(&r["transaction"])
    );
    if r["replayed"] == Value::Bool(true) {
        out.push_str("This refund was made before; nothing was sent to Oen again.\n");
    }
    out
}

/// A one-off charge (`POST /v1/charges`, `GET /v1/charges/{id}`), with what its status means.
pub fn charge(c: &Value) -> String {
    let mut out = fields(
        c,
        &[
            "id",
            "status",
            "customer",
            "amount",
            "description",
            "reference",
            "orderId",
            "cardLast4",
            "transaction",
        ],
    );
    if let Some(r) = c.get("refunded").filter(|r| !r.is_null()) {
        out.push_str(&format!("refunded:     {}\n", ntd(r)));
    }
    if let Some(f) = c.get("failure").filter(|f| !f.is_null()) {
        out.push_str(&format!(
            "failure:      {} {}\n",
            text(&f["code"]),
            text(&f["message"])
        ));
    }
    let meaning = match c["status"].as_str() {
        Some("pending") => Some(format!(
            "Oen's answer was lost or is not final: the charge is being reconciled with Oen \
             and is never sent twice. Check again with `oenpay charges show {}`.",
            text(&c["id"])
        )),
        Some("succeeded") | Some("paid") => Some("The card was charged.".to_owned()),
        _ => None,
    };
    if let Some(m) = meaning {
        out.push('\n');
        out.push_str(&m);
        out.push('\n');
    }
    out
}

/// `GET /v1/reconciliation/{date}`.
pub fn reconciliation(r: &Value) -> String {
    let c = &r["counts"];
    let state = if r["complete"] == Value::Bool(true) {
        "complete"
    } else {
        "not complete yet (the next run continues it)"
    };
    let mut out = format!(
        "Reconciliation of {} (Taipei), run {}: {state}, {} pages read.\n\n",
        text(&r["date"]),
        text(&r["run"]),
        text(&r["pagesRead"])
    );
    let counts = [
        ("transactions at Oen", "transactions"),
        ("matched", "matched"),
        ("orphans (at Oen, not ours)", "orphans"),
        ("amount mismatches", "amountMismatches"),
        ("double charges", "doubleCharges"),
        ("refunds we did not make", "foreignRefunds"),
        ("paid at Oen, not settled with us", "unsettled"),
    ];
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|(label, key)| vec![(*label).to_owned(), text(&c[*key])])
        .collect();
    out.push_str(&table(&["", "COUNT"], &rows));
    let findings = r["findings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if findings.is_empty() {
        out.push_str("\nNothing is off.\n");
        return out;
    }
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                text(&f["kind"]),
                text(&f["orderId"]),
                text(&f["transaction"]),
                text(&f["status"]),
                ntd(&f["amount"]),
                ntd(&f["expectedAmount"]),
            ]
        })
        .collect();
    out.push_str("\nFindings:\n");
    out.push_str(&table(
        &["KIND", "ORDER", "OEN TXN", "STATUS", "AMOUNT", "EXPECTED"],
        &rows,
    ));
    if r["findingsTruncated"] == Value::Bool(true) {
        out.push_str(&format!(
            "(the first {} of {} findings; the counts above are exact)\n",
            findings.len(),
            text(&r["findingCount"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_report_lists_its_counts_and_findings() {
        let r = json!({
            "date": "2026-11-29", "run": 1, "complete": true, "pagesRead": 3,
            "counts": {"transactions": 120, "matched": 117, "orphans": 1, "amountMismatches": 1,
                       "doubleCharges": 1, "foreignRefunds": 0, "unsettled": 0},
            "findingCount": 3, "findingsTruncated": false,
            "findings": [{"kind": "double_charge", "orderId": "Sub0000000000001P000002",
                          "transaction": "P20261129AAAA0002", "status": "charged",
                          "amount": 500, "expectedAmount": 500}]
        });
        let out = reconciliation(&r);
        assert!(
            out.contains("2026-11-29 (Taipei), run 1: complete"),
            "{out}"
        );
        assert!(
            out.contains("double charges") && out.contains("double_charge"),
            "{out}"
        );
        assert!(
            out.contains("P20261129AAAA0002") && out.contains("NT$500"),
            "{out}"
        );
        assert!(!out.contains("null"), "{out}");
    }

    #[test]
    fn tables_align_by_characters() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["•••• 4242".into(), "x".into()],
                vec!["1".into(), "yy".into()],
            ],
        );
        assert_eq!(t, "A          BB\n•••• 4242  x\n1          yy\n");
    }

    #[test]
    fn a_customer_reads_as_tables_without_nulls() {
        let c = json!({
            "customer": "mei",
            "subscriptions": [{
                "id": "Sub0000000000001", "plan": "premium", "status": "active",
                "cancelAtPeriodEnd": true, "nextActionAt": null, "cardLast4": "4242",
                "recentPeriods": [{
                    "period": 0, "orderId": "Sub0000000000001P000000", "amount": 500,
                    "status": "paid", "transaction": "P20261130AAAA0001", "refunded": 100
                }]
            }],
            "cards": [{"last4": "4242", "boundAt": "2026-11-30T00:00:00Z", "chargedFor": ["premium"]}]
        });
        let out = customer(&c);
        assert!(out.contains("at period end"), "{out}");
        assert!(out.contains("•••• 4242"), "{out}");
        assert!(out.contains("NT$500") && out.contains("NT$100"), "{out}");
        assert!(!out.contains("null"), "{out}");
    }
}
