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
