//! `oen-dev`: `cargo run -p oen-dev` serves the whole card-binding flow on localhost.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use oen_dev::{oen_target, OenSettings, OenSetupError, Options, TestingOen};
use oen_pay::config;
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
    let oen = match oen_settings(&opts) {
        Ok(oen) => oen,
        Err(e) => {
            eprintln!("oen-dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    let testing = match &oen {
        OenSettings::Simulator => None,
        OenSettings::Testing(t) => Some(Announcement::of(t)),
    };
    let stack = match oen_dev::start_with(opts, oen).await {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("oen-dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("oen-dev: open {}/ in a browser to bind a card", stack.url());
    match (stack.sim(), testing) {
        (Some(sim), _) => {
            let sim = sim.base_url();
            println!("oen-dev: the Oen simulator plays Oen at {sim} (ledger: {sim}/_sim/ledger)");
            println!(
                "oen-dev: everything is in memory (store, token key, events, simulator) and is \
                 gone when this process stops; no AWS account is used. Ctrl-C stops it."
            );
        }
        (None, Some(testing)) => testing.print(stack.url()),
        (None, None) => {}
    }
    let _ = std::io::stdout().flush();

    wait_for_stop().await;
    eprintln!("oen-dev: stopping");
    stack.shutdown().await;
    ExitCode::SUCCESS
}

/// The Oen settings the options ask for. When Oen's API token is missing and a person is at
/// the terminal, it is asked for (without echo) rather than refused.
fn oen_settings(opts: &Options) -> Result<OenSettings, OenSetupError> {
    let random_key = oen_target::random_webhook_path_key;
    match OenSettings::resolve(opts, &config::env_lookup, random_key) {
        Err(OenSetupError::MissingToken) if std::io::stdin().is_terminal() => {
            let Some(token) = prompt_token() else {
                return Err(OenSetupError::MissingToken);
            };
            let env = |name: &str| {
                if name == oen_target::API_TOKEN_VAR {
                    Some(token.clone())
                } else {
                    config::env_lookup(name)
                }
            };
            OenSettings::resolve(opts, &env, random_key)
        }
        other => other,
    }
}

/// Reads the token from the terminal with echo off (through `stty`); `None` when that is not
/// possible or nothing was typed.
fn prompt_token() -> Option<String> {
    eprint!(
        "oen-dev: {} is not set; paste Oen's API token of the testing environment (not shown): ",
        oen_target::API_TOKEN_VAR
    );
    let _ = std::io::stderr().flush();
    let echo_off = stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if echo_off {
        stty("echo");
    }
    eprintln!();
    read.ok()?;
    let token = line.trim().to_owned();
    (!token.is_empty()).then_some(token)
}

/// Runs `stty` on the terminal that stdin is; true when it worked.
fn stty(setting: &str) -> bool {
    std::process::Command::new("stty")
        .arg(setting)
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// What a person must know to use Oen's testing environment, taken before the settings (and the
/// token in them) move into the stack. The token is never printed.
struct Announcement {
    merchant: String,
    api_base_url: String,
    hosted: String,
    webhook_url: String,
    random_key: bool,
}

impl Announcement {
    fn of(t: &TestingOen) -> Self {
        Self {
            merchant: t.merchant.to_string(),
            api_base_url: t.api_base_url.clone(),
            hosted: t
                .hosted_base_url
                .replace("{merchantId}", t.merchant.as_str()),
            webhook_url: t.webhook_url.clone(),
            random_key: t.webhook_path_key_is_random,
        }
    }

    fn print(&self, local_url: &str) {
        println!(
            "oen-dev: Oen's testing environment plays Oen: API {}, card pages {}, merchant {}",
            self.api_base_url, self.hosted, self.merchant
        );
        println!(
            "oen-dev: register this webhook URL in Oen's back office (testing environment):\n  \
             {}",
            self.webhook_url
        );
        println!(
            "oen-dev: Oen must reach it: your tunnel at --public-url has to forward to {local_url}"
        );
        if self.random_key {
            println!(
                "oen-dev: its path key was made for this run and changes on the next one; pass \
                 --webhook-path-key with it to keep the registered URL"
            );
        }
        println!(
            "oen-dev: our side is in memory (store, token key, events) and is gone when this \
             process stops; charges stay in Oen's testing environment. Ctrl-C stops it."
        );
    }
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
