//! Who plays Oen for the stack: the project's simulator in this process (the default), or Oen's
//! real testing environment (`--oen testing`). Against Oen, the stack calls Oen's testing API
//! with the merchant's own token, sends the browser to Oen's hosted card pages, and receives
//! Oen's token webhook through a public URL (a tunnel the developer runs) that forwards to it.
//!
//! [`OenSettings::resolve`] turns the options and the environment into those settings, without
//! touching the network, so that every rule of it is tested here.

use clap::ValueEnum;
use oen_pay::config::OenEnvironment;
use oen_pay::domain::MerchantId;
use secrecy::{ExposeSecret, SecretString};

use crate::Options;

/// The environment variable that carries Oen's API token in `--oen testing`.
pub const API_TOKEN_VAR: &str = "OEN_API_TOKEN";

/// Shortest webhook path key the webhook function accepts (its secret's rule).
const MIN_WEBHOOK_PATH_KEY: usize = 16;

/// The `--oen` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OenTarget {
    /// The project's Oen simulator, started in this process.
    #[default]
    Simulator,
    /// Oen's testing environment, over the network.
    Testing,
}

/// Who plays Oen, with everything the stack needs to reach it.
#[derive(Debug)]
pub enum OenSettings {
    Simulator,
    Testing(TestingOen),
}

/// Oen's testing environment as the stack uses it. `Debug` never shows the token.
pub struct TestingOen {
    /// Oen's testing API, e.g. `https://payment-api.testing.oen.tw`.
    pub api_base_url: String,
    /// Oen's testing card pages, with `{merchantId}` in them.
    pub hosted_base_url: String,
    pub merchant: MerchantId,
    pub api_token: SecretString,
    /// The unguessable last segment of the webhook URL.
    pub webhook_path_key: String,
    /// Whether the key was made up for this run (so the URL registered at Oen changes).
    pub webhook_path_key_is_random: bool,
    /// What to register in Oen's back office: `{public URL}/oen/webhook/{key}`.
    pub webhook_url: String,
}

impl std::fmt::Debug for TestingOen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestingOen")
            .field("api_base_url", &self.api_base_url)
            .field("hosted_base_url", &self.hosted_base_url)
            .field("merchant", &self.merchant)
            .field("api_token", &"[redacted]")
            .field("webhook_url", &self.webhook_url)
            .finish_non_exhaustive()
    }
}

impl TestingOen {
    /// The JSON of the stack's secret: Oen's token, the development link signing key (the demo
    /// shop signs its links with it) and this run's webhook path key.
    pub(crate) fn secret_json(&self) -> String {
        oen_pay::serde_json::json!({
            "apiToken": self.api_token.expose_secret(),
            "linkSigningKey": oen_pay::dev::DEV_LINK_SIGNING_KEY,
            "webhookPathKey": self.webhook_path_key,
        })
        .to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OenSetupError {
    #[error(
        "--oen testing needs --merchant-id: your merchant id at Oen, the first label of your \
         Oen domain (ming for ming.oen.tw)"
    )]
    MissingMerchant,
    #[error("--merchant-id {given:?} is not an Oen merchant id: {reason}")]
    InvalidMerchant { given: String, reason: String },
    #[error(
        "--oen testing needs --public-url: the https address at which Oen can reach this stack, \
         such as a tunnel of yours that forwards to it"
    )]
    MissingPublicUrl,
    #[error("--public-url {given:?} cannot receive Oen's webhooks: {reason}")]
    InvalidPublicUrl { given: String, reason: &'static str },
    #[error(
        "--oen testing needs Oen's API token of the testing environment (Oen's back office, \
         testing, API token) in the environment variable {API_TOKEN_VAR}"
    )]
    MissingToken,
    #[error("--webhook-path-key must be at least {MIN_WEBHOOK_PATH_KEY} letters, digits, - or _")]
    InvalidWebhookPathKey,
    #[error("{0} applies only with --oen testing (the simulator is its own merchant and calls this stack directly)")]
    OnlyForTesting(&'static str),
}

impl OenSettings {
    /// The settings `opts` ask for. `env` looks up environment variables (the process's, or a
    /// map in tests); `random_key` makes a webhook path key when none is given.
    pub fn resolve(
        opts: &Options,
        env: &dyn Fn(&str) -> Option<String>,
        random_key: impl FnOnce() -> String,
    ) -> Result<Self, OenSetupError> {
        if opts.oen == OenTarget::Simulator {
            let testing_only = [
                ("--merchant-id", opts.merchant_id.is_some()),
                ("--public-url", opts.public_url.is_some()),
                ("--webhook-path-key", opts.webhook_path_key.is_some()),
            ];
            return match testing_only.iter().find(|(_, given)| *given) {
                Some((flag, _)) => Err(OenSetupError::OnlyForTesting(flag)),
                None => Ok(OenSettings::Simulator),
            };
        }
        let given = opts
            .merchant_id
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .ok_or(OenSetupError::MissingMerchant)?;
        let merchant = MerchantId::parse(given).map_err(|e| OenSetupError::InvalidMerchant {
            given: given.to_owned(),
            reason: e.to_string(),
        })?;
        let public_url = public_url(opts.public_url.as_deref())?;
        let (webhook_path_key, webhook_path_key_is_random) = match &opts.webhook_path_key {
            Some(key) if is_path_key(key) => (key.clone(), false),
            Some(_) => return Err(OenSetupError::InvalidWebhookPathKey),
            None => (random_key(), true),
        };
        let api_token = env(API_TOKEN_VAR)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or(OenSetupError::MissingToken)?;
        let environment = OenEnvironment::Testing;
        Ok(OenSettings::Testing(TestingOen {
            api_base_url: environment.api_base_url().to_owned(),
            hosted_base_url: environment.hosted_base_url().to_owned(),
            merchant,
            api_token: SecretString::from(api_token),
            webhook_url: format!("{public_url}/oen/webhook/{webhook_path_key}"),
            webhook_path_key,
            webhook_path_key_is_random,
        }))
    }
}

/// The public URL without a trailing slash, if Oen can deliver to it: Oen posts its webhooks
/// only to https on port 443.
fn public_url(given: Option<&str>) -> Result<String, OenSetupError> {
    let given = given
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or(OenSetupError::MissingPublicUrl)?;
    let invalid = |reason| OenSetupError::InvalidPublicUrl {
        given: given.to_owned(),
        reason,
    };
    let rest = given
        .strip_prefix("https://")
        .ok_or_else(|| invalid("Oen delivers webhooks only to https URLs"))?;
    if rest.contains(['?', '#']) {
        return Err(invalid("it must not have a query or a fragment"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, "443")) => host,
        Some((_, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            return Err(invalid("Oen delivers webhooks only to port 443"))
        }
        _ => authority,
    };
    if host.is_empty() || host.contains('@') {
        return Err(invalid("it has no host name"));
    }
    Ok(given.trim_end_matches('/').to_owned())
}

fn is_path_key(key: &str) -> bool {
    key.len() >= MIN_WEBHOOK_PATH_KEY
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A fresh unguessable webhook path key: 32 hex digits from the operating system's generator.
pub fn random_webhook_path_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .unwrap_or_else(|e| panic!("the operating system's random generator failed: {e}"));
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    const TOKEN: &str = "testing-token-a1b2c3";

    fn options(args: &[&str]) -> Options {
        Options::parse_from(std::iter::once("oen-dev").chain(args.iter().copied()))
    }

    fn env_with_token() -> impl Fn(&str) -> Option<String> {
        let vars = HashMap::from([(API_TOKEN_VAR.to_owned(), TOKEN.to_owned())]);
        move |name| vars.get(name).cloned()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn testing(args: &[&str]) -> Result<OenSettings, OenSetupError> {
        OenSettings::resolve(&options(args), &env_with_token(), || {
            "random0123456789abcdef0123456789".to_owned()
        })
    }

    fn testing_oen(args: &[&str]) -> TestingOen {
        match testing(args) {
            Ok(OenSettings::Testing(t)) => t,
            other => panic!("expected Oen's testing environment, got {other:?}"),
        }
    }

    const TESTING: [&str; 6] = [
        "--oen",
        "testing",
        "--merchant-id",
        "ming",
        "--public-url",
        "https://ming-dev.tunnel.example/",
    ];

    #[test]
    fn the_simulator_plays_oen_by_default() {
        let settings = OenSettings::resolve(&options(&[]), &no_env, || unreachable!());
        assert!(matches!(settings, Ok(OenSettings::Simulator)));
        let settings = OenSettings::resolve(
            &options(&["--oen", "simulator"]),
            &no_env,
            || unreachable!(),
        );
        assert!(matches!(settings, Ok(OenSettings::Simulator)));
    }

    #[test]
    fn testing_uses_oens_testing_hosts_and_the_given_merchant() {
        let t = testing_oen(&TESTING);
        assert_eq!(t.api_base_url, "https://payment-api.testing.oen.tw");
        assert_eq!(t.hosted_base_url, "https://{merchantId}.testing.oen.tw");
        assert_eq!(t.merchant.as_str(), "ming");
        assert_eq!(t.api_token.expose_secret(), TOKEN);
    }

    #[test]
    fn the_webhook_url_to_register_is_the_public_url_with_a_random_path_key() {
        let t = testing_oen(&TESTING);
        assert_eq!(
            t.webhook_url,
            "https://ming-dev.tunnel.example/oen/webhook/random0123456789abcdef0123456789"
        );
        assert_eq!(t.webhook_path_key, "random0123456789abcdef0123456789");
        assert!(t.webhook_path_key_is_random);
    }

    #[test]
    fn a_given_webhook_path_key_is_kept_so_the_registered_url_survives_a_restart() {
        let mut args = TESTING.to_vec();
        args.extend(["--webhook-path-key", "kept-key-0123456789"]);
        let t = testing_oen(&args);
        assert_eq!(
            t.webhook_url,
            "https://ming-dev.tunnel.example/oen/webhook/kept-key-0123456789"
        );
        assert!(!t.webhook_path_key_is_random);
        let mut short = TESTING.to_vec();
        short.extend(["--webhook-path-key", "short"]);
        assert_eq!(
            testing(&short).err(),
            Some(OenSetupError::InvalidWebhookPathKey)
        );
    }

    #[test]
    fn the_secret_carries_the_token_and_this_runs_webhook_path_key() {
        let t = testing_oen(&TESTING);
        let secret = oen_pay::secrets::OenSecrets::parse(&t.secret_json())
            .unwrap_or_else(|e| panic!("the stack's secret is valid: {e}"));
        assert_eq!(secret.api_token.expose_secret(), TOKEN);
        assert_eq!(
            secret.webhook_path_key.expose_secret(),
            "random0123456789abcdef0123456789"
        );
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let shown = format!("{:?}", testing(&TESTING));
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn a_missing_token_is_a_clear_error_naming_the_variable() {
        let err = OenSettings::resolve(&options(&TESTING), &no_env, || "k".repeat(32)).err();
        assert_eq!(err, Some(OenSetupError::MissingToken));
        assert!(OenSetupError::MissingToken
            .to_string()
            .contains("OEN_API_TOKEN"));
        let blank = |_: &str| Some("  ".to_owned());
        let err = OenSettings::resolve(&options(&TESTING), &blank, || "k".repeat(32)).err();
        assert_eq!(err, Some(OenSetupError::MissingToken));
    }

    #[test]
    fn testing_needs_a_merchant_id() {
        assert_eq!(
            testing(&[
                "--oen",
                "testing",
                "--public-url",
                "https://ming-dev.tunnel.example"
            ])
            .err(),
            Some(OenSetupError::MissingMerchant)
        );
        assert!(matches!(
            testing(&[
                "--oen",
                "testing",
                "--merchant-id",
                "ming.oen.tw",
                "--public-url",
                "https://ming-dev.tunnel.example"
            ]),
            Err(OenSetupError::InvalidMerchant { .. })
        ));
    }

    #[test]
    fn testing_needs_a_public_https_url_on_port_443() {
        assert_eq!(
            testing(&["--oen", "testing", "--merchant-id", "ming"]).err(),
            Some(OenSetupError::MissingPublicUrl)
        );
        for refused in [
            "http://ming-dev.tunnel.example",
            "https://ming-dev.tunnel.example:8443",
            "https://",
            "https://ming-dev.tunnel.example/?x=1",
        ] {
            let result = testing(&[
                "--oen",
                "testing",
                "--merchant-id",
                "ming",
                "--public-url",
                refused,
            ]);
            assert!(
                matches!(result, Err(OenSetupError::InvalidPublicUrl { .. })),
                "{refused}: {result:?}"
            );
        }
        let t = testing_oen(&[
            "--oen",
            "testing",
            "--merchant-id",
            "ming",
            "--public-url",
            "https://ming-dev.tunnel.example:443/dev",
        ]);
        assert!(t
            .webhook_url
            .starts_with("https://ming-dev.tunnel.example:443/dev/oen/webhook/"));
    }

    #[test]
    fn testing_flags_without_testing_are_refused() {
        let err = OenSettings::resolve(
            &options(&["--merchant-id", "ming"]),
            &no_env,
            || unreachable!(),
        )
        .err();
        assert_eq!(err, Some(OenSetupError::OnlyForTesting("--merchant-id")));
    }

    #[test]
    fn random_path_keys_are_long_and_differ() {
        let (a, b) = (random_webhook_path_key(), random_webhook_path_key());
        assert_eq!(a.len(), 32);
        assert!(is_path_key(&a));
        assert_ne!(a, b);
    }
}
