//! Creates, in the emulated AWS at `AWS_ENDPOINT_URL` (moto), everything the functions need —
//! the table (from template.yaml), the token key, the secret and the charge queue — and prints
//! the functions' environment as `KEY=VALUE` lines for `cargo lambda watch --env-file`.
//!
//! Usage: local_aws OEN_BASE_URL INVOKE_BASE_URL
//!   OEN_BASE_URL     the simulator, e.g. http://127.0.0.1:9001
//!   INVOKE_BASE_URL  where `cargo lambda watch` serves, e.g. http://127.0.0.1:9000

use chrono::{Duration, Utc};
use oen_pay::dev;
use oen_pay::domain::{CustomerId, PlanId};
use oen_pay_integration as harness;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [oen, invoke] = args.as_slice() else {
        eprintln!(
            "usage: local_aws OEN_BASE_URL INVOKE_BASE_URL (with AWS_ENDPOINT_URL set to moto)"
        );
        std::process::exit(2);
    };
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") else {
        eprintln!("local_aws: set AWS_ENDPOINT_URL to the moto server");
        std::process::exit(2);
    };
    let table = harness::create_table(&harness::dynamo_client().await).await;
    let key = harness::create_kms_key(&harness::kms_client().await).await;
    let secret = harness::create_secret(
        &harness::secrets_client().await,
        &dev::dev_secret_json(dev::DEV_API_TOKEN),
    )
    .await;
    let sqs = aws_sdk_sqs::Client::new(&harness::aws_config().await);
    let queue = sqs
        .create_queue()
        .queue_name(harness::unique_name("oen-pay-charges"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateQueue failed: {e}"))
        .queue_url
        .unwrap_or_default();
    let status = format!("{invoke}/lambda-url/checkout-start/checkout/status");
    let plans: serde_json::Value = serde_json::from_str(dev::DEV_PLANS).unwrap_or_default();
    let lines = [
        ("OEN_ENVIRONMENT", "testing".to_owned()),
        ("OEN_MERCHANT_ID", dev::DEV_MERCHANT_ID.to_owned()),
        ("OEN_API_BASE_URL", oen.clone()),
        (
            "OEN_HOSTED_BASE_URL",
            format!("{oen}/hosted/{{merchantId}}"),
        ),
        ("OEN_SECRET_ID", secret),
        ("TABLE_NAME", table),
        ("TOKEN_KEY_ID", key),
        ("PLANS", plans.to_string()),
        ("SUCCESS_URL", status.clone()),
        ("FAILURE_URL", status),
        ("CHARGE_QUEUE_URL", queue),
        ("EVENT_BUS_NAME", "default".to_owned()),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", harness::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ];
    for (k, v) in lines {
        // Single quotes: dotenv takes the value literally (JSON, braces).
        println!("{k}='{v}'");
    }
    let link = oen_pay::links::mint(
        &format!("{invoke}/lambda-url/checkout-start/checkout/start"),
        dev::DEV_LINK_SIGNING_KEY.as_bytes(),
        &CustomerId::parse("cust-1001").unwrap_or_else(|_| unreachable!()),
        &PlanId::parse("premium").unwrap_or_else(|_| unreachable!()),
        Utc::now() + Duration::hours(12),
        Some("mei@example.com"),
    );
    eprintln!("A signed start link for customer cust-1001 (valid 12 hours):\n  {link}");
}
