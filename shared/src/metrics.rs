//! Metrics as CloudWatch Embedded Metric Format lines on stdout: Lambda ships them to
//! CloudWatch Logs, which turns them into metrics without an API call on the request path.

use std::time::{SystemTime, UNIX_EPOCH};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "oen-pay";

/// Counts one occurrence of `metric` for `function`.
pub fn count(function: &str, metric: &str) {
    println!("{}", emf_line(function, metric, 1));
}

fn emf_line(function: &str, metric: &str, value: u64) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    serde_json::json!({
        "_aws": {
            "Timestamp": ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [{"Name": metric, "Unit": "Count"}],
            }],
        },
        "Function": function,
        metric: value,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn emf_lines_name_the_metric_and_its_value() {
        let line: serde_json::Value =
            serde_json::from_str(&super::emf_line("webhook", "WebhookRefused", 1)).unwrap();
        assert_eq!(line["WebhookRefused"], 1);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "WebhookRefused"
        );
    }
}
