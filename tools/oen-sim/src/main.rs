//! `oen-sim`: run the Oen Payment API simulator from the command line.

use clap::Parser;
use oen_sim::{Cli, Simulator};
use std::io::Write;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let sim = match Simulator::start(cli.into_config()).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("oen-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts read the bound address (port 0 = random) from this first stdout line.
    println!("oen-sim listening on {}", sim.base_url());
    println!("hosted pages at {}", sim.hosted_base_url());
    let _ = std::io::stdout().flush();
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("oen-sim: cannot wait for Ctrl-C: {e}");
    }
    sim.shutdown().await;
    ExitCode::SUCCESS
}
