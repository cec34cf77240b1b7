//! Metrics as CloudWatch Embedded Metric Format lines on stdout: Lambda ships them to
//! CloudWatch Logs, which turns them into metrics without an API call on the request path.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Number;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "oen-pay";

/// The one dimension of every metric: the function that counted it.
const DIMENSION: &str = "Function";

/// The unit of a metric's values (CloudWatch's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

/// Counts one occurrence of `metric` for `function`.
pub fn count(function: &str, metric: &str) {
    emit(function, metric, Number::from(1u8), Unit::Count);
}

/// Records the current level of `metric` for `function` (an age, a backlog): CloudWatch keeps
/// each value, so alarms can take the maximum over a period.
pub fn gauge(function: &str, metric: &str, value: f64, unit: Unit) {
    match Number::from_f64(value) {
        Some(value) => emit(function, metric, value, unit),
        None => tracing::warn!(
            function,
            metric,
            value,
            "metric not recorded: not a finite number"
        ),
    }
}

fn emit(function: &str, metric: &str, value: Number, unit: Unit) {
    match emf_line(function, metric, value, unit) {
        Some(line) => println!("{line}"),
        None => tracing::warn!(
            function,
            metric,
            "metric not recorded: not a valid EMF name"
        ),
    }
}

/// One EMF document, or `None` where the names would make it invalid: a metric is a member of
/// the document's root beside `_aws` and the dimension, so it may not take either name.
fn emf_line(function: &str, metric: &str, value: impl Into<Number>, unit: Unit) -> Option<String> {
    let valid_metric =
        (1..=255).contains(&metric.chars().count()) && metric != "_aws" && metric != DIMENSION;
    let valid_function = (1..=1024).contains(&function.chars().count());
    if !valid_metric || !valid_function {
        return None;
    }
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": [{"Name": metric, "Unit": unit.as_str()}],
            }],
        },
        DIMENSION: function,
        metric: value.into(),
    });
    Some(line.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde_json::{json, Map, Value};

    use super::Unit::{Count, Seconds};

    /// Metric units CloudWatch accepts (`MetricDatum.Unit`).
    const UNITS: [&str; 27] = [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Whether an object has exactly the `required` members, plus any of `optional`.
    fn members(object: &Map<String, Value>, required: &[&str], optional: &[&str]) -> bool {
        required.iter().all(|m| object.contains_key(*m))
            && object
                .keys()
                .all(|k| required.contains(&k.as_str()) || optional.contains(&k.as_str()))
    }

    fn is_name(v: &Value) -> bool {
        v.as_str()
            .is_some_and(|s| (1..=255).contains(&s.chars().count()))
    }

    /// Every rule of the CloudWatch embedded metric format specification that one log line can
    /// break, as the list of the rules it breaks.
    fn emf_violations(line: &str) -> Vec<String> {
        let mut broken = Vec::new();
        let mut rule = |ok: bool, what: &str| {
            if !ok {
                broken.push(what.to_owned());
            }
        };
        rule(!line.contains('\n'), "one document is one log line");
        let Ok(Value::Object(root)) = serde_json::from_str::<Value>(line) else {
            return vec!["the line is one JSON object and nothing else".into()];
        };
        let Some(Value::Object(aws)) = root.get("_aws") else {
            return vec!["the root has an `_aws` object".into()];
        };
        rule(
            members(aws, &["Timestamp", "CloudWatchMetrics"], &[]),
            "`_aws` has exactly Timestamp and CloudWatchMetrics",
        );
        // Integer milliseconds since the epoch; CloudWatch takes up to 2 weeks back, 2 h ahead.
        let now = now_ms();
        let window = (now - 14 * 24 * 3_600_000)..=(now + 2 * 3_600_000);
        rule(
            aws.get("Timestamp")
                .and_then(Value::as_u64)
                .is_some_and(|t| window.contains(&t)),
            "Timestamp is integer epoch milliseconds, near now",
        );
        let directives = aws
            .get("CloudWatchMetrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        rule(
            !directives.is_empty(),
            "CloudWatchMetrics is a non-empty array",
        );
        let mut dimension_keys = BTreeSet::new();
        let mut metric_names = BTreeSet::new();
        for directive in &directives {
            let Some(directive) = directive.as_object() else {
                rule(false, "each MetricDirective is an object");
                continue;
            };
            rule(
                members(directive, &["Namespace", "Dimensions", "Metrics"], &[]),
                "a MetricDirective has exactly Namespace, Dimensions and Metrics",
            );
            rule(
                directive.get("Namespace").is_some_and(|n| {
                    is_name(n)
                        && n.as_str().is_some_and(|n| {
                            !n.starts_with("AWS/")
                                && n.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || "._-/#:".contains(c))
                        })
                }),
                "Namespace is 1-255 of [A-Za-z0-9._-/#:], not under AWS/",
            );
            let sets = directive.get("Dimensions").and_then(Value::as_array);
            rule(
                sets.is_some_and(|s| !s.is_empty()),
                "Dimensions is a non-empty array of DimensionSets",
            );
            for set in sets.into_iter().flatten() {
                let keys = set.as_array();
                rule(
                    keys.is_some_and(|k| k.len() <= 30 && k.iter().all(is_name)),
                    "a DimensionSet is an array of at most 30 names",
                );
                for key in keys.into_iter().flatten().filter_map(Value::as_str) {
                    dimension_keys.insert(key.to_owned());
                    rule(
                        root.get(key)
                            .and_then(Value::as_str)
                            .is_some_and(|v| (1..=1024).contains(&v.chars().count())),
                        &format!("dimension {key:?} is a root member with a 1-1024 char string"),
                    );
                }
            }
            let metrics = directive.get("Metrics").and_then(Value::as_array);
            rule(
                metrics.is_some_and(|m| (1..=100).contains(&m.len())),
                "Metrics is an array of 1-100 MetricDefinitions",
            );
            for metric in metrics.into_iter().flatten() {
                let Some(metric) = metric.as_object() else {
                    rule(false, "each MetricDefinition is an object");
                    continue;
                };
                rule(
                    members(metric, &["Name"], &["Unit", "StorageResolution"]),
                    "a MetricDefinition has Name, and at most Unit and StorageResolution",
                );
                rule(
                    metric
                        .get("Unit")
                        .is_none_or(|u| u.as_str().is_some_and(|u| UNITS.contains(&u))),
                    "Unit is a CloudWatch unit",
                );
                rule(
                    metric
                        .get("StorageResolution")
                        .is_none_or(|r| r.as_u64().is_some_and(|r| r == 1 || r == 60)),
                    "StorageResolution is 1 or 60",
                );
                rule(
                    metric.get("Name").is_some_and(is_name),
                    "Name is a 1-255 char string",
                );
                let Some(name) = metric.get("Name").and_then(Value::as_str) else {
                    continue;
                };
                metric_names.insert(name.to_owned());
                rule(
                    match root.get(name) {
                        Some(Value::Number(_)) => true,
                        Some(Value::Array(values)) => {
                            values.len() <= 100 && values.iter().all(Value::is_number)
                        }
                        _ => false,
                    },
                    &format!("metric {name:?} is a root member with a number (or up to 100)"),
                );
            }
        }
        rule(
            dimension_keys.is_disjoint(&metric_names)
                && !dimension_keys.contains("_aws")
                && !metric_names.contains("_aws"),
            "no member is both a dimension and a metric, nor `_aws`",
        );
        broken
    }

    #[test]
    fn emf_lines_name_the_metric_and_its_value() {
        let line: serde_json::Value =
            serde_json::from_str(&super::emf_line("webhook", "WebhookRefused", 1, Count).unwrap())
                .unwrap();
        assert_eq!(line["WebhookRefused"], 1);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "WebhookRefused"
        );
    }

    #[test]
    fn every_metric_we_count_is_a_valid_emf_document() {
        for (function, metric) in [
            ("webhook", "WebhookRefused"),
            ("webhook", "EventsNotPublished"),
            ("charger", "ConfigError"),
            ("charger", "UnknownTooOld"),
            ("charger", "EventsNotPublished"),
            ("charger", "OutboxRelayFailed"),
        ] {
            let line = super::emf_line(function, metric, 1, Count).unwrap();
            assert_eq!(emf_violations(&line), Vec::<String>::new(), "{line}");
            let doc: Value = serde_json::from_str(&line).unwrap();
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], super::NAMESPACE);
            assert_eq!(directive["Metrics"][0]["Name"], metric);
            assert_eq!(directive["Metrics"][0]["Unit"], "Count");
            assert_eq!(doc[metric], 1);
            assert_eq!(doc["Function"], function);
        }
    }

    #[test]
    fn every_gauge_we_record_is_a_valid_emf_document_in_its_unit() {
        for (function, metric, value) in [
            ("charger", "OutboxLagSeconds", 0.0),
            ("charger", "OutboxLagSeconds", 1234.567),
        ] {
            let number = serde_json::Number::from_f64(value).unwrap();
            let line = super::emf_line(function, metric, number, Seconds).unwrap();
            assert_eq!(emf_violations(&line), Vec::<String>::new(), "{line}");
            let doc: Value = serde_json::from_str(&line).unwrap();
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Metrics"][0]["Name"], metric);
            assert_eq!(directive["Metrics"][0]["Unit"], "Seconds");
            assert_eq!(doc[metric].as_f64(), Some(value));
            assert_eq!(doc["Function"], function);
        }
    }

    #[test]
    fn names_that_would_break_the_document_are_not_counted() {
        for metric in ["", "_aws", "Function", &"M".repeat(256)] {
            assert_eq!(
                super::emf_line("webhook", metric, 1, Count),
                None,
                "{metric:?}"
            );
        }
        assert_eq!(super::emf_line("", "WebhookRefused", 1, Count), None);
        let long = "é".repeat(255);
        let line = super::emf_line(&"f".repeat(1024), &long, 1, Count).unwrap();
        assert_eq!(emf_violations(&line), Vec::<String>::new());
    }

    /// The check itself: the specification's example passes, and each broken rule is caught.
    #[test]
    fn the_emf_check_catches_each_broken_rule() {
        let valid = json!({
            "_aws": {
                "Timestamp": now_ms(),
                "CloudWatchMetrics": [{
                    "Namespace": "lambda-function-metrics",
                    "Dimensions": [["functionVersion"]],
                    "Metrics": [{"Name": "time", "Unit": "Milliseconds"}]
                }]
            },
            "functionVersion": "$LATEST",
            "time": 100,
            "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee"
        });
        assert_eq!(emf_violations(&valid.to_string()), Vec::<String>::new());
        type Breakage = (&'static str, fn(&mut Value));
        let broken: [Breakage; 14] = [
            ("no _aws", |d| d["_aws"] = Value::Null),
            ("extra _aws member", |d| d["_aws"]["Extra"] = json!(1)),
            ("timestamp in seconds", |d| {
                d["_aws"]["Timestamp"] = json!(now_ms() / 1000)
            }),
            ("timestamp not an integer", |d| {
                d["_aws"]["Timestamp"] = json!(now_ms() as f64 + 0.5)
            }),
            ("no directives", |d| {
                d["_aws"]["CloudWatchMetrics"] = json!([])
            }),
            ("namespace under AWS/", |d| {
                d["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("AWS/Lambda")
            }),
            ("no dimension sets", |d| {
                d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([])
            }),
            ("dimension set not an array of strings", |d| {
                d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!(["functionVersion"])
            }),
            ("dimension target missing", |d| {
                d.as_object_mut().unwrap().remove("functionVersion");
            }),
            ("dimension target not a string", |d| {
                d["functionVersion"] = json!(1)
            }),
            ("metric target not a number", |d| d["time"] = json!("100")),
            ("unknown unit", |d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Ms")
            }),
            ("metric named as the dimension", |d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] = json!("functionVersion")
            }),
            ("nested metric target", |d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] = json!("a.b");
                d["a"] = json!({"b": 1});
            }),
        ];
        for (what, breaks) in broken {
            let mut doc = valid.clone();
            breaks(&mut doc);
            assert!(!emf_violations(&doc.to_string()).is_empty(), "{what}");
        }
        assert!(!emf_violations(&format!("{valid}\n{valid}")).is_empty());
        assert!(!emf_violations("START RequestId: 1 {}").is_empty());
    }
}
