//! The auth-code knob: Oen's success answer to a charge "may" lack `authCode`.

mod common;

use common::*;
use oen_sim::{cards, AuthCodeMode, Simulator};

/// Charges `n` orders; returns whether each answer carried an `authCode`.
async fn auth_codes_given(sim: &Simulator, n: usize) -> Vec<bool> {
    let token = sim.create_token(cards::SUCCESS);
    let mut given = Vec::new();
    for i in 0..n {
        let r = charge(sim, &token, &format!("o{i}"), 100).await;
        assert_eq!(r.code(), "S0000", "{}", r.text);
        given.push(r.data().get("authCode").is_some());
    }
    given
}

#[tokio::test]
async fn an_approval_without_auth_code_lacks_it_in_the_answer_the_queries_and_the_ledger() {
    let sim = start_sim(None).await;
    sim.set_auth_code(AuthCodeMode::Absent);
    let token = sim.create_token(cards::SUCCESS);

    let r = charge(&sim, &token, "bare", 100).await;
    let id = r.data()["id"].as_str().unwrap().to_string();
    let single = get(&sim, &format!("/transactions/{id}")).await;
    let listed = get(&sim, "/order/bare/transactions").await;

    assert_eq!(r.code(), "S0000");
    assert_eq!(
        r.data().as_object().unwrap().len(),
        1,
        "only the id: {}",
        r.text
    );
    assert_eq!(single.data()["status"], "charged");
    assert!(single.data().get("authCode").is_none());
    assert!(listed.data()["transactions"][0].get("authCode").is_none());
    assert_eq!(sim.ledger()[0].auth_code, None);
}

#[tokio::test]
async fn auth_codes_are_present_by_default() {
    let sim = start_sim(None).await;

    assert_eq!(sim.knobs().auth_code, AuthCodeMode::Present);
    assert!(auth_codes_given(&sim, 5).await.iter().all(|given| *given));
}

#[tokio::test]
async fn a_seed_gives_the_same_mix_every_run() {
    let first = start_sim(None).await;
    let again = start_sim(None).await;
    let other = start_sim(None).await;
    first.set_auth_code(AuthCodeMode::Random { seed: 7 });
    again.set_auth_code(AuthCodeMode::Random { seed: 7 });
    other.set_auth_code(AuthCodeMode::Random { seed: 8 });

    let a = auth_codes_given(&first, 40).await;
    let b = auth_codes_given(&again, 40).await;
    let c = auth_codes_given(&other, 40).await;

    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
}

#[tokio::test]
async fn a_c026_charge_that_settles_charged_follows_the_knob_too() {
    let sim = start_sim(None).await;
    sim.set_auth_code(AuthCodeMode::Absent);
    let token = sim.create_token(cards::UNKNOWN_C026_THEN_CHARGED);

    charge(&sim, &token, "late", 100).await;
    sim.settle_pending();

    let entry = &sim.ledger()[0];
    assert_eq!(entry.status, oen_sim::Status::Charged);
    assert_eq!(entry.auth_code, None);
}
