//! oen-pay's shared crate: the domain, its ports (traits) and their adapters.
//!
//! The domain is pure: it talks to AWS and Oen only through [`store::Store`],
//! [`vault::TokenVault`], [`oen::OenGateway`], [`secrets::SecretSource`] and [`clock::Clock`].

#[cfg(any(
    feature = "aws-dynamodb",
    feature = "aws-kms",
    feature = "aws-sqs",
    feature = "aws-eventbridge",
    feature = "aws-secretsmanager"
))]
pub mod aws;
pub mod binding;
pub mod charging;
pub mod clock;
pub mod config;
pub mod deadletter;
#[cfg(any(test, feature = "dev"))]
pub mod dev;
pub mod domain;
pub mod error;
pub mod events;
pub mod links;
pub mod metrics;
pub mod oen;
pub mod oneoff;
pub mod ops;
pub mod outbox;
pub mod queue;
// Daily reconciliation.
pub mod reconcile;
pub mod secrets;
pub mod store;
pub mod vault;
#[cfg(feature = "http")]
pub mod web;
pub mod withheld;

pub use error::InvalidInput;

/// Re-exported so that function crates name one version of each.
pub use {async_trait, chrono, serde_json};
