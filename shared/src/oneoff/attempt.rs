//! One attempt on a one-off charge, by whoever holds its lease (a request with the charge's
//! key, or the charger's janitor): ask Oen about the order when an earlier attempt may have
//! reached it, charge only when the protocol allows, and write the outcome, the key's reply
//! and the events in one commit.

use chrono::{DateTime, Utc};

use super::{OneOffDeps, Reply};
use crate::charging::WorkContext;
use crate::domain::{ChargeState, DomainEvent, IdempotencyRecord, OneOffCharge, TransactionId};
use crate::oen::{ChargeRequest, OenError, OrderState};
use crate::outbox;
use crate::store::{Expect, Put, StoreError, StoreExt, Versioned};
use crate::vault::{VaultContext, VaultError};

/// How an attempt ended, before it is written down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Paid {
        transaction: TransactionId,
        auth_code: Option<String>,
        /// Paid by our own charge call now, rather than found paid by asking Oen.
        charged: bool,
    },
    Declined {
        code: String,
        hard: bool,
    },
    /// The request may have reached Oen and its result is not known.
    Unknown(String),
    /// Nothing reached Oen; a retry may send.
    NotSent(String),
    /// Oen refused our configuration, or the card cannot be decrypted: nothing was charged.
    Config(String),
    /// Reconciled (by the janitor, which never charges) to "nothing was charged".
    NothingCharged,
}

/// A charge whose lease we hold, and what is needed to write its outcome.
pub(super) struct Held<'a> {
    pub deps: OneOffDeps<'a>,
    pub ctx: &'a WorkContext,
    /// The charge as claimed (state `Charging`, our lease).
    pub charge: OneOffCharge,
    pub version: u64,
    /// Its state before the claim; `None` for a charge created by this claim.
    pub prior: Option<ChargeState>,
    /// The key whose first reply this attempt gives (none for the janitor).
    pub key: Option<Versioned<IdempotencyRecord>>,
}

/// What [`Held::write`] left behind.
pub(super) struct Written {
    pub charge: OneOffCharge,
    /// The key's reply, when the outcome is final (or unknown) and a key was held.
    pub reply: Option<Reply>,
}

impl Held<'_> {
    fn lease_until(&self) -> DateTime<Utc> {
        match self.charge.state {
            ChargeState::Charging { lease_until, .. } => lease_until,
            _ => self.deps.clock.now(),
        }
    }

    /// Asks Oen about the order. `Some` when that settles the attempt; `None` when nothing was
    /// charged and `may_charge` allows a new attempt.
    pub async fn ask_oen_first(&self, may_charge: bool) -> Option<Outcome> {
        let order = &self.charge.order_id;
        let txs = match self.deps.oen.order_transactions(order).await {
            Ok(txs) => txs,
            // Nothing was in flight before (a released charge): nothing is charged now either.
            Err(e) if may_have_sent_until(self.prior.as_ref()).is_none() => {
                return Some(Outcome::NotSent(format!("order query failed: {e}")))
            }
            Err(e) => return Some(Outcome::Unknown(format!("order query failed: {e}"))),
        };
        let now = self.deps.clock.now();
        let sent_until = may_have_sent_until(self.prior.as_ref());
        let too_young = sent_until.is_some_and(|sent| !self.deps.policy.listing_trusted(sent, now));
        match OrderState::of(&txs) {
            OrderState::Paid(tx) => {
                let paid = txs.iter().filter(|t| t.status.is_paid()).count();
                if paid > 1 || tx.amount != i64::from(self.charge.amount.ntd()) {
                    tracing::error!(order = %order, paid, amount = tx.amount, "Oen took money for this one-off charge that it did not ask for: refund by hand");
                    crate::metrics::count(self.deps.function, "DuplicateCharge");
                }
                Some(Outcome::Paid {
                    transaction: tx.id,
                    auth_code: tx.auth_code,
                    charged: false,
                })
            }
            OrderState::InFlight => Some(Outcome::Unknown(
                "a transaction of this order is still in flight".into(),
            )),
            // A request may have left moments ago and Oen's listing can lag it.
            OrderState::NoAttempt | OrderState::AllFailed if too_young => Some(Outcome::Unknown(
                "Oen's order listing is too young to rule out the last request".into(),
            )),
            // The attempt whose outcome we did not know was declined after all.
            OrderState::AllFailed if sent_until.is_some() => {
                let code = txs.iter().rev().find_map(|t| t.reason.clone());
                Some(Outcome::Declined {
                    code: code.unwrap_or_else(|| "FAILED".into()),
                    hard: false,
                })
            }
            OrderState::NoAttempt | OrderState::AllFailed if !may_charge => {
                Some(Outcome::NothingCharged)
            }
            OrderState::NoAttempt | OrderState::AllFailed => None,
        }
    }

    /// Decrypts the card token (only now, right before the call) and charges the order; and
    /// whether Oen's charge endpoint was called.
    pub async fn charge_card(&self) -> (Outcome, bool) {
        let deps = &self.deps;
        let c = &self.charge;
        let card = match deps.store.card(&c.customer, &c.card).await {
            Ok(Some(card)) => card.value,
            Ok(None) => {
                tracing::error!(charge = %c.id, binding = %c.card, "one-off charge names a card that is not stored");
                return (Outcome::Config("card record missing".into()), false);
            }
            Err(e) => return (Outcome::NotSent(format!("card not read: {e}")), false),
        };
        let vault_ctx = VaultContext {
            merchant: deps.merchant.clone(),
            customer: c.customer.clone(),
            binding: card.binding.clone(),
        };
        let token = match deps.vault.decrypt(&card.ciphertext, &vault_ctx).await {
            Ok(t) => t,
            Err(e @ VaultError::ContextMismatch) => {
                tracing::error!(charge = %c.id, error = %e, "stored card token does not decrypt");
                crate::metrics::count(deps.function, "CardUndecryptable");
                return (Outcome::Config(e.to_string()), false);
            }
            Err(e) => return (Outcome::NotSent(format!("token not decrypted: {e}")), false),
        };
        // Oen's processing must end inside our lease: nothing leaves after the send deadline.
        let send_by = deps
            .policy
            .send_deadline(self.lease_until(), self.ctx.deadline);
        let Ok(send_within) = (send_by - deps.clock.now()).to_std() else {
            drop(token);
            let reason = "no time left to send before the lease's send deadline".to_owned();
            return (Outcome::NotSent(reason), false);
        };
        let request = ChargeRequest {
            token,
            order_id: c.order_id.clone(),
            amount: c.amount,
            product_details: c.product_details.clone(),
            user_id: Some(c.customer.to_string()),
            payer: card.payer.clone(),
            note: None,
            send_within: Some(send_within),
        };
        let result = deps.oen.charge(&request).await;
        drop(request);
        let outcome = match result {
            Ok(receipt) => Outcome::Paid {
                transaction: receipt.transaction_number,
                auth_code: receipt.auth_code,
                charged: true,
            },
            Err(OenError::SoftDecline { code, .. }) => Outcome::Declined { code, hard: false },
            Err(OenError::HardDecline { code, .. }) => Outcome::Declined { code, hard: true },
            Err(OenError::NotSent(reason)) => Outcome::NotSent(reason),
            Err(e @ OenError::Config { .. }) => Outcome::Config(e.to_string()),
            Err(e) => Outcome::Unknown(e.to_string()),
        };
        (outcome, true)
    }

    /// Writes the outcome: the charge's next state (CAS on our claim), the key's first reply
    /// when there is one, and the events, in one commit; then ships the events. `Err` when
    /// nothing was written (the lease was lost, or the store failed): the charge stays claimed
    /// and is reconciled when the lease ends.
    pub async fn write(self, outcome: &Outcome, called: bool) -> Result<Written, StoreError> {
        let now = self.deps.clock.now();
        let (charge, events) = next(&self, outcome, called, now);
        let reply = self.key.as_ref().and_then(|_| Reply::of(&charge));
        let mut puts = vec![Put::new(charge.clone(), Expect::Version(self.version))];
        if let (Some(key), Some(reply)) = (&self.key, &reply) {
            let mut record = key.value.clone();
            record.reply = Some(reply.to_stored());
            puts.push(Put::new(record, Expect::Version(key.version)));
        }
        match outbox::commit(self.deps.adapters, puts, events).await {
            Ok(recorded) => {
                log(&charge, outcome, &self.ctx.owner);
                outbox::ship(self.deps.adapters, recorded, self.deps.function).await;
                Ok(Written { charge, reply })
            }
            Err(e) => {
                tracing::error!(charge = %charge.id, order = %charge.order_id, error = %e, "one-off charge outcome not written; it is reconciled when the lease ends");
                Err(e)
            }
        }
    }
}

/// The last moment an earlier attempt may have sent a request, when its outcome is not known.
fn may_have_sent_until(prior: Option<&ChargeState>) -> Option<DateTime<Utc>> {
    match prior? {
        ChargeState::Charging { lease_until, .. } => Some(*lease_until),
        ChargeState::Unknown { since, .. } => Some(*since),
        _ => None,
    }
}

/// The charge after `outcome`, and the events that report it. Pure.
fn next(
    held: &Held<'_>,
    outcome: &Outcome,
    called: bool,
    now: DateTime<Utc>,
) -> (OneOffCharge, Vec<DomainEvent>) {
    let mut c = held.charge.clone();
    c.updated_at = now;
    if called && !matches!(outcome, Outcome::NotSent(_) | Outcome::Config(_)) {
        c.attempts += 1;
    }
    let policy = held.deps.policy;
    let mut events = Vec::new();
    match outcome {
        Outcome::Paid {
            transaction,
            auth_code,
            charged,
        } => {
            c.state = ChargeState::Paid {
                transaction: transaction.clone(),
                auth_code: auth_code.clone(),
                paid_at: now,
            };
            c.last_error = None;
            c.next_action_at = None;
            events.push(DomainEvent::charge_succeeded(
                &c,
                transaction,
                !charged,
                now,
            ));
        }
        Outcome::Declined { code, hard } => {
            c.state = ChargeState::Declined {
                code: code.clone(),
                hard: *hard,
                at: now,
            };
            c.last_error = Some(clipped(&format!("declined {code}")));
            c.next_action_at = None;
            events.push(DomainEvent::charge_failed(&c, code, *hard, now));
        }
        Outcome::Unknown(reason) => {
            // A failed reconciliation keeps the age of the unknown and backs off further; a
            // new call that ends unknown starts over.
            let (since, checks) = match &held.prior {
                Some(ChargeState::Unknown { since, checks, .. }) if !called => (*since, checks + 1),
                _ => (now, 0),
            };
            let reconcile_at = now + policy.reconcile_after(checks);
            if now - since > policy.unknown_alarm_after {
                tracing::error!(order = %c.order_id, since = %since, "one-off charge outcome still unknown: reconcile by hand with Oen");
                crate::metrics::count(held.deps.function, "UnknownTooOld");
            }
            c.state = ChargeState::Unknown {
                since,
                reconcile_at,
                checks,
            };
            c.last_error = Some(clipped(reason));
            c.next_action_at = Some(reconcile_at);
            if called {
                events.push(DomainEvent::charge_unknown(&c, reconcile_at, now));
            }
        }
        Outcome::NotSent(reason) | Outcome::Config(reason) => {
            if matches!(outcome, Outcome::Config(_)) {
                tracing::error!(charge = %c.id, error = %reason, "configuration error on a one-off charge: nothing charged");
                crate::metrics::count(held.deps.function, "ConfigError");
            }
            c.state = ChargeState::NotCharged {
                reason: clipped(reason),
                at: now,
            };
            c.last_error = Some(clipped(reason));
            c.next_action_at = None;
        }
        Outcome::NothingCharged => {
            let reason = "reconciled: nothing reached Oen";
            c.state = ChargeState::NotCharged {
                reason: reason.into(),
                at: now,
            };
            c.last_error = Some(reason.into());
            c.next_action_at = None;
            events.push(DomainEvent::charge_failed(&c, "not_charged", false, now));
        }
    }
    (c, events)
}

fn log(charge: &OneOffCharge, outcome: &Outcome, owner: &str) {
    match outcome {
        Outcome::Unknown(reason) => {
            tracing::warn!(charge = %charge.id, order = %charge.order_id, owner = %owner, reason = %reason, "one-off charge outcome unknown; will reconcile")
        }
        _ => {
            tracing::info!(charge = %charge.id, order = %charge.order_id, owner = %owner, state = ?charge.state, "one-off charge settled")
        }
    }
}

/// An error as kept on the charge: short enough for a record and a log line.
fn clipped(reason: &str) -> String {
    reason.chars().take(200).collect()
}
