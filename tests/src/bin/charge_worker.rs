//! A charge worker in its own process, for the test that kills one with SIGKILL between Oen's
//! answer and our write. Arguments: TABLE KEY_ID OEN_BASE_URL CUSTOMER PLAN.
//! The AWS endpoint comes from `AWS_ENDPOINT_URL`, as for every test.

use std::sync::Arc;

use oen_pay::aws::{DynamoStore, KmsVault};
use oen_pay::charging::{self, ChargeDeps, ChargePolicy, WorkContext};
use oen_pay::clock::SystemClock;
use oen_pay::dev;
use oen_pay::domain::{CustomerId, PlanId};
use oen_pay::events::MemoryEvents;
use oen_pay::queue::MemoryQueue;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [table, key, oen_base, customer, plan] = args.as_slice() else {
        eprintln!("usage: charge_worker TABLE KEY_ID OEN_BASE_URL CUSTOMER PLAN");
        std::process::exit(2);
    };
    let aws = oen_pay_integration::aws_config().await;
    let adapters = dev::binding_deps(
        Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            table.clone(),
        )),
        Arc::new(KmsVault::new(aws_sdk_kms::Client::new(&aws), key.clone())),
        Arc::new(
            dev::local_oen(oen_base, dev::dev_secrets(dev::DEV_API_TOKEN)).expect("an Oen client"),
        ),
        Arc::new(MemoryEvents::default()),
        Arc::new(SystemClock),
    );
    let queue = Arc::new(MemoryQueue::default());
    let deps = ChargeDeps::new(adapters, queue, ChargePolicy::default());
    let customer = CustomerId::parse(customer).expect("a customer id");
    let plan = PlanId::parse(plan).expect("a plan id");
    println!("worker {} starting", std::process::id());
    let ctx = WorkContext {
        owner: format!("pid-{}", std::process::id()),
        deadline: None,
    };
    let outcome = charging::charge_now(&deps, &customer, &plan, &ctx).await;
    println!("outcome: {outcome:?}");
}
