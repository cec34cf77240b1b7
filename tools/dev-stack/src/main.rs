//! `oen-dev`: `cargo run -p oen-dev` serves the whole card-binding flow on localhost.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use oen_dev::Options;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let opts = Options::parse();
    // Logs go to stderr; stdout carries only the start-up lines below (scripts read the URL
    // from the first one).
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let stack = match oen_dev::start(opts).await {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("oen-dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sim = stack.sim().base_url();
    println!("oen-dev: open {}/ in a browser to bind a card", stack.url());
    println!("oen-dev: the Oen simulator plays Oen at {sim} (ledger: {sim}/_sim/ledger)");
    println!(
        "oen-dev: everything is in memory (store, token key, events, simulator) and is gone \
         when this process stops; no AWS account is used. Ctrl-C stops it."
    );
    let _ = std::io::stdout().flush();

    wait_for_stop().await;
    eprintln!("oen-dev: stopping");
    stack.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM where there is one.
async fn wait_for_stop() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("oen-dev: cannot listen for Ctrl-C ({e}); stop the process another way");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
