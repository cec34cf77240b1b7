//! The AWS adapters of the ports, one feature per service (`aws-dynamodb`, `aws-kms`,
//! `aws-sqs`, `aws-eventbridge`, `aws-secretsmanager`; `aws` is all five), and the wiring that
//! builds them once per cold start. Each function enables only the services it calls, so its
//! binary links no other SDK. The domain never names anything in here, so it compiles and
//! tests without the AWS SDK.

#[cfg(feature = "aws-dynamodb")]
pub mod dynamo;
#[cfg(feature = "aws-eventbridge")]
mod eventbridge;
#[cfg(feature = "aws-kms")]
mod kms;
pub mod lazy;
#[cfg(feature = "aws-secretsmanager")]
mod secrets_manager;
#[cfg(feature = "aws-sqs")]
mod sqs;
pub mod wiring;

#[cfg(feature = "aws-dynamodb")]
pub use dynamo::{DynamoStore, DUE_INDEX, NOTICE_INDEX, SUBSCRIPTION_INDEX};
#[cfg(feature = "aws-eventbridge")]
pub use eventbridge::EventBridgeSink;
#[cfg(feature = "aws-kms")]
pub use kms::KmsVault;
#[cfg(feature = "aws-secretsmanager")]
pub use secrets_manager::SecretsManagerFetcher;
#[cfg(feature = "aws-sqs")]
pub use sqs::{SqsDeadLetters, SqsQueue};
