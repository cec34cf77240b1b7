//! The seeded soak (see `oen_pay_integration::soak`): a fixed seed that always runs the same
//! plan, and a fresh one (`SOAK_SEED` to repeat a run) so that every CI run explores anew.
//! The large run is `cargo bench -p oen-pay-integration --bench soak -- --n 10000`.

use oen_pay_integration::soak::{fresh_seed, Soak, SoakConfig};

async fn soak(seed: u64) {
    let config = SoakConfig {
        seed,
        subscriptions: 300,
        days: 75,
        workers: 6,
    };
    println!("soak: seed {seed}, {config:?}");
    let mut soak = Soak::start(config).await;
    let result = soak.run().await;
    println!("soak: seed {seed}: {:?}", soak.stats);
    soak.shutdown().await;
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_seed_keeps_every_invariant() {
    soak(20_261_130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_seed_keeps_every_invariant() {
    soak(fresh_seed()).await;
}

mod killed {
    //! Worker *processes* killed with SIGKILL at random points, on DynamoDB (moto) and KMS: the
    //! in-process soak above drops tasks; here nothing but the table and Oen survive a kill.

    use std::process::Child;
    use std::time::Duration as StdDuration;

    use chrono::{Duration, Utc};
    use oen_pay::store::{PeriodState, StoreExt};
    use oen_pay_integration::soak::{fresh_seed, Rng};
    use oen_pay_integration::stack::stack;
    use oen_sim::cards;

    /// Kills the child when dropped, however the test ends.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    const CARDS: &[&str] = &[
        cards::SUCCESS,
        cards::SUCCESS,
        cards::SUCCESS,
        cards::UNKNOWN_C026_THEN_CHARGED,
        cards::UNKNOWN_C026_THEN_FAILED,
        cards::GATEWAY_TIMEOUT_AFTER_COMMIT,
        cards::CONNECTION_DROP_AFTER_COMMIT,
        cards::DECLINE_T0001_GENERAL,
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_killed_at_random_points_never_charge_twice() {
        let seed = fresh_seed();
        println!("soak (killed processes): seed {seed}");
        let mut rng = Rng::new(seed);
        let s = stack().await;
        s.clock.set(Utc::now());
        s.sim
            .set_gateway_timeout_delay(StdDuration::from_millis(100));
        let customers: Vec<String> = (0..16).map(|i| format!("kill-{i}")).collect();
        for c in &customers {
            s.bind(c, "premium", rng.pick::<&str>(CARDS)).await;
        }
        for _round in 0..3 {
            s.sim.set_latency(StdDuration::from_millis(rng.below(150)));
            // Six workers at once, each on its own customer: moto does not isolate concurrent
            // conditional writes, so races on one record are the in-process soak's to prove.
            let first = rng.below(customers.len() as u64) as usize;
            let mut racing = Vec::new();
            for i in 0..6 {
                let customer = customers[(first + i * 5) % customers.len()].clone();
                let child = s
                    .charge_worker(env!("CARGO_BIN_EXE_charge_worker"), &customer, "premium")
                    .spawn()
                    .expect("the worker binary starts");
                let kill_after = rng.percent(70).then(|| rng.below(600));
                racing.push((KillOnDrop(child), kill_after));
            }
            for (mut child, kill_after) in racing {
                match kill_after {
                    Some(ms) => {
                        tokio::time::sleep(StdDuration::from_millis(ms)).await;
                        let _ = child.0.kill();
                    }
                    None => {
                        let _ = child.0.wait();
                    }
                }
            }
        }
        let mut left_claimed = 0;
        for c in &customers {
            let sub = s.sub(c, "premium").await;
            let period = s.deps.store.period(&sub.id, sub.period).await.unwrap();
            let claimed =
                period.is_some_and(|p| matches!(p.value.state, PeriodState::Charging { .. }));
            left_claimed += usize::from(claimed);
        }
        println!("seed {seed}: {left_claimed} periods left claimed by killed workers");
        // Quiet again: scheduled runs reconcile what the dead left behind, until nothing is
        // uncertain, and the ledger agrees.
        s.sim.set_latency(StdDuration::ZERO);
        for _ in 0..12 {
            s.sim.settle_pending();
            s.advance(Duration::minutes(30));
            s.run().await;
        }
        let subs: Vec<(&str, &str)> = customers.iter().map(|c| (c.as_str(), "premium")).collect();
        s.assert_ledger_agrees(&subs).await;
        for (customer, plan) in &subs {
            let sub = s.sub(customer, plan).await;
            let state = s.period_state(&sub, sub.period.saturating_sub(1)).await;
            assert!(
                !state.is_uncertain(),
                "seed {seed}: {customer} left {state:?}"
            );
        }
    }
}
