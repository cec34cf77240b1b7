//! `POST /token/transactions`: charging a token as its card (or a forced outcome) decides.

use crate::cards::CardBehaviour;
use crate::envelope::ApiError;
use crate::ids;
use crate::model::{ms, ForceTarget, ForcedOutcome, Settle, Snapshot, Status, Transaction};
use crate::reply::Reply;
use crate::state::State;
use serde_json::{json, Map, Value};

/// A validated `POST /token/transactions`.
#[derive(Debug, Clone)]
pub(crate) struct ChargeRequest {
    pub token: String,
    pub order_id: String,
    pub amount: i64,
    pub note: Option<String>,
}

pub(crate) fn decline_message(code: &str) -> &'static str {
    match code {
        "T0001" => "Transaction failed",
        "T0002" => "CVV error",
        "T0003" => "Card expired",
        "T0004" => "Insufficient credit",
        "T0005" => "Issuer refused",
        _ => "Declined",
    }
}

/// The `data` of an approved charge; `authCode` is omitted when there is none.
fn approval(number: String, auth_code: Option<String>) -> Value {
    let mut data = Map::new();
    data.insert("id".into(), json!(number));
    if let Some(code) = auth_code {
        data.insert("authCode".into(), json!(code));
    }
    Value::Object(data)
}

impl State {
    pub(crate) fn charge(&mut self, req: &ChargeRequest) -> Result<Reply, ApiError> {
        self.settle_due();
        let behaviour = match self.tokens.get(&req.token) {
            Some(t) => t.behaviour,
            None => return Err(ApiError::invalid("token not found")),
        };
        let forced = self.take_forced(|t| match t {
            ForceTarget::Token(tok) => *tok == req.token,
            ForceTarget::OrderId(order) => *order == req.order_id,
            ForceTarget::AnyCharge => true,
            ForceTarget::OrderQuery(_)
            | ForceTarget::Refund(_)
            | ForceTarget::AnyRefund
            | ForceTarget::TransactionList => false,
        });
        let Some(forced) = forced else {
            return Ok(self.charge_as_card(req, behaviour));
        };
        match &forced {
            ForcedOutcome::Respond { code, message, .. } if code.starts_with('T') => {
                // A decline, forced or not, leaves a `failed` transaction.
                let reason = message
                    .clone()
                    .unwrap_or_else(|| decline_message(code).to_string());
                self.record_final(req, Err(reason));
            }
            ForcedOutcome::Unknown { settles } => self.record_unknown(req, *settles),
            outcome if outcome.commits_first() => {
                self.commit_as_card(req, behaviour);
            }
            _ => {}
        }
        Ok(Reply::forced(&forced, decline_message))
    }

    fn charge_as_card(&mut self, req: &ChargeRequest, behaviour: CardBehaviour) -> Reply {
        match behaviour {
            CardBehaviour::UnknownThenCharged => {
                self.record_unknown(req, Settle::Charged);
                Reply::Fail(ApiError::unknown_result())
            }
            CardBehaviour::UnknownThenFailed => {
                self.record_unknown(req, Settle::Failed);
                Reply::Fail(ApiError::unknown_result())
            }
            CardBehaviour::GatewayTimeoutAfterCommit => {
                self.record_final(req, Ok(()));
                Reply::GatewayTimeout
            }
            CardBehaviour::DropAfterCommit => {
                self.record_final(req, Ok(()));
                Reply::Drop
            }
            _ => self.commit_as_card(req, behaviour),
        }
    }

    /// Approves or declines as the card would; cards without a plain approve/decline answer
    /// are approved.
    fn commit_as_card(&mut self, req: &ChargeRequest, behaviour: CardBehaviour) -> Reply {
        let decline = match behaviour {
            CardBehaviour::Decline(code) => Some(code),
            CardBehaviour::SucceedsAfter(n) => match self.tokens.get_mut(&req.token) {
                Some(t) if t.failures_so_far < n => {
                    t.failures_so_far += 1;
                    Some("T0001")
                }
                _ => None,
            },
            _ => None,
        };
        match decline {
            Some(code) => {
                let message = decline_message(code);
                self.record_final(req, Err(message.to_string()));
                Reply::Fail(ApiError::coded(400, code, message))
            }
            None => {
                let (number, auth_code) = self.record_final(req, Ok(()));
                Reply::Success(approval(number, auth_code))
            }
        }
    }

    fn new_transaction(&self, req: &ChargeRequest) -> Transaction {
        let now = self.now();
        Transaction {
            number: ids::transaction_number(now),
            transaction_id: ids::long_id(),
            order_id: req.order_id.clone(),
            amount: req.amount,
            token: req.token.clone(),
            created_at: now,
            history: vec![Snapshot {
                at: now,
                status: Status::Charging,
                paid_at: None,
                refund_amount: 0,
                refunded_at: None,
                auth_code: None,
                reason: None,
            }],
            pending_settle: None,
            successful_refunds: 0,
            note: req.note.clone(),
            auth_code_on_approval: self.knobs.auth_code.issue(self.transactions.len()),
        }
    }

    /// Records a charge that ended at once: `Ok` = charged, `Err(reason)` = failed.
    /// Returns the transaction number and the auth code of a charged one.
    fn record_final(
        &mut self,
        req: &ChargeRequest,
        result: Result<(), String>,
    ) -> (String, Option<String>) {
        let mut tx = self.new_transaction(req);
        let now = tx.created_at;
        let snapshot = match result {
            Ok(()) => Snapshot {
                at: now,
                status: Status::Charged,
                paid_at: Some(now),
                refund_amount: 0,
                refunded_at: None,
                auth_code: tx.auth_code_on_approval.clone(),
                reason: None,
            },
            Err(reason) => Snapshot {
                at: now,
                status: Status::Failed,
                paid_at: None,
                refund_amount: 0,
                refunded_at: None,
                auth_code: None,
                reason: Some(reason),
            },
        };
        let auth_code = snapshot.auth_code.clone();
        tx.push(snapshot);
        let number = tx.number.clone();
        self.transactions.push(tx);
        (number, auth_code)
    }

    fn record_unknown(&mut self, req: &ChargeRequest, settles: Settle) {
        let mut tx = self.new_transaction(req);
        tx.pending_settle = Some((
            crate::clock::after(tx.created_at, ms(self.knobs.settle_delay_ms)),
            settles,
        ));
        self.transactions.push(tx);
    }
}
