//! The SAM template, read as data: least privilege per function, and the wiring each function
//! needs to start.

use std::collections::{BTreeMap, BTreeSet};

use oen_pay_integration::repo_root;
use yaml_serde::Value;

fn template() -> Value {
    yaml_serde::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap())
        .unwrap()
}

/// A CloudFormation value as text: `!GetAtt Table.Arn` → `GetAtt Table.Arn`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Tagged(t) => format!(
            "{} {}",
            t.tag.to_string().trim_start_matches('!'),
            text(&t.value)
        ),
        Value::Sequence(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => yaml_serde::to_string(other).unwrap().trim().to_owned(),
    }
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().map(text).collect(),
        other => vec![text(other)],
    }
}

/// Every (action, resource) a function's inline policies allow.
fn grants(t: &Value, function: &str) -> Vec<(String, String)> {
    let props = &t["Resources"][function]["Properties"];
    let mut out = Vec::new();
    for policy in props["Policies"].as_sequence().expect("inline policies") {
        for statement in policy["Statement"].as_sequence().expect("statements") {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"));
            for action in list(&statement["Action"]) {
                for resource in list(&statement["Resource"]) {
                    out.push((action.clone(), resource));
                }
            }
        }
    }
    out
}

const FUNCTIONS: [&str; 3] = [
    "CheckoutStartFunction",
    "WebhookFunction",
    "ChargerFunction",
];

#[test]
fn only_the_webhook_encrypts_and_only_the_charger_decrypts_card_tokens() {
    let t = template();
    let kms: BTreeMap<&str, BTreeSet<String>> = FUNCTIONS
        .iter()
        .map(|f| {
            (
                *f,
                grants(&t, f)
                    .into_iter()
                    .filter(|(a, _)| a.starts_with("kms:"))
                    .map(|(a, r)| format!("{a} on {r}"))
                    .collect(),
            )
        })
        .collect();
    assert!(kms["CheckoutStartFunction"].is_empty(), "{kms:?}");
    assert_eq!(
        kms["WebhookFunction"],
        BTreeSet::from(["kms:Encrypt on GetAtt TokenKey.Arn".to_owned()])
    );
    assert_eq!(
        kms["ChargerFunction"],
        BTreeSet::from(["kms:Decrypt on GetAtt TokenKey.Arn".to_owned()])
    );
}

#[test]
fn every_grant_names_one_action_on_this_stacks_own_resources() {
    let t = template();
    for f in FUNCTIONS {
        let g = grants(&t, f);
        assert!(!g.is_empty(), "{f} has no policy");
        for (action, resource) in g {
            assert!(!action.contains('*'), "{f}: wildcard action {action}");
            assert!(
                !resource.contains('*') && resource != "*",
                "{f}: wildcard resource for {action}"
            );
            let service = action.split(':').next().unwrap();
            let allowed: &[&str] = match service {
                "dynamodb" => &["GetAtt Table.Arn", "Sub ${Table.Arn}/index/due-index"],
                "secretsmanager" => &["Ref OenSecret"],
                "kms" => &["GetAtt TokenKey.Arn"],
                "events" => &["GetAtt EventBus.Arn"],
                "sqs" => &["GetAtt ChargeQueue.Arn"],
                other => panic!("{f}: unexpected service {other}"),
            };
            assert!(
                allowed.contains(&resource.as_str()),
                "{f}: {action} on {resource}"
            );
        }
    }
}

#[test]
fn each_function_reads_only_what_its_flows_need() {
    let t = template();
    let actions = |f: &str| {
        grants(&t, f)
            .into_iter()
            .map(|(a, _)| a)
            .collect::<BTreeSet<_>>()
    };
    let start = actions("CheckoutStartFunction");
    assert!(
        !start.contains("events:PutEvents")
            && !start.contains("sqs:SendMessage")
            && !start.contains("dynamodb:Query")
    );
    let webhook = actions("WebhookFunction");
    assert!(!webhook.contains("sqs:SendMessage") && !webhook.contains("dynamodb:Query"));
    let charger = actions("ChargerFunction");
    assert!(charger.contains("dynamodb:Query") && charger.contains("sqs:SendMessage"));
}

#[test]
fn each_function_gets_the_configuration_it_reads_at_start() {
    let t = template();
    let global: BTreeSet<String> = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(text)
        .collect();
    let own = |f: &str| -> BTreeSet<String> {
        t["Resources"][f]["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .map(|m| m.keys().map(text).collect())
            .unwrap_or_default()
    };
    let common = [
        "OEN_ENVIRONMENT",
        "OEN_MERCHANT_ID",
        "OEN_SECRET_ID",
        "TABLE_NAME",
        "PLANS",
        "TOKEN_KEY_ID",
        "EVENT_BUS_NAME",
    ];
    for f in FUNCTIONS {
        for v in common {
            assert!(global.contains(v) || own(f).contains(v), "{f} lacks {v}");
        }
    }
    assert!(own("CheckoutStartFunction").is_superset(&BTreeSet::from([
        "SUCCESS_URL".to_owned(),
        "FAILURE_URL".to_owned()
    ])));
    assert!(own("ChargerFunction").contains("CHARGE_QUEUE_URL"));
    assert!(own("WebhookFunction").contains("WEBHOOK_ALLOWED_IPS"));
}

#[test]
fn each_function_builds_a_binary_of_this_workspace() {
    let t = template();
    for (f, dir) in [
        ("CheckoutStartFunction", "checkout-start"),
        ("WebhookFunction", "webhook"),
        ("ChargerFunction", "charger"),
    ] {
        let r = &t["Resources"][f];
        assert_eq!(
            r["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda")
        );
        let binary = r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        let manifest =
            std::fs::read_to_string(repo_root().join("functions").join(dir).join("Cargo.toml"))
                .unwrap();
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{f}: no package {binary}"
        );
        assert!(repo_root()
            .join("functions")
            .join(dir)
            .join("src/main.rs")
            .exists());
    }
}

#[test]
fn the_charge_queue_outlives_the_charger_and_reports_partial_failures() {
    let t = template();
    let charger = &t["Resources"]["ChargerFunction"]["Properties"];
    let timeout = charger["Timeout"].as_u64().unwrap();
    let visibility = t["Resources"]["ChargeQueue"]["Properties"]["VisibilityTimeout"]
        .as_u64()
        .unwrap();
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility}s < 6 × {timeout}s"
    );
    let work = &charger["Events"]["Work"]["Properties"];
    assert_eq!(
        list(&work["FunctionResponseTypes"]),
        ["ReportBatchItemFailures"]
    );
    assert!(
        work["ScalingConfig"]["MaximumConcurrency"].is_tagged()
            || work["ScalingConfig"]["MaximumConcurrency"].is_number()
    );
    // The worker refuses to start a charge with less than 25 s left; the timeout leaves room.
    assert!(
        timeout >= 45,
        "charger timeout {timeout}s leaves no room for an Oen call"
    );
}

#[test]
fn the_schedule_sends_its_scheduled_time_retries_and_keeps_runs_it_gave_up_on() {
    let t = template();
    let schedule = &t["Resources"]["ChargerFunction"]["Properties"]["Events"]["Schedule"];
    assert_eq!(schedule["Type"].as_str(), Some("ScheduleV2"));
    let props = &schedule["Properties"];
    // Render the Input as Scheduler does, and read it as the charger does.
    let input = props["Input"].as_str().expect("the schedule has an Input");
    assert!(input.contains(charger::trigger::SCHEDULED_TIME_ATTRIBUTE));
    let rendered = input.replace(
        charger::trigger::SCHEDULED_TIME_ATTRIBUTE,
        "2027-01-31T02:00:00Z",
    );
    let payload: serde_json::Value = serde_json::from_str(&rendered).unwrap();
    match charger::trigger::parse(payload) {
        Ok(charger::trigger::Trigger::Schedule(Some(at))) => {
            assert_eq!(at.to_rfc3339(), "2027-01-31T02:00:00+00:00")
        }
        other => panic!("the rendered Input is no scheduled run: {other:?}"),
    }
    let retry = &props["RetryPolicy"];
    assert!(retry["MaximumRetryAttempts"].as_u64().unwrap() >= 1);
    assert!((60..=86400).contains(&retry["MaximumEventAgeInSeconds"].as_u64().unwrap()));
    assert_eq!(
        text(&props["DeadLetterConfig"]["Arn"]),
        "GetAtt ScheduleDeadLetterQueue.Arn"
    );
    assert_eq!(
        t["Resources"]["ScheduleDeadLetterQueue"]["Type"].as_str(),
        Some("AWS::SQS::Queue")
    );
}

trait IsTagged {
    fn is_tagged(&self) -> bool;
}

impl IsTagged for Value {
    fn is_tagged(&self) -> bool {
        matches!(self, Value::Tagged(_))
    }
}
