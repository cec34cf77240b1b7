//! The large soak run: `cargo bench -p oen-pay-integration --bench soak -- --n 10000`
//! (`--days D`, `--workers W`, `--seed S`; a fresh seed by default, printed). Prints the seed,
//! what happened, and how long it took; exits non-zero with the failure and its trace.

use std::time::Instant;

use oen_pay_integration::soak::{fresh_seed, Soak, SoakConfig};

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let config = SoakConfig {
        seed: arg("--seed").unwrap_or_else(fresh_seed),
        subscriptions: arg("--n").unwrap_or(10_000) as usize,
        days: arg("--days").unwrap_or(75) as u32,
        workers: arg("--workers").unwrap_or(8) as usize,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    println!("soak: {config:?}");
    let started = Instant::now();
    let (result, stats) = runtime.block_on(async {
        let mut soak = Soak::start(config.clone()).await;
        let result = soak.run().await;
        let stats = soak.stats.clone();
        soak.shutdown().await;
        (result, stats)
    });
    println!(
        "soak: seed {}, {:.1} s",
        config.seed,
        started.elapsed().as_secs_f64()
    );
    for (what, n) in &stats {
        println!("  {what:>24}: {n}");
    }
    match result {
        Ok(()) => println!("soak: every invariant held"),
        Err(failure) => {
            eprintln!("{failure}");
            std::process::exit(1);
        }
    }
}
