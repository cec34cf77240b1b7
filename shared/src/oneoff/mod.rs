//! One-off charges of a customer's saved card with an `Idempotency-Key` (`POST /v1/charges`,
//! `GET /v1/charges/{id}`): the guarantee Oen lacks, built on the same protocol as subscription
//! periods.
//!
//! # The key
//! A merchant's key (see [`IdempotencyKey`]) stands for one request for 24 h
//! ([`KEY_LIFETIME`]):
//! - the first **final** reply is stored with the key and replayed, same status and body:
//!   `201` paid, `202` outcome unknown (body has `statusUrl`), `402` declined;
//! - the same key with other parameters (compared as a canonical hash,
//!   [`OneOffRequest::canonical_hash`]) is `422 idempotency_key_reused`, and charges nothing;
//! - while a request with the key holds the charge's lease, another gets
//!   `409 idempotency_key_in_use`;
//! - errors are never stored: `503` (Oen or our store unreachable, nothing charged) and `502`
//!   (Oen refused our configuration: `A0001`, `V0001`, 403; or the card does not decrypt)
//!   leave the key free, so a retry with it can succeed once the cause is gone;
//! - after 24 h the key may name a new request. The store forgets expired keys only
//!   eventually (DynamoDB TTL lags, moto never expires), so expiry is checked here.
//!
//! # One charge, one order
//! A key creates one [`OneOffCharge`] with its own stable order id, `C{charge id}` (21
//! characters; a subscription period's is 23), reused by every attempt. The charge and the key
//! are created in one commit, the charge holding a lease (a conditional write, like a period's).
//! Whoever holds the lease may charge; whenever an earlier attempt may have reached Oen, it
//! first reads `GET /order/{orderId}/transactions`: paid settles, in flight (or a listing too
//! young to trust) stays unknown, all failed after an unknown attempt is its decline, and only
//! "nothing" allows a new attempt. `C026`, 504, timeouts and dropped connections after sending
//! make the charge unknown: the reply is `202` and the charge enters the due index.
//!
//! # A request that died
//! A running charge is in the due index at the end of its lease. If its holder dies:
//! - a later request with the key finds the lease ended and takes it over; it asks Oen about
//!   the order first and answers from that (paid, declined, unknown), charging only when the
//!   order has nothing at Oen and the listing is old enough to trust;
//! - otherwise the charger's janitor takes it over ([`reconcile`]) the same way.
//!
//! # The janitor
//! The charger's scheduled planning reads the charges' due index with the subscriptions' (one
//! more query per shard, `charging::plan`) and queues each due charge; [`reconcile`] claims it
//! and asks Oen, with the charging policy's back-off for what stays unknown. It never charges:
//! a one-off charge is made only when the merchant asked for it and is waiting for the answer.
//! Reconciled to "nothing was charged" the charge is released (`failed`, code `not_charged`):
//! a request with the key whose reply was not given yet charges it then; a key that already
//! replied `202` keeps replaying it, and the status URL tells the rest.
//!
//! Every state change commits with its events (`charge.succeeded`, `charge.failed`,
//! `charge.unknown`) through the outbox.

mod attempt;
mod reply;
mod request;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration, Utc};

use crate::binding::BindingDeps;
use crate::charging::{ChargePolicy, WorkContext, WorkError, WorkOutcome};
use crate::domain::{
    ChargeId, ChargeState, IdempotencyKey, IdempotencyRecord, OneOffCharge, OrderId,
};
use crate::store::{Expect, Put, StoreError, StoreExt, Versioned};

use attempt::{Held, Outcome};
pub use reply::{status_url, ChargeFailure, ChargeStatus, ChargeView, OneOffError, Reply};
pub use request::{OneOffRequest, MAX_LINES};

/// How long a key stands for its first request.
pub const KEY_LIFETIME: Duration = Duration::hours(24);

/// What one-off charges need: the shared adapters, the charging policy (leases, send deadline,
/// reconciliation back-off) and the function's name for metrics.
#[derive(Clone, Copy)]
pub struct OneOffDeps<'a> {
    pub adapters: &'a BindingDeps,
    pub policy: &'a ChargePolicy,
    /// Who counts metrics (`merchant-api`, `charger`, `dev-stack`).
    pub function: &'static str,
}

impl<'a> OneOffDeps<'a> {
    pub fn new(
        adapters: &'a BindingDeps,
        policy: &'a ChargePolicy,
        function: &'static str,
    ) -> Self {
        Self {
            adapters,
            policy,
            function,
        }
    }
}

impl std::ops::Deref for OneOffDeps<'_> {
    type Target = BindingDeps;

    fn deref(&self) -> &BindingDeps {
        self.adapters
    }
}

/// `POST /v1/charges`: charges `request.customer`'s newest saved card once for the key
/// `key` (the raw `Idempotency-Key` header). `ctx.owner` names the lease holder (the request
/// id); `ctx.deadline`, when the invocation will be stopped.
///
/// `Ok` is a reply the key keeps (or replays): 201, 202 or 402. `Err` is never stored:
/// 400, 404, 409, 422, 502, 503 or 500 ([`OneOffError::status`]).
pub async fn create(
    deps: &OneOffDeps<'_>,
    key: Option<&str>,
    request: &OneOffRequest,
    ctx: &WorkContext,
) -> Result<Reply, OneOffError> {
    let key = IdempotencyKey::parse(key.ok_or(OneOffError::MissingKey)?)?;
    let hash = request.canonical_hash();
    // A lost race re-reads the key; three rounds are plenty (each loser then sees the winner).
    for _ in 0..3 {
        let now = deps.clock.now();
        let found = deps.store.idempotency(&deps.merchant, &key).await?;
        match found {
            Some(record) if record.value.is_live(now) => {
                if let Some(answer) = existing(deps, record, &hash, ctx).await? {
                    return Ok(answer);
                }
            }
            expired_or_none => {
                let reused = expired_or_none.map(|r| r.version);
                if let Some(held) = begin(deps, &key, &hash, request, reused, ctx, now).await? {
                    return run(held).await;
                }
            }
        }
    }
    Err(OneOffError::InProgress)
}

/// `GET /v1/charges/{id}`: the charge as it stands.
pub async fn get(deps: &OneOffDeps<'_>, id: &str) -> Result<ChargeView, OneOffError> {
    let id = ChargeId::parse(id).map_err(|_| OneOffError::NotFound)?;
    match deps.store.one_off_charge(&id).await? {
        Some(c) if c.value.merchant == deps.merchant => Ok(ChargeView::of(&c.value)),
        _ => Err(OneOffError::NotFound),
    }
}

/// The key is live: replay, refuse, or finish what its request started. `None` after a lost
/// race (look again).
async fn existing(
    deps: &OneOffDeps<'_>,
    record: Versioned<IdempotencyRecord>,
    hash: &str,
    ctx: &WorkContext,
) -> Result<Option<Reply>, OneOffError> {
    if record.value.request_hash != hash {
        return Err(OneOffError::KeyReused);
    }
    if let Some(stored) = &record.value.reply {
        return Ok(Some(Reply::replay(stored)));
    }
    let Some(charge) = deps.store.one_off_charge(&record.value.charge).await? else {
        tracing::error!(charge = %record.value.charge, "an idempotency key names a charge that is not stored");
        return Err(OneOffError::Internal);
    };
    // Settled (or found unknown) by the janitor: this is the key's first reply.
    if let Some(reply) = Reply::of(&charge.value) {
        return keep_reply(deps, record, reply).await;
    }
    let now = deps.clock.now();
    if let ChargeState::Charging { lease_until, .. } = &charge.value.state {
        if *lease_until > now {
            return Err(OneOffError::InProgress);
        }
    }
    // Its holder vanished, or nothing was charged and the key was released: take it over.
    match claim(deps, charge, Some(record), ctx, now).await? {
        Some(held) => run(held).await.map(Some),
        None => Err(OneOffError::InProgress),
    }
}

/// Stores `reply` as the key's first reply; `None` when another request stored one first.
async fn keep_reply(
    deps: &OneOffDeps<'_>,
    record: Versioned<IdempotencyRecord>,
    reply: Reply,
) -> Result<Option<Reply>, OneOffError> {
    let mut with_reply = record.value;
    with_reply.reply = Some(reply.to_stored());
    let put = Put::new(with_reply, Expect::Version(record.version));
    match deps.store.commit(vec![put]).await {
        Ok(()) => Ok(Some(reply)),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A new key (or one whose 24 h are over, at version `reused`): the customer's newest card,
/// then the charge and the key in one commit, the charge leased to us. `None` when another
/// request with the key committed first.
async fn begin<'a>(
    deps: &OneOffDeps<'a>,
    key: &IdempotencyKey,
    hash: &str,
    request: &OneOffRequest,
    reused: Option<u64>,
    ctx: &'a WorkContext,
    now: DateTime<Utc>,
) -> Result<Option<Held<'a>>, OneOffError> {
    let cards = deps.store.cards_of(&request.customer).await?;
    let Some(card) = cards.into_iter().max_by_key(|c| c.value.created_at) else {
        return Err(OneOffError::NoSavedCard(request.customer.to_string()));
    };
    let id = ChargeId::generate();
    let lease_until = deps.policy.lease_until(now);
    let charge = OneOffCharge {
        order_id: OrderId::for_one_off(&id),
        id: id.clone(),
        merchant: deps.merchant.clone(),
        customer: request.customer.clone(),
        card: card.value.binding.clone(),
        last4: card.value.last4.clone(),
        amount: request.amount,
        description: request.description.clone(),
        reference: request.reference.clone(),
        product_details: request.product_details.clone(),
        state: ChargeState::Charging {
            lease_owner: ctx.owner.clone(),
            lease_until,
        },
        attempts: 0,
        last_error: None,
        idempotency_key: key.clone(),
        created_at: now,
        updated_at: now,
        // Should this request die, the janitor looks at the charge when the lease ends.
        next_action_at: Some(lease_until),
        refunded: None,
    };
    let record = IdempotencyRecord {
        merchant: deps.merchant.clone(),
        key: key.clone(),
        request_hash: hash.to_owned(),
        charge: id,
        created_at: now,
        expires_at: now + KEY_LIFETIME,
        reply: None,
    };
    let expect = reused.map_or(Expect::Absent, Expect::Version);
    let key_version = reused.map_or(1, |v| v + 1);
    let puts = vec![
        Put::new(record.clone(), expect),
        Put::new(charge.clone(), Expect::Absent),
    ];
    match deps.store.commit(puts).await {
        Ok(()) => Ok(Some(Held {
            deps: *deps,
            ctx,
            charge,
            version: 1,
            prior: None,
            key: Some(Versioned {
                value: record,
                version: key_version,
            }),
        })),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Takes the lease of an existing charge (compare-and-set on the version read). `None` when
/// someone else took it first.
async fn claim<'a>(
    deps: &OneOffDeps<'a>,
    current: Versioned<OneOffCharge>,
    key: Option<Versioned<IdempotencyRecord>>,
    ctx: &'a WorkContext,
    now: DateTime<Utc>,
) -> Result<Option<Held<'a>>, StoreError> {
    let lease_until = deps.policy.lease_until(now);
    let mut claimed = current.value.clone();
    claimed.state = ChargeState::Charging {
        lease_owner: ctx.owner.clone(),
        lease_until,
    };
    claimed.updated_at = now;
    claimed.next_action_at = Some(lease_until);
    let put = Put::new(claimed.clone(), Expect::Version(current.version));
    match deps.store.commit(vec![put]).await {
        Ok(()) => Ok(Some(Held {
            deps: *deps,
            ctx,
            charge: claimed,
            version: current.version + 1,
            prior: Some(current.value.state),
            key,
        })),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A request's attempt: ask Oen first when this charge was claimed before, then charge if the
/// protocol allows, and answer from what was written.
async fn run(held: Held<'_>) -> Result<Reply, OneOffError> {
    let asked = match held.prior {
        Some(_) => held.ask_oen_first(true).await,
        None => None,
    };
    let (outcome, called) = match asked {
        Some(outcome) => (outcome, false),
        None => held.charge_card().await,
    };
    let claimed = held.charge.clone();
    match held.write(&outcome, called).await {
        Ok(written) => match (written.reply, &outcome) {
            (Some(reply), _) => Ok(reply),
            (None, Outcome::Config(_)) => Err(OneOffError::GatewayMisconfigured),
            (None, _) => Err(OneOffError::GatewayUnavailable),
        },
        // Money may have moved and we could not write it down: pending, reconciled when the
        // lease ends. Not stored, so a later request with the key gets the settled outcome.
        Err(_) if called || !matches!(outcome, Outcome::NotSent(_) | Outcome::Config(_)) => {
            Ok(Reply::unrecorded(&claimed))
        }
        Err(_) => Err(OneOffError::Unavailable),
    }
}

/// The charger's janitor: reconciles one due charge (a vanished holder's, or an unknown
/// outcome's) by asking Oen. Never charges.
pub async fn reconcile(
    deps: &OneOffDeps<'_>,
    id: &ChargeId,
    ctx: &WorkContext,
) -> Result<WorkOutcome, WorkError> {
    let now = deps.clock.now();
    let Some(current) = deps.store.one_off_charge(id).await? else {
        return Ok(WorkOutcome::Skipped("no such charge"));
    };
    match &current.value.state {
        ChargeState::Charging { lease_until, .. } if *lease_until > now => {
            return Ok(WorkOutcome::Skipped(
                "another holder has the charge's lease",
            ))
        }
        ChargeState::Unknown { reconcile_at, .. } if *reconcile_at > now => {
            return Ok(WorkOutcome::Skipped("unknown charge not yet due"))
        }
        ChargeState::Charging { .. } | ChargeState::Unknown { .. } => {}
        _ => return Ok(WorkOutcome::Skipped("charge already settled")),
    }
    if !deps.policy.has_time_for_attempt(ctx.deadline, now) {
        return Err(WorkError::Retry(
            "too little time left before the deadline".into(),
        ));
    }
    let Some(held) = claim(deps, current, None, ctx, now).await? else {
        return Ok(WorkOutcome::Skipped(
            "another holder claimed the charge first",
        ));
    };
    // With `may_charge` false the answer always settles something.
    let outcome = held
        .ask_oen_first(false)
        .await
        .unwrap_or(Outcome::NothingCharged);
    let written = held.write(&outcome, false).await?;
    Ok(match written.charge.state {
        ChargeState::Paid { transaction, .. } => WorkOutcome::Paid {
            transaction,
            charged: false,
        },
        ChargeState::Unknown { reconcile_at, .. } => WorkOutcome::Unknown { reconcile_at },
        ChargeState::Declined { code, .. } => WorkOutcome::Declined { code },
        ChargeState::NotCharged { .. } | ChargeState::Charging { .. } => WorkOutcome::Released,
    })
}
