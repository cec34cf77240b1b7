//! Flow 2: Oen's token webhook, already parsed ([`Notification::parse`]), matched against the
//! binding session it claims to be for; a matching token is encrypted and stored together with
//! the customer's subscription.

use chrono::{DateTime, Utc};
use thiserror::Error;

use super::{BindingDeps, CustomId, WEBHOOK_GRACE};
use crate::domain::{
    AuditEntry, BindingRef, BindingSession, Card, CardToken, CarriedPeriod, DomainEvent,
    PeriodState, Plan, PlanId, SessionState, Subscription, SubscriptionId, SubscriptionStatus,
};
use crate::oen::{BindingResult, Notification, TokenNotification};
use crate::outbox;
use crate::store::{Expect, Put, StoreError, StoreExt, Versioned};
use crate::vault::{VaultContext, VaultError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A new card is stored and the subscription is set up.
    Bound {
        reference: BindingRef,
        subscription: SubscriptionId,
    },
    /// This token was already bound for this session: nothing changed.
    Duplicate,
    /// The binding failed at Oen (declined, 3-D Secure abandoned, …); the session records why.
    Failed,
    /// A purpose we do not act on (acknowledged so Oen stops retrying).
    Ignored(String),
}

#[derive(Debug, Error)]
pub enum WebhookError {
    /// 4xx: the webhook does not match a session we created (forged, replayed, foreign,
    /// expired or already consumed). The reason goes to the log, never to the caller.
    #[error("webhook refused: {0}")]
    Refused(String),
    /// 5xx: we failed; Oen should retry.
    #[error("webhook could not be processed: {0}")]
    Internal(String),
}

impl From<StoreError> for WebhookError {
    fn from(e: StoreError) -> Self {
        WebhookError::Internal(e.to_string())
    }
}

/// Why a matching token could not be stored; nothing was written.
#[derive(Debug, Error)]
enum BindError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the token could not be encrypted: {0}")]
    Vault(#[from] VaultError),
    /// The plan was removed from the catalog after the link was minted.
    #[error("plan {0} is no longer in the catalog")]
    PlanMissing(PlanId),
}

fn refused(why: &str) -> WebhookError {
    WebhookError::Refused(why.to_owned())
}

/// Flow 2: Oen's webhook.
pub async fn accept_webhook(
    deps: &BindingDeps,
    notification: Notification,
) -> Result<WebhookOutcome, WebhookError> {
    let token = match notification {
        Notification::Token(t) => t,
        Notification::Other { purpose } => return Ok(WebhookOutcome::Ignored(purpose)),
    };
    if token.merchant_id.as_deref() != Some(deps.merchant.as_str()) {
        return Err(refused("merchantId is not ours"));
    }
    let custom: CustomId = token
        .custom_id
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .ok_or_else(|| refused("customId is missing or not one of ours"))?;
    // A conflict means a concurrent delivery wrote first: read again and decide again.
    for _ in 0..3 {
        let session = matching_session(deps, &token, &custom).await?;
        match decide(deps, session, &token.result).await {
            Err(BindError::Store(StoreError::Conflict(_))) => continue,
            Err(e) => return Err(WebhookError::Internal(e.to_string())),
            Ok(outcome) => return outcome,
        }
    }
    Err(WebhookError::Internal(
        "the session kept changing under concurrent deliveries".into(),
    ))
}

/// The session the webhook names, if it is the very hosted page, customer and plan we opened.
async fn matching_session(
    deps: &BindingDeps,
    token: &TokenNotification,
    custom: &CustomId,
) -> Result<Versioned<BindingSession>, WebhookError> {
    let session = deps
        .store
        .session(&custom.reference)
        .await?
        .ok_or_else(|| refused("no such binding session"))?;
    let s = &session.value;
    if s.checkout_id.as_ref() != Some(&token.checkout) {
        return Err(refused("id does not match the session's hosted page"));
    }
    if s.customer != custom.customer || s.plan != custom.plan {
        return Err(refused("customId does not match the session"));
    }
    Ok(session)
}

/// What the webhook does to a matching session. The outer `Result` is ours to retry (a
/// conflict) or fail on; the inner one is the answer to Oen.
async fn decide(
    deps: &BindingDeps,
    session: Versioned<BindingSession>,
    result: &BindingResult,
) -> Result<Result<WebhookOutcome, WebhookError>, BindError> {
    let now = deps.clock.now();
    let s = &session.value;
    match (&s.state, result) {
        // The first delivery recorded card.bound in the outbox with the card: nothing to write
        // or publish again.
        (
            SessionState::Bound {
                token_fingerprint, ..
            },
            BindingResult::Bound { token, .. },
        ) if *token_fingerprint == token.fingerprint() => Ok(Ok(WebhookOutcome::Duplicate)),
        (SessionState::Bound { .. }, BindingResult::Bound { .. }) => {
            Ok(Err(refused("session already bound to another token")))
        }
        // A failure that arrives after the success (reordered, or a later failed retry on the
        // same page) changes nothing.
        (SessionState::Bound { .. }, BindingResult::Failed { .. }) => {
            Ok(Ok(WebhookOutcome::Duplicate))
        }
        _ if now > s.expires_at + WEBHOOK_GRACE => Ok(Err(refused("session expired"))),
        (SessionState::Failed { .. }, BindingResult::Failed { .. }) => {
            Ok(Ok(WebhookOutcome::Duplicate))
        }
        (_, BindingResult::Failed { message }) => {
            let mut failed = s.clone();
            let reason = message.as_deref().unwrap_or("unknown");
            failed.state = SessionState::Failed {
                reason: reason.chars().take(120).collect(),
                failed_at: now,
            };
            let put = Put::new(failed, Expect::Version(session.version));
            deps.store.commit(vec![put]).await?;
            Ok(Ok(WebhookOutcome::Failed))
        }
        // Pending, or failed earlier on the same page and now succeeded.
        (_, BindingResult::Bound { token, last4 }) => {
            bind(deps, &session, token, last4.clone(), now)
                .await
                .map(Ok)
        }
    }
}

/// Stores the encrypted token, marks the session bound and sets up the subscription, in one
/// transaction.
async fn bind(
    deps: &BindingDeps,
    session: &Versioned<BindingSession>,
    token: &CardToken,
    last4: Option<String>,
    now: DateTime<Utc>,
) -> Result<WebhookOutcome, BindError> {
    let s = &session.value;
    // The catalog's terms, else those the session started with: a plan retired while the
    // customer was on Oen's page still gets the token Oen delivered.
    let plan = deps
        .plans
        .get_or(&s.plan, s.terms.as_ref())
        .ok_or_else(|| BindError::PlanMissing(s.plan.clone()))?;
    let ctx = VaultContext {
        merchant: deps.merchant.clone(),
        customer: s.customer.clone(),
        binding: s.reference.clone(),
    };
    let ciphertext = deps.vault.encrypt(token, &ctx).await?;
    let fingerprint = token.fingerprint();
    let card = Card {
        customer: s.customer.clone(),
        binding: s.reference.clone(),
        ciphertext,
        token_fingerprint: fingerprint.clone(),
        last4: last4.clone(),
        created_at: now,
        payer: s.payer.clone(),
    };
    let mut bound = s.clone();
    bound.state = SessionState::Bound {
        token_fingerprint: fingerprint,
        last4: last4.clone(),
        bound_at: now,
    };
    let existing = deps.store.subscription(&s.customer, &s.plan).await?;
    let carried = carried_over(deps, existing.as_ref(), plan, now).await?;
    let (mut subscription, expect) = subscription_for(s, existing, plan, now);
    if let Some((carried, look_again_at)) = carried {
        // Money may have moved for the old subscription: settle that first.
        subscription.carried = Some(carried);
        subscription.next_action_at = Some(look_again_at.max(now));
    }
    let subscription_id = subscription.id.clone();
    let audit = AuditEntry::new(
        s.customer.clone(),
        now,
        "webhook",
        "card.bound",
        Some(s.reference.clone()),
        format!(
            "plan {}, subscription {}, last4 {}",
            s.plan,
            subscription_id,
            last4.as_deref().unwrap_or("?")
        ),
    );
    let events = DomainEvent::card_bound(&bound).into_iter().collect();
    let puts = vec![
        Put::new(card, Expect::Absent),
        Put::new(bound, Expect::Version(session.version)),
        Put::new(subscription, expect),
        Put::new(audit, Expect::Absent),
    ];
    let recorded = outbox::commit(deps, puts, events).await?;
    tracing::info!(binding = %s.reference, customer = %s.customer, subscription = %subscription_id, "card bound");
    outbox::ship(deps, recorded, "webhook").await;
    Ok(WebhookOutcome::Bound {
        reference: s.reference.clone(),
        subscription: subscription_id,
    })
}

/// What a canceled subscription leaves uncertain for the one that replaces it: what it carries
/// itself, or its own current period if that charge's outcome is unknown.
async fn carried_over(
    deps: &BindingDeps,
    existing: Option<&Versioned<Subscription>>,
    plan: &Plan,
    now: DateTime<Utc>,
) -> Result<Option<(CarriedPeriod, DateTime<Utc>)>, StoreError> {
    match existing {
        Some(old) if old.value.status == SubscriptionStatus::Canceled => match &old.value.carried {
            Some(c) => Ok(Some((c.clone(), old.value.next_action_at.unwrap_or(now)))),
            None => uncertain_period_of(deps, &old.value, plan).await,
        },
        _ => Ok(None),
    }
}

/// The current period of a canceled subscription, if its charge outcome is still unknown, and
/// when it is next due for a look.
async fn uncertain_period_of(
    deps: &BindingDeps,
    old: &Subscription,
    plan: &Plan,
) -> Result<Option<(CarriedPeriod, DateTime<Utc>)>, StoreError> {
    let Some(p) = deps.store.period(&old.id, old.period).await? else {
        return Ok(None);
    };
    let look_again_at = match p.value.state {
        PeriodState::Unknown { reconcile_at, .. } => reconcile_at,
        PeriodState::Charging { lease_until, .. } => lease_until,
        PeriodState::Open | PeriodState::Paid { .. } | PeriodState::Declined { .. } => {
            return Ok(None)
        }
    };
    let terms = old.terms.as_ref().unwrap_or(plan);
    let carried = CarriedPeriod {
        subscription: old.id.clone(),
        period: old.period,
        paid_until: terms.interval.due_date(old.anchor, old.period + 1),
    };
    Ok(Some((carried, look_again_at)))
}

/// The subscription a new card of `s` leads to, and the condition to write it under.
fn subscription_for(
    s: &BindingSession,
    existing: Option<Versioned<Subscription>>,
    plan: &Plan,
    now: DateTime<Utc>,
) -> (Subscription, Expect) {
    let Some(current) = existing else {
        return (new_subscription(s, plan, now), Expect::Absent);
    };
    // The new link's e-mail wins; what it leaves out is kept, even across a cancel.
    let payer = current.value.payer.updated_by(&s.payer);
    let mut sub = current.value;
    match sub.status {
        // A canceled subscription starts over: new id, new order ids, new schedule.
        SubscriptionStatus::Canceled => sub = new_subscription(s, plan, now),
        // The new card pays what is owed, now.
        SubscriptionStatus::RequiresPaymentMethod | SubscriptionStatus::PastDue => {
            sub.status = SubscriptionStatus::Active;
            sub.card = s.reference.clone();
            sub.dunning_attempts = 0;
            sub.next_action_at = Some(now);
            // The customer's own card pays it now: nothing to announce.
            sub.renewal_noticed = Some(sub.period);
            sub.updated_at = now;
        }
        // A card change: the schedule stays.
        SubscriptionStatus::Active => {
            sub.card = s.reference.clone();
            sub.updated_at = now;
        }
    }
    sub.terms = Some(plan.clone());
    sub.payer = payer;
    (sub, Expect::Version(current.version))
}

fn new_subscription(s: &BindingSession, plan: &Plan, now: DateTime<Utc>) -> Subscription {
    let first_due = plan.first_due(now);
    Subscription {
        id: SubscriptionId::generate(),
        customer: s.customer.clone(),
        plan: s.plan.clone(),
        status: SubscriptionStatus::Active,
        card: s.reference.clone(),
        anchor: first_due,
        period: 0,
        next_action_at: Some(first_due),
        dunning_attempts: 0,
        cancel_at_period_end: false,
        created_at: now,
        updated_at: now,
        terms: Some(plan.clone()),
        carried: None,
        // A first charge due at once is no renewal; one after a trial is announced.
        renewal_noticed: (first_due <= now).then_some(0),
        payer: s.payer.clone(),
    }
}
