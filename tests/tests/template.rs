//! The SAM template, read as data: least privilege per function, and the wiring each function
//! needs to start.

use std::collections::{BTreeMap, BTreeSet};

use oen_pay::domain::{BindingRef, CustomerId, MerchantId};
use oen_pay::vault::VaultContext;
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

const FUNCTIONS: [&str; 4] = [
    "CheckoutStartFunction",
    "WebhookFunction",
    "ChargerFunction",
    "MerchantApiFunction",
];

/// Only the webhook encrypts; the charger and the merchant API (a one-off charge needs the token
/// while the merchant waits) decrypt, and nothing else touches the key.
#[test]
fn only_the_webhook_encrypts_and_only_the_charging_functions_decrypt_card_tokens() {
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
    for f in ["ChargerFunction", "MerchantApiFunction"] {
        assert_eq!(
            kms[f],
            BTreeSet::from(["kms:Decrypt on GetAtt TokenKey.Arn".to_owned()]),
            "{f}"
        );
    } // The merchant API's own grant asks for the project's encryption context, as the key does.
    let decrypt = t["Resources"]["MerchantApiFunction"]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().unwrap())
        .find(|s| list(&s["Action"]) == ["kms:Decrypt"])
        .expect("the merchant API's kms:Decrypt statement");
    let c = &decrypt["Condition"];
    assert_eq!(
        list(&c["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]),
        ["merchant", "customer", "binding"]
    );
    for key in ["merchant", "customer", "binding"] {
        let name = format!("kms:EncryptionContext:{key}");
        assert_eq!(c["Null"][name.as_str()].as_str(), Some("false"), "{key}");
    }
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
                "dynamodb" => &[
                    "GetAtt Table.Arn",
                    "Sub ${Table.Arn}/index/due-index",
                    "Sub ${Table.Arn}/index/subscription-index",
                    "Sub ${Table.Arn}/index/notice-index",
                ],
                "secretsmanager" => &["Ref OenSecret"],
                "kms" => &["GetAtt TokenKey.Arn"],
                "events" => &["GetAtt EventBus.Arn"],
                // The merchant API's redrive: it may send to the charge queue, and read and
                // delete the dead-letter queues; nothing else may touch those.
                "sqs" if action != "sqs:SendMessage" && f == "MerchantApiFunction" => &[
                    "GetAtt ChargeDeadLetterQueue.Arn",
                    "GetAtt ScheduleDeadLetterQueue.Arn",
                ],
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
    // The merchant API refunds, reports and decrypts a token for a one-off charge, but never
    // encrypts a token; of the queues it only sends redriven work to the charge queue and reads
    // and deletes the dead-letter queues (never receiving the charger's work).
    let merchant = actions("MerchantApiFunction");
    assert!(
        merchant
            .iter()
            .filter(|a| a.starts_with("kms:"))
            .eq(["kms:Decrypt"].iter()),
        "{merchant:?}"
    );
    let merchant_sqs: BTreeSet<(String, String)> = grants(&t, "MerchantApiFunction")
        .into_iter()
        .filter(|(a, _)| a.starts_with("sqs:"))
        .collect();
    let mut expected = BTreeSet::from([(
        "sqs:SendMessage".to_owned(),
        "GetAtt ChargeQueue.Arn".to_owned(),
    )]);
    for action in [
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
    ] {
        for queue in ["ChargeDeadLetterQueue", "ScheduleDeadLetterQueue"] {
            expected.insert((action.to_owned(), format!("GetAtt {queue}.Arn")));
        }
    }
    assert_eq!(merchant_sqs, expected);
    assert!(merchant.contains("events:PutEvents") && merchant.contains("dynamodb:Query"));
}

/// A value as CloudFormation resolves it at deployment: a parameter's default (or, for the
/// merchant's required parameters, a value a merchant would give), what `Ref` of a resource
/// returns for its type (an SQS queue's URL, a secret's ARN, a table's or bus's name), and
/// `GetAtt X.Arn` an ARN.
fn resolve(t: &Value, v: &Value) -> String {
    const ACCOUNT: &str = "arn:aws:service:ap-northeast-1:123456789012";
    // With the parameters' defaults every condition is false (no custom domain, no fixed
    // egress, no VPC, no alarm e-mail): an `!If` takes its second value.
    if let Some(args) = intrinsic(v, "If").and_then(Value::as_sequence) {
        assert_eq!(args.len(), 3, "!If {args:?}");
        return resolve(t, &args[2]);
    }
    if let Some(name) = intrinsic(v, "Ref").and_then(Value::as_str) {
        if let Some(param) = t["Parameters"].get(name) {
            if let Some(default) = param.get("Default") {
                return text(default);
            }
            return match name {
                "MerchantId" => "ming".into(),
                "Plans" => {
                    r#"[{"id":"premium","description":"Premium","amount":500,"intervalMonths":1}]"#
                        .into()
                }
                "SuccessUrl" => "https://shop.example/card/bound".into(),
                "FailureUrl" => "https://shop.example/card/failed".into(),
                other => panic!("no sample value for parameter {other}"),
            };
        }
        let kind = t["Resources"][name]["Type"].as_str().expect("a resource");
        return match kind {
            "AWS::SQS::Queue" => {
                format!("https://sqs.ap-northeast-1.amazonaws.com/123456789012/{name}")
            }
            "AWS::SecretsManager::Secret" => format!("{ACCOUNT}:secret:{name}-AbCdEf"),
            "AWS::DynamoDB::Table" | "AWS::Events::EventBus" => format!("stack-{name}"),
            other => panic!("Ref of a {other} ({name}): what does it return?"),
        };
    }
    if let Some(target) = intrinsic(v, "GetAtt") {
        let target = text(target);
        assert!(target.ends_with(".Arn"), "GetAtt {target}");
        return format!("{ACCOUNT}:{}", target.trim_end_matches(".Arn"));
    }
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("unresolved value {v:?}"))
}

/// A function's environment as deployed: the global variables, then its own.
fn environment(t: &Value, function: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for vars in [
        &t["Globals"]["Function"]["Environment"]["Variables"],
        &t["Resources"][function]["Properties"]["Environment"]["Variables"],
    ] {
        for (k, v) in vars.as_mapping().into_iter().flatten() {
            env.insert(text(k), resolve(t, v));
        }
    }
    env
}

/// Variables a function may read without the template setting them: local development's
/// overrides of Oen's addresses (a deployment takes them from `OEN_ENVIRONMENT`), and the
/// timeout that local runtime emulators announce (Lambda's deadline header stands for it).
const READ_BUT_NOT_DEPLOYED: [&str; 3] = [
    "OEN_API_BASE_URL",
    "OEN_HOSTED_BASE_URL",
    "AWS_LAMBDA_FUNCTION_TIMEOUT",
];

/// Runs `read` (a function's own configuration reader, the one its `main` calls) on the
/// template's environment for `function`, and returns the variables it asked for.
fn reads<T>(
    t: &Value,
    function: &str,
    read: impl FnOnce(&oen_pay::config::Vars) -> Result<T, oen_pay::config::ConfigError>,
) -> BTreeSet<String> {
    let env = environment(t, function);
    let asked = std::cell::RefCell::new(BTreeSet::new());
    let lookup = |name: &str| {
        asked.borrow_mut().insert(name.to_owned());
        env.get(name).cloned()
    };
    if let Err(e) = read(&oen_pay::config::Vars::new(&lookup)) {
        panic!("{function} would not start as deployed: {e}");
    }
    let asked = asked.into_inner();
    let set: BTreeSet<String> = env.keys().cloned().collect();
    let unread: Vec<_> = set.difference(&asked).collect();
    assert!(
        unread.is_empty(),
        "{function} sets {unread:?}, which it never reads"
    );
    let unset: Vec<_> = asked
        .difference(&set)
        .filter(|v| !READ_BUT_NOT_DEPLOYED.contains(&v.as_str()))
        .collect();
    assert!(
        unset.is_empty(),
        "{function} reads {unset:?}, which the template does not set"
    );
    asked
}

#[test]
fn each_function_starts_on_exactly_the_environment_the_template_gives_it() {
    let t = template();
    let checkout = reads(
        &t,
        "CheckoutStartFunction",
        checkout_start::Configuration::read,
    );
    let webhook = reads(&t, "WebhookFunction", webhook::Configuration::read);
    let charger = reads(&t, "ChargerFunction", charger::Configuration::read);
    let merchant = reads(&t, "MerchantApiFunction", merchant_api::Configuration::read);
    // Least knowledge: only the functions that call Oen know where it is, only those that touch
    // card tokens know the key, only the charger and the merchant API (whose redrive sends work
    // back to it) know the work queue, and only the merchant API the dead-letter queues.
    for (name, knows) in [
        ("OEN_ENVIRONMENT", [true, false, true, true]),
        ("TOKEN_KEY_ID", [false, true, true, true]),
        ("EVENT_BUS_NAME", [false, true, true, true]),
        ("CHARGE_QUEUE_URL", [false, false, true, true]),
        ("CHARGE_DEAD_LETTER_QUEUE_URL", [false, false, false, true]),
        (
            "SCHEDULE_DEAD_LETTER_QUEUE_URL",
            [false, false, false, true],
        ),
        ("SUCCESS_URL", [true, false, false, false]),
        ("START_LINK_URL", [false, false, false, true]),
    ] {
        let read = [&checkout, &webhook, &charger, &merchant].map(|r| r.contains(name));
        assert_eq!(read, knows, "{name}");
    }
}

#[test]
fn a_variable_the_template_leaves_out_stops_the_cold_start_with_its_name() {
    let t = template();
    for (function, variable) in [
        ("ChargerFunction", "CHARGE_QUEUE_URL"),
        ("WebhookFunction", "TOKEN_KEY_ID"),
        ("CheckoutStartFunction", "FAILURE_URL"),
        ("MerchantApiFunction", "EVENT_BUS_NAME"),
    ] {
        let mut env = environment(&t, function);
        env.remove(variable);
        let lookup = |name: &str| env.get(name).cloned();
        let vars = oen_pay::config::Vars::new(&lookup);
        let err = match function {
            "ChargerFunction" => charger::Configuration::read(&vars).err(),
            "WebhookFunction" => webhook::Configuration::read(&vars).err(),
            "MerchantApiFunction" => merchant_api::Configuration::read(&vars).err(),
            _ => checkout_start::Configuration::read(&vars).err(),
        };
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(format!("environment variable {variable} is not set"))
        );
    }
}

#[test]
fn each_function_builds_from_its_own_package_so_it_links_only_its_services() {
    let t = template();
    for (f, dir) in [
        ("CheckoutStartFunction", "checkout-start"),
        ("WebhookFunction", "webhook"),
        ("ChargerFunction", "charger"),
        ("MerchantApiFunction", "merchant-api"),
    ] {
        let r = &t["Resources"][f];
        assert_eq!(
            r["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda")
        );
        // cargo-lambda builds in CodeUri: in the package's own directory cargo resolves the
        // features of that package alone; at the workspace root it would unify every member's,
        // the tests' `aws` (all five SDKs) included.
        assert_eq!(
            r["Properties"]["CodeUri"].as_str(),
            Some(format!("functions/{dir}").as_str())
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
        // The AWS services the package links (its `aws-*` features of the shared crate, in
        // `[dependencies]`) are exactly those its role may call.
        let line = manifest
            .lines()
            .find(|l| l.starts_with("oen-pay = "))
            .expect("an oen-pay dependency");
        let features = line
            .split_once("features = [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(list, _)| list)
            .unwrap_or_default();
        let linked: BTreeSet<&str> = features
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .flat_map(|f| match f {
                "aws" => vec!["dynamodb", "kms", "sqs", "events", "secretsmanager"],
                "aws-eventbridge" => vec!["events"],
                other => other.strip_prefix("aws-").into_iter().collect(),
            })
            .collect();
        let granted: BTreeSet<String> = grants(&t, f)
            .into_iter()
            .map(|(action, _)| action.split(':').next().unwrap().to_owned())
            .collect();
        let linked: BTreeSet<String> = linked.into_iter().map(str::to_owned).collect();
        assert_eq!(
            linked, granted,
            "{f}: services linked vs services its role may call"
        );
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

/// KMS's data-plane actions on a symmetric key: what uses card tokens rather than administers
/// the key.
const KMS_DATA_PLANE: [&str; 8] = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
];

/// Whether an IAM action pattern (`*` and `?` wildcards, case-insensitive) matches `action`.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn glob(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], a) || (!a.is_empty() && glob(p, &a[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &a[1..]),
            (Some(x), Some(y)) => x == y && glob(&p[1..], &a[1..]),
            _ => false,
        }
    }
    glob(
        pattern.to_ascii_lowercase().as_bytes(),
        action.to_ascii_lowercase().as_bytes(),
    )
}

fn key_statements(t: &Value) -> Vec<Value> {
    let statements = t["Resources"]["TokenKey"]["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence()
        .expect("key policy statements")
        .clone();
    for s in &statements {
        // Only plain allows: no Deny to reason about, no NotAction/NotPrincipal to widen one.
        assert_eq!(s["Effect"].as_str(), Some("Allow"), "{s:?}");
        assert!(s.get("NotAction").is_none() && s.get("NotPrincipal").is_none());
    }
    statements
}

/// The statements of the key policy that allow `action`.
fn allowing(statements: &[Value], action: &str) -> Vec<Value> {
    statements
        .iter()
        .filter(|s| list(&s["Action"]).iter().any(|p| action_matches(p, action)))
        .cloned()
        .collect()
}

/// The ARN pattern a key statement's `aws:PrincipalArn` condition admits, if any.
fn principal_arn(statement: &Value) -> Option<String> {
    let arn = &statement["Condition"]["ArnLike"]["aws:PrincipalArn"];
    (!arn.is_null()).then(|| text(arn))
}

#[test]
fn the_account_administers_the_token_key_but_cannot_use_it() {
    let t = template();
    let statements = key_statements(&t);
    let root: Vec<&Value> = statements
        .iter()
        .filter(|s| principal_arn(s).is_none())
        .collect();
    assert_eq!(root.len(), 1, "one unconditioned statement: administration");
    let admin = root[0];
    assert_eq!(
        text(&admin["Principal"]["AWS"]),
        "Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
    );
    let actions = list(&admin["Action"]);
    for data in KMS_DATA_PLANE {
        assert!(
            !actions.iter().any(|p| action_matches(p, data)),
            "the account may {data}: {actions:?}"
        );
    }
    // It keeps everything needed to manage (and eventually retire) the key.
    for needed in [
        "kms:CreateAlias",
        "kms:DescribeKey",
        "kms:EnableKeyRotation",
        "kms:ListAliases",
        "kms:PutKeyPolicy",
        "kms:UpdateAlias",
        "kms:RevokeGrant",
        "kms:DisableKey",
        "kms:GetKeyPolicy",
        "kms:DeleteAlias",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
    ] {
        assert!(
            actions.iter().any(|p| action_matches(p, needed)),
            "the account cannot {needed}"
        );
    }
}

#[test]
fn the_key_policy_lets_only_the_webhook_encrypt_and_only_the_charging_functions_decrypt() {
    let t = template();
    let statements = key_statements(&t);
    let role_pattern = |function: &str| {
        let path = text(&t["Resources"][function]["Properties"]["RolePath"]);
        let path = path
            .strip_prefix("Sub ")
            .expect("a RolePath under the stack");
        format!("Sub arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role{path}*")
    };
    // The role paths are distinct, so one function's pattern admits no other's role.
    let paths: BTreeSet<String> = FUNCTIONS.iter().map(|f| role_pattern(f)).collect();
    assert_eq!(paths.len(), FUNCTIONS.len(), "{paths:?}");

    // The encryption context the code sends (KMS matches its keys exactly).
    let context = VaultContext {
        merchant: MerchantId::parse("ming").unwrap(),
        customer: CustomerId::parse("c1").unwrap(),
        binding: BindingRef::generate(),
    };
    let keys: BTreeSet<String> = context.pairs().iter().map(|(k, _)| k.to_string()).collect();

    for data in KMS_DATA_PLANE {
        let who = allowing(&statements, data);
        let expected: &[&str] = match data {
            "kms:Encrypt" => &["WebhookFunction"],
            // The merchant API for one-off charges (the template says why).
            "kms:Decrypt" => &["ChargerFunction", "MerchantApiFunction"],
            _ => &[],
        };
        let admitted: BTreeSet<String> = who.iter().filter_map(principal_arn).collect();
        let roles: BTreeSet<String> = expected.iter().map(|f| role_pattern(f)).collect();
        assert_eq!(admitted, roles, "{data}");
        assert_eq!(who.len(), expected.len(), "{data}: {who:?}");
        for s in who {
            assert_eq!(list(&s["Action"]), [data], "{data} comes alone");
            let c = &s["Condition"];
            assert_eq!(
                text(&c["StringEquals"]["kms:CallerAccount"]),
                "Ref AWS::AccountId"
            );
            let allowed_keys: BTreeSet<String> =
                list(&c["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"])
                    .into_iter()
                    .collect();
            assert_eq!(allowed_keys, keys, "{data}: no other context keys");
            for key in &keys {
                assert_eq!(
                    c["Null"][format!("kms:EncryptionContext:{key}").as_str()].as_str(),
                    Some("false"),
                    "{data}: the {key} context is required"
                );
            }
        }
    }
}

/// The resources of one type, by logical id.
fn resources_of<'t>(t: &'t Value, kind: &str) -> BTreeMap<String, &'t Value> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (text(id), r))
        .collect()
}

/// Every `(function, metric)` the code counts or records with literal names: each
/// `metrics::count("charger", "ConfigError")` or `metrics::gauge("charger", "OutboxLagSeconds", …)`.
fn metrics_in_code() -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut files = Vec::new();
    let mut dirs = vec![
        repo_root().join("shared/src"),
        repo_root().join("functions"),
    ];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for call in ["metrics::count(", "metrics::gauge("] {
            for (at, _) in source.match_indices(call) {
                let args = &source[at + call.len()..];
                let mut strings = args.split([',', ')']).take(2).map(|a| {
                    let a = a.trim();
                    a.strip_prefix('"')
                        .and_then(|a| a.strip_suffix('"'))
                        .map(str::to_owned)
                });
                if let (Some(Some(function)), Some(Some(metric))) = (strings.next(), strings.next())
                {
                    found.insert((function, metric));
                }
            }
        }
    }
    found
}

/// The project metrics (namespace `oen-pay`) with an alarm, as `(function, metric)`.
fn alarmed_project_metrics(t: &Value) -> BTreeMap<(String, String), &Value> {
    resources_of(t, "AWS::CloudWatch::Alarm")
        .into_values()
        .filter(|a| a["Properties"]["Namespace"].as_str() == Some("oen-pay"))
        .map(|a| {
            let p = &a["Properties"];
            let dimensions = p["Dimensions"].as_sequence().unwrap();
            assert_eq!(dimensions.len(), 1, "{p:?}");
            assert_eq!(dimensions[0]["Name"].as_str(), Some("Function"));
            let function = text(&dimensions[0]["Value"]);
            ((function, text(&p["MetricName"])), a)
        })
        .collect()
}

#[test]
fn every_alarm_notifies_the_alarm_topic_and_decides_about_missing_data() {
    let t = template();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    assert!(!alarms.is_empty());
    for (id, alarm) in &alarms {
        let p = &alarm["Properties"];
        assert_eq!(list(&p["AlarmActions"]), ["Ref AlarmTopic"], "{id}");
        assert!(
            ["breaching", "notBreaching", "ignore", "missing"]
                .contains(&text(&p["TreatMissingData"]).as_str()),
            "{id}: TreatMissingData chosen, not defaulted"
        );
    }
    assert_eq!(
        t["Resources"]["AlarmTopic"]["Type"].as_str(),
        Some("AWS::SNS::Topic")
    );
    // The e-mail subscription exists only when an address is given.
    let subscription = &t["Resources"]["AlarmEmailSubscription"];
    assert_eq!(subscription["Condition"].as_str(), Some("HasAlarmEmail"));
    assert_eq!(
        text(&subscription["Properties"]["Endpoint"]),
        "Ref AlarmEmail"
    );
    assert_eq!(
        text(&t["Conditions"]["HasAlarmEmail"]),
        "Not Equals Ref AlarmEmail,"
    );
    assert_eq!(t["Parameters"]["AlarmEmail"]["Default"].as_str(), Some(""));
}

#[test]
fn each_function_alarms_on_its_errors_and_throttles_and_the_dead_letter_queue_on_any_message() {
    let t = template();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    let lambda: BTreeSet<(String, String)> = alarms
        .values()
        .map(|a| &a["Properties"])
        .filter(|p| p["Namespace"].as_str() == Some("AWS/Lambda"))
        .map(|p| {
            assert_eq!(p["Dimensions"][0]["Name"].as_str(), Some("FunctionName"));
            (text(&p["Dimensions"][0]["Value"]), text(&p["MetricName"]))
        })
        .collect();
    for f in FUNCTIONS {
        for metric in ["Errors", "Throttles"] {
            assert!(
                lambda.contains(&(format!("Ref {f}"), metric.to_owned())),
                "{f}: no {metric} alarm"
            );
        }
    }
    let dlq: Vec<&Value> = alarms
        .values()
        .map(|a| &a["Properties"])
        .filter(|p| p["Namespace"].as_str() == Some("AWS/SQS"))
        .collect();
    // Every dead-letter queue: the charge queue's, and the schedule's.
    let mut queues: Vec<String> = dlq
        .iter()
        .map(|p| text(&p["Dimensions"][0]["Value"]))
        .collect();
    queues.sort();
    assert_eq!(
        queues,
        [
            "GetAtt ChargeDeadLetterQueue.QueueName",
            "GetAtt ScheduleDeadLetterQueue.QueueName"
        ]
    );
    for p in dlq {
        assert_eq!(text(&p["MetricName"]), "ApproximateNumberOfMessagesVisible");
        assert_eq!(text(&p["Threshold"]), "0");
        assert_eq!(text(&p["ComparisonOperator"]), "GreaterThanThreshold");
    }
}

#[test]
fn every_metric_the_code_records_has_an_alarm() {
    let t = template();
    let alarmed = alarmed_project_metrics(&t);
    let mut expected = metrics_in_code();
    assert!(
        expected.contains(&("charger".to_owned(), "ConfigError".to_owned())),
        "the scan finds the code's metrics: {expected:?}"
    );
    // Counted under the name of whichever function shipped the events.
    for function in ["webhook", "charger"] {
        expected.insert((function.to_owned(), "EventsNotPublished".to_owned()));
    }
    // One-off charges count under the name the merchant API runs them with
    // (`OneOffDeps::new(.., merchant_api::charges::FUNCTION)`; shared/src/oneoff/attempt.rs).
    // Not UnknownTooOld: a request never takes over a charge already unknown (it replays the
    // 202), so only the charger's janitor can find one too old.
    for metric in [
        "DuplicateCharge",
        "ConfigError",
        "CardUndecryptable",
        "EventsNotPublished",
    ] {
        expected.insert((
            merchant_api::charges::FUNCTION.to_owned(),
            metric.to_owned(),
        ));
    }
    let alarmed_keys: BTreeSet<(String, String)> = alarmed.keys().cloned().collect();
    assert_eq!(
        expected.difference(&alarmed_keys).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "metrics without an alarm"
    );
    assert_eq!(
        alarmed_keys.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "alarms on metrics nothing records"
    );
    for ((function, metric), alarm) in &alarmed {
        let p = &alarm["Properties"];
        let missing = text(&p["TreatMissingData"]);
        if metric == "OutboxLagSeconds" {
            // A gauge every scheduled run records: silence means the runs stopped.
            assert_eq!(missing, "breaching");
            assert_eq!(text(&p["Statistic"]), "Maximum");
            assert_eq!(text(&p["Threshold"]), "Ref OutboxLagAlarmSeconds");
        } else if metric == "ReconciliationFindings" {
            // A gauge recorded once a day, when a run completes (zero included): any finding
            // alarms; a day without a complete run alarms through ReconciliationFailed.
            assert_eq!(missing, "notBreaching");
            assert_eq!(text(&p["Statistic"]), "Maximum");
            assert_eq!(text(&p["Threshold"]), "0");
            assert_eq!(text(&p["ComparisonOperator"]), "GreaterThanThreshold");
        } else {
            // Counters only exist when something happened.
            assert_eq!(missing, "notBreaching", "{function}/{metric}");
            assert_eq!(text(&p["Statistic"]), "Sum", "{function}/{metric}");
        }
        if metric == "WebhookRefused" {
            assert_eq!(text(&p["Threshold"]), "Ref WebhookRefusedAlarmThreshold");
        }
    }
}

#[test]
fn each_function_logs_to_its_own_group_with_the_retention_parameter() {
    let t = template();
    let groups = resources_of(&t, "AWS::Logs::LogGroup");
    for f in FUNCTIONS {
        let name = format!("Sub /aws/lambda/${{{f}}}");
        let group: Vec<&&Value> = groups
            .values()
            .filter(|g| text(&g["Properties"]["LogGroupName"]) == name)
            .collect();
        assert_eq!(group.len(), 1, "{f}: no log group named {name}");
        assert_eq!(
            text(&group[0]["Properties"]["RetentionInDays"]),
            "Ref LogRetentionDays"
        );
        // Named by the function's generated name, so no FunctionName may diverge from it.
        assert!(t["Resources"][f]["Properties"]["FunctionName"].is_null());
        assert!(t["Resources"][f]["Properties"]["LoggingConfig"]["LogGroup"].is_null());
    }
    // The functions' groups and the HTTP API's access logs.
    assert_eq!(groups.len(), FUNCTIONS.len() + 1);
    let retention = &t["Parameters"]["LogRetentionDays"];
    assert_eq!(text(&retention["Default"]), "30");
}

/// The functions that make HTTP calls to Oen (checkout-start opens the card page, the charger
/// charges, queries and refunds, the merchant API refunds); the webhook only receives Oen's
/// posts.
const OEN_CALLERS: [&str; 3] = [
    "CheckoutStartFunction",
    "ChargerFunction",
    "MerchantApiFunction",
];

/// The arguments of an intrinsic function written with its short tag (`!If [a, b, c]`).
fn intrinsic<'v>(v: &'v Value, tag: &str) -> Option<&'v Value> {
    match v {
        Value::Tagged(t) if t.tag.to_string().trim_start_matches('!') == tag => Some(&t.value),
        _ => None,
    }
}

#[test]
fn every_fixed_egress_resource_exists_only_with_fixed_egress() {
    let t = template();
    let param = &t["Parameters"]["FixedEgress"];
    assert_eq!(text(&param["Default"]), "false");
    assert_eq!(list(&param["AllowedValues"]), ["true", "false"]);
    assert_eq!(
        text(&t["Conditions"]["FixedEgressEnabled"]),
        "Equals Ref FixedEgress,true"
    );
    let ec2: Vec<(String, &Value)> = t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str().unwrap().starts_with("AWS::EC2::"))
        .map(|(id, r)| (text(id), r))
        .collect();
    let kinds: BTreeSet<&str> = ec2
        .iter()
        .map(|(_, r)| r["Type"].as_str().unwrap())
        .collect();
    for kind in [
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::EC2::InternetGateway",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::EC2::EIP",
        "AWS::EC2::NatGateway",
        "AWS::EC2::RouteTable",
        "AWS::EC2::Route",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::VPCEndpoint",
    ] {
        assert!(kinds.contains(kind), "no {kind}");
    }
    for (id, resource) in &ec2 {
        assert_eq!(
            resource["Condition"].as_str(),
            Some("FixedEgressEnabled"),
            "{id} exists without FixedEgress"
        );
    }
    assert_eq!(
        t["Outputs"]["EgressIps"]["Condition"].as_str(),
        Some("FixedEgressEnabled")
    );
    // Two zones, a private and a public subnet in each.
    let zones: BTreeSet<String> = resources_of(&t, "AWS::EC2::Subnet")
        .values()
        .map(|s| text(&s["Properties"]["AvailabilityZone"]))
        .collect();
    assert_eq!(
        zones,
        BTreeSet::from(["Select 0,GetAZs ".to_owned(), "Select 1,GetAZs ".to_owned()])
    );
    assert_eq!(resources_of(&t, "AWS::EC2::Subnet").len(), 4);
}

#[test]
fn only_the_functions_that_call_oen_run_in_the_fixed_egress_vpc() {
    let t = template();
    assert!(
        t["Globals"]["Function"]["VpcConfig"].is_null(),
        "a global VpcConfig would put the webhook in the VPC"
    );
    for f in OEN_CALLERS {
        let vpc = &t["Resources"][f]["Properties"]["VpcConfig"];
        let args = intrinsic(vpc, "If")
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("{f}: VpcConfig is not an !If"));
        assert_eq!(args.len(), 3);
        assert_eq!(args[0].as_str(), Some("FixedEgressEnabled"), "{f}");
        assert_eq!(
            list(&args[1]["SubnetIds"]),
            ["Ref EgressPrivateSubnetA", "Ref EgressPrivateSubnetB"],
            "{f}"
        );
        assert_eq!(
            list(&args[1]["SecurityGroupIds"]),
            ["Ref EgressFunctionSecurityGroup"],
            "{f}"
        );
        // Otherwise today's configuration: the operator's subnets, else no VPC.
        let own = intrinsic(&args[2], "If")
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("{f}: no SubnetIds fallback"));
        assert_eq!(own[0].as_str(), Some("InVpc"), "{f}");
        assert_eq!(text(&own[1]["SubnetIds"]), "Ref SubnetIds", "{f}");
        assert_eq!(
            text(&own[1]["SecurityGroupIds"]),
            "Ref SecurityGroupIds",
            "{f}"
        );
        assert_eq!(text(&own[2]), "Ref AWS::NoValue", "{f}");
    }
    assert!(t["Resources"]["WebhookFunction"]["Properties"]["VpcConfig"].is_null());
    for f in FUNCTIONS {
        assert!(
            OEN_CALLERS.contains(&f) || t["Resources"][f]["Properties"]["VpcConfig"].is_null(),
            "{f} does not call Oen but runs in a VPC"
        );
    }
}

#[test]
fn the_nat_gateways_use_the_elastic_ips_the_output_lists() {
    let t = template();
    let eips = resources_of(&t, "AWS::EC2::EIP");
    let nats = resources_of(&t, "AWS::EC2::NatGateway");
    assert!(!nats.is_empty());
    let used: BTreeSet<String> = nats
        .values()
        .map(|n| {
            let allocation = text(&n["Properties"]["AllocationId"]);
            let eip = allocation
                .strip_prefix("GetAtt ")
                .and_then(|a| a.strip_suffix(".AllocationId"))
                .unwrap_or_else(|| panic!("NAT gateway without an Elastic IP: {allocation}"));
            assert!(eips.contains_key(eip), "{eip} is not an Elastic IP");
            eip.to_owned()
        })
        .collect();
    assert_eq!(used.len(), nats.len(), "two NAT gateways share an address");
    assert_eq!(used, eips.keys().cloned().collect());

    let join = intrinsic(&t["Outputs"]["EgressIps"]["Value"], "Join")
        .and_then(Value::as_sequence)
        .expect("EgressIps is a !Join");
    assert_eq!(join[0].as_str(), Some(","));
    let listed: BTreeSet<String> = list(&join[1])
        .iter()
        .map(|r| r.strip_prefix("Ref ").expect("a !Ref").to_owned())
        .collect();
    assert_eq!(listed, used);

    // Each private route table sends the internet through a NAT gateway, each public one
    // through the internet gateway; the NAT gateways sit in the public subnets.
    let routes = resources_of(&t, "AWS::EC2::Route");
    for (id, route) in &routes {
        let p = &route["Properties"];
        assert_eq!(text(&p["DestinationCidrBlock"]), "0.0.0.0/0", "{id}");
        let nat = text(&p["NatGatewayId"]);
        assert!(
            nats.contains_key(nat.trim_start_matches("Ref "))
                || text(&p["GatewayId"]) == "Ref EgressInternetGateway",
            "{id}"
        );
    }
    for nat in nats.values() {
        assert!(text(&nat["Properties"]["SubnetId"]).starts_with("Ref EgressPublicSubnet"));
    }
}

#[test]
fn the_aws_apis_are_reached_through_endpoints_and_only_https_leaves_the_functions() {
    let t = template();
    let endpoints = resources_of(&t, "AWS::EC2::VPCEndpoint");
    let by_service: BTreeMap<String, &Value> = endpoints
        .values()
        .map(|e| {
            let name = text(&e["Properties"]["ServiceName"]);
            let service = name
                .strip_prefix("Sub com.amazonaws.${AWS::Region}.")
                .unwrap_or_else(|| panic!("{name}"))
                .to_owned();
            (service, &e["Properties"])
        })
        .collect();
    let dynamodb = by_service["dynamodb"];
    assert_eq!(dynamodb["VpcEndpointType"].as_str(), Some("Gateway"));
    assert_eq!(
        list(&dynamodb["RouteTableIds"]),
        [
            "Ref EgressPrivateRouteTableA",
            "Ref EgressPrivateRouteTableB"
        ]
    );
    for service in ["secretsmanager", "kms", "sqs", "events"] {
        let e = by_service
            .get(service)
            .unwrap_or_else(|| panic!("no {service} endpoint"));
        assert_eq!(
            e["VpcEndpointType"].as_str(),
            Some("Interface"),
            "{service}"
        );
        assert_eq!(e["PrivateDnsEnabled"].as_bool(), Some(true), "{service}");
        assert_eq!(
            list(&e["SubnetIds"]),
            ["Ref EgressPrivateSubnetA", "Ref EgressPrivateSubnetB"],
            "{service}"
        );
    }
    assert_eq!(by_service.len(), 5);

    let sg = &t["Resources"]["EgressFunctionSecurityGroup"]["Properties"];
    assert!(sg["SecurityGroupIngress"].is_null());
    let egress = sg["SecurityGroupEgress"].as_sequence().unwrap();
    assert!(!egress.is_empty());
    for rule in egress {
        assert_eq!(rule["IpProtocol"].as_str(), Some("tcp"));
        assert_eq!(text(&rule["FromPort"]), "443");
        assert_eq!(text(&rule["ToPort"]), "443");
    }
}

#[test]
fn the_http_api_throttles_every_route_and_logs_each_request_without_the_webhook_key() {
    let t = template();
    let params = &t["Parameters"];
    assert_eq!(text(&params["ApiThrottleRateLimit"]["Default"]), "50");
    assert_eq!(text(&params["ApiThrottleBurstLimit"]["Default"]), "100");
    let api = &t["Resources"]["HttpApi"]["Properties"];
    let route = &api["DefaultRouteSettings"];
    assert_eq!(
        text(&route["ThrottlingRateLimit"]),
        "Ref ApiThrottleRateLimit"
    );
    assert_eq!(
        text(&route["ThrottlingBurstLimit"]),
        "Ref ApiThrottleBurstLimit"
    );

    let logs = &api["AccessLogSettings"];
    assert_eq!(
        text(&logs["DestinationArn"]),
        "GetAtt ApiAccessLogGroup.Arn"
    );
    let group = &t["Resources"]["ApiAccessLogGroup"];
    assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"));
    assert_eq!(
        text(&group["Properties"]["RetentionInDays"]),
        "Ref LogRetentionDays"
    );
    let format: serde_json::Value =
        serde_json::from_str(logs["Format"].as_str().expect("a format")).expect("JSON lines");
    let fields = format.as_object().unwrap();
    for field in ["requestId", "routeKey", "status"] {
        assert!(fields.contains_key(field), "access log lacks {field}");
    }
    // The webhook's path carries its secret key: log the route template, never the path.
    for value in fields.values() {
        let value = value.as_str().unwrap();
        assert!(
            !value.contains("$context.path") && !value.contains("$context.resourcePath"),
            "access log records the path: {value}"
        );
    }
}

#[test]
fn the_outputs_name_what_an_operator_wires_up() {
    let t = template();
    let outputs = &t["Outputs"];
    let value = |name: &str| text(&outputs[name]["Value"]);
    let api = "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}";
    let domain = "https://${DomainName}";
    assert_eq!(
        value("ApiUrl"),
        format!("If HasCustomDomain,Sub {domain},Sub {api}")
    );
    // The route of the webhook, with the key left for the operator: never the secret itself.
    assert_eq!(
        value("WebhookUrlToRegisterWithOen"),
        format!(
            "If HasCustomDomain,Sub {domain}/oen/webhook/{{webhookPathKey}},Sub {api}/oen/webhook/{{webhookPathKey}}"
        )
    );
    assert_eq!(value("EventBusArn"), "GetAtt EventBus.Arn");
    assert_eq!(value("ChargeQueueUrl"), "Ref ChargeQueue");
    assert_eq!(
        value("ChargeDeadLetterQueueUrl"),
        "Ref ChargeDeadLetterQueue"
    );
    assert_eq!(value("AlarmTopicArn"), "Ref AlarmTopic");
    assert_eq!(
        value("MerchantApiUrl"),
        format!("If HasCustomDomain,Sub {domain}/v1,Sub {api}/v1")
    );
    assert_eq!(
        value("MerchantApiInvokePolicyArn"),
        "Ref MerchantApiInvokePolicy"
    );
    for (name, output) in outputs.as_mapping().unwrap() {
        assert!(
            output["Description"].as_str().is_some(),
            "{}: no description",
            text(name)
        );
    }
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

#[test]
fn the_reconciliation_runs_daily_at_00_30_taipei_for_the_day_before_with_retries_and_the_dead_letter_queue(
) {
    let t = template();
    let schedule = &t["Resources"]["ChargerFunction"]["Properties"]["Events"]["Reconcile"];
    assert_eq!(schedule["Type"].as_str(), Some("ScheduleV2"));
    let props = &schedule["Properties"];
    assert_eq!(text(&props["ScheduleExpression"]), "Ref ReconcileSchedule");
    assert_eq!(
        t["Parameters"]["ReconcileSchedule"]["Default"].as_str(),
        Some("cron(30 0 * * ? *)")
    );
    assert_eq!(
        props["ScheduleExpressionTimezone"].as_str(),
        Some("Asia/Taipei")
    );
    // Rendered as Scheduler renders it at 00:30 on 30 November in Taipei, the Input is the
    // reconciliation of 29 November.
    let input = props["Input"].as_str().expect("the schedule has an Input");
    let rendered = input.replace(
        charger::trigger::SCHEDULED_TIME_ATTRIBUTE,
        "2026-11-30T00:30:00+08:00",
    );
    let payload: serde_json::Value = serde_json::from_str(&rendered).unwrap();
    match charger::trigger::parse(payload) {
        Ok(charger::trigger::Trigger::Reconcile(job)) => {
            assert_eq!(job.date.to_string(), "2026-11-29");
            assert_eq!(job.mode, oen_pay::reconcile::RunMode::Scheduled);
        }
        other => panic!("the rendered Input is no reconciliation: {other:?}"),
    }
    let retry = &props["RetryPolicy"];
    assert!(retry["MaximumRetryAttempts"].as_u64().unwrap() >= 1);
    assert!((60..=86400).contains(&retry["MaximumEventAgeInSeconds"].as_u64().unwrap()));
    assert_eq!(
        text(&props["DeadLetterConfig"]["Arn"]),
        "GetAtt ScheduleDeadLetterQueue.Arn"
    );
}

#[test]
fn only_the_charger_writes_reconciliation_reports_and_the_merchant_api_only_reads_them() {
    let t = template();
    let statements = |f: &str| -> Vec<Value> {
        t["Resources"][f]["Properties"]["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|p| p["Statement"].as_sequence().unwrap().clone())
            .collect()
    };
    let leading_keys = |s: &Value| -> Vec<String> {
        list(&s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
    };
    for f in FUNCTIONS {
        for s in statements(f) {
            let keys = leading_keys(&s);
            let actions = list(&s["Action"]);
            let grants_reports = keys.iter().any(|k| k == "RECON#*");
            if f == "ChargerFunction" && grants_reports {
                // Read and write, on the table itself, never a query of an index.
                assert!(
                    actions == ["dynamodb:GetItem"] || actions == ["dynamodb:PutItem"],
                    "{f}: {actions:?}"
                );
                assert_eq!(text(&s["Resource"]), "GetAtt Table.Arn");
            } else if f == "MerchantApiFunction" && grants_reports {
                // GET /v1/reconciliation/{date}: a read of the table, nothing else.
                assert_eq!(actions, ["dynamodb:GetItem"], "{f}");
                assert_eq!(text(&s["Resource"]), "GetAtt Table.Arn");
            } else {
                assert!(
                    !grants_reports,
                    "{f} may not touch reconciliation reports: {s:?}"
                );
            }
        }
    }
    let charger_report_actions: BTreeSet<String> = statements("ChargerFunction")
        .iter()
        .filter(|s| leading_keys(s).iter().any(|k| k == "RECON#*"))
        .flat_map(|s| list(&s["Action"]))
        .collect();
    assert_eq!(
        charger_report_actions.into_iter().collect::<Vec<_>>(),
        ["dynamodb:GetItem", "dynamodb:PutItem"]
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

/// The resources of the optional custom domain, each with the condition it exists under.
const CUSTOM_DOMAIN_RESOURCES: [(&str, &str, &str); 3] = [
    (
        "ApiDomainName",
        "AWS::ApiGatewayV2::DomainName",
        "HasCustomDomain",
    ),
    (
        "ApiDomainMapping",
        "AWS::ApiGatewayV2::ApiMapping",
        "HasCustomDomain",
    ),
    (
        "ApiDomainRecord",
        "AWS::Route53::RecordSet",
        "HasCustomDomainRecord",
    ),
];

/// `v` as deployed without a custom domain: each `!If [HasCustomDomain, a, b]` is `b`.
fn without_custom_domain(v: Value) -> Value {
    if let Some(args) = intrinsic(&v, "If").and_then(Value::as_sequence) {
        if args.first().and_then(Value::as_str) == Some("HasCustomDomain") {
            return without_custom_domain(args[2].clone());
        }
    }
    match v {
        Value::Tagged(mut t) => {
            t.value = without_custom_domain(t.value);
            Value::Tagged(t)
        }
        Value::Sequence(items) => {
            Value::Sequence(items.into_iter().map(without_custom_domain).collect())
        }
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| (k, without_custom_domain(v)))
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn the_custom_domain_exists_only_when_a_domain_is_set() {
    let t = template();
    for name in ["DomainName", "CertificateArn", "HostedZoneId"] {
        let param = &t["Parameters"][name];
        assert_eq!(param["Type"].as_str(), Some("String"), "{name}");
        assert_eq!(text(&param["Default"]), "", "{name} is not optional");
    }
    // The domain needs both values (the rules refuse a domain without a certificate); the
    // record needs the domain and a hosted zone.
    assert_eq!(
        text(&t["Conditions"]["HasCustomDomain"]),
        "And Not Equals Ref DomainName,,Not Equals Ref CertificateArn,"
    );
    assert_eq!(
        text(&t["Conditions"]["HasCustomDomainRecord"]),
        "And Condition HasCustomDomain,Not Equals Ref HostedZoneId,"
    );
    for (id, kind, condition) in CUSTOM_DOMAIN_RESOURCES {
        let resource = &t["Resources"][id];
        assert_eq!(resource["Type"].as_str(), Some(kind), "{id}");
        assert_eq!(resource["Condition"].as_str(), Some(condition), "{id}");
    }
    // SAM's Domain property cannot be conditional: the API itself carries none.
    assert!(t["Resources"]["HttpApi"]["Properties"]["Domain"].is_null());
    // Nothing else names the domain's resources, except under the same condition (a
    // resource of its own, or a value chosen by `!If [HasCustomDomain, …]`).
    for (id, resource) in t["Resources"].as_mapping().unwrap() {
        let id = text(id);
        if CUSTOM_DOMAIN_RESOURCES.iter().any(|(own, _, _)| *own == id) {
            continue;
        }
        let body = yaml_serde::to_string(&without_custom_domain(resource.clone())).unwrap();
        assert!(
            !body.contains("ApiDomain") && !body.contains("DomainName}"),
            "{id} uses the custom domain unconditionally"
        );
    }
}

#[test]
fn the_custom_domain_serves_the_whole_api_at_its_root_over_a_regional_endpoint() {
    let t = template();
    let domain = &t["Resources"]["ApiDomainName"]["Properties"];
    assert_eq!(text(&domain["DomainName"]), "Ref DomainName");
    let configs = domain["DomainNameConfigurations"].as_sequence().unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(text(&configs[0]["CertificateArn"]), "Ref CertificateArn");
    assert_eq!(configs[0]["EndpointType"].as_str(), Some("REGIONAL"));

    let mapping = &t["Resources"]["ApiDomainMapping"]["Properties"];
    assert_eq!(text(&mapping["DomainName"]), "Ref ApiDomainName");
    assert_eq!(text(&mapping["ApiId"]), "Ref HttpApi");
    assert_eq!(text(&mapping["Stage"]), "Ref HttpApi.Stage");
    // No base path: the routes keep their paths (/oen/webhook/{key} at the domain's root).
    assert!(mapping["ApiMappingKey"].is_null());

    let record = &t["Resources"]["ApiDomainRecord"]["Properties"];
    assert_eq!(text(&record["HostedZoneId"]), "Ref HostedZoneId");
    assert_eq!(text(&record["Name"]), "Ref DomainName");
    assert_eq!(record["Type"].as_str(), Some("A"));
    let alias = &record["AliasTarget"];
    assert_eq!(
        text(&alias["DNSName"]),
        "GetAtt ApiDomainName.RegionalDomainName"
    );
    assert_eq!(
        text(&alias["HostedZoneId"]),
        "GetAtt ApiDomainName.RegionalHostedZoneId"
    );
}

#[test]
fn a_custom_domain_without_a_certificate_is_refused_before_anything_is_created() {
    let t = template();
    let rule = &t["Rules"]["CustomDomainNeedsCertificate"];
    assert_eq!(text(&rule["RuleCondition"]), "Not Equals Ref DomainName,");
    let asserts = rule["Assertions"].as_sequence().unwrap();
    assert_eq!(asserts.len(), 1);
    assert_eq!(
        text(&asserts[0]["Assert"]),
        "Not Equals Ref CertificateArn,"
    );
    assert!(asserts[0]["AssertDescription"].as_str().is_some());
    let rule = &t["Rules"]["DnsRecordNeedsCustomDomain"];
    assert_eq!(text(&rule["RuleCondition"]), "Not Equals Ref HostedZoneId,");
    assert_eq!(
        text(&rule["Assertions"][0]["Assert"]),
        "Not Equals Ref DomainName,"
    );
}

#[test]
fn the_urls_switch_to_the_custom_domain_and_its_target_is_output_only_with_it() {
    let t = template();
    let outputs = &t["Outputs"];
    for name in ["ApiUrl", "WebhookUrlToRegisterWithOen"] {
        let args = intrinsic(&outputs[name]["Value"], "If")
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("{name} is not an !If"));
        assert_eq!(args[0].as_str(), Some("HasCustomDomain"), "{name}");
        assert!(
            text(&args[1]).starts_with("Sub https://${DomainName}"),
            "{name}: {}",
            text(&args[1])
        );
        assert!(
            text(&args[2]).starts_with("Sub https://${HttpApi}.execute-api."),
            "{name}: {}",
            text(&args[2])
        );
        assert!(outputs[name]["Condition"].is_null(), "{name}");
    }
    let target = &outputs["ApiDomainTarget"];
    assert_eq!(target["Condition"].as_str(), Some("HasCustomDomain"));
    assert_eq!(
        text(&target["Value"]),
        "GetAtt ApiDomainName.RegionalDomainName"
    );
}

#[test]
fn the_webhook_url_output_never_contains_the_path_key() {
    let t = template();
    let route = text(
        &t["Resources"]["WebhookFunction"]["Properties"]["Events"]["Webhook"]["Properties"]["Path"],
    );
    assert_eq!(route, "/oen/webhook/{key}");
    let value = &t["Outputs"]["WebhookUrlToRegisterWithOen"]["Value"];
    let branches = intrinsic(value, "If")
        .and_then(Value::as_sequence)
        .expect("an !If");
    for branch in &branches[1..] {
        let url = intrinsic(branch, "Sub")
            .and_then(Value::as_str)
            .expect("a !Sub of one string");
        // The webhook route, the key left as a placeholder for the operator: `{…}` without
        // `$` is literal text to !Sub.
        assert!(
            url.ends_with(&route.replace("{key}", "{webhookPathKey}")),
            "{url}"
        );
        assert!(!url.contains("${webhookPathKey}"), "{url}");
    }
    // No output reads the secret's value: OenSecretArn names the secret, nothing resolves it.
    for (name, output) in t["Outputs"].as_mapping().unwrap() {
        let name = text(name);
        let body = yaml_serde::to_string(&output["Value"]).unwrap();
        assert!(!body.contains("resolve:secretsmanager"), "{name}: {body}");
        assert!(
            !body.contains("OenSecret") || name == "OenSecretArn",
            "{name} uses the secret: {body}"
        );
    }
    assert_eq!(
        text(&t["Outputs"]["OenSecretArn"]["Value"]),
        "Ref OenSecret"
    );
}

/// Every HttpApi route of `function`: (method, path, its `Auth`).
fn routes(t: &Value, function: &str) -> Vec<(String, String, Value)> {
    let events = t["Resources"][function]["Properties"]["Events"]
        .as_mapping()
        .into_iter()
        .flatten();
    events
        .filter(|(_, e)| e["Type"].as_str() == Some("HttpApi"))
        .map(|(_, e)| {
            let p = &e["Properties"];
            assert_eq!(text(&p["ApiId"]), "Ref HttpApi");
            (text(&p["Method"]), text(&p["Path"]), p["Auth"].clone())
        })
        .collect()
}

#[test]
fn every_merchant_api_route_takes_only_iam_callers_and_the_public_routes_stay_public() {
    let t = template();
    let auth = &t["Resources"]["HttpApi"]["Properties"]["Auth"];
    assert_eq!(auth["EnableIamAuthorizer"].as_bool(), Some(true));
    assert!(
        auth["DefaultAuthorizer"].is_null(),
        "a default authorizer would close checkout-start and the webhook"
    );
    let merchant = routes(&t, "MerchantApiFunction");
    let mut paths: Vec<String> = merchant
        .iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "GET /v1/charges/{id}",
            "GET /v1/customers/{customer}",
            "GET /v1/dead-letters/{queue}",
            "GET /v1/due",
            "GET /v1/reconciliation/{date}",
            "GET /v1/subscriptions/{id}",
            "POST /v1/charges",
            "POST /v1/charges/{id}/refund",
            "POST /v1/dead-letters/{queue}/redrive",
            "POST /v1/links",
            "POST /v1/periods/{orderId}/refund",
            "POST /v1/subscriptions/{id}/cancel",
            "POST /v1/subscriptions/{id}/resume",
        ]
    );
    for (method, path, auth) in &merchant {
        assert_eq!(
            text(&auth["Authorizer"]),
            "AWS_IAM",
            "{method} {path} is not behind AWS_IAM"
        );
    }
    for f in ["CheckoutStartFunction", "WebhookFunction"] {
        for (method, path, auth) in routes(&t, f) {
            assert!(auth.is_null(), "{f}: {method} {path} has an authorizer");
        }
    }
    // The policy the merchant's backend attaches: execute-api:Invoke on exactly these routes
    // (path parameters as wildcards), nothing of checkout-start or the webhook.
    let policy = &t["Resources"]["MerchantApiInvokePolicy"];
    assert_eq!(policy["Type"].as_str(), Some("AWS::IAM::ManagedPolicy"));
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(text(&statements[0]["Action"]), "execute-api:Invoke");
    assert_eq!(statements[0]["Effect"].as_str(), Some("Allow"));
    let prefix = "Sub arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/$default/";
    let mut granted: Vec<String> = list(&statements[0]["Resource"])
        .into_iter()
        .map(|r| {
            r.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("not a route of this API's stage: {r}"))
                .to_owned()
        })
        .collect();
    granted.sort();
    let mut wanted: Vec<String> = merchant
        .iter()
        .map(|(m, p, _)| {
            let path: Vec<&str> = p
                .split('/')
                .map(|s| if s.starts_with('{') { "*" } else { s })
                .collect();
            format!("{m}{}", path.join("/"))
        })
        .collect();
    wanted.sort();
    assert_eq!(granted, wanted);
}
