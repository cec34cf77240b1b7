//! What `template.yaml` deploys, read from the template itself: the table's schema, and each
//! function's environment, timeout and memory (`Globals.Function` merged with the function's own
//! properties), with the template's references resolved to the resources made in moto.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use yaml_serde::Value as Yaml;

use crate::aws::{Resources, REGION};

const ACCOUNT: &str = "123456789012";

/// Values of the template's parameters that have no default.
const PARAMETERS: &[(&str, &str)] = &[
    ("MerchantId", "ming"),
    (
        "Plans",
        r#"[{"id":"premium","description":"Premium plan","amount":500,"intervalMonths":1},{"id":"yearly","description":"Premium, yearly","amount":5000,"intervalMonths":12},{"id":"weekly","description":"Weekly box","amount":120,"intervalDays":7,"trialDays":14,"productionCode":"WB","unit":"box"}]"#,
    ),
    ("SuccessUrl", "https://shop.example.com/subscribed"),
    ("FailureUrl", "https://shop.example.com/subscribe-failed"),
];

pub struct Template {
    root: Yaml,
}

/// A function as deployed.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// `Environment.Variables`, globals first, then the function's own.
    pub env: BTreeMap<String, String>,
    pub timeout_s: u64,
    pub memory_mb: u64,
}

impl Template {
    pub fn read(repo: &Path) -> Result<Self, String> {
        let path = repo.join("template.yaml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let root = yaml_serde::from_str(&text)
            .map_err(|e| format!("{} is not YAML: {e}", path.display()))?;
        Ok(Self { root })
    }

    /// The logical ids of the template's SQS queues.
    pub fn queues(&self) -> Vec<String> {
        self.root
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flatten()
            .filter(|(_, r)| r.get("Type").and_then(Yaml::as_str) == Some("AWS::SQS::Queue"))
            .filter_map(|(name, _)| name.as_str().map(str::to_owned))
            .collect()
    }

    fn resource(&self, name: &str) -> Option<&Yaml> {
        self.root.get("Resources").and_then(|r| r.get(name))
    }

    fn resource_type(&self, name: &str) -> Option<&str> {
        self.resource(name)?.get("Type")?.as_str()
    }

    /// The `CreateTable` request from `Resources.Table.Properties` (CloudFormation's property
    /// names are the API's own) and its time-to-live specification.
    pub fn create_table_request(&self, table_name: &str) -> Result<(Value, Option<Value>), String> {
        let properties = self
            .resource("Table")
            .filter(|_| self.resource_type("Table") == Some("AWS::DynamoDB::Table"))
            .and_then(|t| t.get("Properties"))
            .cloned()
            .ok_or("template.yaml has no DynamoDB Resources.Table")?;
        let properties: Value = yaml_serde::from_value(untag(properties))
            .map_err(|e| format!("Resources.Table.Properties: {e}"))?;
        let mut request = json!({"TableName": table_name});
        for name in [
            "AttributeDefinitions",
            "KeySchema",
            "GlobalSecondaryIndexes",
            "BillingMode",
            "ProvisionedThroughput",
        ] {
            if let Some(value) = properties.get(name) {
                request[name] = value.clone();
            }
        }
        Ok((request, properties.get("TimeToLiveSpecification").cloned()))
    }

    /// The function whose `Metadata.BuildProperties.Binary` is `binary`, as deployed, its
    /// references resolved to `resources`.
    pub fn function(&self, binary: &str, resources: &Resources) -> Result<Deployed, String> {
        let resources_map = self
            .root
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .ok_or("template.yaml has no Resources")?;
        let function = resources_map
            .values()
            .find(|r| {
                r.get("Type").and_then(Yaml::as_str) == Some("AWS::Serverless::Function")
                    && r.get("Metadata")
                        .and_then(|m| m.get("BuildProperties"))
                        .and_then(|b| b.get("Binary"))
                        .and_then(Yaml::as_str)
                        == Some(binary)
            })
            .and_then(|r| r.get("Properties"))
            .ok_or_else(|| format!("template.yaml has no function with Binary {binary}"))?;
        let globals = self.root.get("Globals").and_then(|g| g.get("Function"));
        let mut env = BTreeMap::new();
        for properties in globals.into_iter().chain([function]) {
            let variables = properties
                .get("Environment")
                .and_then(|e| e.get("Variables"))
                .and_then(Yaml::as_mapping);
            for (name, value) in variables.into_iter().flatten() {
                let name = name.as_str().ok_or("a variable name is not a string")?;
                let value = self
                    .resolve(value, resources)
                    .map_err(|e| format!("{binary}: {name}: {e}"))?;
                env.insert(name.to_owned(), value);
            }
        }
        let number = |key: &str, default: u64| {
            function
                .get(key)
                .or_else(|| globals.and_then(|g| g.get(key)))
                .and_then(Yaml::as_u64)
                .unwrap_or(default)
        };
        Ok(Deployed {
            env,
            timeout_s: number("Timeout", 3),
            memory_mb: number("MemorySize", 128),
        })
    }

    fn resolve(&self, value: &Yaml, resources: &Resources) -> Result<String, String> {
        match value {
            Yaml::String(s) => Ok(s.clone()),
            Yaml::Number(n) => Ok(n.to_string()),
            Yaml::Bool(b) => Ok(b.to_string()),
            // `!If [condition, then, else]`: every condition is false with the parameters'
            // defaults (no custom domain, no fixed egress), so the else branch.
            Yaml::Tagged(tagged) if tagged.tag == "!If" => match &tagged.value {
                Yaml::Sequence(branches) if branches.len() == 3 => {
                    self.resolve(&branches[2], resources)
                }
                other => Err(format!("!If {other:?} is not understood")),
            },
            Yaml::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let target = match &tagged.value {
                    Yaml::String(s) => s.clone(),
                    Yaml::Sequence(parts) => parts
                        .iter()
                        .filter_map(Yaml::as_str)
                        .collect::<Vec<_>>()
                        .join("."),
                    other => return Err(format!("{tag} {other:?} is not understood")),
                };
                match tag.as_str() {
                    "!Ref" => self.reference(&target, None, resources),
                    "!GetAtt" => {
                        let (name, attribute) = target
                            .split_once('.')
                            .ok_or_else(|| format!("!GetAtt {target} names no attribute"))?;
                        self.reference(name, Some(attribute), resources)
                    }
                    _ => Err(format!("{tag} is not understood by the benchmark")),
                }
            }
            other => Err(format!("{other:?} is not understood by the benchmark")),
        }
    }

    /// `!Ref name` (no attribute) or `!GetAtt name.attribute`.
    fn reference(
        &self,
        name: &str,
        attribute: Option<&str>,
        r: &Resources,
    ) -> Result<String, String> {
        if attribute.is_none() {
            if let Some(parameter) = self.root.get("Parameters").and_then(|p| p.get(name)) {
                let given = PARAMETERS.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
                return match (given, parameter.get("Default")) {
                    (Some(v), _) => Ok((*v).to_owned()),
                    (None, Some(default)) => self.resolve(default, r),
                    (None, None) => Err(format!("parameter {name} has no value in the benchmark")),
                };
            }
        }
        let kind = self
            .resource_type(name)
            .ok_or_else(|| format!("{name} is neither a parameter nor a resource"))?;
        let arn =
            |service: &str, rest: &str| format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{rest}");
        let value = match (kind, attribute) {
            ("AWS::DynamoDB::Table", None) => r.table_name.clone(),
            ("AWS::DynamoDB::Table", Some("Arn")) => {
                arn("dynamodb", &format!("table/{}", r.table_name))
            }
            ("AWS::KMS::Key", None | Some("KeyId")) => r
                .token_key_arn
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            ("AWS::KMS::Key", Some("Arn")) => r.token_key_arn.clone(),
            ("AWS::SecretsManager::Secret", None | Some("Id")) => r.secret_arn.clone(),
            ("AWS::Events::EventBus", None | Some("Name")) => r.event_bus_name.clone(),
            ("AWS::Events::EventBus", Some("Arn")) => {
                arn("events", &format!("event-bus/{}", r.event_bus_name))
            }
            ("AWS::SQS::Queue", None | Some("QueueUrl")) => r
                .queues
                .get(name)
                .cloned()
                .ok_or_else(|| format!("the benchmark made no queue {name}"))?,
            ("AWS::SQS::Queue", Some("Arn")) => {
                let url = r
                    .queues
                    .get(name)
                    .ok_or_else(|| format!("the benchmark made no queue {name}"))?;
                arn("sqs", url.rsplit('/').next().unwrap_or_default())
            }
            _ => {
                return Err(format!(
                    "the benchmark does not make {name} ({kind}{})",
                    attribute.map(|a| format!(".{a}")).unwrap_or_default()
                ))
            }
        };
        Ok(value)
    }
}

/// Drops CloudFormation's short-form tags (`!Ref`, `!Sub`…), keeping their values.
fn untag(value: Yaml) -> Yaml {
    match value {
        Yaml::Tagged(tagged) => untag(tagged.value),
        Yaml::Sequence(items) => Yaml::Sequence(items.into_iter().map(untag).collect()),
        Yaml::Mapping(map) => Yaml::Mapping(map.into_iter().map(|(k, v)| (k, untag(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap()
    }

    fn resources() -> Resources {
        Resources {
            table_name: "table-1".into(),
            token_key_arn: format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/k-1"),
            secret_arn: "arn:aws:secretsmanager:x:y:secret:s-1".into(),
            queues: [
                ("ChargeQueue", "q-1"),
                ("ChargeDeadLetterQueue", "q-2"),
                ("ScheduleDeadLetterQueue", "q-3"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), format!("http://localhost/123456789012/{v}")))
            .collect(),
            event_bus_name: "bus-1".into(),
        }
    }

    #[test]
    fn the_table_request_is_the_template_table() {
        let (request, ttl) = template().create_table_request("t").unwrap();
        assert_eq!(request["TableName"], "t");
        assert_eq!(request["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(request["KeySchema"][0]["AttributeName"], "pk");
        assert_eq!(
            request["GlobalSecondaryIndexes"][0]["IndexName"],
            "due-index"
        );
        assert_eq!(ttl.unwrap()["AttributeName"], "ttl");
    }

    #[test]
    fn every_function_resolves_to_the_made_resources() {
        let template = template();
        for binary in ["checkout-start", "webhook", "charger", "merchant-api"] {
            let deployed = template.function(binary, &resources()).unwrap();
            assert_eq!(deployed.env["TABLE_NAME"], "table-1", "{binary}");
            assert!(deployed.timeout_s >= 1, "{binary}");
            assert!(deployed.memory_mb >= 128, "{binary}");
        }
        let charger = template.function("charger", &resources()).unwrap();
        assert_eq!(
            charger.env["CHARGE_QUEUE_URL"],
            "http://localhost/123456789012/q-1"
        );
        let api = template.function("merchant-api", &resources()).unwrap();
        assert_eq!(
            (
                api.env["CHARGE_QUEUE_URL"].as_str(),
                api.env["CHARGE_DEAD_LETTER_QUEUE_URL"].as_str(),
                api.env["SCHEDULE_DEAD_LETTER_QUEUE_URL"].as_str(),
                api.env["START_LINK_URL"].as_str(),
            ),
            (
                "http://localhost/123456789012/q-1",
                "http://localhost/123456789012/q-2",
                "http://localhost/123456789012/q-3",
                "",
            )
        );
    }
}
