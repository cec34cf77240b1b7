//! Start-up configuration: [`SimConfig`] for in-process use and [`Cli`] for the binary.

use crate::model::Knobs;
use clap::Parser;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// The API token the simulator accepts unless told otherwise (development only).
pub const DEFAULT_API_TOKEN: &str = "oen-sim-dev-token";
/// The merchant id (Oen domain) the simulator plays unless told otherwise.
pub const DEFAULT_MERCHANT_ID: &str = "ming";
/// How long a hosted binding page stays valid after `POST /checkout-token`.
pub const DEFAULT_PAGE_VALIDITY: Duration = Duration::from_secs(600);

/// How to start a [`crate::Simulator`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The merchant's Oen domain; bodies must carry it as `merchantId`.
    pub merchant_id: String,
    /// The only Bearer token accepted.
    pub api_token: String,
    /// Where token webhooks go (Oen's back-office setting); `None` = record but never send.
    pub webhook_url: Option<String>,
    /// Address to bind (default 127.0.0.1).
    pub bind_host: IpAddr,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// Production mode: `Some(allowlist)` answers 403 `{"message":"Forbidden"}` to API clients
    /// whose source IP is not listed. Hosted pages and the admin API are not restricted.
    pub production_allowlist: Option<Vec<IpAddr>>,
    /// Validity of a hosted binding page (Oen: 10 minutes), in simulator-clock time.
    pub page_validity: Duration,
    /// Initial knobs (latency, webhook behaviour, settle delay, ...).
    pub knobs: Knobs,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            merchant_id: DEFAULT_MERCHANT_ID.into(),
            api_token: DEFAULT_API_TOKEN.into(),
            webhook_url: None,
            bind_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            production_allowlist: None,
            page_validity: DEFAULT_PAGE_VALIDITY,
            knobs: Knobs::default(),
        }
    }
}

/// A stateful simulator of the Oen Tech Payment API (testing environment), with hosted
/// card-binding pages, token webhooks, test cards and an admin API under /_sim.
#[derive(Debug, Clone, Parser)]
#[command(name = "oen-sim", version)]
pub struct Cli {
    /// Port to listen on; 0 picks a free port (the bound address is printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The merchant id (Oen domain, e.g. `ming` for ming.oen.tw).
    #[arg(long, default_value = DEFAULT_MERCHANT_ID)]
    pub merchant_id: String,
    /// The API token clients must send as `Authorization: Bearer <token>`.
    #[arg(long, default_value = DEFAULT_API_TOKEN)]
    pub api_token: String,
    /// URL token webhooks are POSTed to (like Oen's back-office setting). Without it webhooks
    /// are recorded but not sent.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Production mode: API calls from source IPs not given with --allow-ip get 403
    /// {"message":"Forbidden"}.
    #[arg(long)]
    pub production: bool,
    /// A source IP allowed in production mode (repeatable).
    #[arg(long = "allow-ip", value_name = "IP")]
    pub allow_ips: Vec<IpAddr>,
    /// Fixed latency added to every API call, in milliseconds (benchmarks).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Timeout of one webhook delivery attempt, in simulator-clock milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// Gaps between the starts of webhook attempts, counted from the first attempt's start
    /// whether or not it has answered: comma-separated simulator-clock milliseconds
    /// (attempts = 1 + count).
    #[arg(long, value_delimiter = ',', default_value = "2000,2000")]
    pub webhook_retry_delays_ms: Vec<u64>,
    /// How long a C026 ("result unknown") transaction stays `charging`, in simulator-clock
    /// milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub settle_delay_ms: u64,
    /// For this long after a change (simulator clock, ms), queries still show the previous
    /// status.
    #[arg(long, default_value_t = 0)]
    pub consistency_lag_ms: u64,
    /// Transactions younger than this (simulator clock, ms) are missing from the order listing
    /// and the transaction list.
    #[arg(long, default_value_t = 0)]
    pub listing_delay_ms: u64,
    /// How long a "504 after commit" takes to answer, in milliseconds (Oen: 29 s).
    #[arg(long, default_value_t = 200)]
    pub gateway_timeout_delay_ms: u64,
    /// Validity of a hosted binding page, in seconds.
    #[arg(long, default_value_t = 600)]
    pub page_validity_secs: u64,
}

impl Cli {
    /// The configuration these flags describe.
    pub fn into_config(self) -> SimConfig {
        let knobs = Knobs {
            latency_ms: self.latency_ms,
            consistency_lag_ms: self.consistency_lag_ms,
            listing_delay_ms: self.listing_delay_ms,
            settle_delay_ms: self.settle_delay_ms,
            gateway_timeout_delay_ms: self.gateway_timeout_delay_ms,
            webhook_timeout_ms: self.webhook_timeout_ms,
            webhook_retry_delays_ms: self.webhook_retry_delays_ms,
            ..Knobs::default()
        };
        SimConfig {
            merchant_id: self.merchant_id,
            api_token: self.api_token,
            webhook_url: self.webhook_url,
            bind_host: self.host,
            port: self.port,
            production_allowlist: self.production.then_some(self.allow_ips),
            page_validity: Duration::from_secs(self.page_validity_secs),
            knobs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_a_config() {
        let cli = Cli::try_parse_from([
            "oen-sim",
            "--port",
            "8081",
            "--production",
            "--allow-ip",
            "10.0.0.1",
            "--webhook-retry-delays-ms",
            "10,20",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let config = cli.into_config();
        assert_eq!(config.port, 8081);
        assert_eq!(config.merchant_id, "ming");
        assert_eq!(
            config.production_allowlist,
            Some(vec!["10.0.0.1"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))])
        );
        assert_eq!(config.knobs.webhook_retry_delays_ms, vec![10, 20]);
    }

    #[test]
    fn defaults_are_local_and_testing_mode() {
        let config = Cli::try_parse_from(["oen-sim"])
            .unwrap_or_else(|e| panic!("{e}"))
            .into_config();
        assert_eq!(config.bind_host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.port, 0);
        assert!(config.production_allowlist.is_none());
        assert_eq!(config.api_token, DEFAULT_API_TOKEN);
    }
}
