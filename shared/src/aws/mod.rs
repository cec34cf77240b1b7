//! The AWS adapters of the ports (feature `aws`, on for the functions): DynamoDB, KMS, SQS,
//! EventBridge and Secrets Manager, and the wiring that builds them once per cold start. The
//! domain never names anything in here, so it compiles and tests without the AWS SDK.

pub mod dynamo;
mod eventbridge;
mod kms;
mod secrets_manager;
mod sqs;
pub mod wiring;

pub use dynamo::{DynamoStore, DUE_INDEX};
pub use eventbridge::EventBridgeSink;
pub use kms::KmsVault;
pub use secrets_manager::SecretsManagerFetcher;
pub use sqs::SqsQueue;
