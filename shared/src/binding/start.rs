//! Flows 1 and 3: open a binding session and Oen's hosted page for it; report where a binding
//! stands to the browser's return page.
//!
//! A start link opens one binding session. Its first use claims the link with a put-if-absent of
//! a [`LinkClaim`] naming a new session, then stores that session with a put-if-absent of its
//! own, and only the request that stored the session asks Oen for a page. Every later use finds
//! the claim and answers from the session it names: the same hosted page while that is open,
//! else [`StartError::LinkUsed`]. Requests racing with one link meet at those two conditional
//! writes, so Oen is asked for one page. Each write is a single item, so a request that fails
//! between them leaves a claim without a session, which the link's next use (within a page's
//! lifetime) picks up instead of being locked out.

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

use super::{BindingDeps, CustomId, SESSION_LIFETIME};
use crate::domain::{BindingRef, BindingSession, BindingState, CheckoutId, SessionState};
use crate::links::StartLink;
use crate::oen::{hosted_page_url, CheckoutRequest, OenError};
use crate::store::{Expect, LinkClaim, Put, Store, StoreError, StoreExt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub reference: BindingRef,
    pub hosted_url: String,
    /// The link had opened this session before: its page is shown again, Oen was not called.
    pub resumed: bool,
}

#[derive(Debug, Error)]
pub enum StartError {
    /// 409: the link already opened a session whose page cannot be shown again.
    #[error(transparent)]
    LinkUsed(#[from] UsedLink),
    /// 502: Oen refused or failed; the session is marked failed.
    #[error("Oen could not open the card page: {0}")]
    Oen(OenError),
    /// 5xx: our store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a link that opened a session before cannot show its page again. The words are for the
/// customer, who holds the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UsedLink {
    /// Another request with this link is asking Oen for the page right now.
    #[error(
        "this link is opening the card page in another window or tab; reload this page in a moment"
    )]
    Opening,
    #[error("this link was already used to bind a card")]
    Bound,
    #[error("the card binding started with this link failed; go back to the shop to start again")]
    Failed,
    #[error("the card page opened with this link has expired; go back to the shop to start again")]
    Expired,
}

/// Where the browser goes after the hosted page, with `ref` added.
pub fn with_reference(url: &str, reference: &BindingRef) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}ref={reference}")
}

/// Flow 1: claim the link, store a session for it, then ask Oen for its hosted page; or, for a
/// link claimed before, show the page of the session it opened.
pub async fn start(
    deps: &BindingDeps,
    link: &StartLink,
    success_url: &str,
    failure_url: &str,
    hosted_base: &str,
) -> Result<Started, StartError> {
    let now = deps.clock.now();
    let (claim, first_use) = claim_link(deps.store.as_ref(), link, now).await?;
    if !first_use {
        if let Some(opened) = deps.store.session(&claim.binding).await? {
            return shown_again(deps, &opened.value, now, hosted_base);
        }
        if now > claim.claimed_at + SESSION_LIFETIME {
            // Its first use had a page's lifetime to store the session: it is gone, or never came.
            return Err(UsedLink::Expired.into());
        }
        // The first use has not stored its session yet (or failed to): whoever stores it asks
        // Oen for the page.
    }
    let session = BindingSession {
        reference: claim.binding.clone(),
        customer: link.customer.clone(),
        plan: link.plan.clone(),
        created_at: now,
        expires_at: now + SESSION_LIFETIME,
        checkout_id: None,
        state: SessionState::Pending,
        terms: deps.plans.get(&link.plan).cloned(),
        payer: link.payer.clone(),
    };
    match deps
        .store
        .commit(vec![Put::new(session.clone(), Expect::Absent)])
        .await
    {
        Ok(()) => {
            let request = checkout_request(link, &claim.binding, success_url, failure_url);
            open_page(deps, session, &request, hosted_base).await
        }
        Err(StoreError::Conflict(detail)) => {
            let opened = deps
                .store
                .session(&claim.binding)
                .await?
                .ok_or(StoreError::Conflict(detail))?;
            shown_again(deps, &opened.value, now, hosted_base)
        }
        Err(e) => Err(e.into()),
    }
}

/// The link's claim, with whether this use made it (its first use) or found it.
async fn claim_link(
    store: &dyn Store,
    link: &StartLink,
    now: DateTime<Utc>,
) -> Result<(LinkClaim, bool), StoreError> {
    let claim = LinkClaim {
        link: link.id.clone(),
        binding: BindingRef::generate(),
        link_expires: link.expires,
        claimed_at: now,
    };
    match store
        .commit(vec![Put::new(claim.clone(), Expect::Absent)])
        .await
    {
        Ok(()) => Ok((claim, true)),
        Err(StoreError::Conflict(detail)) => match store.link_claim(&link.id).await? {
            Some(earlier) => Ok((earlier.value, false)),
            None => Err(StoreError::Conflict(detail)),
        },
        Err(e) => Err(e),
    }
}

/// What Oen is asked for: a page for the session `reference` of the link's customer and plan.
fn checkout_request(
    link: &StartLink,
    reference: &BindingRef,
    success_url: &str,
    failure_url: &str,
) -> CheckoutRequest {
    let custom_id = CustomId {
        reference: reference.clone(),
        customer: link.customer.clone(),
        plan: link.plan.clone(),
    };
    CheckoutRequest {
        success_url: Some(with_reference(success_url, reference)),
        failure_url: Some(with_reference(failure_url, reference)),
        custom_id: Some(serde_json::to_string(&custom_id).unwrap_or_default()),
        payer_email: link.payer.email.as_ref().map(|e| e.as_str().to_owned()),
        note: None,
    }
}

/// Asks Oen for the hosted page of a session just stored, and records its id (or the failure).
async fn open_page(
    deps: &BindingDeps,
    mut session: BindingSession,
    request: &CheckoutRequest,
    hosted_base: &str,
) -> Result<Started, StartError> {
    match deps.oen.create_checkout(request).await {
        Ok(checkout) => {
            let reference = session.reference.clone();
            session.checkout_id = Some(checkout.clone());
            deps.store
                .commit(vec![Put::new(session, Expect::Version(1))])
                .await?;
            Ok(Started {
                hosted_url: hosted_page_url(hosted_base, &deps.merchant, &checkout),
                reference,
                resumed: false,
            })
        }
        Err(e) => {
            session.state = SessionState::Failed {
                reason: format!("checkout-token: {}", e.code().unwrap_or("error")),
                failed_at: deps.clock.now(),
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

/// A replayed link: the page of the session it opened, while that is open.
fn shown_again(
    deps: &BindingDeps,
    opened: &BindingSession,
    now: DateTime<Utc>,
    hosted_base: &str,
) -> Result<Started, StartError> {
    let checkout = reopen(opened, now)?;
    Ok(Started {
        reference: opened.reference.clone(),
        hosted_url: hosted_page_url(hosted_base, &deps.merchant, checkout),
        resumed: true,
    })
}

/// The hosted page a replayed link may show again: its session's, while that is pending and
/// its page has not expired.
fn reopen(opened: &BindingSession, now: DateTime<Utc>) -> Result<&CheckoutId, UsedLink> {
    match (opened.binding_state(now), &opened.checkout_id) {
        (BindingState::Pending, Some(checkout)) => Ok(checkout),
        (BindingState::Pending, None) => Err(UsedLink::Opening),
        (BindingState::Bound, _) => Err(UsedLink::Bound),
        (BindingState::Failed, _) => Err(UsedLink::Failed),
        (BindingState::Expired, _) => Err(UsedLink::Expired),
    }
}

/// The state the merchant's return page polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindingStatus {
    pub state: BindingState,
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
    let state = s.binding_state(now);
    let (last4, reason) = match s.state {
        SessionState::Bound { last4, .. } => (last4, None),
        SessionState::Failed { reason, .. } => (None, Some(reason)),
        SessionState::Pending => (None, None),
    };
    Ok(Some(BindingStatus {
        state,
        last4,
        reason,
    }))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::{CustomerId, PlanId};

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn opened(checkout: Option<&str>, state: SessionState) -> BindingSession {
        BindingSession {
            reference: BindingRef::generate(),
            customer: CustomerId::parse("cust-1").unwrap(),
            plan: PlanId::parse("premium").unwrap(),
            created_at: t0(),
            expires_at: t0() + SESSION_LIFETIME,
            checkout_id: checkout.map(|c| CheckoutId::parse(c).unwrap()),
            state,
            terms: None,
            payer: Default::default(),
        }
    }

    #[test]
    fn a_replay_shows_the_open_page_again_until_it_expires() {
        let s = opened(Some("Page1"), SessionState::Pending);
        assert_eq!(reopen(&s, t0()).unwrap().as_str(), "Page1");
        assert_eq!(
            reopen(&s, t0() + SESSION_LIFETIME).unwrap().as_str(),
            "Page1"
        );
        let later = t0() + SESSION_LIFETIME + Duration::seconds(1);
        assert_eq!(reopen(&s, later), Err(UsedLink::Expired));
    }

    #[test]
    fn a_replay_while_oen_is_asked_or_after_the_binding_ended_is_refused() {
        let asking = opened(None, SessionState::Pending);
        assert_eq!(reopen(&asking, t0()), Err(UsedLink::Opening));
        let bound = opened(
            Some("Page1"),
            SessionState::Bound {
                token_fingerprint: "f".into(),
                last4: Some("4242".into()),
                bound_at: t0(),
            },
        );
        assert_eq!(reopen(&bound, t0()), Err(UsedLink::Bound));
        let failed = opened(
            Some("Page1"),
            SessionState::Failed {
                reason: "3DS_ABANDONED".into(),
                failed_at: t0(),
            },
        );
        assert_eq!(reopen(&failed, t0()), Err(UsedLink::Failed));
        let never_opened = opened(
            None,
            SessionState::Failed {
                reason: "checkout-token: F0001".into(),
                failed_at: t0(),
            },
        );
        assert_eq!(reopen(&never_opened, t0()), Err(UsedLink::Failed));
        for refusal in [
            UsedLink::Opening,
            UsedLink::Bound,
            UsedLink::Failed,
            UsedLink::Expired,
        ] {
            assert!(refusal.to_string().contains("link"), "{refusal}");
        }
    }
}
