//! Test hooks for the daily reconciliation: money movements that did not come from the
//! project's own API calls, as a merchant's back office, another integration or an error at Oen
//! would leave them in the ledger. Each changes the ledger at once (the listing and the
//! queries see it like any other transaction) and returns what it made.

use crate::envelope::ApiError;
use crate::ids;
use crate::model::{Snapshot, Status, Transaction};
use crate::state::State;

/// Why an injection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("no transaction {0}")]
    UnknownTransaction(String),
    #[error("no paid transaction under order {0}")]
    NoPaidTransaction(String),
    #[error("amount {0} is not a positive NT$ amount")]
    BadAmount(i64),
    #[error("refund refused: {0}")]
    Refused(String),
}

impl State {
    /// A paid (`charged`) transaction of `amount` under `order_id`, created now, charged on no
    /// token of ours. Returns its `P…` number.
    pub(crate) fn inject_paid(
        &mut self,
        order_id: &str,
        amount: i64,
    ) -> Result<String, InjectError> {
        if amount < 1 {
            return Err(InjectError::BadAmount(amount));
        }
        let now = self.now();
        let number = ids::transaction_number(now);
        let paid = Snapshot {
            at: now,
            status: Status::Charged,
            paid_at: Some(now),
            refund_amount: 0,
            refunded_at: None,
            auth_code: Some(ids::auth_code()),
            reason: None,
        };
        self.transactions.push(Transaction {
            number: number.clone(),
            transaction_id: ids::long_id(),
            order_id: order_id.to_owned(),
            amount,
            token: String::new(),
            created_at: now,
            history: vec![paid.clone()],
            pending_settle: None,
            successful_refunds: 0,
            note: Some("injected".into()),
            auth_code_on_approval: paid.auth_code.clone(),
        });
        Ok(number)
    }

    /// A second paid transaction under an order that already has one: same amount, same token,
    /// created now (the customer paid twice). Returns its `P…` number.
    pub(crate) fn inject_second_payment(&mut self, order_id: &str) -> Result<String, InjectError> {
        self.settle_due();
        let first = self
            .transactions
            .iter()
            .find(|t| t.order_id == order_id && t.current().status.is_paid())
            .ok_or_else(|| InjectError::NoPaidTransaction(order_id.to_owned()))?;
        let (amount, token) = (first.amount, first.token.clone());
        let number = self.inject_paid(order_id, amount)?;
        if let Some(tx) = self.transactions.last_mut() {
            tx.token = token;
        }
        Ok(number)
    }

    /// Oen records the transaction at another amount than the one charged.
    pub(crate) fn inject_amount(&mut self, number: &str, amount: i64) -> Result<(), InjectError> {
        if amount < 1 {
            return Err(InjectError::BadAmount(amount));
        }
        let tx = self
            .transactions
            .iter_mut()
            .find(|t| t.number == number)
            .ok_or_else(|| InjectError::UnknownTransaction(number.to_owned()))?;
        tx.amount = amount;
        Ok(())
    }

    /// A refund made outside the API (the merchant's back office): the same rules as
    /// `POST /refunds`, never a forced answer. `None` refunds the whole amount.
    pub(crate) fn inject_refund(
        &mut self,
        number: &str,
        amount: Option<i64>,
    ) -> Result<(), InjectError> {
        self.settle_due();
        let index = self
            .transactions
            .iter()
            .position(|t| t.number == number)
            .ok_or_else(|| InjectError::UnknownTransaction(number.to_owned()))?;
        let amount = self
            .refundable(index, amount)
            .map_err(|e: ApiError| InjectError::Refused(format!("{} {}", e.code, e.message)))?;
        self.commit_refund(index, amount);
        Ok(())
    }
}
