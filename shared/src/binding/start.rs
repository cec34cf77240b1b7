//! Flows 1 and 3: open a binding session and Oen's hosted page for it; report where a binding
//! stands to the browser's return page.

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

use super::{BindingDeps, CustomId, SESSION_LIFETIME};
use crate::domain::{BindingRef, BindingSession, BindingState, SessionState};
use crate::links::StartLink;
use crate::oen::{hosted_page_url, CheckoutRequest, OenError};
use crate::store::{Expect, Put, Store, StoreError, StoreExt};

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
        terms: deps.plans.get(&link.plan).cloned(),
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
