//! oen-pay's shared crate: the domain, its ports (traits) and their adapters.
//!
//! The domain is pure: it talks to AWS and Oen only through [`store::Store`],
//! [`vault::TokenVault`], [`oen::OenGateway`], [`secrets::SecretSource`] and [`clock::Clock`].

pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod oen;
pub mod secrets;
pub mod store;
pub mod vault;

pub use error::InvalidInput;
