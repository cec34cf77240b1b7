//! `GET /transactions?start=&end=&page=`: every money movement of a window of Taipei days,
//! newest first, 50 a page, refunds shown on their transactions.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use oen_sim::{cards, Simulator};
use serde_json::{json, Value};
use std::collections::HashSet;

/// Follows the `page` tokens from the first page to the last; returns every page.
async fn all_pages(sim: &Simulator, window: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/transactions?{window}&page={t}"),
            None => format!("/transactions?{window}"),
        };
        let r = get(sim, &path).await;
        assert_eq!(r.code(), "S0000", "{}", r.text);
        pages.push(r.data()["transactions"].as_array().unwrap().clone());
        match r.data()["page"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => {
                assert_eq!(r.data()["page"], Value::Null);
                return pages;
            }
        }
    }
}

fn ids_of(page: &[Value]) -> Vec<String> {
    page.iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn every_transaction_of_the_window_once_across_pages_with_refunds_on_their_transaction() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    let declined = sim.create_token(cards::DECLINE_T0001_GENERAL);
    for i in 0..110 {
        charged(&sim, &token, &format!("o{i}"), 100 + i).await;
    }
    for i in 0..10 {
        charge(&sim, &declined, &format!("f{i}"), 100).await;
    }
    let refunded_fully = sim.ledger_for_order("o3")[0].id.clone();
    let refunded_partly = sim.ledger_for_order("o70")[0].id.clone();
    assert_eq!(refund(&sim, &refunded_fully, None).await.code(), "S0000");
    assert_eq!(
        refund(&sim, &refunded_partly, Some(50)).await.code(),
        "S0000"
    );
    let today = sim
        .now()
        .with_timezone(&oen_sim::ids::taipei())
        .date_naive();

    let pages = all_pages(&sim, &format!("start={today}&end={today}")).await;

    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [50, 50, 20]);
    let listed: Vec<Value> = pages.concat();
    let unique: HashSet<String> = ids_of(&listed).into_iter().collect();
    assert_eq!(
        unique.len(),
        120,
        "no entry twice, and a refund is no entry of its own"
    );
    assert_eq!(listed[0]["orderId"], "f9", "newest first");
    assert_eq!(
        listed.iter().filter(|t| t["status"] == "failed").count(),
        10
    );
    let by_id = |id: &str| listed.iter().find(|t| t["id"] == id).unwrap().clone();
    let full = by_id(&refunded_fully);
    assert_eq!(
        (&full["status"], &full["amount"], &full["refundAmount"]),
        (&json!("refunded"), &json!(103), &json!(103))
    );
    assert!(full["refundedAt"].is_string());
    let partial = by_id(&refunded_partly);
    assert_eq!(
        (&partial["status"], &partial["refundAmount"]),
        (&json!("refunded"), &json!(50))
    );
}

#[tokio::test]
async fn a_charge_made_between_two_pages_neither_repeats_nor_skips_an_entry() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    for i in 0..60 {
        charged(&sim, &token, &format!("o{i}"), 100).await;
    }
    let first = get(&sim, "/transactions").await;
    let next = first.data()["page"].as_str().unwrap().to_string();

    charged(&sim, &token, "between", 100).await;
    let second = get(&sim, &format!("/transactions?page={next}")).await;

    let first_ids = ids_of(first.data()["transactions"].as_array().unwrap());
    let second_ids = ids_of(second.data()["transactions"].as_array().unwrap());
    assert_eq!((first_ids.len(), second_ids.len()), (50, 10));
    assert_eq!(second.data()["transactions"][9]["orderId"], "o0");
    assert_eq!(second.data()["page"], Value::Null);
    let all: HashSet<&String> = first_ids.iter().chain(&second_ids).collect();
    assert_eq!(all.len(), 60);
    let fresh = get(&sim, "/transactions").await;
    assert_eq!(fresh.data()["transactions"][0]["orderId"], "between");
}

#[tokio::test]
async fn the_window_is_whole_taipei_days_of_creation_whether_written_as_dates_or_millis() {
    let sim = start_frozen_sim().await;
    let token = sim.create_token(cards::SUCCESS);
    // 23:59:59.999 on 28 September in Taipei, then midnight of the 29th.
    sim.set_clock(at("2026-09-28T15:59:59.999Z"));
    let late = charged(&sim, &token, "late", 100).await;
    sim.advance_clock(std::time::Duration::from_millis(1));
    let early = charged(&sim, &token, "early", 100).await;
    // Refunded on the 29th: the refund shows on its transaction, listed on the 28th.
    refund(&sim, &late, None).await;
    let noon_29th = at("2026-09-29T04:00:00Z").timestamp_millis();
    let first_ms_of_28th = at("2026-09-27T16:00:00Z").timestamp_millis();

    let day_28 = all_pages(&sim, "start=2026-09-28&end=2026-09-28")
        .await
        .concat();
    let day_29 = all_pages(&sim, "start=2026/09/29&end=2026/09/29")
        .await
        .concat();
    let millis_29 = all_pages(&sim, &format!("start={noon_29th}&end={noon_29th}"))
        .await
        .concat();
    let millis_both = all_pages(&sim, &format!("start={first_ms_of_28th}&end={noon_29th}"))
        .await
        .concat();

    assert_eq!(ids_of(&day_28), [late.as_str()]);
    assert_eq!(day_28[0]["status"], "refunded");
    assert_eq!(ids_of(&day_29), [early.as_str()]);
    assert_eq!(
        ids_of(&millis_29),
        [early.as_str()],
        "a moment stands for its whole day"
    );
    assert_eq!(ids_of(&millis_both), [early, late]);
}

#[tokio::test]
async fn a_page_token_that_was_never_given_is_500_f0001() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    charged(&sim, &token, "o", 100).await;

    for page in ["2", "P20260101ABCDEFGH"] {
        let r = get(&sim, &format!("/transactions?page={page}")).await;
        assert_eq!((r.status, r.code()), (500, "F0001"), "{page}: {}", r.text);
    }
}

#[tokio::test]
async fn a_forced_answer_replaces_one_listing_and_the_next_one_is_normal() {
    let sim = start_sim(None).await;
    let token = sim.create_token(cards::SUCCESS);
    charged(&sim, &token, "o", 100).await;
    sim.force_next(
        oen_sim::ForceTarget::TransactionList,
        serde_json::from_value(json!({"kind": "respond", "code": "F0001", "httpStatus": 500}))
            .unwrap(),
    );

    let forced = get(&sim, "/transactions").await;
    let normal = get(&sim, "/transactions").await;

    assert_eq!(
        (forced.status, forced.code()),
        (500, "F0001"),
        "{}",
        forced.text
    );
    assert_eq!(normal.code(), "S0000");
    assert_eq!(normal.data()["transactions"].as_array().unwrap().len(), 1);
}
