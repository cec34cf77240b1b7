//! Flows 1–3: start a card binding, accept Oen's token webhook, report a binding's state.
//!
//! Oen's webhook is unsigned and has no event id, so it is trusted only as far as it matches a
//! binding session we created: its `id` must be the hosted page we asked for, its `customId`
//! must carry that session's reference, customer and plan, and the session must still be open
//! (or already bound to this very token, which makes a duplicate delivery harmless).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock::Clock;
use crate::domain::{
    BindingRef, CardToken, Catalog, CheckoutId, CustomerId, MerchantId, PlanId, SubscriptionId,
};
use crate::events::{DomainEvent, EventSink};
use crate::links::StartLink;
use crate::oen::{hosted_page_url, CheckoutRequest, OenError, OenGateway};
use crate::store::{
    AuditEntry, BindingSession, Card, Expect, Put, SessionState, Store, StoreError, StoreExt,
    Subscription, SubscriptionStatus,
};
use crate::vault::{TokenVault, VaultContext, VaultError};

/// Oen's hosted page lives 10 minutes from the `POST /checkout-token` call.
pub const SESSION_LIFETIME: Duration = Duration::minutes(10);

/// Webhooks for a session are still accepted this long after it expired: Oen's last delivery
/// attempt comes about 6 s after the first, and clocks drift.
pub const WEBHOOK_GRACE: Duration = Duration::minutes(2);

/// What the binding flows need.
#[derive(Clone)]
pub struct BindingDeps {
    pub store: Arc<dyn Store>,
    pub vault: Arc<dyn TokenVault>,
    pub oen: Arc<dyn OenGateway>,
    pub events: Arc<dyn EventSink>,
    pub clock: Arc<dyn Clock>,
    pub plans: Catalog,
    pub merchant: MerchantId,
}

/// The `customId` we give Oen and expect back: compact JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomId {
    #[serde(rename = "r")]
    pub reference: BindingRef,
    #[serde(rename = "c")]
    pub customer: CustomerId,
    #[serde(rename = "p")]
    pub plan: PlanId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub reference: BindingRef,
    pub hosted_url: String,
}

#[derive(Debug, Error)]
pub enum StartError {
    /// 502: Oen refused or failed; the session is marked failed.
    #[error("Oen could not open the card page: {0}")]
    Oen(OenError),
    /// 5xx: our store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the browser goes after the hosted page, with `ref` added.
pub fn with_reference(url: &str, reference: &BindingRef) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}ref={reference}")
}

/// Flow 1: a session, then Oen's hosted page for it.
pub async fn start(
    deps: &BindingDeps,
    link: &StartLink,
    success_url: &str,
    failure_url: &str,
    hosted_base: &str,
) -> Result<Started, StartError> {
    let now = deps.clock.now();
    let reference = BindingRef::generate();
    let mut session = BindingSession {
        reference: reference.clone(),
        customer: link.customer.clone(),
        plan: link.plan.clone(),
        created_at: now,
        expires_at: now + SESSION_LIFETIME,
        checkout_id: None,
        state: SessionState::Pending,
    };
    deps.store
        .commit(vec![Put::new(session.clone(), Expect::Absent)])
        .await?;
    let custom_id = CustomId {
        reference: reference.clone(),
        customer: link.customer.clone(),
        plan: link.plan.clone(),
    };
    let request = CheckoutRequest {
        success_url: Some(with_reference(success_url, &reference)),
        failure_url: Some(with_reference(failure_url, &reference)),
        custom_id: Some(serde_json::to_string(&custom_id).unwrap_or_default()),
        payer_email: link.email.clone(),
        note: None,
    };
    match deps.oen.create_checkout(&request).await {
        Ok(checkout) => {
            session.checkout_id = Some(checkout.clone());
            deps.store
                .commit(vec![Put::new(session, Expect::Version(1))])
                .await?;
            Ok(Started {
                hosted_url: hosted_page_url(hosted_base, &deps.merchant, &checkout),
                reference,
            })
        }
        Err(e) => {
            session.state = SessionState::Failed {
                reason: format!("checkout-token: {}", e.code().unwrap_or("error")),
                failed_at: now,
            };
            if let Err(store) = deps
                .store
                .commit(vec![Put::new(session, Expect::Version(1))])
                .await
            {
                tracing::error!(error = %store, "could not mark the binding session failed");
            }
            Err(StartError::Oen(e))
        }
    }
}

/// The state the merchant's return page polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindingStatus {
    pub state: &'static str,
    pub last4: Option<String>,
    pub reason: Option<String>,
}

pub async fn status(
    store: &dyn Store,
    reference: &BindingRef,
    now: DateTime<Utc>,
) -> Result<Option<BindingStatus>, StoreError> {
    let Some(session) = store.session(reference).await? else {
        return Ok(None);
    };
    let s = session.value;
    Ok(Some(match s.state {
        SessionState::Bound { last4, .. } => BindingStatus {
            state: "bound",
            last4,
            reason: None,
        },
        SessionState::Failed { reason, .. } => BindingStatus {
            state: "failed",
            last4: None,
            reason: Some(reason),
        },
        SessionState::Pending if now > s.expires_at => BindingStatus {
            state: "expired",
            last4: None,
            reason: None,
        },
        SessionState::Pending => BindingStatus {
            state: "pending",
            last4: None,
            reason: None,
        },
    }))
}

/// Oen's webhook body. Unknown fields are ignored; `message` may be absent, `""` or null.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    pub purpose: String,
    #[serde(default)]
    pub merchant_id: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub transaction_id: Option<String>,
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub payment_info: Option<String>,
    #[serde(default)]
    pub custom_id: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl std::fmt::Debug for WebhookPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPayload")
            .field("purpose", &self.purpose)
            .field("id", &self.id)
            .field("success", &self.success)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

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

impl From<VaultError> for WebhookError {
    fn from(e: VaultError) -> Self {
        WebhookError::Internal(e.to_string())
    }
}

/// Flow 2: Oen's webhook.
pub async fn accept_webhook(
    deps: &BindingDeps,
    payload: WebhookPayload,
) -> Result<WebhookOutcome, WebhookError> {
    if payload.purpose != "token" {
        return Ok(WebhookOutcome::Ignored(payload.purpose));
    }
    let refused = |why: &str| WebhookError::Refused(why.to_owned());
    if payload.merchant_id.as_deref() != Some(deps.merchant.as_str()) {
        return Err(refused("merchantId is not ours"));
    }
    let custom: CustomId = payload
        .custom_id
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .ok_or_else(|| refused("customId is missing or not one of ours"))?;
    let checkout = payload
        .id
        .as_deref()
        .and_then(|id| CheckoutId::parse(id).ok())
        .ok_or_else(|| refused("id is missing or malformed"))?;
    let success = payload
        .success
        .ok_or_else(|| refused("success is missing"))?;
    let token = match (success, payload.token.as_deref()) {
        (true, Some(t)) => Some(CardToken::parse(t).map_err(|_| refused("token is malformed"))?),
        (true, None) => return Err(refused("success without a token")),
        (false, _) => None,
    };
    let last4 = payload
        .payment_info
        .as_deref()
        .map(|p| p.chars().filter(char::is_ascii_digit).collect::<String>())
        .filter(|d| d.len() >= 4)
        .map(|d| d[d.len() - 4..].to_owned());

    // A conflict means a concurrent delivery wrote first: read again and decide again.
    for _ in 0..3 {
        let now = deps.clock.now();
        let session = deps
            .store
            .session(&custom.reference)
            .await?
            .ok_or_else(|| refused("no such binding session"))?;
        let s = &session.value;
        if s.checkout_id.as_ref() != Some(&checkout) {
            return Err(refused("id does not match the session's hosted page"));
        }
        if s.customer != custom.customer || s.plan != custom.plan {
            return Err(refused("customId does not match the session"));
        }
        let result = match (&s.state, &token) {
            (
                SessionState::Bound {
                    token_fingerprint, ..
                },
                Some(t),
            ) if *token_fingerprint == t.fingerprint() => {
                publish_bound(deps, s).await?;
                return Ok(WebhookOutcome::Duplicate);
            }
            (SessionState::Bound { .. }, Some(_)) => {
                return Err(refused("session already bound to another token"))
            }
            // A failure that arrives after the success (reordered, or a later failed retry on the
            // same page) changes nothing.
            (SessionState::Bound { .. }, None) => return Ok(WebhookOutcome::Duplicate),
            _ if now > s.expires_at + WEBHOOK_GRACE => return Err(refused("session expired")),
            (SessionState::Failed { .. }, None) => return Ok(WebhookOutcome::Duplicate),
            (_, None) => {
                let mut failed = s.clone();
                let reason = payload
                    .message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "unknown".into());
                failed.state = SessionState::Failed {
                    reason: truncate(&reason, 120),
                    failed_at: now,
                };
                deps.store
                    .commit(vec![Put::new(failed, Expect::Version(session.version))])
                    .await
                    .map(|()| WebhookOutcome::Failed)
            }
            // Pending, or failed earlier on the same page and now succeeded.
            (_, Some(t)) => {
                bind(deps, &session.value, session.version, t, last4.clone(), now).await
            }
        };
        match result {
            Err(StoreError::Conflict(_)) => continue,
            other => return Ok(other?),
        }
    }
    Err(WebhookError::Internal(
        "the session kept changing under concurrent deliveries".into(),
    ))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

async fn bind(
    deps: &BindingDeps,
    s: &BindingSession,
    version: u64,
    token: &CardToken,
    last4: Option<String>,
    now: DateTime<Utc>,
) -> Result<WebhookOutcome, StoreError> {
    let plan = match deps.plans.get(&s.plan) {
        Some(p) => p,
        // The plan was removed from the catalog after the link was minted.
        None => {
            return Err(StoreError::Invalid(format!(
                "plan {} is no longer in the catalog",
                s.plan
            )))
        }
    };
    let ctx = VaultContext {
        merchant: deps.merchant.clone(),
        customer: s.customer.clone(),
        binding: s.reference.clone(),
    };
    let ciphertext = deps
        .vault
        .encrypt(token, &ctx)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let fingerprint = token.fingerprint();
    let card = Card {
        customer: s.customer.clone(),
        binding: s.reference.clone(),
        ciphertext: ciphertext.0,
        token_fingerprint: fingerprint.clone(),
        last4: last4.clone(),
        created_at: now,
    };
    let mut bound = s.clone();
    bound.state = SessionState::Bound {
        token_fingerprint: fingerprint,
        last4: last4.clone(),
        bound_at: now,
    };

    let existing = deps.store.subscription(&s.customer, &s.plan).await?;
    let (subscription, expect) = match existing {
        None => (
            new_subscription(s, plan.first_due(now), now),
            Expect::Absent,
        ),
        Some(current) => {
            let mut sub = current.value.clone();
            match sub.status {
                // A canceled subscription starts over: new id, new order ids, new schedule.
                SubscriptionStatus::Canceled => sub = new_subscription(s, plan.first_due(now), now),
                // The new card pays what is owed, now.
                SubscriptionStatus::RequiresPaymentMethod | SubscriptionStatus::PastDue => {
                    sub.status = SubscriptionStatus::Active;
                    sub.card = s.reference.clone();
                    sub.dunning_attempts = 0;
                    sub.next_action_at = Some(now);
                    sub.updated_at = now;
                }
                // A card change: the schedule stays.
                SubscriptionStatus::Active => {
                    sub.card = s.reference.clone();
                    sub.updated_at = now;
                }
            }
            (sub, Expect::Version(current.version))
        }
    };
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
    deps.store
        .commit(vec![
            Put::new(card, Expect::Absent),
            Put::new(bound.clone(), Expect::Version(version)),
            Put::new(subscription, expect),
            Put::new(audit, Expect::Absent),
        ])
        .await?;
    tracing::info!(binding = %s.reference, customer = %s.customer, subscription = %subscription_id, "card bound");
    if let Err(e) = publish_bound(deps, &bound).await {
        // The card is stored; a redelivery of this webhook publishes the event again.
        tracing::error!(error = %e, "card.bound event not published");
    }
    Ok(WebhookOutcome::Bound {
        reference: s.reference.clone(),
        subscription: subscription_id,
    })
}

fn new_subscription(
    s: &BindingSession,
    first_due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Subscription {
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
    }
}

async fn publish_bound(deps: &BindingDeps, s: &BindingSession) -> Result<(), WebhookError> {
    let SessionState::Bound {
        last4, bound_at, ..
    } = &s.state
    else {
        return Ok(());
    };
    let event = DomainEvent::new(
        "card.bound",
        s.reference.as_str(),
        *bound_at,
        s.customer.as_str(),
        serde_json::json!({"binding": s.reference, "plan": s.plan, "last4": last4}),
    );
    deps.events
        .publish(&[event])
        .await
        .map_err(|e| WebhookError::Internal(e.to_string()))
}
