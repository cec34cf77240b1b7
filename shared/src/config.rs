//! Configuration, read once per cold start from the environment. The variable names are a
//! contract: the SAM template sets them, and tests and operators rely on them (see README).

use thiserror::Error;

use chrono::Duration;

use crate::charging::ChargePolicy;
use crate::domain::{Catalog, MerchantId};

/// SQS messages of one batch the charger works on at once, unless `CHARGER_CONCURRENCY` says.
pub const DEFAULT_CHARGER_CONCURRENCY: usize = 8;

/// Days between `subscription.renewal_upcoming` and the charge it announces, unless
/// `RENEWAL_NOTICE_DAYS` says (0 sends none).
pub const DEFAULT_RENEWAL_NOTICE_DAYS: i64 = 7;

/// The bounds of `RENEWAL_NOTICE_DAYS`.
const RENEWAL_NOTICE_DAYS: std::ops::RangeInclusive<i64> = 0..=60;

/// How far ahead a start link may expire, unless `LINK_MAX_TTL` says.
pub const DEFAULT_LINK_MAX_TTL: Duration = Duration::hours(24);

/// The bounds of `AWS_LAMBDA_FUNCTION_TIMEOUT`, in seconds: Lambda's own.
const FUNCTION_TIMEOUT_SECONDS: std::ops::RangeInclusive<i64> = 1..=900;

/// The bounds of `LINK_MAX_TTL`, in seconds: a minute to 30 days.
const LINK_MAX_TTL_SECONDS: std::ops::RangeInclusive<i64> = 60..=30 * 24 * 3600;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OenEnvironment {
    Testing,
    Production,
}

impl OenEnvironment {
    pub fn api_base_url(self) -> &'static str {
        match self {
            OenEnvironment::Testing => "https://payment-api.testing.oen.tw",
            OenEnvironment::Production => "https://payment-api.oen.tw",
        }
    }

    pub fn hosted_base_url(self) -> &'static str {
        match self {
            OenEnvironment::Testing => "https://{merchantId}.testing.oen.tw",
            OenEnvironment::Production => "https://{merchantId}.oen.tw",
        }
    }
}

/// Reads environment variables through a lookup (the process environment, or a map in
/// tests): values are trimmed, and an empty value is the same as an unset one.
pub struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

/// The process environment, for [`Vars::new`].
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl<'a> Vars<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    pub fn get(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    fn url(&self, name: &'static str) -> Result<String, ConfigError> {
        checked_url(name, &self.require(name)?)
    }
}

/// What every function reads: the merchant, where the secret and the records are, the plans.
/// Each function reads this and the parts below that its flows use, and nothing else, once
/// per cold start; a missing or invalid variable stops the cold start, naming the variable.
#[derive(Debug, Clone)]
pub struct Config {
    pub merchant_id: MerchantId,
    pub secret_id: String,
    pub table_name: String,
    pub plans: Catalog,
}

impl Config {
    pub fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let merchant_id = MerchantId::parse(&vars.require("OEN_MERCHANT_ID")?).map_err(|e| {
            ConfigError::Invalid {
                name: "OEN_MERCHANT_ID",
                reason: e.reason,
            }
        })?;
        let plans = Catalog::parse(&vars.require("PLANS")?).map_err(|e| ConfigError::Invalid {
            name: "PLANS",
            reason: e.reason,
        })?;
        Ok(Self {
            merchant_id,
            secret_id: vars.require("OEN_SECRET_ID")?,
            table_name: vars.require("TABLE_NAME")?,
            plans,
        })
    }
}

/// Where Oen is, for the functions that call it (checkout-start and the charger).
#[derive(Debug, Clone)]
pub struct OenConfig {
    pub environment: OenEnvironment,
    /// Oen's API base: the environment's, unless `OEN_API_BASE_URL` (local development: the
    /// simulator) says otherwise.
    pub api_base_url: String,
}

impl OenConfig {
    pub fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let environment = match vars.require("OEN_ENVIRONMENT")?.as_str() {
            "testing" => OenEnvironment::Testing,
            "production" => OenEnvironment::Production,
            other => {
                return Err(ConfigError::Invalid {
                    name: "OEN_ENVIRONMENT",
                    reason: format!("expected \"testing\" or \"production\", got {other:?}"),
                })
            }
        };
        let api_base_url = match vars.get("OEN_API_BASE_URL") {
            Some(_) => vars.url("OEN_API_BASE_URL")?,
            None => environment.api_base_url().to_owned(),
        };
        Ok(Self {
            environment,
            api_base_url: api_base_url.trim_end_matches('/').to_owned(),
        })
    }
}

/// checkout-start's own: where Oen's hosted pages are, where the customer goes after them, and
/// how far ahead a start link may expire.
#[derive(Debug, Clone)]
pub struct CheckoutConfig {
    /// Oen's hosted pages; may contain `{merchantId}` (`OEN_HOSTED_BASE_URL` overrides the
    /// environment's, for local development).
    pub hosted_base_url: String,
    pub success_url: String,
    pub failure_url: String,
    /// `LINK_MAX_TTL`: how far ahead of its use a start link may expire.
    pub link_max_ttl: Duration,
    /// `STATUS_ALLOWED_ORIGINS`: the web origins (`https://shop.example`) whose pages may read
    /// `GET /checkout/status` from the browser (CORS); empty allows none but the API's own.
    pub status_allowed_origins: Vec<String>,
    /// `EINVOICE`: the merchant's Oen domain issues e-invoices, so every charge needs the
    /// payer's e-mail and start links must carry one (`true` or `false`, default `false`).
    pub einvoice: bool,
}

impl CheckoutConfig {
    pub fn read(vars: &Vars, environment: OenEnvironment) -> Result<Self, ConfigError> {
        let hosted_base_url = match vars.get("OEN_HOSTED_BASE_URL") {
            Some(u) => {
                checked_url("OEN_HOSTED_BASE_URL", &u.replace("{merchantId}", "m"))?;
                u
            }
            None => environment.hosted_base_url().to_owned(),
        };
        Ok(Self {
            hosted_base_url,
            success_url: vars.url("SUCCESS_URL")?,
            failure_url: vars.url("FAILURE_URL")?,
            link_max_ttl: match vars.get("LINK_MAX_TTL") {
                Some(raw) => link_max_ttl(&raw)?,
                None => DEFAULT_LINK_MAX_TTL,
            },
            status_allowed_origins: allowed_origins(
                &vars.get("STATUS_ALLOWED_ORIGINS").unwrap_or_default(),
            )?,
            einvoice: match vars.get("EINVOICE").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        name: "EINVOICE",
                        reason: "expected true or false".into(),
                    })
                }
            },
        })
    }
}

/// `STATUS_ALLOWED_ORIGINS`: comma-separated origins, each a scheme and host with an optional
/// port and nothing else, as a browser sends them in `Origin`. `*` is refused: a binding's
/// state is for the merchant's own pages, not for any site that learns a reference.
fn allowed_origins(raw: &str) -> Result<Vec<String>, ConfigError> {
    const NAME: &str = "STATUS_ALLOWED_ORIGINS";
    let invalid = |reason: String| ConfigError::Invalid { name: NAME, reason };
    let mut origins = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            return Err(invalid(
                "`*` is not allowed: list the origins of the merchant's return pages".into(),
            ));
        }
        let url = reqwest::Url::parse(entry)
            .map_err(|e| invalid(format!("{entry:?} is not an origin ({e})")))?;
        let origin = url.origin().ascii_serialization();
        if !matches!(url.scheme(), "http" | "https") || !entry.eq_ignore_ascii_case(&origin) {
            return Err(invalid(format!(
                "{entry:?} is not an origin: write a scheme and host, with a port if not the \
                 default, and no path, like https://shop.example"
            )));
        }
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

/// The webhook's own: the key that encrypts card tokens, the event bus, and who may post.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub token_key_id: String,
    pub event_bus_name: String,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    allowed_ips: String,
}

impl WebhookConfig {
    pub fn read(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            token_key_id: vars.require("TOKEN_KEY_ID")?,
            event_bus_name: vars.require("EVENT_BUS_NAME")?,
            allowed_ips: vars.get("WEBHOOK_ALLOWED_IPS").unwrap_or_default(),
        })
    }

    /// `WEBHOOK_ALLOWED_IPS`: comma-separated addresses or CIDR blocks; empty allows every
    /// source.
    #[cfg(feature = "http")]
    pub fn allowed_ips(&self) -> Result<Vec<crate::web::Cidr>, ConfigError> {
        crate::web::Cidr::parse_list(&self.allowed_ips).map_err(|e| ConfigError::Invalid {
            name: "WEBHOOK_ALLOWED_IPS",
            reason: e.to_string(),
        })
    }
}

/// The charger's own: the key that decrypts card tokens, the event bus, the work queue, the
/// charging policy and how it runs.
#[derive(Debug, Clone)]
pub struct ChargerConfig {
    pub token_key_id: String,
    pub event_bus_name: String,
    pub charge_queue_url: String,
    /// The charging policy: the defaults, with `DUNNING_DAYS`, `UNKNOWN_ALARM_HOURS`,
    /// `AUTO_REFUND_DUPLICATES` and `RENEWAL_NOTICE_DAYS`.
    pub charge_policy: ChargePolicy,
    /// `CHARGER_CONCURRENCY`: messages of one SQS batch worked on at once (1 to 64).
    pub concurrency: usize,
    /// `AWS_LAMBDA_FUNCTION_TIMEOUT`, when set (a convention of local runtime emulators, not a
    /// variable Lambda documents): the charger counts it from an invocation's arrival when the
    /// runtime's deadline had already passed (`cargo lambda watch` sends one in 1970).
    pub function_timeout: Option<Duration>,
}

impl ChargerConfig {
    pub fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let mut charge_policy = charge_policy(
            vars.get("DUNNING_DAYS"),
            vars.get("UNKNOWN_ALARM_HOURS"),
            vars.get("AUTO_REFUND_DUPLICATES"),
        )?;
        charge_policy.renewal_notice = renewal_notice(vars.get("RENEWAL_NOTICE_DAYS"))?;
        Ok(Self {
            token_key_id: vars.require("TOKEN_KEY_ID")?,
            event_bus_name: vars.require("EVENT_BUS_NAME")?,
            charge_queue_url: vars.url("CHARGE_QUEUE_URL")?,
            charge_policy,
            concurrency: match vars.get("CHARGER_CONCURRENCY") {
                Some(raw) => charger_concurrency(&raw)?,
                None => DEFAULT_CHARGER_CONCURRENCY,
            },
            function_timeout: vars
                .get("AWS_LAMBDA_FUNCTION_TIMEOUT")
                .map(|raw| function_timeout(&raw))
                .transpose()?,
        })
    }
}

/// The merchant API's own: the key that decrypts card tokens (one-off charges), the event bus
/// its cancels, refunds and charges report to, where the start links it mints point, and how
/// long they may live.
#[derive(Debug, Clone)]
pub struct MerchantApiConfig {
    pub token_key_id: String,
    pub event_bus_name: String,
    /// `START_LINK_URL`: the `checkout-start` URL minted links open. Unset (or empty), links
    /// point at `https://{the domain the request came to}/checkout/start`, which is the same
    /// HTTP API (the template sets it to the custom domain's when there is one).
    pub start_link_url: Option<String>,
    /// `LINK_MAX_TTL`: the longest life a minted link may have (checkout-start's own limit).
    pub link_max_ttl: Duration,
    /// `CHARGE_QUEUE_URL`: where redriven dead letters' work goes.
    pub charge_queue_url: String,
    /// `CHARGE_DEAD_LETTER_QUEUE_URL`: the charge queue's dead-letter queue.
    pub charge_dead_letter_queue_url: String,
    /// `SCHEDULE_DEAD_LETTER_QUEUE_URL`: the schedules' dead-letter queue.
    pub schedule_dead_letter_queue_url: String,
}

impl MerchantApiConfig {
    pub fn read(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            token_key_id: vars.require("TOKEN_KEY_ID")?,
            event_bus_name: vars.require("EVENT_BUS_NAME")?,
            start_link_url: match vars.get("START_LINK_URL") {
                Some(_) => Some(vars.url("START_LINK_URL")?),
                None => None,
            },
            link_max_ttl: match vars.get("LINK_MAX_TTL") {
                Some(raw) => link_max_ttl(&raw)?,
                None => DEFAULT_LINK_MAX_TTL,
            },
            charge_queue_url: vars.url("CHARGE_QUEUE_URL")?,
            charge_dead_letter_queue_url: vars.url("CHARGE_DEAD_LETTER_QUEUE_URL")?,
            schedule_dead_letter_queue_url: vars.url("SCHEDULE_DEAD_LETTER_QUEUE_URL")?,
        })
    }
}

fn charge_policy(
    dunning_days: Option<String>,
    unknown_alarm_hours: Option<String>,
    auto_refund_duplicates: Option<String>,
) -> Result<ChargePolicy, ConfigError> {
    let mut policy = ChargePolicy::default();
    if let Some(raw) = auto_refund_duplicates {
        policy.auto_refund_duplicates = match raw.as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "AUTO_REFUND_DUPLICATES",
                    reason: "expected true or false".into(),
                })
            }
        };
    }
    if let Some(raw) = dunning_days {
        let days: Result<Vec<i64>, _> = raw.split(',').map(|d| d.trim().parse::<i64>()).collect();
        policy.dunning = match days {
            Ok(d) if d.iter().all(|x| (0..=60).contains(x)) => {
                d.into_iter().map(Duration::days).collect()
            }
            _ => {
                return Err(ConfigError::Invalid {
                    name: "DUNNING_DAYS",
                    reason: "expected comma-separated whole days, 0 to 60 each".into(),
                })
            }
        };
    }
    if let Some(raw) = unknown_alarm_hours {
        let hours = raw
            .parse::<i64>()
            .ok()
            .filter(|h| *h > 0)
            .ok_or(ConfigError::Invalid {
                name: "UNKNOWN_ALARM_HOURS",
                reason: "expected a positive whole number".into(),
            })?;
        policy.unknown_alarm_after = Duration::hours(hours);
    }
    Ok(policy)
}

/// `RENEWAL_NOTICE_DAYS`: whole days from 0 (no notices) to 60; 7 when unset.
fn renewal_notice(raw: Option<String>) -> Result<Option<Duration>, ConfigError> {
    let days = match raw {
        None => DEFAULT_RENEWAL_NOTICE_DAYS,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|d| RENEWAL_NOTICE_DAYS.contains(d))
            .ok_or_else(|| ConfigError::Invalid {
                name: "RENEWAL_NOTICE_DAYS",
                reason: format!("expected whole days from 0 (no notices) to 60, got {raw:?}"),
            })?,
    };
    Ok((days > 0).then(|| Duration::days(days)))
}

fn charger_concurrency(raw: &str) -> Result<usize, ConfigError> {
    raw.parse::<usize>()
        .ok()
        .filter(|c| (1..=64).contains(c))
        .ok_or(ConfigError::Invalid {
            name: "CHARGER_CONCURRENCY",
            reason: "expected a whole number from 1 to 64".into(),
        })
}

fn link_max_ttl(raw: &str) -> Result<Duration, ConfigError> {
    whole_seconds("LINK_MAX_TTL", raw, LINK_MAX_TTL_SECONDS, " (30 days)")
}

fn function_timeout(raw: &str) -> Result<Duration, ConfigError> {
    whole_seconds(
        "AWS_LAMBDA_FUNCTION_TIMEOUT",
        raw,
        FUNCTION_TIMEOUT_SECONDS,
        "",
    )
}

/// A duration in whole seconds within `bounds`; `upper_note` explains the upper bound.
fn whole_seconds(
    name: &'static str,
    raw: &str,
    bounds: std::ops::RangeInclusive<i64>,
    upper_note: &str,
) -> Result<Duration, ConfigError> {
    raw.parse::<i64>()
        .ok()
        .filter(|s| bounds.contains(s))
        .map(Duration::seconds)
        .ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!(
                "expected whole seconds from {} to {}{upper_note}, got {raw:?}",
                bounds.start(),
                bounds.end()
            ),
        })
}

fn checked_url(name: &'static str, raw: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(raw).map_err(|e| ConfigError::Invalid {
        name,
        reason: format!("not a URL ({e})"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be an absolute http(s) URL".into(),
        });
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("OEN_ENVIRONMENT", "testing".to_owned()),
            ("OEN_MERCHANT_ID", "ming".to_owned()),
            ("OEN_SECRET_ID", "oen-pay/oen".to_owned()),
            ("TABLE_NAME", "oen-pay".to_owned()),
            (
                "PLANS",
                r#"[{"id":"premium","description":"Premium","amount":500,"intervalMonths":1}]"#
                    .to_owned(),
            ),
            ("SUCCESS_URL", "https://shop.example/bound".to_owned()),
            ("FAILURE_URL", "https://shop.example/failed".to_owned()),
            ("TOKEN_KEY_ID", "alias/oen-pay".to_owned()),
            ("EVENT_BUS_NAME", "oen-pay".to_owned()),
            (
                "CHARGE_QUEUE_URL",
                "https://sqs.ap-northeast-1.amazonaws.com/1/q".to_owned(),
            ),
            (
                "CHARGE_DEAD_LETTER_QUEUE_URL",
                "https://sqs.ap-northeast-1.amazonaws.com/1/dlq".to_owned(),
            ),
            (
                "SCHEDULE_DEAD_LETTER_QUEUE_URL",
                "https://sqs.ap-northeast-1.amazonaws.com/1/sdlq".to_owned(),
            ),
        ])
    }

    fn with<T>(
        vars: &HashMap<&'static str, String>,
        read: impl FnOnce(&Vars) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        let lookup = |n: &str| vars.get(n).cloned();
        read(&Vars::new(&lookup))
    }

    fn oen(v: &HashMap<&'static str, String>) -> Result<OenConfig, ConfigError> {
        with(v, OenConfig::read)
    }

    fn checkout(v: &HashMap<&'static str, String>) -> Result<CheckoutConfig, ConfigError> {
        with(v, |vars| {
            CheckoutConfig::read(vars, OenConfig::read(vars)?.environment)
        })
    }

    fn charger(v: &HashMap<&'static str, String>) -> Result<ChargerConfig, ConfigError> {
        with(v, ChargerConfig::read)
    }

    /// Every variable each part reads, and nothing else: the template test relies on each
    /// function reading only its parts.
    #[test]
    fn each_part_reads_only_its_own_variables() {
        let all = base();
        let read = |f: &dyn Fn(&Vars)| -> BTreeSet<String> {
            let seen = RefCell::new(BTreeSet::new());
            let lookup = |n: &str| {
                seen.borrow_mut().insert(n.to_owned());
                all.get(n).cloned()
            };
            f(&Vars::new(&lookup));
            seen.into_inner()
        };
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            read(&|v| drop(Config::read(v).unwrap())),
            names(&["OEN_MERCHANT_ID", "OEN_SECRET_ID", "PLANS", "TABLE_NAME"])
        );
        assert_eq!(
            read(&|v| drop(OenConfig::read(v).unwrap())),
            names(&["OEN_API_BASE_URL", "OEN_ENVIRONMENT"])
        );
        assert_eq!(
            read(&|v| drop(CheckoutConfig::read(v, OenEnvironment::Testing).unwrap())),
            names(&[
                "EINVOICE",
                "FAILURE_URL",
                "LINK_MAX_TTL",
                "OEN_HOSTED_BASE_URL",
                "STATUS_ALLOWED_ORIGINS",
                "SUCCESS_URL"
            ])
        );
        assert_eq!(
            read(&|v| drop(WebhookConfig::read(v).unwrap())),
            names(&["EVENT_BUS_NAME", "TOKEN_KEY_ID", "WEBHOOK_ALLOWED_IPS"])
        );
        assert_eq!(
            read(&|v| drop(ChargerConfig::read(v).unwrap())),
            names(&[
                "AUTO_REFUND_DUPLICATES",
                "AWS_LAMBDA_FUNCTION_TIMEOUT",
                "CHARGER_CONCURRENCY",
                "CHARGE_QUEUE_URL",
                "DUNNING_DAYS",
                "EVENT_BUS_NAME",
                "RENEWAL_NOTICE_DAYS",
                "TOKEN_KEY_ID",
                "UNKNOWN_ALARM_HOURS",
            ])
        );
        assert_eq!(
            read(&|v| drop(MerchantApiConfig::read(v).unwrap())),
            names(&[
                "CHARGE_DEAD_LETTER_QUEUE_URL",
                "CHARGE_QUEUE_URL",
                "EVENT_BUS_NAME",
                "LINK_MAX_TTL",
                "SCHEDULE_DEAD_LETTER_QUEUE_URL",
                "START_LINK_URL",
                "TOKEN_KEY_ID"
            ])
        );
    }

    #[test]
    fn the_merchant_apis_start_link_url_is_optional_and_checked() {
        let api = with(&base(), MerchantApiConfig::read).unwrap();
        assert_eq!(api.start_link_url, None);
        assert_eq!(api.link_max_ttl, DEFAULT_LINK_MAX_TTL);
        let mut v = base();
        v.insert(
            "START_LINK_URL",
            "https://pay.example.com/checkout/start".into(),
        );
        v.insert("LINK_MAX_TTL", "3600".into());
        let api = with(&v, MerchantApiConfig::read).unwrap();
        assert_eq!(
            api.start_link_url.as_deref(),
            Some("https://pay.example.com/checkout/start")
        );
        assert_eq!(api.link_max_ttl, Duration::hours(1));
        v.insert("START_LINK_URL", "pay.example.com/checkout/start".into());
        assert!(matches!(
            with(&v, MerchantApiConfig::read),
            Err(ConfigError::Invalid {
                name: "START_LINK_URL",
                ..
            })
        ));
    }

    #[test]
    fn defaults_follow_the_environment() {
        let o = oen(&base()).unwrap();
        assert_eq!(o.api_base_url, "https://payment-api.testing.oen.tw");
        let c = checkout(&base()).unwrap();
        assert_eq!(c.hosted_base_url, "https://{merchantId}.testing.oen.tw");
        assert_eq!(c.success_url, "https://shop.example/bound");
        let mut v = base();
        v.remove("FAILURE_URL");
        assert_eq!(
            checkout(&v).unwrap_err(),
            ConfigError::Missing("FAILURE_URL")
        );
        let mut v = base();
        v.insert("OEN_ENVIRONMENT", "production".into());
        v.insert("OEN_API_BASE_URL", "http://127.0.0.1:9000/".into());
        assert_eq!(oen(&v).unwrap().api_base_url, "http://127.0.0.1:9000");
        assert_eq!(
            checkout(&v).unwrap().hosted_base_url,
            "https://{merchantId}.oen.tw"
        );
    }

    #[test]
    fn charging_tunables_apply_over_the_defaults() {
        let c = charger(&base()).unwrap();
        assert_eq!(c.charge_policy.dunning, ChargePolicy::default().dunning);
        assert_eq!(c.charge_policy.unknown_alarm_after, Duration::days(3));
        assert_eq!(c.concurrency, DEFAULT_CHARGER_CONCURRENCY);
        assert!(c.charge_policy.auto_refund_duplicates);
        let mut v = base();
        v.insert("AUTO_REFUND_DUPLICATES", "false".into());
        v.insert("DUNNING_DAYS", " 2, 4 ".into());
        v.insert("UNKNOWN_ALARM_HOURS", "6".into());
        v.insert("CHARGER_CONCURRENCY", "64".into());
        let c = charger(&v).unwrap();
        assert_eq!(
            c.charge_policy.dunning,
            vec![Duration::days(2), Duration::days(4)]
        );
        assert_eq!(c.charge_policy.unknown_alarm_after, Duration::hours(6));
        assert_eq!(c.concurrency, 64);
        assert!(!c.charge_policy.auto_refund_duplicates);
    }

    #[test]
    fn renewal_notices_go_a_week_ahead_unless_told_and_zero_turns_them_off() {
        let notice = |raw: Option<&str>| {
            let mut v = base();
            if let Some(raw) = raw {
                v.insert("RENEWAL_NOTICE_DAYS", raw.to_owned());
            }
            charger(&v).map(|c| c.charge_policy.renewal_notice)
        };
        assert_eq!(notice(None), Ok(Some(Duration::days(7))));
        assert_eq!(notice(Some(" 3 ")), Ok(Some(Duration::days(3))));
        assert_eq!(notice(Some("60")), Ok(Some(Duration::days(60))));
        assert_eq!(notice(Some("0")), Ok(None));
        for bad in ["-1", "61", "1.5", "7d"] {
            let err = notice(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("RENEWAL_NOTICE_DAYS"), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn einvoice_is_off_unless_set_to_true() {
        assert!(!checkout(&base()).unwrap().einvoice);
        let mut v = base();
        v.insert("EINVOICE", "true".into());
        assert!(checkout(&v).unwrap().einvoice);
        v.insert("EINVOICE", "false".into());
        assert!(!checkout(&v).unwrap().einvoice);
        v.insert("EINVOICE", "TRUE".into());
        assert_eq!(
            checkout(&v).unwrap_err().to_string(),
            "environment variable EINVOICE is invalid: expected true or false"
        );
    }

    #[test]
    fn status_allowed_origins_are_exact_origins() {
        let read = |raw: &str| {
            let mut v = base();
            v.insert("STATUS_ALLOWED_ORIGINS", raw.to_owned());
            checkout(&v).map(|c| c.status_allowed_origins)
        };
        assert_eq!(
            checkout(&base()).unwrap().status_allowed_origins,
            Vec::<String>::new()
        );
        assert_eq!(
            read(" https://Shop.Example , http://127.0.0.1:3000,https://shop.example").unwrap(),
            vec!["https://shop.example", "http://127.0.0.1:3000"]
        );
        // A default port is not part of the origin a browser sends.
        assert!(read("https://shop.example:443").is_err());
        for bad in [
            "*",
            "https://shop.example/",
            "https://shop.example/return",
            "https://shop.example?x=1",
            "shop.example",
            "ftp://shop.example",
        ] {
            let e = read(bad).unwrap_err().to_string();
            assert!(e.contains("STATUS_ALLOWED_ORIGINS"), "{bad}: {e}");
        }
    }

    #[test]
    fn link_max_ttl_is_whole_seconds_and_a_day_by_default() {
        assert_eq!(checkout(&base()).unwrap().link_max_ttl, Duration::hours(24));
        let mut v = base();
        v.insert("LINK_MAX_TTL", " 3600 ".into());
        assert_eq!(checkout(&v).unwrap().link_max_ttl, Duration::hours(1));
        v.insert("LINK_MAX_TTL", "2592000".into());
        assert_eq!(checkout(&v).unwrap().link_max_ttl, Duration::days(30));
        v.insert("LINK_MAX_TTL", "1.5".into());
        let err = checkout(&v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable LINK_MAX_TTL is invalid: expected whole seconds from 60 to \
             2592000 (30 days), got \"1.5\""
        );
    }

    #[test]
    fn the_function_timeout_is_whole_seconds_and_unknown_by_default() {
        assert_eq!(charger(&base()).unwrap().function_timeout, None);
        let mut v = base();
        v.insert("AWS_LAMBDA_FUNCTION_TIMEOUT", " 60 ".into());
        assert_eq!(
            charger(&v).unwrap().function_timeout,
            Some(Duration::seconds(60))
        );
        v.insert("AWS_LAMBDA_FUNCTION_TIMEOUT", "900".into());
        assert_eq!(
            charger(&v).unwrap().function_timeout,
            Some(Duration::minutes(15))
        );
        v.insert("AWS_LAMBDA_FUNCTION_TIMEOUT", "60s".into());
        assert_eq!(
            charger(&v).unwrap_err().to_string(),
            "environment variable AWS_LAMBDA_FUNCTION_TIMEOUT is invalid: expected whole seconds \
             from 1 to 900, got \"60s\""
        );
    }

    #[cfg(feature = "http")]
    #[test]
    fn webhook_allowed_ips_are_parsed_on_demand() {
        let webhook = |v: &HashMap<&'static str, String>| with(v, WebhookConfig::read).unwrap();
        assert!(webhook(&base()).allowed_ips().unwrap().is_empty());
        let mut v = base();
        v.insert("WEBHOOK_ALLOWED_IPS", "203.0.113.0/24, 198.51.100.7".into());
        assert_eq!(webhook(&v).allowed_ips().unwrap().len(), 2);
        v.insert("WEBHOOK_ALLOWED_IPS", "not-an-address".into());
        let err = webhook(&v).allowed_ips().unwrap_err();
        assert!(err.to_string().contains("WEBHOOK_ALLOWED_IPS"), "{err}");
    }

    #[test]
    fn errors_name_the_variable() {
        let all = |v: &HashMap<&'static str, String>| {
            with(v, |vars| {
                Config::read(vars)?;
                let o = OenConfig::read(vars)?;
                CheckoutConfig::read(vars, o.environment)?;
                WebhookConfig::read(vars)?;
                ChargerConfig::read(vars).map(drop)
            })
        };
        assert_eq!(all(&base()), Ok(()));
        for (name, value) in [
            ("OEN_ENVIRONMENT", "staging"),
            ("OEN_MERCHANT_ID", "ming.oen.tw"),
            ("PLANS", "[]"),
            ("SUCCESS_URL", "/relative"),
            ("FAILURE_URL", "shop.example/failed"),
            ("CHARGE_QUEUE_URL", "queue"),
            ("OEN_API_BASE_URL", "ftp://x"),
            ("OEN_HOSTED_BASE_URL", "{merchantId}.oen.tw"),
            ("DUNNING_DAYS", "1,x"),
            ("DUNNING_DAYS", "90"),
            ("UNKNOWN_ALARM_HOURS", "0"),
            ("CHARGER_CONCURRENCY", "0"),
            ("CHARGER_CONCURRENCY", "65"),
            ("AUTO_REFUND_DUPLICATES", "yes"),
            ("RENEWAL_NOTICE_DAYS", "-1"),
            ("EINVOICE", "yes"),
            ("LINK_MAX_TTL", "24h"),
            ("LINK_MAX_TTL", "59"),
            ("LINK_MAX_TTL", "2592001"),
            ("AWS_LAMBDA_FUNCTION_TIMEOUT", "0"),
            ("AWS_LAMBDA_FUNCTION_TIMEOUT", "901"),
        ] {
            let mut v = base();
            v.insert(name, value.into());
            let err = all(&v).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        for name in [
            "OEN_ENVIRONMENT",
            "OEN_MERCHANT_ID",
            "OEN_SECRET_ID",
            "TABLE_NAME",
            "PLANS",
            "SUCCESS_URL",
            "FAILURE_URL",
            "TOKEN_KEY_ID",
            "EVENT_BUS_NAME",
            "CHARGE_QUEUE_URL",
        ] {
            let mut v = base();
            v.insert(name, "  ".into());
            assert_eq!(all(&v).unwrap_err(), ConfigError::Missing(name));
            v.remove(name);
            assert_eq!(all(&v).unwrap_err(), ConfigError::Missing(name));
        }
    }
}
