//! The read side: order listings, single transactions and the transaction list, as they look
//! through the listing delay (young transactions are not listed yet) and the
//! eventual-consistency lag (a listed transaction shows its earlier status for a while).

use crate::clock::to_chrono;
use crate::envelope::ApiError;
use crate::ids;
use crate::model::{ms, ForceTarget, Transaction};
use crate::reply::Reply;
use crate::state::State;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::time::Duration;

/// Transactions per page of `GET /transactions`.
pub(crate) const PAGE_SIZE: usize = 50;

impl State {
    fn lag(&self) -> Duration {
        ms(self.knobs.consistency_lag_ms)
    }

    /// `GET /order/{orderId}/transactions`: every transaction of the order, unless an answer
    /// is forced.
    pub(crate) fn order_query(&mut self, order_id: &str) -> Reply {
        let forced = self.take_forced(|t| matches!(t, ForceTarget::OrderQuery(o) if o == order_id));
        match forced {
            Some(forced) => Reply::forced(&forced, |_| "forced by the simulator"),
            None => Reply::Success(json!({ "transactions": self.order_transactions(order_id) })),
        }
    }

    /// The transactions old enough to be listed, oldest first: one younger than the listing
    /// delay (simulator clock) is missing from both listings, as if Oen had not written it yet.
    fn listed(&self) -> impl DoubleEndedIterator<Item = &Transaction> {
        let delay = to_chrono(ms(self.knobs.listing_delay_ms));
        // A delay reaching back before the calendar began hides everything.
        let cutoff = self.now().checked_sub_signed(delay);
        self.transactions
            .iter()
            .filter(move |t| cutoff.is_some_and(|c| t.created_at <= c))
    }

    fn order_transactions(&mut self, order_id: &str) -> Vec<Value> {
        self.settle_due();
        let (now, lag) = (self.now(), self.lag());
        self.listed()
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
            .listed()
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
