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

    /// Whether a transaction is old enough to be listed: one younger than the listing delay
    /// (simulator clock) is missing from both listings, as if Oen had not written it yet.
    fn listed(&self) -> impl Fn(&Transaction) -> bool {
        let delay = to_chrono(ms(self.knobs.listing_delay_ms));
        // A delay reaching back before the calendar began hides everything.
        let cutoff = self.now().checked_sub_signed(delay);
        move |t| cutoff.is_some_and(|c| t.created_at <= c)
    }

    fn order_transactions(&mut self, order_id: &str) -> Vec<Value> {
        self.settle_due();
        let (now, lag) = (self.now(), self.lag());
        let listed = self.listed();
        self.transactions
            .iter()
            .filter(|t| listed(t) && t.order_id == order_id)
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

    /// `GET /transactions`: every listed transaction created in `range` (failed ones too; a
    /// refund shows on its transaction as `status`, `refundAmount` and `refundedAt`), newest
    /// first, 50 a page. `after` is the token a previous page gave: the number of its last
    /// transaction, so a charge made between two pages neither repeats nor skips an entry.
    /// Returns the page and the token of the next one, if any.
    pub(crate) fn list_transactions(
        &mut self,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
        after: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), ApiError> {
        self.settle_due();
        let (now, lag) = (self.now(), self.lag());
        let older_than = match after {
            None => self.transactions.len(),
            Some(token) => self
                .transactions
                .iter()
                .position(|t| t.number == token)
                .ok_or_else(|| ApiError::system("Pagination parse failed"))?,
        };
        let listed = self.listed();
        let in_range = |t: &Transaction| match range {
            Some((start, end)) => t.created_at >= start && t.created_at <= end,
            None => true,
        };
        let mut matching = self
            .transactions
            .iter()
            .take(older_than)
            .rev()
            .filter(|t| listed(t) && in_range(t));
        let page: Vec<&Transaction> = matching.by_ref().take(PAGE_SIZE).collect();
        let next = match matching.next() {
            Some(_) => page.last().map(|t| t.number.clone()),
            None => None,
        };
        let items = page
            .iter()
            .map(|t| t.to_json(t.visible(now, lag)))
            .collect();
        Ok((items, next))
    }
}
