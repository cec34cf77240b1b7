//! `POST /refunds/{P…}`: one successful refund per transaction, unless an answer is forced.

use crate::envelope::ApiError;
use crate::model::{ForceTarget, Snapshot, Status};
use crate::reply::Reply;
use crate::state::State;
use serde_json::Value;

/// The message of a forced refund failure that brought none.
fn refund_failure_message(code: &str) -> &'static str {
    match code {
        "R0001" => "Refund failed at the acquirer",
        "F0001" => "System error",
        _ => "forced by the simulator",
    }
}

impl State {
    /// Refunds `amount` (all of it when `None`) of a paid transaction. A request the
    /// transaction's state refuses is answered so whatever is forced; otherwise a forced
    /// outcome for the refund replaces the answer, and only the "after commit" ones refund.
    ///
    /// `lines` is the total of the request's `productDetails` (`None` when it sent none): on a
    /// domain that issues e-invoices (the `einvoice` knob) they are required, as the contract
    /// says, and whenever they are sent they must add up to the amount refunded.
    pub(crate) fn refund(
        &mut self,
        number: &str,
        amount: Option<i64>,
        lines: Option<i64>,
    ) -> Result<Reply, ApiError> {
        self.settle_due();
        let index = self
            .transactions
            .iter()
            .position(|t| t.number == number)
            .ok_or_else(|| ApiError::invalid("transaction not found"))?;
        let amount = self.refundable(index, amount)?;
        match lines {
            None if self.knobs.einvoice => {
                return Err(ApiError::invalid(
                    "productDetails is required: an e-invoice was issued for this transaction",
                ))
            }
            Some(total) if total != amount => {
                return Err(ApiError::invalid("PRODUCT_AMOUNT_NOT_MATCH"))
            }
            _ => {}
        }
        let forced = self.take_forced(|t| match t {
            ForceTarget::Refund(n) => n == number,
            ForceTarget::AnyRefund => true,
            _ => false,
        });
        match forced {
            None => Ok(Reply::Success(self.commit_refund(index, amount))),
            Some(forced) => {
                if forced.commits_first() {
                    self.commit_refund(index, amount);
                }
                Ok(Reply::forced(&forced, refund_failure_message))
            }
        }
    }

    /// The amount a refund of the transaction at `index` would return, or why it cannot.
    pub(crate) fn refundable(&self, index: usize, amount: Option<i64>) -> Result<i64, ApiError> {
        let tx = &self.transactions[index];
        if tx.successful_refunds > 0 {
            return Err(ApiError::not_allowed("transaction already refunded"));
        }
        let status = tx.current().status;
        if !status.is_paid() {
            return Err(ApiError::not_allowed(format!(
                "transaction status {status} does not allow a refund"
            )));
        }
        let amount = amount.unwrap_or(tx.amount);
        if amount < 1 {
            return Err(ApiError::invalid("INVALID_REFUND_AMOUNT"));
        }
        if amount > tx.amount {
            return Err(ApiError::invalid("REFUND_AMOUNT_EXCEED_CHARGE_AMOUNT"));
        }
        Ok(amount)
    }

    /// Records the refund; returns the updated transaction with `success: true`, as Oen
    /// answers it.
    pub(crate) fn commit_refund(&mut self, index: usize, amount: i64) -> Value {
        let now = self.now();
        let tx = &mut self.transactions[index];
        let current = tx.current().clone();
        tx.push(Snapshot {
            at: now,
            status: Status::Refunded,
            refund_amount: amount,
            refunded_at: Some(now),
            ..current
        });
        tx.successful_refunds += 1;
        let mut body = tx.to_json(tx.current());
        if let Some(obj) = body.as_object_mut() {
            obj.insert("success".into(), Value::Bool(true));
        }
        body
    }
}
