//! Configuration, read once per cold start from the environment. The variable names are a
//! contract: the SAM template sets them, and tests and operators rely on them (see README).

use thiserror::Error;

use chrono::Duration;

use crate::charging::ChargePolicy;
use crate::domain::{Catalog, MerchantId};

/// SQS messages of one batch the charger works on at once, unless `CHARGER_CONCURRENCY` says.
pub const DEFAULT_CHARGER_CONCURRENCY: usize = 8;

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

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: OenEnvironment,
    pub merchant_id: MerchantId,
    /// Oen's API base (`OEN_API_BASE_URL` overrides the environment's).
    pub api_base_url: String,
    /// Oen's hosted pages; may contain `{merchantId}`.
    pub hosted_base_url: String,
    pub secret_id: String,
    pub table_name: String,
    pub plans: Catalog,
    token_key_id: Option<String>,
    success_url: Option<String>,
    failure_url: Option<String>,
    charge_queue_url: Option<String>,
    event_bus_name: Option<String>,
    /// The charging policy: the defaults, with `DUNNING_DAYS` and `UNKNOWN_ALARM_HOURS`.
    pub charge_policy: ChargePolicy,
    /// `CHARGER_CONCURRENCY`: messages of one SQS batch worked on at once (1 to 64).
    pub charger_concurrency: usize,
    /// `LINK_MAX_TTL`: how far ahead of its use a start link may expire.
    pub link_max_ttl: Duration,
    /// `AWS_LAMBDA_FUNCTION_TIMEOUT`, when set (a convention of local runtime emulators, not a
    /// variable Lambda documents): the charger counts it from an invocation's arrival when the
    /// runtime's deadline had already passed (`cargo lambda watch` sends one in 1970).
    pub function_timeout: Option<Duration>,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    webhook_allowed_ips: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let require = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let environment = match require("OEN_ENVIRONMENT")?.as_str() {
            "testing" => OenEnvironment::Testing,
            "production" => OenEnvironment::Production,
            other => {
                return Err(ConfigError::Invalid {
                    name: "OEN_ENVIRONMENT",
                    reason: format!("expected \"testing\" or \"production\", got {other:?}"),
                })
            }
        };
        let merchant_id =
            MerchantId::parse(&require("OEN_MERCHANT_ID")?).map_err(|e| ConfigError::Invalid {
                name: "OEN_MERCHANT_ID",
                reason: e.reason,
            })?;
        let api_base_url = match get("OEN_API_BASE_URL") {
            Some(u) => checked_url("OEN_API_BASE_URL", &u)?,
            None => environment.api_base_url().to_owned(),
        };
        let hosted_base_url = match get("OEN_HOSTED_BASE_URL") {
            Some(u) => {
                checked_url("OEN_HOSTED_BASE_URL", &u.replace("{merchantId}", "m"))?;
                u
            }
            None => environment.hosted_base_url().to_owned(),
        };
        let plans = Catalog::parse(&require("PLANS")?).map_err(|e| ConfigError::Invalid {
            name: "PLANS",
            reason: e.reason,
        })?;
        let optional_url =
            |name: &'static str| get(name).map(|u| checked_url(name, &u)).transpose();
        Ok(Self {
            environment,
            merchant_id,
            api_base_url: api_base_url.trim_end_matches('/').to_owned(),
            hosted_base_url,
            secret_id: require("OEN_SECRET_ID")?,
            table_name: require("TABLE_NAME")?,
            plans,
            token_key_id: get("TOKEN_KEY_ID"),
            success_url: optional_url("SUCCESS_URL")?,
            failure_url: optional_url("FAILURE_URL")?,
            charge_queue_url: optional_url("CHARGE_QUEUE_URL")?,
            event_bus_name: get("EVENT_BUS_NAME"),
            charge_policy: charge_policy(
                get("DUNNING_DAYS"),
                get("UNKNOWN_ALARM_HOURS"),
                get("AUTO_REFUND_DUPLICATES"),
            )?,
            charger_concurrency: match get("CHARGER_CONCURRENCY") {
                Some(raw) => charger_concurrency(&raw)?,
                None => DEFAULT_CHARGER_CONCURRENCY,
            },
            link_max_ttl: match get("LINK_MAX_TTL") {
                Some(raw) => link_max_ttl(&raw)?,
                None => DEFAULT_LINK_MAX_TTL,
            },
            function_timeout: get("AWS_LAMBDA_FUNCTION_TIMEOUT")
                .map(|raw| function_timeout(&raw))
                .transpose()?,
            webhook_allowed_ips: get("WEBHOOK_ALLOWED_IPS"),
        })
    }

    pub fn token_key_id(&self) -> Result<&str, ConfigError> {
        required(&self.token_key_id, "TOKEN_KEY_ID")
    }

    pub fn success_url(&self) -> Result<&str, ConfigError> {
        required(&self.success_url, "SUCCESS_URL")
    }

    pub fn failure_url(&self) -> Result<&str, ConfigError> {
        required(&self.failure_url, "FAILURE_URL")
    }

    pub fn charge_queue_url(&self) -> Result<&str, ConfigError> {
        required(&self.charge_queue_url, "CHARGE_QUEUE_URL")
    }

    pub fn event_bus_name(&self) -> Result<&str, ConfigError> {
        required(&self.event_bus_name, "EVENT_BUS_NAME")
    }
}

impl Config {
    /// `WEBHOOK_ALLOWED_IPS`: comma-separated addresses or CIDR blocks; empty allows every
    /// source.
    #[cfg(feature = "http")]
    pub fn webhook_allowed_ips(&self) -> Result<Vec<crate::web::Cidr>, ConfigError> {
        crate::web::Cidr::parse_list(self.webhook_allowed_ips.as_deref().unwrap_or_default())
            .map_err(|e| ConfigError::Invalid {
                name: "WEBHOOK_ALLOWED_IPS",
                reason: e.to_string(),
            })
    }
}

/// A variable only some functions need, asked for by the one that does.
fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, ConfigError> {
    value.as_deref().ok_or(ConfigError::Missing(name))
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
    use std::collections::HashMap;

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
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|n| vars.get(n).cloned())
    }

    #[test]
    fn defaults_follow_the_environment() {
        let c = load(&base()).unwrap();
        assert_eq!(c.api_base_url, "https://payment-api.testing.oen.tw");
        assert_eq!(c.hosted_base_url, "https://{merchantId}.testing.oen.tw");
        assert_eq!(c.success_url().unwrap(), "https://shop.example/bound");
        assert_eq!(
            c.failure_url().unwrap_err(),
            ConfigError::Missing("FAILURE_URL")
        );
        let mut v = base();
        v.insert("OEN_ENVIRONMENT", "production".into());
        v.insert("OEN_API_BASE_URL", "http://127.0.0.1:9000/".into());
        let c = load(&v).unwrap();
        assert_eq!(c.api_base_url, "http://127.0.0.1:9000");
        assert_eq!(c.hosted_base_url, "https://{merchantId}.oen.tw");
    }

    #[test]
    fn charging_tunables_apply_over_the_defaults() {
        let c = load(&base()).unwrap();
        assert_eq!(c.charge_policy.dunning, ChargePolicy::default().dunning);
        assert_eq!(c.charge_policy.unknown_alarm_after, Duration::days(3));
        assert_eq!(c.charger_concurrency, DEFAULT_CHARGER_CONCURRENCY);
        assert!(c.charge_policy.auto_refund_duplicates);
        let mut v = base();
        v.insert("AUTO_REFUND_DUPLICATES", "false".into());
        v.insert("DUNNING_DAYS", " 2, 4 ".into());
        v.insert("UNKNOWN_ALARM_HOURS", "6".into());
        v.insert("CHARGER_CONCURRENCY", "64".into());
        let c = load(&v).unwrap();
        assert_eq!(
            c.charge_policy.dunning,
            vec![Duration::days(2), Duration::days(4)]
        );
        assert_eq!(c.charge_policy.unknown_alarm_after, Duration::hours(6));
        assert_eq!(c.charger_concurrency, 64);
        assert!(!c.charge_policy.auto_refund_duplicates);
    }

    #[test]
    fn link_max_ttl_is_whole_seconds_and_a_day_by_default() {
        assert_eq!(load(&base()).unwrap().link_max_ttl, Duration::hours(24));
        let mut v = base();
        v.insert("LINK_MAX_TTL", " 3600 ".into());
        assert_eq!(load(&v).unwrap().link_max_ttl, Duration::hours(1));
        v.insert("LINK_MAX_TTL", "2592000".into());
        assert_eq!(load(&v).unwrap().link_max_ttl, Duration::days(30));
        v.insert("LINK_MAX_TTL", "1.5".into());
        let err = load(&v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable LINK_MAX_TTL is invalid: expected whole seconds from 60 to \
             2592000 (30 days), got \"1.5\""
        );
    }

    #[test]
    fn the_function_timeout_is_whole_seconds_and_unknown_by_default() {
        assert_eq!(load(&base()).unwrap().function_timeout, None);
        let mut v = base();
        v.insert("AWS_LAMBDA_FUNCTION_TIMEOUT", " 60 ".into());
        assert_eq!(
            load(&v).unwrap().function_timeout,
            Some(Duration::seconds(60))
        );
        v.insert("AWS_LAMBDA_FUNCTION_TIMEOUT", "900".into());
        assert_eq!(
            load(&v).unwrap().function_timeout,
            Some(Duration::minutes(15))
        );
        v.insert("AWS_LAMBDA_FUNCTION_TIMEOUT", "60s".into());
        assert_eq!(
            load(&v).unwrap_err().to_string(),
            "environment variable AWS_LAMBDA_FUNCTION_TIMEOUT is invalid: expected whole seconds \
             from 1 to 900, got \"60s\""
        );
    }

    #[cfg(feature = "http")]
    #[test]
    fn webhook_allowed_ips_are_parsed_on_demand() {
        assert!(load(&base())
            .unwrap()
            .webhook_allowed_ips()
            .unwrap()
            .is_empty());
        let mut v = base();
        v.insert("WEBHOOK_ALLOWED_IPS", "203.0.113.0/24, 198.51.100.7".into());
        assert_eq!(load(&v).unwrap().webhook_allowed_ips().unwrap().len(), 2);
        v.insert("WEBHOOK_ALLOWED_IPS", "not-an-address".into());
        let err = load(&v).unwrap().webhook_allowed_ips().unwrap_err();
        assert!(err.to_string().contains("WEBHOOK_ALLOWED_IPS"), "{err}");
    }

    #[test]
    fn errors_name_the_variable() {
        for (name, value) in [
            ("OEN_ENVIRONMENT", "staging"),
            ("OEN_MERCHANT_ID", "ming.oen.tw"),
            ("PLANS", "[]"),
            ("SUCCESS_URL", "/relative"),
            ("OEN_API_BASE_URL", "ftp://x"),
            ("DUNNING_DAYS", "1,x"),
            ("DUNNING_DAYS", "90"),
            ("UNKNOWN_ALARM_HOURS", "0"),
            ("CHARGER_CONCURRENCY", "0"),
            ("CHARGER_CONCURRENCY", "65"),
            ("AUTO_REFUND_DUPLICATES", "yes"),
            ("LINK_MAX_TTL", "24h"),
            ("LINK_MAX_TTL", "59"),
            ("LINK_MAX_TTL", "2592001"),
            ("AWS_LAMBDA_FUNCTION_TIMEOUT", "0"),
            ("AWS_LAMBDA_FUNCTION_TIMEOUT", "901"),
        ] {
            let mut v = base();
            v.insert(name, value.into());
            let err = load(&v).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        for name in [
            "OEN_ENVIRONMENT",
            "OEN_MERCHANT_ID",
            "OEN_SECRET_ID",
            "TABLE_NAME",
            "PLANS",
        ] {
            let mut v = base();
            v.remove(name);
            assert_eq!(load(&v).unwrap_err(), ConfigError::Missing(name));
        }
    }
}
