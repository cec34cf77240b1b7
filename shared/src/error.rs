//! Errors shared by every module.

use thiserror::Error;

/// A value that a user (or the merchant's configuration) supplied and that we refuse, with a
/// precise reason. It never carries the rejected value when that value may be secret.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("invalid {what}: {reason}")]
pub struct InvalidInput {
    pub what: &'static str,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }
}
