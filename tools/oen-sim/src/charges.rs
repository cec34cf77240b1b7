//! `POST /token/transactions`: charging a token as its card (or a forced outcome) decides.

use crate::cards::CardBehaviour;
use crate::envelope::ApiError;
use crate::ids;
use crate::model::{ms, ForceTarget, ForcedOutcome, Settle, Snapshot, Status, Transaction};
use crate::state::State;

/// A validated `POST /token/transactions`.
#[derive(Debug, Clone)]
pub(crate) struct ChargeRequest {
    pub token: String,
    pub order_id: String,
    pub amount: i64,
    pub note: Option<String>,
}

/// How to answer a charge once the ledger is updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChargeReply {
    Approved { number: String, auth_code: String },
    Fail(ApiError),
    GatewayTimeout,
    Drop,
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

impl State {
    pub(crate) fn charge(&mut self, req: &ChargeRequest) -> Result<ChargeReply, ApiError> {
        self.settle_due();
        let behaviour = match self.tokens.get(&req.token) {
            Some(t) => t.behaviour,
            None => return Err(ApiError::invalid("token not found")),
        };
        let forced = self.take_forced(|t| match t {
            ForceTarget::Token(tok) => *tok == req.token,
            ForceTarget::OrderId(order) => *order == req.order_id,
            ForceTarget::AnyCharge => true,
            ForceTarget::OrderQuery(_) => false,
        });
        let Some(forced) = forced else {
            return Ok(self.charge_as_card(req, behaviour));
        };
        Ok(match forced {
            ForcedOutcome::Respond {
                code,
                http_status,
                message,
            } => {
                let message = message.unwrap_or_else(|| decline_message(&code).to_string());
                if code.starts_with('T') {
                    self.record_final(req, Err(message.clone()));
                }
                ChargeReply::Fail(ApiError::coded(http_status, &code, message))
            }
            ForcedOutcome::Unknown { settles } => {
                self.record_unknown(req, settles);
                ChargeReply::Fail(ApiError::unknown_result())
            }
            ForcedOutcome::GatewayTimeoutAfterCommit => {
                self.commit_as_card(req, behaviour);
                ChargeReply::GatewayTimeout
            }
            ForcedOutcome::GatewayTimeoutBeforeCommit => ChargeReply::GatewayTimeout,
            ForcedOutcome::DropConnectionAfterCommit => {
                self.commit_as_card(req, behaviour);
                ChargeReply::Drop
            }
            ForcedOutcome::DropConnectionBeforeCommit => ChargeReply::Drop,
        })
    }

    fn charge_as_card(&mut self, req: &ChargeRequest, behaviour: CardBehaviour) -> ChargeReply {
        match behaviour {
            CardBehaviour::UnknownThenCharged => {
                self.record_unknown(req, Settle::Charged);
                ChargeReply::Fail(ApiError::unknown_result())
            }
            CardBehaviour::UnknownThenFailed => {
                self.record_unknown(req, Settle::Failed);
                ChargeReply::Fail(ApiError::unknown_result())
            }
            CardBehaviour::GatewayTimeoutAfterCommit => {
                self.record_final(req, Ok(()));
                ChargeReply::GatewayTimeout
            }
            CardBehaviour::DropAfterCommit => {
                self.record_final(req, Ok(()));
                ChargeReply::Drop
            }
            _ => self.commit_as_card(req, behaviour),
        }
    }

    /// Approves or declines as the card would; cards without a plain approve/decline answer
    /// are approved.
    fn commit_as_card(&mut self, req: &ChargeRequest, behaviour: CardBehaviour) -> ChargeReply {
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
                ChargeReply::Fail(ApiError::coded(400, code, message))
            }
            None => {
                let (number, auth_code) = self.record_final(req, Ok(()));
                ChargeReply::Approved {
                    number,
                    auth_code: auth_code.unwrap_or_default(),
                }
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
                auth_code: Some(ids::auth_code()),
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
            tx.created_at + crate::clock::to_chrono(ms(self.knobs.settle_delay_ms)),
            settles,
        ));
        self.transactions.push(tx);
    }
}
