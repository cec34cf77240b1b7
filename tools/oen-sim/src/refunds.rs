//! `POST /refunds/{P…}`: one successful refund per transaction.

use crate::envelope::ApiError;
use crate::model::{Snapshot, Status};
use crate::state::State;
use serde_json::Value;

impl State {
    pub(crate) fn refund(&mut self, number: &str, amount: Option<i64>) -> Result<Value, ApiError> {
        self.settle_due();
        let now = self.now();
        let tx = self
            .transactions
            .iter_mut()
            .find(|t| t.number == number)
            .ok_or_else(|| ApiError::invalid("transaction not found"))?;
        if tx.successful_refunds > 0 {
            return Err(ApiError::not_allowed("transaction already refunded"));
        }
        let current = tx.current().clone();
        if !current.status.is_paid() {
            return Err(ApiError::not_allowed(format!(
                "transaction status {} does not allow a refund",
                current.status
            )));
        }
        let amount = amount.unwrap_or(tx.amount);
        if amount < 1 {
            return Err(ApiError::invalid("INVALID_REFUND_AMOUNT"));
        }
        if amount > tx.amount {
            return Err(ApiError::invalid("REFUND_AMOUNT_EXCEED_CHARGE_AMOUNT"));
        }
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
        Ok(body)
    }
}
