//! The read side: order listings, single transactions and the transaction list, as they look
//! through the eventual-consistency knob.

use crate::envelope::ApiError;
use crate::ids;
use crate::model::{ms, ForceTarget, ForcedOutcome, Transaction};
use crate::state::State;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

/// Transactions per page of `GET /transactions`.
pub(crate) const PAGE_SIZE: usize = 50;

/// A forced answer to an order query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryOverride {
    Fail(ApiError),
    GatewayTimeout,
    Drop,
}

impl State {
    fn lag(&self) -> Duration {
        ms(self.knobs.consistency_lag_ms)
    }

    pub(crate) fn order_query_override(&mut self, order_id: &str) -> Option<QueryOverride> {
        let forced =
            self.take_forced(|t| matches!(t, ForceTarget::OrderQuery(o) if o == order_id))?;
        Some(match forced {
            ForcedOutcome::Respond {
                code,
                http_status,
                message,
            } => QueryOverride::Fail(ApiError::coded(
                http_status,
                &code,
                message.unwrap_or_else(|| "forced by the simulator".into()),
            )),
            ForcedOutcome::Unknown { .. } => QueryOverride::Fail(ApiError::unknown_result()),
            ForcedOutcome::GatewayTimeoutAfterCommit
            | ForcedOutcome::GatewayTimeoutBeforeCommit => QueryOverride::GatewayTimeout,
            ForcedOutcome::DropConnectionAfterCommit
            | ForcedOutcome::DropConnectionBeforeCommit => QueryOverride::Drop,
        })
    }

    pub(crate) fn order_transactions(&mut self, order_id: &str) -> Vec<Value> {
        self.settle_due();
        let (now, lag) = (self.now(), self.lag());
        self.transactions
            .iter()
            .filter(|t| t.order_id == order_id)
            .map(|t| t.to_json(t.visible(now, lag)))
            .collect()
    }

    pub(crate) fn transaction(&mut self, id: &str) -> Result<Value, ApiError> {
        self.settle_due();
        let (now, lag) = (self.now(), self.lag());
        let found = if ids::is_transaction_number(id) {
            self.transactions.iter().find(|t| t.number == id)
        } else if ids::is_long_id(id) {
            self.transactions.iter().find(|t| t.transaction_id == id)
        } else {
            None
        };
        found
            .map(|t| t.to_json(t.visible(now, lag)))
            .ok_or_else(|| ApiError::invalid("transaction not found"))
    }

    /// Newest first, 50 a page; `page` is 1-based. Returns the page and whether more follow.
    pub(crate) fn list_transactions(
        &mut self,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
        page: usize,
    ) -> (Vec<Value>, bool) {
        self.settle_due();
        let (now, lag) = (self.now(), self.lag());
        let matching: Vec<&Transaction> = self
            .transactions
            .iter()
            .rev()
            .filter(|t| match range {
                Some((start, end)) => t.created_at >= start && t.created_at <= end,
                None => true,
            })
            .collect();
        let skip = page.saturating_sub(1).saturating_mul(PAGE_SIZE);
        let items = matching
            .iter()
            .skip(skip)
            .take(PAGE_SIZE)
            .map(|t| t.to_json(t.visible(now, lag)))
            .collect();
        let more = matching.len() > skip.saturating_add(PAGE_SIZE);
        (items, more)
    }
}
